"""Issue 12, defect 11: a plain ``analyze`` does what biometric consent allows *now*.

Photos analysed before their subjects granted ``biometric_processing`` got detection
only. The next plain ``analyze`` after a grant embeds them (it used to report "analysed 0
of 0" while ``train`` asked for ``analyze``: a loop only ``--force`` broke), and after a
withdrawal it removes what consent no longer allows: the faces' geometry, embeddings,
crop blobs and face-index entries, counted in the report and the audit log.

Real LFW photos through dlib, a real workspace (SQLite catalog, sealed blobs, the sealed
face index), real SISA training, the ``disgorge`` command as a subprocess, and the
forensic scan over the closed workspace folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import DISGORGE, shared_faces_dir
from disgorge import Workspace
from disgorge.catalog.models import Asset, AssetDerivative, Subject
from disgorge.erasure.forensics import scan_tree
from disgorge.errors import ConsentDenied
from disgorge.vision import FaceIndex

PEOPLE = ("Tony_Blair", "Colin_Powell", "George_W_Bush")
PER_PERSON = 3
T_INIT, T_INGEST, T_FIRST = "2013-01-01", "2013-02-01", "2013-03-01"
T_GRANT, T_SECOND, T_TRAIN = "2013-04-01", "2013-05-01", "2013-06-01"
T_REVOKE, T_THIRD = "2013-07-01", "2013-08-01"


def stage(root: Path, people: tuple[str, ...], per_person: int) -> Path:
    lfw = shared_faces_dir("lfw10x10")
    for person in people:
        (root / person).mkdir(parents=True)
        for f in sorted((lfw / person).glob("*.jpg"))[:per_person]:
            shutil.copy(f, root / person / f.name)
    return root


def new_workspace(path: Path) -> Workspace:
    ws = Workspace.init(path, actor="tester", at=T_INIT)
    ws.add_source("photos", at=T_INIT)
    ws.add_policy(
        "photos",
        "v1",
        text=b"face recognition with your explicit consent",
        effective_from=T_INIT,
        allows=["biometric_processing", "ai_training"],
        at=T_INIT,
    )
    return ws


def consent(ws: Workspace, folder: Path, people: tuple[str, ...], decision: str, at: str) -> None:
    path = folder / f"consent-{decision}.csv"
    rows = "".join(f"{p},biometric_processing,{decision},{at}\n" for p in people)
    path.write_text("subject,purpose,decision,at\n" + rows)
    report = ws.import_consent(path, at=at)
    assert report.imported == len(people), report


def kinds_by_asset(ws: Workspace) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with ws.reader() as session:
        for asset_id, kind in session.execute(select(AssetDerivative.asset_id, AssetDerivative.kind)):
            out.setdefault(asset_id, []).append(kind)
    return {a: sorted(k) for a, k in out.items()}


def assets_of(ws: Workspace, person: str) -> set[str]:
    with ws.reader() as session:
        return set(
            session.scalars(
                select(Asset.id)
                .join(Subject, Subject.id == Asset.owner_id)
                .where(Subject.ref == ws.subject_ref(person))
            )
        )


def last_analysis(ws: Workspace) -> dict:
    """The payload of the last analysis run's ``run.completed`` audit event."""
    events = ws.audit_events(action="run.completed", limit=20)
    return [e["payload"] for e in events if e["payload"]["job"] == "analyze-faces"][-1]


def biometric_values(ws: Workspace, assets: set[str]) -> tuple[dict[str, bytes], set[int], set[str]]:
    """Needles for the scan (each embedding whole and a window of it, a window of each sealed
    crop blob), the embeddings' row ids and the crops' blob keys, of these photos."""
    needles: dict[str, bytes] = {}
    ids: set[int] = set()
    crops: set[str] = set()
    with ws.reader() as session:
        rows = session.execute(
            select(AssetDerivative, Asset.owner_id)
            .join(Asset, Asset.id == AssetDerivative.asset_id)
            .where(AssetDerivative.asset_id.in_(assets), AssetDerivative.kind.in_(("embedding", "crop")))
        ).all()
        for d, owner_id in rows:
            if d.kind == "embedding":
                owner = session.get(Subject, owner_id)
                vector = ws.vault.open(owner, d.value_enc, f"embedding:{d.asset_id}:{d.id}")
                needles[f"embedding:{d.id}"] = vector
                needles[f"embedding:{d.id}:window"] = vector[128:192]
                ids.add(d.id)
            else:
                needles[f"crop:{d.blob_key}"] = ws.store.get(d.blob_key)[100:164]
                crops.add(d.blob_key)
    return needles, ids, crops


