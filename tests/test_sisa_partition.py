"""Balanced subject-to-shard assignment: near-equal shards, stored with the model, exact forgetting.

Real scikit-learn estimators and real checkpoint files; generated clusters of uneven size
(people with 2 to 12 photos), where a hash of the subject makes uneven shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier

from disgorge import InvalidInput
from disgorge.training import DirectoryCheckpoints, MemoryCheckpoints, SISAClassifier
from disgorge.training.face_id import FaceIdClassifier


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    rng = np.random.default_rng(5)
    X, y, ids = [], [], []
    for k in range(40):
        centre = rng.normal(size=8)
        for j in range(2 + (k * 7) % 11):
            X.append(centre + 0.2 * rng.normal(size=8))
            y.append(f"p{k:02d}")
            ids.append(f"p{k:02d}/{j}")
    return {"X": np.asarray(X), "y": np.asarray(y), "ids": ids}


def _fit(model: SISAClassifier, data: dict[str, Any], ids: list[str], **kw: Any) -> SISAClassifier:
    where = {i: k for k, i in enumerate(data["ids"])}
    rows = np.asarray([where[i] for i in ids], dtype=int)
    return model.fit(data["X"][rows], data["y"][rows], sample_ids=ids, groups=list(data["y"][rows]), **kw)


def _loader(data: dict[str, Any]):
    where = {i: k for k, i in enumerate(data["ids"])}

    def load(ids: Any) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray([where[i] for i in ids], dtype=int)
        return data["X"][rows], data["y"][rows]

    return load


def _sizes(model: SISAClassifier) -> list[int]:
    return [len(s.ids) for s in model.shards_]


def test_balanced_shards_are_near_equal_where_hashed_ones_are_not(data: dict[str, Any]) -> None:
    largest = max(np.unique(data["y"], return_counts=True)[1])
    hashed = _fit(SISAClassifier(LogisticRegression(), n_shards=8, random_state=3), data, data["ids"])
    balanced = _fit(
        SISAClassifier(LogisticRegression(), n_shards=8, random_state=3, partition="balanced"),
        data,
        data["ids"],
    )
    assert sum(_sizes(balanced)) == sum(_sizes(hashed)) == len(data["ids"])
    # greedy largest-first: the spread is at most one person's photos
    assert max(_sizes(balanced)) - min(_sizes(balanced)) <= largest
    assert max(_sizes(hashed)) - min(_sizes(hashed)) > max(_sizes(balanced)) - min(_sizes(balanced))
    # a person's photos are all in one shard
    for shard in balanced.shards_:
        people = {i.split("/")[0] for i in shard.ids}
        assert all(i.split("/")[0] not in people for s in balanced.shards_ if s is not shard for i in s.ids)
    # deterministic given the seed
    again = _fit(
        SISAClassifier(LogisticRegression(), n_shards=8, random_state=3, partition="balanced"),
        data,
        data["ids"],
    )
    assert [s.slices for s in again.shards_] == [s.slices for s in balanced.shards_]


@pytest.mark.parametrize("kind", ["sgd", "face_id"])
def test_balanced_unlearning_equals_the_twin_trained_with_the_stored_assignment(
    data: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    def make() -> Any:
        if kind == "sgd":
            return SGDClassifier(loss="log_loss", random_state=0)
        return FaceIdClassifier()

    folder = tmp_path / "ckpt"
    model = _fit(
        SISAClassifier(
            make(),
            n_shards=6,
            n_slices=3,
            random_state=1,
            partition="balanced",
            checkpoints=DirectoryCheckpoints(folder),
        ),
        data,
        data["ids"],
    )
    assignment = model.assignment_of(data["ids"], list(data["y"]))
    forget = [i for i in data["ids"] if i.startswith(("p07/", "p21/"))]
    model.unlearn(forget, _loader(data))
    keep = [i for i in data["ids"] if i not in forget]
    # nobody moved: every remaining person is in the shard they were in
    groups = [i.split("/")[0] for i in keep]
    assert model.assignment_of(keep, groups) == {g: assignment[g] for g in groups}
    twin = _fit(
        SISAClassifier(make(), n_shards=6, n_slices=3, random_state=1, partition="balanced"),
        data,
        keep,
        assignment=model.assignment_of(keep, groups),
    )
    assert [s.slices for s in model.shards_] == [s.slices for s in twin.shards_]
    assert np.array_equal(model.predict_proba(data["X"]), twin.predict_proba(data["X"]))
    assert model.checkpoint_keys() == twin.checkpoint_keys()
    # the partition travels with the model
    again = SISAClassifier.from_manifest(model.manifest(), make(), DirectoryCheckpoints(folder))
    assert again.partition == "balanced"
    assert np.array_equal(again.predict_proba(data["X"]), model.predict_proba(data["X"]))


def test_a_manifest_from_before_balancing_reads_as_hash(data: dict[str, Any]) -> None:
    store = MemoryCheckpoints()
    model = _fit(
        SISAClassifier(LogisticRegression(), n_shards=4, n_slices=1, checkpoints=store), data, data["ids"]
    )
    manifest = model.manifest()
    del manifest["partition"]
    assert SISAClassifier.from_manifest(manifest, LogisticRegression(), store).partition == "hash"


def test_bad_partition_and_assignment_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="partition 'even'"):
        SISAClassifier(LogisticRegression(), partition="even")
    model = SISAClassifier(LogisticRegression(), n_shards=4)
    with pytest.raises(InvalidInput, match="no shard to 1 group"):
        _fit(model, data, data["ids"], assignment={f"p{k:02d}": k % 4 for k in range(39)})
    with pytest.raises(InvalidInput, match=r"outside shards 0\.\.3"):
        _fit(model, data, data["ids"], assignment={f"p{k:02d}": k % 5 for k in range(40)})
