"""The portrait embedder: the stand-in that lets the pipeline run on drawn sample portraits.

Real generated JPEGs (``synthetic_photo``), real workspaces: the descriptor separates the
drawn people on the face-id gate's scale, and analyse (portrait) -> train (SISA) ->
identify a pose never seen works without dlib; the consent gate still decides whether an
embedding is computed at all.
"""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from conftest import add_source_with_policy, import_consent_csv
from disgorge import InvalidInput, Workspace
from disgorge.catalog.models import Asset, AssetDerivative, Run, Subject
from disgorge.samples import synthetic_photo
from disgorge.training.lifecycle import checkpoints
from disgorge.training.registry import find_model, load_model
from disgorge.vision.faces import analyze
from disgorge.vision.models import FacesUnavailable
from disgorge.vision.portrait import PORTRAIT_DIM, portrait_box, portrait_embedding

PEOPLE = [f"Person_{p:02d}" for p in range(8)]
POSES = 5  # poses 0-3 are ingested; pose 4 is held out
HELD_OUT = 4
PURPOSES = ("biometric_processing", "ai_training")


def _embed(person: int, pose: int) -> np.ndarray:
    return portrait_embedding(Image.open(io.BytesIO(synthetic_photo(person, pose))))


def _photos(root: Path, people: list[str], poses: range) -> Path:
    for person, name in enumerate(people):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in poses:
            (root / name / f"{name}_{i:04d}.jpg").write_bytes(synthetic_photo(person, i))
    return root


def _workspace(path: Path, photos: Path, granted: list[str], denied: list[str] = ()) -> Workspace:
    ws = Workspace.init(path, actor="tester")
    add_source_with_policy(ws, "app")
    ws.ingest(photos, source="app", subject_from="dirname", at="2013-02-01")
    rows = [f"{n},{p},granted,2013-01-05" for n in granted for p in PURPOSES]
    rows += [f"{n},biometric_processing,denied,2013-01-05" for n in denied]
    import_consent_csv(ws, path.parent / f"{path.name}-consent.csv", rows, at="2013-01-05")
    return ws


def test_descriptor_shape_and_norm() -> None:
    v = _embed(0, 0)
    assert v.dtype == np.float32 and v.shape == (PORTRAIT_DIM,)
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert np.array_equal(v, _embed(0, 0))  # deterministic
    arr = np.asarray(Image.open(io.BytesIO(synthetic_photo(0, 0))).convert("RGB"))
    assert np.allclose(portrait_embedding(arr), v)
    assert portrait_box(250, 250) == (75, 75, 175, 175)
    with pytest.raises(ValueError, match="RGB array"):
        portrait_embedding(np.zeros((4, 4)))


def test_same_person_nearer_than_other_people() -> None:
    """On the gate's scale: every same-person pair < 0.6 < every cross-person pair (12 x 6)."""
    E = np.stack([[_embed(p, k) for k in range(6)] for p in range(12)])
    pairs = list(itertools.combinations(range(6), 2))
    same = [float(np.linalg.norm(E[p, i] - E[p, j])) for p in range(12) for i, j in pairs]
    flat = E.reshape(-1, PORTRAIT_DIM)
    labels = np.repeat(np.arange(12), 6)
    dist = np.linalg.norm(flat[:, None] - flat[None, :], axis=2)
    cross = dist[labels[:, None] != labels[None, :]]
    assert max(same) < 0.6 < float(cross.min())
    # and each photo's nearest other photo is the same person
    np.fill_diagonal(dist, np.inf)
    assert (labels[dist.argmin(axis=1)] == labels).all()


