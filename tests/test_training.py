"""SISA training that can forget: exactness, bad input, and the face-ID model registry.

Everything runs on real dlib embeddings of the shared LFW photos (lfw10x10). One
workspace is ingested and analysed per module (analysis is the slow part) and copied
for each test that changes it; the SISA tests use its embeddings directly.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sqlalchemy import select

from conftest import add_source_with_policy, cli, import_consent_csv, shared_faces_dir
from disgorge import ConsentDenied, InvalidInput, Workspace
from disgorge.catalog.models import Asset
from disgorge.training import DirectoryCheckpoints, MemoryCheckpoints, SISAClassifier
from disgorge.training.face_id import FaceIdClassifier
from disgorge.training.lifecycle import checkpoints
from disgorge.training.registry import dataset_members, find_model, load_model, load_training_data

#: biometric processing granted to all ten; these two refused ML training, so their
#: photos are embedded but never trained on: the "never seen" side of the audit
NEVER_TRAINED = ("Hugo_Chavez", "Vladimir_Putin")
FORGET = "Tony_Blair"


@dataclass
class Lfw:
    template: Path  # a closed, analysed workspace with dataset faces@1.0.0; copy it before changing
    folder: Path
    X: np.ndarray  # one embedding per photo (its largest face)
    y: np.ndarray  # the person's name
    ids: list[str]  # asset ids

    def rows(self, ids: list[str]) -> np.ndarray:
        where = {i: k for k, i in enumerate(self.ids)}
        return np.asarray([where[i] for i in ids], dtype=int)

    def of(self, name: str) -> list[str]:
        return [i for i, n in zip(self.ids, self.y, strict=True) if n == name]

    def loader(self, calls: list[int] | None = None, fail_on: int | None = None):
        """``loader(ids) -> (X, y)`` for SISA; raises on call number ``fail_on`` (1-based)."""

        def load(ids: Any) -> tuple[np.ndarray, np.ndarray]:
            if calls is not None:
                calls.append(len(ids))
                if fail_on is not None and len(calls) == fail_on:
                    raise OSError("embedding store went away")
            rows = self.rows(list(ids))
            return self.X[rows], self.y[rows]

        return load


@pytest.fixture(scope="module")
def lfw(tmp_path_factory: pytest.TempPathFactory) -> Lfw:
    folder = shared_faces_dir("lfw10x10")
    root = tmp_path_factory.mktemp("lfw-template")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    with Workspace.init(root / "ws", actor="tester") as ws:
        add_source_with_policy(ws, "lfw")
        ws.ingest(folder, source="lfw", subject_from="dirname", at="2013-02-01")
        rows = [f"{n},biometric_processing,granted,2013-01-05" for n in names]
        rows += [f"{n},ai_training,denied,2013-01-05" for n in NEVER_TRAINED]
        import_consent_csv(ws, root / "consent.csv", rows, at="2013-01-05")
        report = ws.analyze(workers=2)
        assert report.embedded_faces >= 100
        build = ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
        assert (build.version, build.members) == ("1.0.0", 80)
        name_of = {ws.subject_ref(n): n for n in names}
        with ws.reader() as session:
            ids = sorted(session.scalars(select(Asset.id)))
            data = load_training_data(session, ws.vault, ids)
    assert len(data.asset_ids) == 100  # every LFW photo has a face
    y = np.asarray([name_of[r] for r in data.labels])
    return Lfw(root / "ws", folder, data.X, y, list(data.asset_ids))


@pytest.fixture
def faces_ws(lfw: Lfw, tmp_path: Path):
    """A private copy of the analysed workspace."""
    shutil.copytree(lfw.template, tmp_path / "ws")
    ws = Workspace.open(tmp_path / "ws", actor="tester")
    yield ws
    ws.close()


def _trained_ids(lfw: Lfw) -> list[str]:
    return [i for i, n in zip(lfw.ids, lfw.y, strict=True) if n not in NEVER_TRAINED]


ESTIMATORS = {
    "logreg": lambda: LogisticRegression(C=1.0, max_iter=5000),
    "sgd": lambda: SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0),
    "face_id": lambda: FaceIdClassifier(),
}


def _sisa(kind: str, aggregation: str = "mean_proba", *, store=None, shards: int = 4, slices: int = 4):
    return SISAClassifier(
        ESTIMATORS[kind](),
        n_shards=shards,
        n_slices=slices,
        aggregation=aggregation,
        random_state=7,
        checkpoints=store if store is not None else MemoryCheckpoints(),
    )


def _fit(model: SISAClassifier, lfw: Lfw, ids: list[str]) -> SISAClassifier:
    rows = lfw.rows(ids)
    return model.fit(lfw.X[rows], lfw.y[rows], sample_ids=ids, groups=list(lfw.y[rows]))


def _learned(m: Any) -> list[np.ndarray]:
    """The learned arrays of one estimator (a shard model or a checkpoint)."""
    if m is None:
        return []
    if isinstance(m, FaceIdClassifier):
        linear = [m.linear_.coef_, m.linear_.intercept_] if m.linear_ is not None else []
        return [m.classes_, m.centroids_, *linear]
    if hasattr(m, "coef_"):
        return [m.classes_, m.coef_, m.intercept_]
    return [np.asarray(m.classes_)]  # a one-class shard


def _same(a: Any, b: Any) -> bool:
    la, lb = _learned(a), _learned(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _saw(model: SISAClassifier, forget: set[str]) -> dict[int, list[str]]:
    """shard -> keys of its checkpoints that saw any of ``forget`` (a slice prefix holds one)."""
    out: dict[int, list[str]] = {}
    for shard in model.shards_:
        for r, key in enumerate(shard.checkpoints):
            if key and forget.intersection(i for s in shard.slices[: r + 1] for i in s):
                out.setdefault(shard.index, []).append(key)
    return out


# -- exactness ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "aggregation"),
    [
        ("logreg", "mean_proba"),
        ("logreg", "vote"),
        ("logreg", "max_score"),
        ("sgd", "mean_proba"),
        ("sgd", "vote"),
        ("face_id", "max_score"),
        ("face_id", "mean_proba"),
    ],
)
def test_unlearning_equals_training_from_scratch_without(
    lfw: Lfw, tmp_path: Path, kind: str, aggregation: str
) -> None:
    folder = tmp_path / "ckpt"
    model = _fit(_sisa(kind, aggregation, store=DirectoryCheckpoints(folder)), lfw, lfw.ids)
    shard_of = {i: s.index for s in model.shards_ for i in s.ids}
    # a whole person, and one photo of someone in another shard (their class stays)
    whole = lfw.of(FORGET)
    other = next(i for i in lfw.ids if shard_of[i] != shard_of[whole[0]])
    forget = {*whole, other}
    saw = _saw(model, forget)
    old_checkpoints = {s.index: list(s.checkpoints) for s in model.shards_}
    old_models = {s.index: s.model for s in model.shards_}
    before = _files(folder)
    stat = {n: os.stat(folder / n) for n in before}
    # hard links see the inode: if destroy only unlinked, they would still hold the bytes
    (tmp_path / "links").mkdir()
    for name in before:
        os.link(folder / name, tmp_path / "links" / name)

    report = model.unlearn(sorted(forget), lfw.loader())

    keep = [i for i in lfw.ids if i not in forget]
    scratch = _fit(_sisa(kind, aggregation), lfw, keep)
    assert np.array_equal(model.classes_, scratch.classes_)
    assert np.array_equal(model.predict_proba(lfw.X), scratch.predict_proba(lfw.X))
    assert np.array_equal(model.predict(lfw.X), scratch.predict(lfw.X))
    for mine, theirs in zip(model.shards_, scratch.shards_, strict=True):
        assert _same(mine.model, theirs.model)
    # content-addressed checkpoints: the same keys, holding the same parameters, as the
    # scratch model's; and nothing else is left in the folder
    assert model.checkpoint_keys() == scratch.checkpoint_keys()
    after = _files(folder)
    assert set(after) == {f"{k}.ckpt" for k in model.checkpoint_keys()}
    for key in model.checkpoint_keys():
        assert _same(pickle.loads(after[f"{key}.ckpt"]), pickle.loads(scratch.checkpoints.get(key)))

    # only the shards holding the items were retrained
    affected = sorted({shard_of[i] for i in forget})
    assert report.shards_retrained == affected
    assert (report.requested, report.forgotten) == (len(forget), len(forget))
    assert report.classes_removed == [FORGET]
    for shard in model.shards_:
        if shard.index not in affected:
            assert shard.checkpoints == old_checkpoints[shard.index]
            assert shard.model is old_models[shard.index]
            for key in shard.checkpoints:
                now = os.stat(folder / f"{key}.ckpt")
                assert (now.st_ino, now.st_mtime_ns) == (
                    stat[f"{key}.ckpt"].st_ino,
                    stat[f"{key}.ckpt"].st_mtime_ns,
                )
    # every checkpoint that saw the items is gone, its bytes overwritten;
    # so are earlier ones of an incremental shard retrained from its first slice because its
    # classes changed (which of the shards that is depends on the partition)
    destroyed = report.stale_checkpoints
    assert {k for keys in saw.values() for k in keys} <= set(destroyed)
    assert destroyed and report.checkpoints_destroyed == len(destroyed)
    assert not set(destroyed) & set(model.checkpoint_keys())
    if kind != "sgd":  # not incremental: only what saw the items is retrained
        assert set(destroyed) == {k for keys in saw.values() for k in keys}
    for key in destroyed:
        name = f"{key}.ckpt"
        assert not (folder / name).exists()
        assert (tmp_path / "links" / name).read_bytes() == b"\0" * len(before[name])
    # (an old checkpoint's bytes may equal a new one's: SGD's hinge loss gives a photo
    # beyond the margin no gradient, so training without it can end in the same state; what
    # is left is exactly the from-scratch model's checkpoints, asserted above)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries


@pytest.mark.parametrize("kind", ["logreg", "sgd", "face_id"])
def test_training_is_deterministic_given_a_seed(lfw: Lfw, tmp_path: Path, kind: str) -> None:
    a = _fit(_sisa(kind, store=DirectoryCheckpoints(tmp_path / "a")), lfw, lfw.ids)
    b = _fit(_sisa(kind, store=DirectoryCheckpoints(tmp_path / "b")), lfw, lfw.ids)
    assert a.checkpoint_keys() == b.checkpoint_keys()
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert set(files_a) == set(files_b)
    assert all(_same(pickle.loads(files_a[n]), pickle.loads(files_b[n])) for n in files_a)
    assert np.array_equal(a.predict_proba(lfw.X), b.predict_proba(lfw.X))
    # another seed: other shards, other checkpoints
    c = SISAClassifier(ESTIMATORS[kind](), n_shards=4, n_slices=4, random_state=8)
    _fit(c, lfw, lfw.ids)
    assert c.checkpoint_keys().isdisjoint(a.checkpoint_keys())


def test_a_checkpointed_model_reloads_from_its_manifest(lfw: Lfw, tmp_path: Path) -> None:
    store = DirectoryCheckpoints(tmp_path / "ckpt")
    model = _fit(_sisa("face_id", "max_score", store=store), lfw, lfw.ids)
    manifest = json.loads(json.dumps(model.manifest()))
    again = SISAClassifier.from_manifest(
        manifest, FaceIdClassifier(), DirectoryCheckpoints(tmp_path / "ckpt")
    )
    assert np.array_equal(again.classes_, model.classes_)
    assert np.array_equal(again.predict_proba(lfw.X), model.predict_proba(lfw.X))
    # and unlearning the reloaded model (JSON labels, while the loader gives numpy ones) is
    # still exact: a whole person, and one photo from a shard of several people
    crowded = max(again.shards_, key=lambda s: len(s.classes))
    forget = {*lfw.of(FORGET), crowded.ids[0]}
    again.unlearn(sorted(forget), lfw.loader())
    scratch = _fit(_sisa("face_id", "max_score"), lfw, [i for i in lfw.ids if i not in forget])
    assert again.classes_.tolist() == scratch.classes_.tolist() == sorted(scratch.classes_.tolist())
    assert np.array_equal(again.predict_proba(lfw.X), scratch.predict_proba(lfw.X))


# -- bad input ----------------------------------------------------------------------------


def test_more_shards_than_subjects_is_refused(lfw: Lfw) -> None:
    with pytest.raises(InvalidInput, match="more shards than subjects: 11 shards for 10 subject"):
        _fit(_sisa("face_id", shards=11), lfw, lfw.ids)
    _fit(_sisa("face_id", shards=10), lfw, lfw.ids)  # one each is fine
    # the from-scratch twin of a model unlearned below its shard count may have empty shards
    rows = lfw.rows(lfw.ids)
    twin = _sisa("face_id", "max_score", shards=11).fit(
        lfw.X[rows], lfw.y[rows], sample_ids=lfw.ids, groups=list(lfw.y[rows]), allow_empty_shards=True
    )
    assert any(s.model is None for s in twin.shards_) and len(twin.classes_) == 10
    with pytest.raises(InvalidInput, match="at least one shard"):
        SISAClassifier(FaceIdClassifier(), n_shards=0)
    with pytest.raises(InvalidInput, match="aggregation 'median'"):
        SISAClassifier(FaceIdClassifier(), aggregation="median")
    with pytest.raises(InvalidInput, match="same length"):
        _sisa("face_id").fit(lfw.X, lfw.y[:-1], sample_ids=lfw.ids, groups=list(lfw.y))
    with pytest.raises(InvalidInput, match="unique"):
        _sisa("face_id").fit(lfw.X[:2], lfw.y[:2], sample_ids=["a", "a"], groups=["p", "q"])


@pytest.mark.parametrize("kind", ["face_id", "sgd", "logreg"])
def test_an_erasure_that_empties_shards(lfw: Lfw, kind: str) -> None:
    model = _fit(_sisa(kind, "max_score" if kind == "face_id" else "mean_proba", shards=5), lfw, lfw.ids)
    smallest = min((s for s in model.shards_ if s.ids), key=lambda s: len(s.ids))
    emptied = set(smallest.ids)
    report = model.unlearn(sorted(emptied), lfw.loader())
    empty = model.shards_[smallest.index]
    assert report.shards_retrained == [empty.index] and empty.model is None
    assert empty.ids == [] and not empty.classes
    # the other shards still answer, exactly as a model that never saw those people
    keep = [i for i in lfw.ids if i not in emptied]
    scratch = _fit(_sisa(kind, model.aggregation, shards=5), lfw, keep)
    assert np.array_equal(model.predict_proba(lfw.X), scratch.predict_proba(lfw.X))
    assert set(model.predict(lfw.X)) <= set(lfw.y[lfw.rows(keep)])
    # forget everyone: it says it cannot predict, rather than guessing
    model.unlearn(keep, lfw.loader())
    assert all(s.model is None for s in model.shards_) and model.classes_.size == 0
    with pytest.raises(InvalidInput, match="every shard is empty"):
        model.predict(lfw.X[:1])
    with pytest.raises(InvalidInput, match="every shard is empty"):
        model.predict_proba(lfw.X[:1])


@pytest.mark.parametrize("kind", ["face_id", "sgd", "logreg"])
def test_a_class_that_disappears_is_never_predicted(lfw: Lfw, kind: str) -> None:
    model = _fit(_sisa(kind, "max_score" if kind == "face_id" else "mean_proba"), lfw, lfw.ids)
    theirs = lfw.of(FORGET)
    assert FORGET in model.classes_.tolist()
    if kind == "face_id":  # (plain classifiers averaged over disjoint shards are poor at this)
        assert (model.predict(lfw.X[lfw.rows(theirs)]) == FORGET).mean() >= 0.8
    report = model.unlearn(theirs, lfw.loader())
    assert report.classes_removed == [FORGET]
    assert FORGET not in model.classes_.tolist() and len(model.classes_) == 9
    proba = model.predict_proba(lfw.X)
    assert proba.shape == (len(lfw.ids), 9)
    assert FORGET not in set(model.predict(lfw.X).tolist())
    assert report.to_dict()["classes_removed"] == [FORGET]


def test_unlearning_items_never_seen_is_a_noop_that_says_so(lfw: Lfw, tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    trained = _trained_ids(lfw)
    model = _fit(_sisa("face_id", "max_score", store=DirectoryCheckpoints(folder)), lfw, trained)
    before, proba = _files(folder), model.predict_proba(lfw.X)
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    calls: list[int] = []
    unseen = [i for i in lfw.ids if i not in set(trained)]
    for forget in (unseen, ["no-such-photo"], []):
        report = model.unlearn(forget, lfw.loader(calls))
        assert report.noop and report.forgotten == 0 and report.requested == len(set(forget))
        assert report.shards_retrained == [] and report.checkpoints_destroyed == 0
        assert "nothing to forget" in report.message
    assert calls == []  # nothing was even loaded
    assert _files(folder) == before
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes
    assert np.array_equal(model.predict_proba(lfw.X), proba)


class _Flaky(FaceIdClassifier):
    """Raises on the Nth fit after ``arm(n)`` (counted over all clones)."""

    fits_left: int | None = None

    @classmethod
    def arm(cls, n: int | None) -> None:
        cls.fits_left = n

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Flaky:
        if _Flaky.fits_left is not None:
            _Flaky.fits_left -= 1
            if _Flaky.fits_left == 0:
                raise MemoryError("killed in the middle of retraining")
        return super().fit(X, y)


@pytest.mark.parametrize("crash", ["loader", "estimator"])
def test_a_crash_in_the_middle_of_unlearning_leaves_the_model_whole(
    lfw: Lfw, tmp_path: Path, crash: str
) -> None:
    folder = tmp_path / "ckpt"
    model = SISAClassifier(
        _Flaky(),
        n_shards=4,
        n_slices=4,
        aggregation="max_score",
        random_state=7,
        checkpoints=DirectoryCheckpoints(folder),
    )
    _Flaky.arm(None)
    _fit(model, lfw, lfw.ids)
    # one person from each of two shards that keep other people: the crash comes after
    # the first shard is retrained
    shared = [s for s in model.shards_ if len(set(s.classes)) >= 2][:2]
    assert len(shared) == 2
    people = [str(s.classes[0]) for s in shared]
    forget = sorted({i for p in people for i in lfw.of(p)})
    first = shared[0]
    fits_first = model.n_slices - min(r for r, s in enumerate(first.slices) if set(s) & set(forget))
    before, proba = _files(folder), model.predict_proba(lfw.X)
    manifest = json.dumps(model.manifest())
    calls: list[int] = []
    if crash == "loader":
        with pytest.raises(OSError, match="went away"):
            model.unlearn(forget, lfw.loader(calls, fail_on=2))
    else:
        _Flaky.arm(fits_first + 2)  # the second shard's second slice
        try:
            with pytest.raises(MemoryError):
                model.unlearn(forget, lfw.loader(calls))
        finally:
            _Flaky.arm(None)
    assert len(calls) == 2
    # the model in memory and every checkpoint it needs are as they were
    assert json.dumps(model.manifest()) == manifest
    assert np.array_equal(model.predict_proba(lfw.X), proba)
    after = _files(folder)
    assert all(after[name] == data for name, data in before.items())
    reloaded = SISAClassifier.from_manifest(json.loads(manifest), _Flaky(), DirectoryCheckpoints(folder))
    assert np.array_equal(reloaded.predict_proba(lfw.X), proba)
    # trying again completes, exactly, and leaves no stray checkpoint behind
    model.unlearn(forget, lfw.loader())
    scratch = SISAClassifier(_Flaky(), n_shards=4, n_slices=4, aggregation="max_score", random_state=7)
    _fit(scratch, lfw, [i for i in lfw.ids if i not in set(forget)])
    assert np.array_equal(model.predict_proba(lfw.X), scratch.predict_proba(lfw.X))
    assert set(_files(folder)) == {f"{k}.ckpt" for k in model.checkpoint_keys()}


# -- the workspace, on real photos ---------------------------------------------------------


def _load(ws: Workspace, ref: str) -> SISAClassifier:
    with ws.reader() as session:
        artifact = find_model(session, ref)
        return load_model(artifact, checkpoints(ws.ctx, artifact.name))


def test_face_id_forgets_one_identity_exactly(faces_ws: Workspace, lfw: Lfw) -> None:
    ws = faces_ws
    subjects = len(set(lfw.y)) - len(NEVER_TRAINED)
    shards = min(8, subjects)
    trained = ws.train_model("face-id", dataset="faces@1.0.0", shards=shards, slices=4)
    assert trained["model"] == "model:face-id@1"
    assert (trained["samples"], trained["subjects"], trained["shards"]) == (80, subjects, shards)
    old = _load(ws, "face-id@1")
    theirs = set(lfw.of(FORGET))
    saw = [k for keys in _saw(old, theirs).values() for k in keys]
    folder = checkpoints(ws.ctx, "face-id").root
    assert saw and all((folder / f"{k}.ckpt").exists() for k in saw)
    tony = ws.subject_ref(FORGET)
    photos = sorted((lfw.folder / FORGET).iterdir())
    assert ws.predict("face-id", photos[0])["faces"][0]["subject"] == tony

    result = ws.unlearn_model("face-id", subjects=[FORGET], reason="art. 17 request")

    assert (result["model"], result["from"], result["dataset"]) == (
        "model:face-id@2",
        "model:face-id@1",
        "faces@2.0.0",
    )
    assert (result["requested"], result["forgotten"], result["classes_removed"]) == (10, 10, 1)
    assert len(result["shards_retrained"]) == 1 and result["checkpoints_destroyed"] == len(saw)
    # every old checkpoint that saw them is gone from disk
    assert not [k for k in saw if (folder / f"{k}.ckpt").exists()]
    # the new version is the model trained from scratch without them
    with ws.reader() as session:
        artifact = find_model(session, "face-id@2")
        data = load_training_data(session, ws.vault, dataset_members(session, artifact.extra["dataset_id"]))
    assert len(data.asset_ids) == 70 and tony not in data.labels.tolist()
    assignment_v1 = old.assignment_of(data.asset_ids, list(data.labels))  # loaded before unlearning
    new = _load(ws, "face-id@2")
    # balanced shards: the partition is fixed when the model is first trained (everyone
    # keeps their shard), so the from-scratch twin trains with the same assignment
    fresh = SISAClassifier(
        FaceIdClassifier(**artifact.extra["estimator"]),
        n_shards=shards,
        n_slices=4,
        aggregation="max_score",
        random_state=0,
        partition="balanced",
    ).fit(
        data.X,
        data.labels,
        sample_ids=data.asset_ids,
        groups=list(data.labels),
        allow_empty_shards=True,
        assignment=assignment_v1,
    )
    assert np.array_equal(new.classes_, fresh.classes_) and tony not in new.classes_.tolist()
    assert np.array_equal(new.predict_proba(lfw.X), fresh.predict_proba(lfw.X))
    assert new.checkpoint_keys() == fresh.checkpoint_keys()
    # it never says Tony Blair, on any of his photos
    for photo in photos:
        for face in ws.predict("face-id", photo)["faces"]:
            assert face["subject"] != tony
    assert ws.predict("face-id", photos[0])["model"] == "model:face-id@2"
    # the forgetting audit: before, membership showed; after, it is the retrained model's
    before, after = result["forgetting_audit"]["before"], result["forgetting_audit"]["after"]
    assert before["members"] == 10 and before["non_members"] > 20  # other shards' people too
    assert before["auc"] > 0.9 and after["auc"] < before["auc"]
    assert result["forgetting_audit"]["retrained_from_scratch"]["identical"] is True
    audit = ws.model_audit("face-id", forgotten=[FORGET])
    assert audit["forgotten_exactly"] is True and audit["still_trained_on_them"] == 0
    assert audit["membership_inference"] == after
    # lineage: the new version is not downstream of them; the old one is retired
    downstream = ws.lineage(f"subject:{FORGET}").labels()
    assert "model:face-id@1" in downstream and "model:face-id@2" not in downstream
    assert "model:face-id@2" in ws.lineage("subject:Colin_Powell").labels()
    assert ws.model("face-id@1")["state"] == "retired"
    info = ws.model("face-id")
    assert (info["version"], info["state"], info["unlearned_from"], info["dataset"]) == (
        "2",
        "active",
        "1",
        "faces@2.0.0",
    )
    assert info["versions"] == [{"version": "1", "state": "retired"}, {"version": "2", "state": "active"}]
    with pytest.raises(InvalidInput, match="retired"):
        ws.predict("face-id@1", photos[0])
    # forgetting them again: nothing left to forget
    again = ws.unlearn_model("face-id", subjects=[FORGET])
    assert again["forgotten"] == 0 and "nothing to forget" in again["message"]
    assert [m["version"] for m in ws.models() if m["name"] == "face-id"] == ["1", "2"]


def test_training_needs_biometric_consent_of_every_member(faces_ws: Workspace, tmp_path: Path) -> None:
    ws = faces_ws
    revoked = tmp_path / "revoked.csv"
    revoked.write_text("subject,purpose,decision,at\nColin_Powell,biometric_processing,revoked,2015-01-01\n")
    ws.import_consent(revoked, at="2015-01-01")
    with pytest.raises(ConsentDenied, match=r"10 of 80 photos in faces@1\.0\.0 are not covered"):
        ws.train_model("face-id", dataset="faces@1.0.0", shards=4)
    assert ws.models() == []
    assert not list((checkpoints(ws.ctx, "face-id").root).glob("*.ckpt"))
    # as it stood before the revocation, training was allowed
    assert ws.train_model("face-id", dataset="faces@1.0.0", shards=4, at="2014-06-01")["samples"] == 80


def test_unlearning_a_subject_the_model_never_saw(faces_ws: Workspace) -> None:
    ws = faces_ws
    ws.train_model("face-id", dataset="faces@1.0.0", shards=4)
    files = _files(checkpoints(ws.ctx, "face-id").root)
    result = ws.unlearn_model("face-id", subjects=[NEVER_TRAINED[0]])
    assert result["forgotten"] == 0 and "nothing to forget" in result["message"]
    assert [(m["version"], m["state"]) for m in ws.models()] == [("1", "active")]
    assert _files(checkpoints(ws.ctx, "face-id").root) == files


def test_two_models_on_the_same_data_keep_separate_checkpoints(faces_ws: Workspace, lfw: Lfw) -> None:
    """Same data, same seed: unlearning one model must not destroy the other's files."""
    ws = faces_ws
    ws.train_model("face-id", dataset="faces@1.0.0", shards=4)
    ws.train_model("face-id-copy", dataset="faces@1.0.0", shards=4)
    before = _load(ws, "face-id-copy").predict_proba(lfw.X)
    ws.unlearn_model("face-id", subjects=[FORGET])
    assert np.array_equal(_load(ws, "face-id-copy").predict_proba(lfw.X), before)
    assert ws.model("face-id-copy")["state"] == "active"