def test_grant_then_plain_analyze_embeds_and_revoke_removes(tmp_path: Path) -> None:
    photos = stage(tmp_path / "in", PEOPLE, PER_PERSON)
    n = len(PEOPLE) * PER_PERSON
    ws = new_workspace(tmp_path / "ws")
    try:
        ws.ingest(photos, source="photos", subject_from="dirname", at=T_INGEST, workers=1)
        first = ws.analyze(workers=1, at=T_FIRST)
        assert (first.analyzed, first.embedded_faces, first.detection_only_photos) == (n, 0, n)
        assert {k for kinds in kinds_by_asset(ws).values() for k in kinds} == {"phash"}
        build = ws.build_dataset("faces", purpose="ai_training", at=T_FIRST)
        assert build.members == n
        with pytest.raises(ConsentDenied):
            ws.train_model("face-id", dataset="faces@1.0.0", shards=1, at=T_FIRST)

        # the grant: the next plain analyze embeds the photos it could only detect in before
        consent(ws, tmp_path, PEOPLE, "granted", T_GRANT)
        second = ws.analyze(workers=1, at=T_SECOND)
        assert (second.photos, second.analyzed, second.consent_granted_photos) == (n, n, n)
        assert second.embedded_faces >= n and second.detection_only_photos == 0
        assert second.consent_withdrawn_photos == 0 and second.removed_embeddings == 0
        kinds = kinds_by_asset(ws)
        for asset_id in kinds:
            assert {"face", "embedding", "crop", "phash"} <= set(kinds[asset_id])
        _, all_ids, _ = biometric_values(ws, set(kinds))
        assert FaceIndex(ws.face_index_path, ws.kek).ids() == all_ids
        trained = ws.train_model("face-id", dataset="faces@1.0.0", shards=1, at=T_TRAIN)
        assert trained["samples"] == n
        assert last_analysis(ws)["consent_granted_photos"] == n

        # the withdrawal: the next plain analyze removes what consent no longer allows
        blair = assets_of(ws, "Tony_Blair")
        needles, blair_ids, blair_crops = biometric_values(ws, blair)
        assert len(blair_ids) >= PER_PERSON and len(blair_crops) >= PER_PERSON
        consent(ws, tmp_path, ("Tony_Blair",), "revoked", T_REVOKE)
        third = ws.analyze(workers=1, at=T_THIRD)
        assert (third.photos, third.analyzed, third.consent_granted_photos) == (0, 0, 0)
        assert third.consent_withdrawn_photos == PER_PERSON
        assert (third.removed_embeddings, third.removed_crops) == (len(blair_ids), len(blair_crops))
        kinds = kinds_by_asset(ws)
        for asset_id in blair:
            assert set(kinds[asset_id]) == {"phash"}  # copy detection needs no consent
        for asset_id in set(kinds) - blair:
            assert {"face", "embedding", "crop"} <= set(kinds[asset_id])
        with ws.reader() as session:  # detection only: the face count and the flag stay
            flags = session.execute(select(Asset.faces, Asset.biometric).where(Asset.id.in_(blair))).all()
        assert all(faces >= 1 and biometric == 1 for faces, biometric in flags)
        assert not blair_crops & {key for key, _ in ws.store.entries()}
        assert FaceIndex(ws.face_index_path, ws.kek).ids() == all_ids - blair_ids
        query = sorted((shared_faces_dir("lfw10x10") / "Tony_Blair").glob("*.jpg"))[PER_PERSON]
        owners = {m["owner"] for m in ws.find(query, by="face")["matches"]}
        assert ws.subject_ref("Tony_Blair") not in owners
        completed = last_analysis(ws)
        assert completed["consent_withdrawn_photos"] == PER_PERSON
        assert completed["removed_embeddings"] == len(blair_ids)
        assert completed["removed_crops"] == len(blair_crops)
        removed_events = ws.audit_events(action="asset.biometrics_removed", limit=100)
        assert {e["payload"]["asset"] for e in removed_events} == blair
        # training on the dataset as it stands now is refused for the withdrawn subject
        with pytest.raises(ConsentDenied):
            ws.train_model("face-id-2", dataset="faces@1.0.0", shards=1, at=T_THIRD)

        # nothing changed since: a plain analyze has nothing to do
        fourth = ws.analyze(workers=1, at=T_THIRD)
        assert (fourth.photos, fourth.consent_granted_photos, fourth.consent_withdrawn_photos) == (0, 0, 0)
    finally:
        ws.close()
    # the withdrawn embeddings and crops are nowhere in the workspace folder, in any form
    assert scan_tree(tmp_path / "ws", needles) == []


