"""SISA training: sharded, isolated, sliced, aggregated — so a model can forget exactly.

After Bourtoule et al., "Machine Unlearning" (IEEE S&P 2021). The training set is split
into ``n_shards`` shards *by group* (in disgorge, by subject: all of a person's items
fall in one shard, so forgetting a person touches one shard), and each shard into
``n_slices`` slices trained one after another, with a checkpoint after each slice. A shard
model never sees another shard's data; predictions aggregate the shard models.

Forgetting items retrains only the affected shards, from the last checkpoint that saw
none of them, and destroys every checkpoint that did. The result is *exact*: it is the
model that training from scratch without those items would have produced. Three choices
make that true:

* shard membership is decided once, at training, and stored with the model (each shard's
  slices list its items); unlearning never reassigns anyone. With ``partition="hash"``
  a subject's shard is a keyed hash of the subject alone, so training from scratch
  without some items assigns everyone else the same way; with ``partition="balanced"``
  (shards of near-equal size) it depends on everyone's counts, so the from-scratch twin
  is trained with the stored assignment: ``fit(..., assignment=model.assignment_of(ids,
  groups))``. Slice membership is a keyed hash of each item's own id;
* the order within a slice is a hash order, so it is the same with or without the
  removed items;
* each shard model knows only the classes present in its own data; if forgetting
  changes that set, the shard restarts from its first slice.

Works with any scikit-learn style classifier: ``fit`` + ``predict_proba``, and
``partial_fit`` (used for incremental slices when present; otherwise each slice refits on
the prefix of slices). Deterministic given ``random_state``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .checkpoints import CheckpointStore, MemoryCheckpoints

__all__ = ["AGGREGATIONS", "PARTITIONS", "SISAClassifier", "UnlearnReport"]

AGGREGATIONS = ("mean_proba", "vote", "max_score")
#: how subjects are assigned to shards: a keyed hash of the subject (sizes vary), or
#: greedily by photo count, largest first, to the least-filled shard (sizes near equal)
PARTITIONS = ("hash", "balanced")

Loader = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]
#: ``runner(fn, calls) -> [fn(*args) for args in calls]``, run elsewhere (a Dask cluster's
#: :meth:`disgorge.cluster.Cluster.map`): shards are independent, so they train in parallel
ShardRunner = Callable[[Callable[..., Any], Sequence[tuple[Any, ...]]], list[Any]]


def _bucket(seed: int, what: str, key: str) -> int:
    digest = hashlib.sha256(f"{seed}:{what}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class _SingleClass:
    """A shard whose data holds one class: it can only ever say that class."""

    def __init__(self, label: Any) -> None:
        self.classes_ = np.asarray([label])

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.ones((len(X), 1))


@dataclass
class _Shard:
    index: int
    slices: list[list[str]]
    classes: list[Any] = field(default_factory=list)
    checkpoints: list[str | None] = field(default_factory=list)
    model: Any = None

    @property
    def ids(self) -> list[str]:
        return [i for s in self.slices for i in s]


@dataclass
class UnlearnReport:
    requested: int
    forgotten: int
    shards_retrained: list[int]
    slices_retrained: int
    checkpoints_destroyed: int
    classes_removed: list[Any]
    message: str
    #: keys of the checkpoints replaced: all that saw the items, and for an incremental
    #: estimator whose shard lost a class, that shard's earlier ones too (destroyed, unless
    #: ``unlearn(destroy=False)``)
    stale_checkpoints: list[str] = field(default_factory=list)

    @property
    def noop(self) -> bool:
        return self.forgotten == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "forgotten": self.forgotten,
            "shards_retrained": self.shards_retrained,
            "slices_retrained": self.slices_retrained,
            "checkpoints_destroyed": self.checkpoints_destroyed,
            "classes_removed": [str(c) for c in self.classes_removed],
            "message": self.message,
        }


class SISAClassifier:
    """A SISA ensemble of ``estimator``. ``fit`` needs sample ids and groups besides X, y."""

    def __init__(
        self,
        estimator: Any,
        *,
        n_shards: int = 8,
        n_slices: int = 4,
        aggregation: str = "mean_proba",
        random_state: int = 0,
        checkpoints: CheckpointStore | None = None,
        partition: str = "hash",
        runner: ShardRunner | None = None,
    ) -> None:
        if n_shards < 1 or n_slices < 1:
            raise InvalidInput("SISA needs at least one shard and one slice")
        if aggregation not in AGGREGATIONS:
            raise InvalidInput(f"aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
        if partition not in PARTITIONS:
            raise InvalidInput(f"partition {partition!r}: expected one of {', '.join(PARTITIONS)}")
        self.partition = partition
        self.estimator = estimator
        self.n_shards = n_shards
        self.n_slices = n_slices
        self.aggregation = aggregation
        self.random_state = random_state
        self.checkpoints = checkpoints if checkpoints is not None else MemoryCheckpoints()
        #: where shards are trained: here (None) or by a runner (see :meth:`_train_all`)
        self.runner = runner

    # -- training --------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        y: Sequence[Any] | np.ndarray,
        *,
        sample_ids: Sequence[str],
        groups: Sequence[str],
        allow_empty_shards: bool = False,
        assignment: dict[str, int] | None = None,
    ) -> SISAClassifier:
        """Train every shard. More shards than groups is refused, unless
        ``allow_empty_shards``: that is how to train the from-scratch twin of a model
        that unlearning left with fewer subjects than shards. ``assignment`` (group ->
        shard, e.g. :meth:`assignment_of` of an earlier model) overrides the partition:
        the from-scratch twin of a balanced model is trained with its assignment."""
        X = np.asarray(X)
        y_arr = np.asarray(y)
        ids = [str(i) for i in sample_ids]
        if not (len(X) == len(y_arr) == len(ids) == len(groups)):
            raise InvalidInput("X, y, sample_ids and groups must have the same length")
        if len(set(ids)) != len(ids):
            raise InvalidInput("sample ids must be unique")
        n_groups = len(set(groups))
        if self.n_shards > n_groups and not allow_empty_shards:
            raise InvalidInput(
                f"more shards than subjects: {self.n_shards} shards for {n_groups} subject(s); "
                f"use at most {n_groups} (a shard of nobody is a model of nothing)"
            )
        data = {i: (X[k], y_arr[k]) for k, i in enumerate(ids)}
        shard_of = self._assign(ids, [str(g) for g in groups], assignment)
        members: list[list[str]] = [[] for _ in range(self.n_shards)]
        for i, g in zip(ids, groups, strict=True):
            members[shard_of[str(g)]].append(i)
        shards = []
        for k, shard_ids in enumerate(members):
            slices: list[list[str]] = [[] for _ in range(self.n_slices)]
            for i in sorted(shard_ids, key=lambda s: (_bucket(self.random_state, "order", s), s)):
                slices[_bucket(self.random_state, "slice", i) % self.n_slices].append(i)
            shards.append(_Shard(k, slices, checkpoints=[None] * self.n_slices))
        self._train_all([(shard, data, 0) for shard in shards])
        self.shards_ = shards
        self._refresh_classes()
        self.n_features_in_ = X.shape[1] if X.ndim == 2 else 1
        return self

    def _assign(self, ids: list[str], groups: list[str], assignment: dict[str, int] | None) -> dict[str, int]:
        """group -> shard."""
        names = set(groups)
        if assignment is not None:
            missing = sorted(names - set(assignment))
            if missing:
                raise InvalidInput(
                    f"the assignment gives no shard to {len(missing)} group(s), e.g. {missing[0]!r}"
                )
            bad = sorted(g for g in names if not 0 <= assignment[g] < self.n_shards)
            if bad:
                raise InvalidInput(
                    f"the assignment puts group {bad[0]!r} outside shards 0..{self.n_shards - 1}"
                )
            return {g: int(assignment[g]) for g in names}
        if self.partition == "hash":
            return {g: _bucket(self.random_state, "shard", g) % self.n_shards for g in names}
        # balanced: largest group first (ties in a seeded order) to the least-filled shard
        counts: dict[str, int] = {}
        for g in groups:
            counts[g] = counts.get(g, 0) + 1
        order = sorted(names, key=lambda g: (-counts[g], _bucket(self.random_state, "shard", g), g))
        load = [0] * self.n_shards
        out: dict[str, int] = {}
        for g in order:
            k = min(range(self.n_shards), key=lambda s: (load[s], s))
            out[g] = k
            load[k] += counts[g]
        return out

    def assignment_of(self, sample_ids: Sequence[str], groups: Sequence[str]) -> dict[str, int]:
        """group -> shard of this model, for the groups of items it holds: what to pass as
        ``fit(assignment=...)`` to train its from-scratch twin."""
        shard_of_item = {i: s.index for s in self.shards_ for i in s.ids}
        out: dict[str, int] = {}
        for i, g in zip(sample_ids, groups, strict=True):
            k = shard_of_item.get(str(i))
            if k is not None:
                out.setdefault(str(g), k)
        return out

    def _params_tag(self) -> str:
        params: dict[str, Any] = getattr(self.estimator, "get_params", lambda: {})()
        text = json.dumps({k: _stable_repr(v) for k, v in sorted(params.items())}, sort_keys=True)
        return f"{type(self.estimator).__name__}:{text}"

    def _checkpoint_key(self, shard: _Shard, r: int) -> str:
        seen = sorted(i for s in shard.slices[: r + 1] for i in s)
        # an increment is trained knowing the shard's whole class set: it is part of the content
        labels = [str(c) for c in shard.classes] if hasattr(self.estimator, "partial_fit") else None
        body = json.dumps([self.random_state, shard.index, r, self._params_tag(), seen, labels])
        return hashlib.sha256(body.encode()).hexdigest()

    def _fresh(self, shard: _Shard) -> Any:
        try:
            from sklearn.base import clone

            est = clone(self.estimator)
        except ImportError:  # any estimator following the convention works without sklearn
            est = copy.deepcopy(self.estimator)
        if hasattr(est, "get_params") and "random_state" in est.get_params():
            est.set_params(random_state=self.random_state * 1009 + shard.index)
        return est

    def _train(self, shard: _Shard, data: dict[str, tuple[Any, Any]], *, start: int) -> int:
        """Train slices ``start..R-1`` of a shard; returns how many slices were trained."""
        labels = sorted({data[i][1] for i in shard.ids}, key=_label_key)
        shard.classes = labels
        incremental = hasattr(self.estimator, "partial_fit")
        model = None
        previous = shard.checkpoints[start - 1] if start > 0 else None
        if previous is not None:
            model = pickle.loads(self.checkpoints.get(previous))
        trained = 0
        for r in range(start, self.n_slices):
            if not labels:
                model = None
            elif incremental:
                batch = shard.slices[r]
                if batch and not isinstance(model, _SingleClass):
                    if model is None:
                        model = self._fresh(shard)
                    X = np.stack([data[i][0] for i in batch])
                    y = np.asarray([data[i][1] for i in batch])
                    step = functools.partial(model.partial_fit, X, y, classes=np.asarray(labels))
                    model = _fit_or_single(step, model, labels)
            else:
                prefix = [i for s in shard.slices[: r + 1] for i in s]
                if prefix:
                    X = np.stack([data[i][0] for i in prefix])
                    y = np.asarray([data[i][1] for i in prefix])
                    fresh = self._fresh(shard)
                    model = _fit_or_single(
                        functools.partial(fresh.fit, X, y), fresh, sorted(set(y.tolist()), key=_label_key)
                    )
                else:
                    model = None
            key = self._checkpoint_key(shard, r)
            self.checkpoints.put(key, pickle.dumps(model))
            shard.checkpoints[r] = key
            trained += 1
        shard.model = model
        return trained

    def _train_all(self, jobs: list[tuple[_Shard, dict[str, tuple[Any, Any]], int]]) -> list[int]:
        """``_train(shard, data, start=start)`` for each job; returns the slices trained.

        With a runner, each shard is a task that gets only its own items (and, restarting
        from a checkpoint, that checkpoint's bytes), trains with the same :meth:`_train`
        into a store of its own, and returns its checkpoints, which are written to
        ``self.checkpoints`` here, in order: the same keys and bytes as a local run,
        and the store (sealed, with its key) never leaves this process."""
        if self.runner is None:
            return [self._train(shard, data, start=start) for shard, data, start in jobs]
        spec = SISAClassifier(
            self.estimator,
            n_shards=self.n_shards,
            n_slices=self.n_slices,
            aggregation=self.aggregation,
            random_state=self.random_state,
            partition=self.partition,
        )
        calls = []
        for shard, data, start in jobs:
            prev = shard.checkpoints[start - 1] if start > 0 else None
            bare = _Shard(shard.index, shard.slices, list(shard.classes), list(shard.checkpoints))
            calls.append(
                (spec, bare, {i: data[i] for i in shard.ids}, start, prev and self.checkpoints.get(prev))
            )
        out = []
        for (shard, _, _), (done, written, trained) in zip(
            jobs, self.runner(_train_task, calls), strict=True
        ):
            for key, blob in written:
                self.checkpoints.put(key, blob)
            shard.classes, shard.checkpoints, shard.model = done.classes, done.checkpoints, done.model
            out.append(trained)
        return out

    def _refresh_classes(self) -> None:
        labels = {c for s in self.shards_ for c in s.classes}
        self.classes_ = np.asarray(
            sorted(labels, key=_label_key), dtype=object if labels and not _numeric(labels) else None
        )

    # -- prediction ------------------------------------------------------------------
    def _live(self) -> list[_Shard]:
        live = [s for s in self.shards_ if s.model is not None]
        if not live:
            raise InvalidInput("the model has no training data left: every shard is empty; it cannot predict")
        return live

    def _shard_scores(self, shard: _Shard, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = shard.model
        if self.aggregation == "max_score" and hasattr(model, "decision_function"):
            raw = np.clip(np.asarray(model.decision_function(X), dtype=float), -50, 50)
            if raw.ndim == 1:  # binary: score of the positive class
                raw = np.stack([-raw, raw], axis=1)
            return 1.0 / (1.0 + np.exp(-raw)), np.asarray(model.classes_)
        return np.asarray(model.predict_proba(X), dtype=float), np.asarray(model.classes_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Aggregated class scores over ``classes_`` (probabilities for mean_proba and vote)."""
        X = np.asarray(X)
        index = {c: k for k, c in enumerate(self.classes_.tolist())}
        live = self._live()
        out = np.zeros((len(X), len(index)))
        for shard in live:
            scores, classes = self._shard_scores(shard, X)
            cols = [index[c] for c in classes.tolist()]
            if self.aggregation == "mean_proba":
                out[:, cols] += scores
            elif self.aggregation == "max_score":
                out[:, cols] = np.maximum(out[:, cols], scores)
            else:  # vote
                winners = np.asarray(cols)[np.argmax(scores, axis=1)]
                out[np.arange(len(X)), winners] += 1
        if self.aggregation != "max_score":
            out /= len(live)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # -- forgetting --------------------------------------------------------------------
    def unlearn(self, forget: Sequence[str], loader: Loader, *, destroy: bool = True) -> UnlearnReport:
        """Forget items exactly. ``loader(ids)`` returns (X, y) of the items that remain.

        Only shards holding forgotten items are retrained, from the last checkpoint that
        saw none of them; every checkpoint that saw them is destroyed. Nothing changes
        until every affected shard is retrained: if the loader or the estimator raises,
        the model and all its checkpoints are as they were. With ``destroy=False`` the
        old checkpoints are left for the caller to destroy (``report.stale_checkpoints``)
        once it has safely recorded the new model.
        """
        wanted = {str(i) for i in forget}
        old_classes = set(self.classes_.tolist())
        incremental = hasattr(self.estimator, "partial_fit")
        retrained: list[_Shard] = []
        jobs: list[tuple[_Shard, dict[str, tuple[Any, Any]], int]] = []  # for a runner
        slices_done = forgotten = 0
        for shard in self.shards_:
            hits = wanted.intersection(shard.ids)
            if not hits:
                continue
            forgotten += len(hits)
            first = min(r for r, s in enumerate(shard.slices) if hits.intersection(s))
            new = _Shard(
                shard.index,
                [[i for i in s if i not in hits] for s in shard.slices],
                list(shard.classes),
                list(shard.checkpoints),
            )
            remaining = new.ids
            X, y = loader(remaining) if remaining else (np.zeros((0, 0)), np.asarray([]))
            if len(X) != len(remaining) or len(y) != len(remaining):
                raise InvalidInput(
                    f"the loader returned {len(X)} rows for {len(remaining)} remaining items: "
                    "cannot retrain exactly"
                )
            data = {i: (X[k], y[k]) for k, i in enumerate(remaining)}
            new_labels = sorted({data[i][1] for i in remaining}, key=_label_key)
            if new_labels != shard.classes and incremental:
                first = 0  # the class set changed: earlier increments were trained with the old one
            for r in range(first, self.n_slices):
                new.checkpoints[r] = None
            if self.runner is None:
                slices_done += self._train(new, data, start=first)
            else:
                jobs.append((new, data, first))
            retrained.append(new)
        slices_done += sum(self._train_all(jobs))
        old_keys = {k for s in retrained for k in self.shards_[s.index].checkpoints if k}
        for new in retrained:
            self.shards_[new.index] = new
        stale = sorted(old_keys - self.checkpoint_keys())
        if destroy:
            for key in stale:
                self.checkpoints.destroy(key)
        self._refresh_classes()
        removed = sorted(old_classes - set(self.classes_.tolist()), key=_label_key)
        shards_done = [s.index for s in retrained]
        if not forgotten:
            message = f"none of the {len(wanted)} item(s) were in the training set: nothing to forget"
        else:
            message = (
                f"forgot {forgotten} item(s): retrained {slices_done} slice(s) in shard(s) "
                f"{', '.join(map(str, shards_done))}; {len(stale)} checkpoint(s) that saw them "
                f"{'destroyed' if destroy else 'left for the caller to destroy'}"
            )
        return UnlearnReport(
            len(wanted), forgotten, shards_done, slices_done, len(stale), removed, message, stale
        )

    # -- proof of exactness ------------------------------------------------------------------
    def shard_digests(self) -> list[str]:
        """The digest of each shard model's learned weights (see ``forgetting.weights_digest``)."""
        from .forgetting import weights_digest

        return [weights_digest(s.model) for s in self.shards_]

    def weights_digest(self) -> str:
        """One digest over every shard's weights, in shard order."""
        return hashlib.sha256(json.dumps(self.shard_digests()).encode()).hexdigest()

    def retrain_from_scratch(
        self, shards: Sequence[int], loader: Loader, *, without: Sequence[str] = ()
    ) -> dict[int, str]:
        """Train shards ``shards`` again from their first slice, on the items they hold now
        minus ``without``, into throw-away checkpoints; returns shard -> weights digest.

        Nothing of this model changes. The twin keeps each shard's slices (the partition
        and slice assignment are fixed at first training), so after exact unlearning the
        digests equal :meth:`shard_digests` of the unlearned shards."""
        from .forgetting import weights_digest

        drop = {str(i) for i in without}
        twin = SISAClassifier(
            self.estimator,
            n_shards=self.n_shards,
            n_slices=self.n_slices,
            aggregation=self.aggregation,
            random_state=self.random_state,
            checkpoints=MemoryCheckpoints(),
            partition=self.partition,
        )
        out: dict[int, str] = {}
        for k in sorted({int(k) for k in shards}):
            shard = _Shard(k, [[i for i in s if i not in drop] for s in self.shards_[k].slices])
            shard.checkpoints = [None] * self.n_slices
            ids = shard.ids
            X, y = loader(ids) if ids else (np.zeros((0, 0)), np.asarray([]))
            if len(X) != len(ids) or len(y) != len(ids):
                raise InvalidInput(
                    f"the loader returned {len(X)} rows for {len(ids)} items: cannot retrain shard {k}"
                )
            twin._train(shard, {i: (X[n], y[n]) for n, i in enumerate(ids)}, start=0)
            out[k] = weights_digest(shard.model)
        return out

    # -- persistence -----------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """Everything but the estimator bytes (which are the checkpoints): JSON-ready."""
        return {
            "n_shards": self.n_shards,
            "n_slices": self.n_slices,
            "aggregation": self.aggregation,
            "random_state": self.random_state,
            "partition": self.partition,
            "estimator": self._params_tag(),
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_.tolist()],
            "shards": [
                {
                    "slices": s.slices,
                    "classes": [c.item() if hasattr(c, "item") else c for c in s.classes],
                    "checkpoints": s.checkpoints,
                }
                for s in self.shards_
            ],
        }

    @classmethod
    def from_manifest(
        cls, manifest: dict[str, Any], estimator: Any, checkpoints: CheckpointStore
    ) -> SISAClassifier:
        model = cls(
            estimator,
            n_shards=manifest["n_shards"],
            n_slices=manifest["n_slices"],
            aggregation=manifest["aggregation"],
            random_state=manifest["random_state"],
            checkpoints=checkpoints,
            partition=manifest.get("partition", "hash"),  # manifests before balancing: hash
        )
        model.shards_ = []
        for k, s in enumerate(manifest["shards"]):
            shard = _Shard(k, s["slices"], list(s["classes"]), list(s["checkpoints"]))
            last = shard.checkpoints[-1]
            shard.model = pickle.loads(checkpoints.get(last)) if last else None
            model.shards_.append(shard)
        model._refresh_classes()
        return model

    def checkpoint_keys(self) -> set[str]:
        return {k for s in self.shards_ for k in s.checkpoints if k}