def test_unlearning_also_forgets_photos_whose_consent_lapsed(faces_ws: Workspace, tmp_path: Path) -> None:
    ws = faces_ws
    ws.train_model("face-id", dataset="faces@1.0.0", shards=4, at="2014-06-01")
    revoked = tmp_path / "revoked.csv"
    revoked.write_text("subject,purpose,decision,at\nColin_Powell,biometric_processing,revoked,2015-01-01\n")
    ws.import_consent(revoked, at="2015-01-01")
    result = ws.unlearn_model("face-id", subjects=[FORGET])
    assert (result["requested"], result["lapsed_consent"], result["forgotten"]) == (10, 10, 20)
    assert result["classes_removed"] == 2
    classes = set(_load(ws, "face-id").classes_.tolist())
    assert not classes & {ws.subject_ref(FORGET), ws.subject_ref("Colin_Powell")} and len(classes) == 6


def test_a_crash_while_unlearning_keeps_the_old_version_active(
    faces_ws: Workspace, lfw: Lfw, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = faces_ws
    ws.train_model("face-id", dataset="faces@1.0.0", shards=4)
    folder = checkpoints(ws.ctx, "face-id").root
    files = _files(folder)
    photo = sorted((lfw.folder / FORGET).iterdir())[0]
    real_train = SISAClassifier._train

    def dying_train(self: SISAClassifier, *args: Any, **kwargs: Any) -> int:
        # the old checkpoints are chosen and the shard is being retrained: the process dies
        # (balanced shards may leave one-class shards that fit nothing, so die here, not in fit)
        raise MemoryError("killed in the middle of retraining")

    monkeypatch.setattr(SISAClassifier, "_train", dying_train)
    with pytest.raises(MemoryError):
        ws.unlearn_model("face-id", subjects=[FORGET, "Colin_Powell"])
    monkeypatch.setattr(SISAClassifier, "_train", real_train)
    # the old version is still the active one, whole, and answers
    info = ws.model("face-id")
    assert (info["version"], info["state"]) == ("1", "active")
    assert [m["version"] for m in ws.models()] == ["1"]
    assert ws.dataset("faces")["versions"] == ["1.0.0"]
    assert all(_files(folder).get(name) == data for name, data in files.items())
    assert ws.predict("face-id", photo)["faces"][0]["subject"] == ws.subject_ref(FORGET)
    # and trying again completes
    result = ws.unlearn_model("face-id", subjects=[FORGET, "Colin_Powell"])
    assert result["model"] == "model:face-id@2" and result["forgotten"] == 20
    assert ws.model("face-id@1")["state"] == "retired"
    assert set(_files(folder)) >= {f"{k}.ckpt" for k in _load(ws, "face-id@2").checkpoint_keys()}


def test_an_unlearning_cut_short_after_the_new_version_is_finished_next_time(
    faces_ws: Workspace, lfw: Lfw, monkeypatch: pytest.MonkeyPatch
) -> None:
    import disgorge.training.lifecycle.unlearn as unlearn_module

    ws = faces_ws
    ws.train_model("face-id", dataset="faces@1.0.0", shards=4)
    folder = checkpoints(ws.ctx, "face-id").root
    saw = [k for keys in _saw(_load(ws, "face-id@1"), set(lfw.of(FORGET))).values() for k in keys]
    real_append = unlearn_module.audit.append

    def dying_append(session: Any, action: str, *args: Any, **kwargs: Any) -> Any:
        if action == "model.unlearned":
            raise KeyboardInterrupt  # between recording the new version and retiring the old
        return real_append(session, action, *args, **kwargs)

    monkeypatch.setattr(unlearn_module.audit, "append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        ws.unlearn_model("face-id", subjects=[FORGET])
    monkeypatch.setattr(unlearn_module.audit, "append", real_append)
    assert [(m["version"], m["state"]) for m in ws.models()] == [("1", "active"), ("2", "active")]
    assert all((folder / f"{k}.ckpt").exists() for k in saw)  # the old version is still whole
    # the next unlearning call (even one with nothing to do) finishes the job first
    again = ws.unlearn_model("face-id", subjects=[FORGET])
    assert again["forgotten"] == 0
    assert [(m["version"], m["state"]) for m in ws.models()] == [("1", "retired"), ("2", "active")]
    assert not [k for k in saw if (folder / f"{k}.ckpt").exists()]
    [event] = ws.audit_events(action="model.unlearned")
    assert event["payload"]["resumed"] is True


def test_retiring_cascades_to_what_was_derived(faces_ws: Workspace) -> None:
    ws = faces_ws
    ws.train_model("face-id", dataset="faces@1.0.0", shards=4)
    ws.record_run(
        "distill",
        purpose="ai_training",
        inputs=["model:face-id@1"],
        outputs=[{"kind": "model", "name": "face-id-small"}],
    )
    ws.record_run(
        "package",
        purpose="ai_training",
        inputs=["model:face-id-small@1"],
        outputs=[{"kind": "export", "name": "bundle"}],
    )
    ws.record_run(
        "package",
        purpose="ai_training",
        inputs=["model:face-id@1"],
        outputs=[{"kind": "export", "name": "bundle"}],
    )
    with pytest.raises(InvalidInput, match="reason"):
        ws.retire_model("face-id@1", reason="")
    result = ws.retire_model("face-id@1", reason="superseded")
    assert set(result["retired"]) == {
        "model:face-id@1",
        "model:face-id-small@1",
        "export:bundle@1",
        "export:bundle@2",
    }
    assert {m["name"]: m["state"] for m in ws.models()} == {"face-id": "retired", "face-id-small": "retired"}
    with pytest.raises(InvalidInput, match="already retired"):
        ws.retire_model("face-id@1", reason="again")
    with pytest.raises(InvalidInput, match="retired"):
        ws.unlearn_model("face-id", subjects=[FORGET])
    events = ws.audit_events(action="model.retired")
    assert events[-1]["payload"]["reason"] == "superseded"


def test_external_models_can_be_retired_but_not_used_or_unlearned(faces_ws: Workspace, lfw: Lfw) -> None:
    ws = faces_ws
    ws.record_run(
        "vendor-train",
        purpose="ai_training",
        inputs=["dataset:faces@1.0.0"],
        outputs=[{"kind": "model", "name": "vendor"}],
    )
    ws.record_run(
        "vendor-export",
        purpose="ai_training",
        inputs=["model:vendor@1"],
        outputs=[{"kind": "export", "name": "vendor-bundle"}],
    )
    assert ws.model("vendor")["type"] == "external"
    photo = sorted((lfw.folder / FORGET).iterdir())[0]
    with pytest.raises(InvalidInput, match="trained outside disgorge"):
        ws.unlearn_model("vendor", subjects=[FORGET])
    with pytest.raises(InvalidInput, match="trained outside disgorge"):
        ws.predict("vendor", photo)
    with pytest.raises(InvalidInput, match="trained outside disgorge"):
        ws.model_audit("vendor", forgotten=[FORGET])
    result = ws.retire_model("vendor", reason="vendor contract ended")
    assert set(result["retired"]) == {"model:vendor@1", "export:vendor-bundle@1"}
    assert ws.model("vendor")["state"] == "retired"


def test_unknown_model_type_and_name_are_refused(faces_ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="model type 'gallery'"):
        faces_ws.train_model("g", dataset="faces@1.0.0", model="gallery")
    with pytest.raises(InvalidInput, match="no '@'"):
        faces_ws.train_model("a@b", dataset="faces@1.0.0")
    with pytest.raises(InvalidInput, match="more shards than subjects"):
        faces_ws.train_model("face-id", dataset="faces@1.0.0", shards=9)
    assert faces_ws.models() == []


# -- the CLI ------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_train_predict_list_unlearn_audit(lfw: Lfw, tmp_path: Path) -> None:
    shutil.copytree(lfw.template, tmp_path / "ws")
    w = ["--workspace", str(tmp_path / "ws")]
    out = cli("train", "face-id", "--dataset", "faces@1.0.0", "--shards", "4", "--slices", "3", "--json", *w)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model"] == "model:face-id@1"
    photo = sorted((lfw.folder / FORGET).iterdir())[0]
    out = cli("predict", "face-id", "--image", str(photo), "--json", *w)
    assert out.returncode == 0, out.stderr
    tony = json.loads(out.stdout)["faces"][0]["subject"]
    assert tony.startswith("sub_") and FORGET not in out.stdout
    out = cli("model", "unlearn", "face-id", "--subject", FORGET, "--json", *w)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["model"], result["forgotten"]) == ("model:face-id@2", 10)
    out = cli("model", "list", "--json", *w)
    assert out.returncode == 0, out.stderr
    assert [(m["version"], m["state"]) for m in json.loads(out.stdout)] == [("1", "retired"), ("2", "active")]
    out = cli("model", "audit", "face-id", "--forgotten", FORGET, "--json", *w)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["forgotten_exactly"] is True
    out = cli("model", "unlearn", "face-id", *w)
    assert out.returncode == 2 and "say what to forget" in out.stderr
    out = cli("predict", "face-id", "--image", str(tmp_path / "missing.jpg"), *w)
    assert out.returncode != 0 and "no such file" in out.stderr
