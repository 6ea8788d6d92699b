"""The PyTorch adapter: a torch module under SISA forgets exactly, down to its weights.

Real torch, real SISA, real checkpoint files; the data are generated (12 people, a
cluster of 16-d points each) so the tests run in seconds.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from disgorge import InvalidInput  # noqa: E402
from disgorge.training import DirectoryCheckpoints, MemoryCheckpoints, SISAClassifier  # noqa: E402
from disgorge.training.registry import SealedCheckpoints  # noqa: E402
from disgorge.training.torch_adapter import TorchEstimator, sgd_train  # noqa: E402

PEOPLE = [f"person_{k:02d}" for k in range(12)]


def mlp(n_features: int, n_classes: int) -> torch.nn.Module:
    """A small MLP with dropout: random draws in training, not only at initialisation."""
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, 32),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(32, n_classes),
    )


def adam_train(
    module: torch.nn.Module, X: Any, y: Any, *, generator: Any, epochs: int, lr: float, batch_size: int
) -> None:
    """A custom training function with a stateful optimizer (created per call)."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(X), generator=generator).split(batch_size):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(module(X[batch]), y[batch]).backward()
            optimizer.step()


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(len(PEOPLE), 16))
    X, y, ids = [], [], []
    for k, name in enumerate(PEOPLE):
        for j in range(10):
            X.append(centres[k] + 0.3 * rng.normal(size=16))
            y.append(name)
            ids.append(f"{name}/{j}")
    return {"X": np.asarray(X), "y": np.asarray(y), "ids": ids}


def _rows(data: dict[str, Any], ids: list[str]) -> np.ndarray:
    where = {i: k for k, i in enumerate(data["ids"])}
    return np.asarray([where[i] for i in ids], dtype=int)


def _loader(data: dict[str, Any]):
    def load(ids: Any) -> tuple[np.ndarray, np.ndarray]:
        rows = _rows(data, list(ids))
        return data["X"][rows], data["y"][rows]

    return load


def _sisa(store: Any = None, train_fn: Any = sgd_train, **kw: Any) -> SISAClassifier:
    return SISAClassifier(
        TorchEstimator(mlp, train_fn, epochs=5, lr=0.05, batch_size=8),
        n_shards=3,
        n_slices=3,
        random_state=11,
        checkpoints=store if store is not None else MemoryCheckpoints(),
        **kw,
    )


def _fit(model: SISAClassifier, data: dict[str, Any], ids: list[str], **kw: Any) -> SISAClassifier:
    rows = _rows(data, ids)
    return model.fit(data["X"][rows], data["y"][rows], sample_ids=ids, groups=list(data["y"][rows]), **kw)


def _weights(shard: Any) -> dict[str, np.ndarray]:
    if shard.model is None:
        return {}
    return {k: v.numpy() for k, v in shard.model.module_.state_dict().items()}


def _same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("train_fn", [sgd_train, adam_train], ids=["sgd", "adam"])
def test_unlearning_equals_training_from_scratch_without(
    data: dict[str, Any], tmp_path: Path, train_fn: Any
) -> None:
    folder = tmp_path / "ckpt"
    model = _fit(_sisa(DirectoryCheckpoints(folder), train_fn), data, data["ids"])
    shard_of = {i: s.index for s in model.shards_ for i in s.ids}
    whole = [i for i in data["ids"] if i.startswith("person_04/")]
    other = next(i for i in data["ids"] if shard_of[i] != shard_of[whole[0]])
    forget = {*whole, other}
    saw = {
        key
        for s in model.shards_
        for r, key in enumerate(s.checkpoints)
        if forget.intersection(i for sl in s.slices[: r + 1] for i in sl)
    }
    untouched = [s.index for s in model.shards_ if not forget.intersection(s.ids)]
    before = {k: _weights(model.shards_[k]) for k in untouched}

    report = model.unlearn(sorted(forget), _loader(data))
    assert report.forgotten == len(forget)
    assert sorted(report.shards_retrained) == sorted({shard_of[i] for i in forget})
    assert "person_04" not in model.classes_.tolist()

    keep = [i for i in data["ids"] if i not in forget]
    scratch = _fit(_sisa(train_fn=train_fn), data, keep)
    for mine, theirs in zip(model.shards_, scratch.shards_, strict=True):
        assert mine.slices == theirs.slices
        assert _same_weights(_weights(mine), _weights(theirs)), f"shard {mine.index} differs"
    for k in untouched:  # shards without the items were not touched at all
        assert _same_weights(_weights(model.shards_[k]), before[k])
    X = data["X"]
    assert np.array_equal(model.predict_proba(X), scratch.predict_proba(X))
    assert "person_04" not in set(model.predict(X).tolist())
    # every checkpoint that saw the items is gone from disk; the others are all there
    on_disk = {p.stem for p in folder.iterdir()}
    assert saw and not saw & on_disk
    assert model.checkpoint_keys() <= on_disk


