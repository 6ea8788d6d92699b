"""A PyTorch model as a scikit-learn style estimator, so SISA can shard it and forget exactly.

``SISAClassifier(TorchEstimator(make_module))`` trains one torch module per shard, one
slice at a time through :meth:`TorchEstimator.partial_fit`, and checkpoints it after each
slice. Unlearning restarts a shard from a checkpoint and trains the remaining slices; for
that to give *bit for bit* the model that training from scratch would give, everything
that shapes training must be either in the checkpoint or a function of what is:

* the weights are the checkpoint (pickled as a ``state_dict``; the module is rebuilt by
  the factory, so a checkpoint holds numbers, not code);
* the optimizer lives for one call of the training function only (a new one per slice),
  so there is no optimizer state to carry;
* every random draw (initial weights, batch order, dropout) comes from a seed derived
  from ``random_state`` and the number of slices trained so far, never from the
  process's global generator;
* training runs on the CPU, on one thread, with ``torch.use_deterministic_algorithms``,
  so the floating-point sums happen in the same order every time.

The process's global torch state (seed, thread count, determinism flag) is restored after
each call. ``module_factory`` and ``train_fn`` must be importable functions (defined at
module level), because checkpoints are pickles that name them.

Install with ``pip install 'disgorge[torch]'``.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInput

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = ["TorchEstimator", "sgd_train"]

#: ``module_factory(n_features, n_classes)`` returns an ``nn.Module`` mapping a float32
#: batch of shape (n, n_features) to logits of shape (n, n_classes)
ModuleFactory = Callable[[int, int], "torch.nn.Module"]
#: ``train_fn(module, X, y, *, generator, epochs, lr, batch_size)`` trains ``module`` in place
TrainFn = Callable[..., None]


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise InvalidInput("the PyTorch adapter needs torch: pip install 'disgorge[torch]'") from None
    return torch


def sgd_train(
    module: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator,
    epochs: int,
    lr: float,
    batch_size: int,
) -> None:
    """The default training function: mini-batch SGD on cross-entropy.

    A custom ``train_fn`` takes the same arguments. It must draw every random number from
    ``generator`` (pass it to ``torch.randperm``, dropout masks via ``torch.manual_seed``
    of a number drawn from it, ...) and create its optimizer inside the call.
    """
    torch = _torch()
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss_fn(module(X[batch]), y[batch]).backward()
            optimizer.step()


def _seed(random_state: int, what: str, step: int) -> int:
    digest = hashlib.sha256(f"{random_state}:{what}:{step}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


@contextmanager
def _deterministic(seed: int) -> Iterator[Any]:
    """One thread, deterministic kernels, the global RNG seeded — all restored on exit."""
    torch = _torch()
    threads = torch.get_num_threads()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            yield torch
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
            torch.set_num_threads(threads)


class TorchEstimator:
    """A classifier over a torch module: ``fit``, ``partial_fit``, ``predict_proba``.

    Follows scikit-learn's conventions (settings as keyword arguments, ``fit`` returns
    ``self``, learned state in ``classes_``, ``module_``, ``n_features_in_``), so
    ``sklearn.base.clone`` and :class:`~disgorge.training.SISAClassifier` handle it like
    any estimator. Deterministic given ``random_state``.
    """

    def __init__(
        self,
        module_factory: ModuleFactory,
        train_fn: TrainFn = sgd_train,
        *,
        epochs: int = 20,
        lr: float = 0.1,
        batch_size: int = 32,
        random_state: int = 0,
    ) -> None:
        self.module_factory = module_factory
        self.train_fn = train_fn
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.random_state = random_state

    # -- scikit-learn parameters -----------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            "module_factory": self.module_factory,
            "train_fn": self.train_fn,
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "random_state": self.random_state,
        }

    def set_params(self, **params: Any) -> TorchEstimator:
        unknown = set(params) - set(self.get_params())
        if unknown:
            raise InvalidInput(f"TorchEstimator has no parameter(s) {', '.join(sorted(unknown))}")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    # -- training ------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: Sequence[Any]) -> TorchEstimator:
        """Train a fresh module on (X, y); the classes are those present in ``y``."""
        y_arr = np.asarray(y)
        self._start(np.asarray(X), np.unique(y_arr))
        return self._step(np.asarray(X), y_arr)

    def partial_fit(
        self, X: np.ndarray, y: Sequence[Any], classes: Sequence[Any] | None = None
    ) -> TorchEstimator:
        """Train the module further on one batch (a SISA slice). The first call needs
        ``classes``: the output layer is sized for them once."""
        X = np.asarray(X)
        if not hasattr(self, "module_"):
            if classes is None:
                raise InvalidInput("the first partial_fit needs classes= (every class it will ever see)")
            self._start(X, np.asarray(classes))
        return self._step(X, np.asarray(y))

    def _check_picklable(self) -> None:
        for name in ("module_factory", "train_fn"):
            try:
                pickle.dumps(getattr(self, name))
            except (pickle.PicklingError, AttributeError, TypeError) as exc:
                raise InvalidInput(
                    f"TorchEstimator.{name} must be a function defined at module level (not a lambda "
                    f"or a nested function): SISA checkpoints are pickles that name it ({exc})"
                ) from None

    def _start(self, X: np.ndarray, classes: np.ndarray) -> None:
        self._check_picklable()
        if X.ndim != 2:
            raise InvalidInput(f"X must be 2-d (samples x features), got shape {X.shape}")
        if not len(classes):
            raise InvalidInput("no classes to learn")
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.steps_ = 0
        with _deterministic(_seed(self.random_state, "init", 0)):
            self.module_ = self.module_factory(self.n_features_in_, len(classes))

    def _step(self, X: np.ndarray, y: np.ndarray) -> TorchEstimator:
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise InvalidInput(f"X must have shape (n, {self.n_features_in_}), got {X.shape}")
        if len(X) != len(y):
            raise InvalidInput(f"X has {len(X)} rows but y has {len(y)}")
        index = {c: k for k, c in enumerate(self.classes_.tolist())}
        unknown = {v for v in y.tolist() if v not in index}
        if unknown:
            raise InvalidInput(f"label(s) {sorted(map(str, unknown))[:5]} not among the classes given")
        if len(X):
            with _deterministic(_seed(self.random_state, "step", self.steps_)) as torch:
                generator = torch.Generator().manual_seed(_seed(self.random_state, "order", self.steps_))
                self.train_fn(
                    self.module_,
                    torch.as_tensor(X, dtype=torch.float32),
                    torch.as_tensor([index[v] for v in y.tolist()], dtype=torch.long),
                    generator=generator,
                    epochs=self.epochs,
                    lr=self.lr,
                    batch_size=self.batch_size,
                )
        self.steps_ += 1
        return self

    # -- prediction ------------------------------------------------------------------------------
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax of the module's logits, columns in the order of ``classes_``."""
        if not hasattr(self, "module_"):
            raise InvalidInput("this TorchEstimator is not fitted yet")
        X = np.asarray(X)
        with _deterministic(0) as torch, torch.no_grad():
            self.module_.eval()
            logits = self.module_(torch.as_tensor(X, dtype=torch.float32))
            return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # -- pickling: weights, not code -------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        module = state.pop("module_", None)
        if module is not None:
            state["state_dict_"] = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.pop("state_dict_", None)
        self.__dict__.update(state)
        if weights is not None:
            with _deterministic(0):
                self.module_ = self.module_factory(self.n_features_in_, len(self.classes_))
            self.module_.load_state_dict(weights)