def test_cli_analyze_after_a_grant_embeds(tmp_path: Path) -> None:
    """The loop as a new user met it: ``disgorge analyze``, grant, ``disgorge analyze``."""
    photos = stage(tmp_path / "in", ("Colin_Powell",), 2)
    with new_workspace(tmp_path / "ws") as ws:
        ws.ingest(photos, source="photos", subject_from="dirname", at=T_INGEST, workers=1)

    def analyze() -> str:
        done = subprocess.run(
            [DISGORGE, "analyze", "--workers", "1", "-w", str(tmp_path / "ws")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "detection only (no biometric consent) for 2 photo(s)" in analyze()
    with Workspace.open(tmp_path / "ws", actor="tester") as ws:
        consent(ws, tmp_path, ("Colin_Powell",), "granted", "2020-01-01")
    out = analyze()
    assert "analysed 2 of 2 photo(s)" in out and "2 face(s) embedded" in out
    assert "consent now allows embedding: 2 photo(s) analysed before with detection only" in out


# A driver that runs a plain analyze after a withdrawal and SIGKILLs itself at an exact point:
# inside the removal's transaction right after the first crop blob is wiped (rows not yet
# deleted), or after the rows are committed but before the face index is brought in line.
_KILL_DRIVER = """
import os, signal, sys
from disgorge import Workspace
from disgorge.vault.blobstore import BlobStore
import disgorge.vision.analyze as analyze

where = sys.argv[2]
if where == "mid-removal":
    real_delete = BlobStore.delete
    def delete(self, key, **kw):
        real_delete(self, key, **kw)
        os.kill(os.getpid(), signal.SIGKILL)
    BlobStore.delete = delete
else:
    def reconcile(*args, **kw):
        os.kill(os.getpid(), signal.SIGKILL)
    analyze.reconcile_index = reconcile
with Workspace.open(sys.argv[1], actor="tester") as ws:
    ws.analyze(workers=1, at=sys.argv[3])
"""


@pytest.mark.parametrize("where", ["mid-removal", "before-the-index"])
def test_a_withdrawal_killed_midway_is_finished_by_the_next_analyze(tmp_path: Path, where: str) -> None:
    photos = stage(tmp_path / "in", PEOPLE[:2], 2)
    ws = new_workspace(tmp_path / "ws")
    try:
        ws.ingest(photos, source="photos", subject_from="dirname", at=T_INGEST, workers=1)
        consent(ws, tmp_path, PEOPLE[:2], "granted", T_GRANT)
        ws.analyze(workers=1, at=T_SECOND)
        blair = assets_of(ws, "Tony_Blair")
        _, all_ids, _ = biometric_values(ws, set(kinds_by_asset(ws)))
        needles, blair_ids, blair_crops = biometric_values(ws, blair)
        assert blair_ids and blair_crops
        consent(ws, tmp_path, ("Tony_Blair",), "revoked", T_REVOKE)
    finally:
        ws.close()

    killed = subprocess.run(
        [sys.executable, "-c", _KILL_DRIVER, str(tmp_path / "ws"), where, T_THIRD],
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]

    with Workspace.open(tmp_path / "ws", actor="tester") as ws:
        again = ws.analyze(workers=1, at=T_THIRD)
        assert again.consent_withdrawn_photos in (0, len(blair))  # 0: the rows went before the kill
        kinds = kinds_by_asset(ws)
        for asset_id in blair:
            assert set(kinds[asset_id]) == {"phash"}
        assert not blair_crops & {key for key, _ in ws.store.entries()}
        assert FaceIndex(ws.face_index_path, ws.kek).ids() == all_ids - blair_ids
        assert ws.verify_audit().ok
    assert scan_tree(tmp_path / "ws", needles) == []