def test_training_is_deterministic_given_a_seed(data: dict[str, Any]) -> None:
    a = _fit(_sisa(), data, data["ids"])
    b = _fit(_sisa(), data, data["ids"])
    for x, y in zip(a.shards_, b.shards_, strict=True):
        assert _same_weights(_weights(x), _weights(y))
    other = SISAClassifier(
        TorchEstimator(mlp, epochs=5, lr=0.05, batch_size=8), n_shards=3, n_slices=3, random_state=12
    )
    _fit(other, data, data["ids"])
    assert not _same_weights(_weights(a.shards_[0]), _weights(other.shards_[0]))


def test_the_processes_torch_state_is_left_as_it_was(data: dict[str, Any]) -> None:
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    est = TorchEstimator(mlp, epochs=2).fit(data["X"], data["y"])
    est.predict_proba(data["X"][:5])
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


def test_a_checkpointed_model_reloads_sealed(data: dict[str, Any], tmp_path: Path) -> None:
    store = SealedCheckpoints(tmp_path / "ckpt", b"k" * 32)
    model = _fit(_sisa(store), data, data["ids"])
    # sealed at rest: no checkpoint file is a readable pickle
    for path in (tmp_path / "ckpt").iterdir():
        with pytest.raises(pickle.UnpicklingError):
            pickle.loads(path.read_bytes())
    again = SISAClassifier.from_manifest(
        model.manifest(), TorchEstimator(mlp, epochs=5, lr=0.05, batch_size=8), store
    )
    assert np.array_equal(again.predict_proba(data["X"]), model.predict_proba(data["X"]))
    # and it can still forget, exactly
    again.unlearn([i for i in data["ids"] if i.startswith("person_01/")], _loader(data))
    scratch = _fit(_sisa(), data, [i for i in data["ids"] if not i.startswith("person_01/")])
    assert np.array_equal(again.predict_proba(data["X"]), scratch.predict_proba(data["X"]))


def test_standalone_it_is_a_scikit_learn_style_classifier(data: dict[str, Any]) -> None:
    from sklearn.base import clone

    est = TorchEstimator(mlp, epochs=30, lr=0.05, batch_size=16, random_state=1)
    assert est.fit(data["X"], data["y"]) is est
    assert (est.predict(data["X"]) == data["y"]).mean() > 0.95
    proba = est.predict_proba(data["X"])
    assert proba.shape == (len(data["X"]), len(PEOPLE))
    assert np.allclose(proba.sum(axis=1), 1.0)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "module_")
    assert np.array_equal(twin.fit(data["X"], data["y"]).predict_proba(data["X"]), proba)
    restored = pickle.loads(pickle.dumps(est))
    assert np.array_equal(restored.predict_proba(data["X"]), proba)


def test_bad_input_says_what_to_do(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="module level"):
        TorchEstimator(lambda n, k: torch.nn.Linear(n, k)).fit(data["X"], data["y"])
    with pytest.raises(InvalidInput, match="classes="):
        TorchEstimator(mlp).partial_fit(data["X"], data["y"])
    est = TorchEstimator(mlp, epochs=1).partial_fit(data["X"][:5], data["y"][:5], classes=PEOPLE[:2])
    with pytest.raises(InvalidInput, match="not among the classes"):
        est.partial_fit(data["X"][20:25], data["y"][20:25])
    with pytest.raises(InvalidInput, match="not fitted"):
        TorchEstimator(mlp).predict_proba(data["X"])
    with pytest.raises(InvalidInput, match="no parameter"):
        TorchEstimator(mlp).set_params(momentum=0.9)