def test_analyze_portrait_needs_no_dlib() -> None:
    result = analyze(synthetic_photo(1, 0), embed=True, embedder="portrait")
    assert result.error is None and result.phash is not None
    (face,) = result.faces
    assert face.landmarks == [] and face.box == (75, 75, 175, 175)
    assert np.allclose(np.frombuffer(face.embedding, dtype="<f4"), _embed(1, 0))
    assert face.crop[:2] == b"\xff\xd8"  # a JPEG
    only = analyze(synthetic_photo(1, 0), embed=False, embedder="portrait")
    assert only.faces[0].embedding is None and only.faces[0].crop is None
    with pytest.raises(InvalidInput, match="embedder 'nope'"):
        analyze(synthetic_photo(1, 0), embed=True, embedder="nope")
    # the portrait path never imports dlib or the model package
    code = (
        "import sys; from disgorge.vision.faces import analyze; from disgorge.samples import synthetic_photo;"
        "analyze(synthetic_photo(0, 0), embed=True, embedder='portrait');"
        "assert 'dlib' not in sys.modules and 'face_recognition_models' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("portrait")
    photos = _photos(root / "photos", PEOPLE, range(HELD_OUT))
    ws = _workspace(root / "ws", photos, granted=PEOPLE)
    report = ws.analyze(embedder="portrait", workers=1)
    assert (report.analyzed, report.faces, report.embedded_faces) == (32, 32, 32)
    assert report.embedder == "portrait"
    ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
    ws.train_model("face-id", dataset="faces", shards=2, slices=2, at="2014-02-01")
    yield ws
    ws.close()


def test_analysis_run_records_the_embedder(trained: Workspace) -> None:
    with trained.reader() as session:
        runs = session.scalars(
            select(Run)
            .join(AssetDerivative, AssetDerivative.run_id == Run.id)
            .where(AssetDerivative.kind == "embedding")
        ).all()
    assert {r.job for r in runs} == {"analyze-faces"}
    assert {r.parameters["embedder"] for r in runs} == {"portrait"}
    assert {r.parameters["detector"] for r in runs} == {"centre"}


def test_trained_model_identifies_a_held_out_pose(trained: Workspace) -> None:
    with trained.reader() as session:
        artifact = find_model(session, "face-id")
        model = load_model(artifact, checkpoints(trained.ctx, artifact.name))
    for person, name in enumerate(PEOPLE):
        scores = model.predict_proba(_embed(person, HELD_OUT).reshape(1, -1).astype(float))[0]
        best = int(np.argmax(scores))
        assert str(model.classes_[best]) == trained.subject_ref(name)
        assert scores[best] >= 0.5
    # a person the model never saw is below the gate for every shard
    stranger = model.predict_proba(_embed(99, 0).reshape(1, -1).astype(float))[0]
    assert stranger.max() < 0.5


def test_workspace_predict_uses_the_portrait_embedder(trained: Workspace) -> None:
    result = trained.predict("face-id", synthetic_photo(0, HELD_OUT))
    assert [f["subject"] for f in result["faces"]] == [trained.subject_ref(PEOPLE[0])]


def test_consent_gate_still_decides(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", PEOPLE[:2], range(2))
    with _workspace(tmp_path / "ws", photos, granted=[PEOPLE[0]], denied=[PEOPLE[1]]) as ws:
        report = ws.analyze(embedder="portrait", workers=1)
        assert (report.faces, report.embedded_faces, report.detection_only_photos) == (4, 2, 2)
        with ws.reader() as session:
            kinds = session.execute(
                select(Asset.id, AssetDerivative.kind).join(
                    AssetDerivative, AssetDerivative.asset_id == Asset.id
                )
            ).all()
            refused = set(
                session.scalars(
                    select(Asset.id)
                    .join(Subject, Subject.id == Asset.owner_id)
                    .where(Subject.ref == ws.subject_ref(PEOPLE[1]))
                )
            )
        embedded = {a for a, k in kinds if k == "embedding"}
        assert len(embedded) == 2 and len(refused) == 2
        assert not embedded & refused
        # the refused photos are flagged biometric but keep only their PDQ hashes
        assert {k for a, k in kinds if a not in embedded} == {"phash"}


def test_embedders_are_not_mixed(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", PEOPLE[:2], range(2))
    with _workspace(tmp_path / "ws", photos, granted=PEOPLE[:2]) as ws:
        ws.analyze(embedder="portrait", workers=1)
        _photos(photos, PEOPLE[:2], range(2, 3))
        ws.ingest(photos, source="app", subject_from="dirname", at="2013-03-01")
        with pytest.raises(InvalidInput, match="'portrait' embeddings"):
            ws.analyze(embedder="dlib", workers=1)
        with pytest.raises(InvalidInput, match="embedder 'face'"):
            ws.analyze(embedder="face", workers=1)


def test_without_faiss_the_index_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_faiss(path: Path, kek: object):
        raise FacesUnavailable("the face index needs the faces extra: pip install 'disgorge[faces]'")

    photos = _photos(tmp_path / "photos", PEOPLE[:2], range(2))
    with _workspace(tmp_path / "ws", photos, granted=PEOPLE[:2]) as ws:
        monkeypatch.setattr("disgorge.vision.analyze.FaceIndex", no_faiss)
        report = ws.analyze(embedder="portrait", workers=1)
        assert report.embedded_faces == 4
        assert report.to_dict()["face_index"].startswith("skipped: faiss is not installed")
        assert not ws.face_index_path.exists()
        monkeypatch.undo()
        # with faiss back, the next analysis rebuilds the index from the catalog
        assert ws.analyze(embedder="portrait", workers=1).face_index == "updated"
        from disgorge.vision import FaceIndex

        assert len(FaceIndex(ws.face_index_path, ws.kek)) == 4