def _train_task(
    spec: SISAClassifier,
    shard: _Shard,
    data: dict[str, tuple[Any, Any]],
    start: int,
    previous: bytes | None,
) -> tuple[_Shard, list[tuple[str, bytes]], int]:
    """A shard trained as a task (on a Dask worker): ``spec._train`` into a store of its
    own; returns the shard and its new checkpoints (key, bytes), in slice order."""
    store = MemoryCheckpoints()
    key = shard.checkpoints[start - 1] if start > 0 else None
    if key is not None and previous is not None:
        store.put(key, previous)
    spec.checkpoints = store
    trained = spec._train(shard, data, start=start)
    written = [(k, store.items[k]) for k in shard.checkpoints[start:] if k is not None]
    return shard, written, trained


def _fit_or_single(step: Callable[[], object], model: Any, labels: list[Any]) -> Any:
    """Run a fit step of ``model`` (bound to it and its data); an estimator that cannot learn
    from one class becomes _SingleClass."""
    try:
        step()
    except ValueError:
        if len(labels) != 1:
            raise
        return _SingleClass(labels[0])
    return model


def _stable_repr(value: Any) -> str:
    """A parameter as text that is the same in every process: a function by its import
    path (its plain repr holds a memory address, which would change checkpoint keys)."""
    if isinstance(value, functools.partial):
        args = ", ".join(
            [_stable_repr(a) for a in value.args]
            + [f"{k}={_stable_repr(v)}" for k, v in sorted(value.keywords.items())]
        )
        return f"partial({_stable_repr(value.func)}, {args})"
    if callable(value) and hasattr(value, "__qualname__") and hasattr(value, "__module__"):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def _label_key(label: Any) -> tuple[int, Any, str]:
    """Sort order of class labels: numbers by value, others by repr; a numpy scalar sorts
    as the Python value it holds, so labels read back from a manifest (JSON) and labels
    from a loader (numpy) order the same way."""
    if isinstance(label, np.generic):
        label = label.item()
    if isinstance(label, (int, float)):
        return (0, label, "")
    return (1, 0, repr(label))


def _numeric(labels: set[Any]) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) for v in labels)
