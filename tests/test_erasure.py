"""Erasure end to end, with real SQLite, real files, real photos and real processes.

Two workspaces are built once per module and copied for each test that changes them:

* ``syn``: drawn portraits (``disgorge.samples.synthetic_photo``) of four people, one
  photo owned by Alan_Turing that also shows Grace_Hopper, faces analysed (dlib finds the
  drawn faces), a dataset, a SISA face model and an "external" model recorded with
  ``record_run``. The fault tests run on it.
* ``lfw``: the shared LFW photos (lfw10x10), the "Done when" case: one person in two
  dataset versions, a SISA face model and an external model, erased; everything is
  checked from the outside (raw bytes on disk, re-ingest, predictions, lineage, the
  certificate verified by the CLI in a folder holding only the certificate and its key).

Kills are real ``SIGKILL``s of real ``python`` processes: a small driver script runs the
erasure with the public API and kills itself at an exact point (right after a step is
marked done, or inside a step); nothing is added to the package for testing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import files_elsewhere, read_elsewhere
from disgorge import ErasureBlocked, IntegrityError, NotFound, Workspace
from disgorge.catalog.models import (
    Artifact,
    Asset,
    AssetDerivative,
    ConsentRecord,
    ErasedFingerprint,
    Subject,
)
from disgorge.erasure.certificate import item_leaf, prove_item, verify_certificate
from disgorge.erasure.engine import STEPS
from disgorge.samples import synthetic_photo

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses SIGKILL and fork (Linux only)"
)

ROOT = Path(__file__).resolve().parents[1]
LFW = ROOT.parent / "shared" / "data" / "faces" / "lfw10x10"
DISGORGE = str(Path(sys.executable).parent / "disgorge")
PEOPLE = ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper", "Edsger_Dijkstra"]
GROUP = "group.jpg"  # owned by Alan_Turing, shows Grace_Hopper too
REASON = "GDPR Art. 17 request 2024-117"


def cli(*args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DISGORGE_WORKSPACE"}
    env.update({"DISGORGE_ACTOR": "erasure-test", "COLUMNS": "200"})
    return subprocess.run(
        [DISGORGE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def count(ws: Workspace, model: Any, *where: Any) -> int:
    with ws.reader() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def raw_scan(root: Path, needles: dict[str, bytes]) -> list[tuple[str, str]]:
    """(needle label, file) for every needle found in any file under ``root``: read whole, raw."""
    hits = []
    for rel, data in sorted(files_elsewhere(root).items()):  # a child reads the catalog's files
        hits += [(label, rel) for label, n in needles.items() if n in data]
    return hits


def middle_windows(data: bytes, label: str) -> dict[str, bytes]:
    """Three 32-byte windows from the middle of a file (JPEG headers are shared by many)."""
    return {f"{label}@{f}": data[int(len(data) * f) : int(len(data) * f) + 32] for f in (0.3, 0.5, 0.7)}


# -- the synthetic workspace ------------------------------------------------------------------
@dataclass
class Syn:
    template: Path  # closed; copy it before changing
    folder: Path  # the photos, flat, with a manifest next to the folder
    manifest: Path
    photos: dict[str, bytes]  # file name -> bytes
    owner: dict[str, str]  # file name -> owner

    def of(self, person: str) -> dict[str, bytes]:
        return {n: d for n, d in self.photos.items() if self.owner[n] == person}


def _write_photos(folder: Path, people: list[str], per_person: int, *, offset: int = 0) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for p, person in enumerate(people):
        for i in range(per_person):
            data = synthetic_photo(p + offset, i, size=160)
            (folder / f"{person}_{i}.jpg").write_bytes(data)
            out[f"{person}_{i}.jpg"] = data
    return out


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory) -> Syn:
    root = tmp_path_factory.mktemp("syn")
    folder = root / "photos"
    photos = _write_photos(folder, PEOPLE, 3)
    owner = {n: n.rsplit("_", 1)[0] for n in photos}
    photos[GROUP] = synthetic_photo(9, 0, size=160)
    (folder / GROUP).write_bytes(photos[GROUP])
    owner[GROUP] = "Alan_Turing"
    manifest = root / "manifest.csv"
    manifest.write_text(
        "path,subject,depicted\n"
        + "".join(f"{n},{o},{'Grace_Hopper' if n == GROUP else ''}\n" for n, o in sorted(owner.items()))
    )
    with Workspace.init(root / "ws", actor="tester") as ws:
        ws.add_source("app", at="2013-01-01")
        ws.add_policy(
            "app",
            "2013",
            text=b"we train face recognition on your photos, with your explicit consent",
            effective_from="2013-01-01",
            allows=["ai_training", "biometric_processing"],
            at="2013-01-01",
        )
        report = ws.ingest(folder, source="app", manifest=manifest, at="2013-02-01")
        assert report.ingested == 13 and not report.rejected
        consent = root / "consent.csv"
        consent.write_text(
            "subject,purpose,decision,at\n"
            + "".join(f"{p},biometric_processing,granted,2013-01-05\n" for p in PEOPLE)
        )
        ws.import_consent(consent, at="2013-01-05")
        assert ws.analyze(workers=1).embedded_faces >= 9
        ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
        ws.train_model("faceid", dataset="faces", shards=2, slices=2, at="2014-02-01")
        ws.record_run(
            "vendor-train",
            purpose="ai_training",
            inputs=["faces@1.0.0"],
            outputs=[{"kind": "model", "name": "vendor"}],
            at="2014-03-01",
        )
    return Syn(root / "ws", folder, manifest, photos, owner)


@pytest.fixture
def sws(syn: Syn, tmp_path: Path):
    """A private, open copy of the synthetic workspace."""
    shutil.copytree(syn.template, tmp_path / "ws")
    ws = Workspace.open(tmp_path / "ws", actor="tester")
    yield ws
    ws.close()


def _only_request(ws: Workspace) -> str:
    [req] = ws.erasures()
    return req["id"]


# -- bad input --------------------------------------------------------------------------------
def test_a_subject_that_does_not_exist_is_not_found_and_nothing_is_created(sws: Workspace) -> None:
    before = (sws.status(), len(sws.audit_events(limit=10_000)))
    with pytest.raises(NotFound, match="no subject"):
        sws.erasure_plan("subject", "Nobody_At_All")
    with pytest.raises(NotFound, match="no subject"):
        sws.erase("subject", "Nobody_At_All", reason=REASON)
    with pytest.raises(NotFound):
        sws.erase("asset", "ab" * 32, reason=REASON)
    with pytest.raises(NotFound, match="no source"):
        sws.erase("source", "nowhere", reason=REASON)
    out = cli("erase", "--subject", "Nobody_At_All", "--reason", REASON, "--yes", "-w", str(sws.root))
    assert out.returncode == 1 and "no subject" in out.stderr
    assert sws.erasures() == []
    assert (sws.status(), len(sws.audit_events(limit=10_000))) == before
    # the external id asked about is not stored anywhere either
    assert raw_scan(sws.config.home, {"id": b"Nobody_At_All"}) == []


def test_a_photo_of_two_subjects_goes_with_either_and_the_plan_says_why(sws: Workspace, syn: Syn) -> None:
    alan, grace = sws.subject_ref("Alan_Turing"), sws.subject_ref("Grace_Hopper")
    plan = sws.erasure_plan("subject", "Grace_Hopper")
    assert (plan["counts"]["photos"], plan["owned"], plan["depicting"]) == (4, 3, 1)
    assert plan["subjects"] == [grace]  # only Grace's key is destroyed
    [note] = plan["notes"]
    assert (
        alan in note and "show this subject" in note and "a photo of a person is that person's data" in note
    )

    result = sws.erase("subject", "Grace_Hopper", reason=REASON)
    assert result["state"] == "completed" and result["verification"]["ok"], result["verification"]
    with pytest.raises(NotFound):
        sws.asset(sha(syn.photos[GROUP]))
    # Alan's other photos survive, readable with his (untouched) key
    for name, data in syn.of("Alan_Turing").items():
        if name != GROUP:
            assert sws.read_asset(sha(data)) == data
    assert sws.status()["subjects_erased"] == 1
    with sws.reader() as session:
        states = dict(session.execute(select(Subject.ref, Subject.state)).all())
    assert states[grace] == "erased" and states[alan] == "active"
    # the shared photo is refused at re-ingest, whoever is said to own it
    report = sws.ingest(syn.folder, source="app", manifest=syn.manifest)
    assert report.ingested == 0 and report.duplicates == 9
    refused = {r.path: r.reason for r in report.rejected}
    assert set(refused) == {GROUP} | set(syn.of("Grace_Hopper"))
    assert all("erased" in why for why in refused.values())


def test_a_second_erasure_of_the_same_scope_is_blocked_while_the_first_runs(syn: Syn, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(syn.template, root)
    with Workspace.open(root, actor="tester") as ws:
        planned = ws.erase("subject", "Ada_Lovelace", reason=REASON, execute=False)
        assert planned["state"] == "planned"
        with pytest.raises(ErasureBlocked, match=f"erasure {planned['id']} of this scope is already planned"):
            ws.erase("subject", "Ada_Lovelace", reason=REASON)
        with pytest.raises(ErasureBlocked, match="already planned"):  # named by ref: the same scope
            ws.erase("subject", ws.subject_ref("Ada_Lovelace"), reason=REASON)
        out = cli("erase", "--subject", "Ada_Lovelace", "--reason", REASON, "--yes", "-w", str(root))
        assert out.returncode == 1 and "already planned" in out.stderr
        ws.erasure_cancel(planned["id"])
    with sqlite3.connect(root / ".disgorge" / "catalog.sqlite") as db:
        db.execute("DELETE FROM erasure_requests")  # so that the driver finds its own request

    # executing: a process killed half-way leaves it executing; a second erase is refused
    rid = _killed_erasure(root, tmp_path, "after:retire_models")
    with Workspace.open(root, actor="tester") as ws:
        assert ws.erasure(rid)["state"] == "executing"
        with pytest.raises(ErasureBlocked, match=f"erasure {rid} of this scope is already executing"):
            ws.erase("subject", "Ada_Lovelace", reason=REASON)
        assert ws.erasure_resume(rid)["state"] == "completed"
        with pytest.raises(NotFound, match="nothing to erase"):  # once done, nothing is left
            ws.erase("subject", "Ada_Lovelace", reason=REASON)


def test_a_failed_erasure_blocks_a_new_one_of_its_scope_until_resumed(
    sws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: one step raises. A fresh plan would miss what the failed request
    already removed, so the only way on is to resume it."""
    from disgorge.erasure.engine import ErasureEngine

    def broken(self: ErasureEngine, req: Any) -> dict[str, Any]:
        raise OSError("disk went away")

    monkeypatch.setattr(ErasureEngine, "_step_delete_blobs", broken)
    with pytest.raises(OSError, match="disk went away"):
        sws.erase("subject", "Ada_Lovelace", reason=REASON)
    rid = _only_request(sws)
    assert sws.erasure(rid)["state"] == "failed"
    with pytest.raises(ErasureBlocked, match=f"erasure {rid} of this scope failed part-way.*resume {rid}"):
        sws.erase("subject", "Ada_Lovelace", reason=REASON)
    monkeypatch.undo()
    assert sws.erasure_resume(rid)["state"] == "completed"


def test_a_short_external_id_is_not_a_scan_needle(sws: Workspace, tmp_path: Path) -> None:
    """The id "ann" is inside "planned", a word the catalog holds: as a needle it would be a false hit.
    The catalog never holds the id itself, only its keyed ref, so nothing is lost by not
    scanning for it."""
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / "ann_1.jpg").write_bytes(synthetic_photo(31, 0, size=120))
    (tmp_path / "ann.csv").write_text("path,subject\nann_1.jpg,ann\n")
    sws.ingest(folder, source="app", manifest=tmp_path / "ann.csv", at="2013-03-01")
    done = sws.erase("subject", "ann", reason=REASON)
    assert done["state"] == "completed", done
    assert done["verification"]["ok"], done["verification"]


def test_blobs_whose_key_lives_on_are_overwritten_before_they_are_unlinked(sws: Workspace, syn: Syn) -> None:
    """The group photo is Alan's and shows Grace: erasing Grace keeps Alan's key, so the
    photo's ciphertext must not survive in free blocks (a hard link sees the old inode)."""
    with sws.reader() as session:
        blobs = dict(session.execute(select(Asset.sha256, Asset.blob_key)).all())
    group, own = sha(syn.photos[GROUP]), sha(next(iter(syn.of("Grace_Hopper").values())))
    links = {}
    for name, digest in (("group", group), ("own", own)):
        links[name] = sws.root / f"{name}.link"
        os.link(sws.store._path(blobs[digest]), links[name])
    done = sws.erase("subject", "Grace_Hopper", reason=REASON)
    assert done["state"] == "completed"
    [summary] = [s["summary"] for s in done["steps"] if s["step"] == "delete_blobs"]
    assert summary["overwritten"] == 1  # only the group photo: Grace's own key is destroyed
    data = links["group"].read_bytes()
    assert data == bytes(len(data))
    assert links["own"].read_bytes() != bytes(len(links["own"].read_bytes()))  # shredded instead


def test_a_small_erasure_checkpoints_and_vacuums_only_when_the_scan_finds_a_stale_copy(
    sws: Workspace, syn: Syn
) -> None:
    """secure_delete zeroes what an erasure deletes, so a small erasure skips VACUUM (seconds on
    a large catalog). A copy of a photo's hash left in a free page by someone else's
    connection without secure_delete is exactly what the scan must catch: then it VACUUMs
    and scans again."""
    photos = syn.of("Ada_Lovelace")
    digest = sha(next(iter(photos.values())))
    database = sws.config.home / "catalog.sqlite"
    raw = sqlite3.connect(database)
    raw.execute("PRAGMA secure_delete = OFF")
    raw.execute("CREATE TABLE scratch (note TEXT)")
    raw.executemany("INSERT INTO scratch VALUES (?)", [(f"copied {digest} by hand",)] * 5000)
    raw.commit()
    raw.execute("DROP TABLE scratch")  # its pages go to the free list, not zeroed
    raw.commit()
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    # the photo's row holds its hash once; the dropped table's free pages hold thousands
    assert read_elsewhere(database).count(digest.encode()) > 1000

    done = sws.erase("subject", "Ada_Lovelace", reason=REASON)
    assert done["state"] == "completed", done
    [purge] = [s["summary"] for s in done["steps"] if s["step"] == "purge_database"]
    assert purge["vacuum"] is False
    scan = done["verification"]["forensic_scan"]
    assert scan["vacuumed_after_scan"] is True and scan["hits"] == []
    assert done["verification"]["ok"]
    assert digest.encode() not in read_elsewhere(database)

    # the next small erasure finds nothing stale: no VACUUM at all
    again = sws.erase("subject", "Edsger_Dijkstra", reason=REASON)
    assert again["verification"]["forensic_scan"]["vacuumed_after_scan"] is False
    assert again["verification"]["ok"]
    for data in syn.of("Edsger_Dijkstra").values():
        assert sha(data).encode() not in read_elsewhere(database)


def test_review_candidates_are_kept_by_id_and_shown_with_their_hash_while_it_exists(
    sws: Workspace, syn: Syn
) -> None:
    """Look-alikes listed for review are other people's photos: the request keeps their
    catalog ids, and shows each one's sha256 only while that photo exists."""
    first = sws.erase("subject", "Ada_Lovelace", reason=REASON)
    edsger = {sha(d) for d in syn.of("Edsger_Dijkstra").values()}

    def listed(view: dict[str, Any]) -> list[Any]:
        ver = view["verification"]
        return [c["sha256"] for c in ver["copy_candidates"] + ver["face_candidates"]]

    assert set(listed(first)) & edsger  # the drawn portraits look alike: some of his are listed
    sws.erase("subject", "Edsger_Dijkstra", reason=REASON)
    again = sws.erasure(first["id"])
    assert not set(listed(again)) & edsger and None in listed(again)
    con = sqlite3.connect(sws.config.home / "catalog.sqlite")
    [stored] = con.execute(
        "SELECT verification FROM erasure_requests WHERE id = ?", (first["id"],)
    ).fetchone()
    con.close()
    assert not any(digest in stored for digest in edsger)


def test_gc_keeps_the_samples_of_an_open_erasure(sws: Workspace) -> None:
    """The samples of a planned erasure are what its verifier will need: gc leaves them."""
    planned = sws.erase("subject", "Ada_Lovelace", reason=REASON, execute=False)
    path = sws.config.home / "erasure" / f"{planned['id']}.samples"
    assert path.exists()
    assert sws.gc(grace_seconds=0).orphan_samples == 0 and path.exists()


def test_cancel_works_before_execution_and_is_refused_after(sws: Workspace, syn: Syn) -> None:
    first = sws.erase("subject", "Ada_Lovelace", reason=REASON, execute=False)
    cancelled = sws.erasure_cancel(first["id"], reason="the request was withdrawn")
    assert cancelled["state"] == "cancelled"
    with pytest.raises(ErasureBlocked, match="only a planned erasure can be approved"):
        sws.erasure_approve(first["id"])
    for data in syn.of("Ada_Lovelace").values():  # nothing happened to her photos
        assert sws.read_asset(sha(data)) == data

    second = sws.erase("subject", "Ada_Lovelace", reason=REASON, execute=False)
    done = sws.erasure_approve(second["id"])
    assert done["state"] == "completed"
    with pytest.raises(ErasureBlocked, match="can no longer be cancelled"):
        sws.erasure_cancel(second["id"])
    out = cli("erasure", "cancel", second["id"], "-w", str(sws.root))
    assert out.returncode == 1 and "can no longer be cancelled" in out.stderr
    assert sws.erasure(second["id"])["state"] == "completed"


# -- the journal: kills and corruption --------------------------------------------------------
DRIVER = r"""
import json, os, signal, sys

from disgorge import Workspace
from disgorge.erasure import engine as eng
import disgorge.training.registry, disgorge.vision.index, sklearn  # imported once, before the forks


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def arm(where):
    E = eng.ErasureEngine
    if where == "after:approve":
        approve = E.approve

        def patched(self, *a, **k):
            approve(self, *a, **k)
            die()

        E.approve = patched
    elif where.startswith("after:"):  # right after the step is marked done (committed)
        step = where.split(":", 1)[1]
        done = E._done

        def patched(self, rid, seq, summary, session=None):
            done(self, rid, seq, summary, session)
            if session is None and eng.STEPS[seq] == step:
                die()

        E._done = patched
    elif where == "inside:delete_blobs":  # right after the first photo blob is deleted
        run = E._step_delete_blobs

        def patched(self, req):
            real = self.ws.store.delete

            def delete(key, **options):
                real(key, **options)
                die()

            self.ws.store.delete = delete
            return run(self, req)

        E._step_delete_blobs = patched
    elif where == "inside:tombstone_assets":  # before the step's transaction commits
        done = E._done

        def patched(self, rid, seq, summary, session=None):
            if session is not None and eng.STEPS[seq] == "tombstone_assets":
                die()
            done(self, rid, seq, summary, session)

        E._done = patched
    elif where == "inside:verify":  # the verification is committed, the samples not yet dropped
        run = E._step_verify

        def patched(self, req):
            E._drop_samples = lambda self, request_id: die()
            return run(self, req)

        E._step_verify = patched
    elif where in ("inside:unlearn_models", "inside:remove_index"):  # done, not yet marked done
        name = "_step_" + where.split(":", 1)[1]
        run = getattr(E, name)

        def patched(self, req):
            run(self, req)
            die()

        setattr(E, name, patched)
    elif where == "inside:sisa_unlearn":  # the shards are retrained, nothing is registered yet
        from disgorge.training import SISAClassifier

        unlearn = SISAClassifier.unlearn

        def patched(self, *a, **k):
            unlearn(self, *a, **k)
            die()

        SISAClassifier.unlearn = patched
    elif where == "inside:unlearn_register":  # the old version is retired, the new one not registered
        run = Workspace.run

        def patched(self, job, *a, **k):
            if job.startswith("unlearn:"):
                die()
            return run(self, job, *a, **k)

        Workspace.run = patched
    else:
        raise SystemExit(f"unknown kill point {where}")


results, running = {}, {}
todo = json.loads(sys.argv[1])
while todo or running:
    while todo and len(running) < 4:  # a few at a time: each waits mostly on fsync
        ws_path, kind, ident, where = todo.pop(0)
        pid = os.fork()
        if pid == 0:  # the child: run the erasure until it is killed
            try:
                arm(where)
                ws = Workspace.open(ws_path, actor="tester")
                ws.erase(kind, ident, reason="GDPR Art. 17 request 2024-117")
                print(f"{where}: the erasure finished; the kill point was never reached", file=sys.stderr)
            finally:
                os._exit(3)
        running[pid] = ws_path
    pid, status = os.wait()
    results[running.pop(pid)] = os.waitstatus_to_exitcode(status)
print(json.dumps(results))
"""


def killed_erasures(tmp: Path, runs: list[tuple[Path, str]], ident: str = "Ada_Lovelace") -> dict[Path, str]:
    """Run erasures in real processes that SIGKILL themselves at the given points.

    One driver process imports everything once and forks a child per (workspace, kill
    point): the child runs ``ws.erase`` and is killed at its point. Returns each
    workspace's request id.
    """
    driver = tmp / "kill_driver.py"
    driver.write_text(DRIVER)
    spec = [(str(ws), "subject", ident, where) for ws, where in runs]
    proc = subprocess.run(
        [sys.executable, str(driver), json.dumps(spec)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout)
    bad = {where: codes[str(ws)] for ws, where in runs if codes[str(ws)] != -9}
    assert not bad, f"not killed where asked: {bad}\n{proc.stderr[-3000:]}"
    ids = {}
    for ws, _ in runs:
        with sqlite3.connect(ws / ".disgorge" / "catalog.sqlite") as db:
            [(ids[ws],)] = db.execute("SELECT id FROM erasure_requests").fetchall()
    return ids


def _killed_erasure(ws_path: Path, tmp: Path, where: str) -> str:
    return killed_erasures(tmp, [(ws_path, where)])[ws_path]


def _normal(summary: Any) -> Any:
    """A step summary without what differs between two runs of the same erasure (timings, salts)."""
    if isinstance(summary, dict):
        return {
            k: _normal(v)
            for k, v in summary.items()
            if k not in ("seconds", "merkle_root", "checked_at", "mb_per_second")
        }
    if isinstance(summary, list):
        return [_normal(v) for v in summary]
    return summary


def end_state(ws: Workspace, photos: dict[str, bytes]) -> dict[str, Any]:
    """Everything an erasure changes, as a comparable value."""
    rid = _only_request(ws)
    view = ws.erasure(rid)
    cert = ws.erasure_certificate(rid)
    check = verify_certificate(cert, ws.public_key_pem())
    ver = view["verification"]
    with ws.reader() as session:
        artifacts = sorted(
            (a.kind, a.name, a.version, a.state)
            for a in session.scalars(select(Artifact).where(Artifact.kind.in_(("model", "dataset_version"))))
        )
        subjects = Counter(session.scalars(select(Subject.state)))
        assets = Counter(session.scalars(select(Asset.state)))
    from disgorge.vision.index import FaceIndex

    return {
        "state": view["state"],
        "error": view["error"],
        "plan": view["plan"]["counts"],
        "steps": [(s["step"], s["done_at"] is not None, _normal(s["summary"])) for s in view["steps"]],
        "verification": {
            "ok": ver["ok"],
            "hits": ver["forensic_scan"]["hits"],
            "needles": ver["forensic_scan"]["needles"],
            "models": ver["active_models_using_erased_items"],
            "copies": ver["copy_candidates"],
            "faces": ver["face_candidates"],
        },
        "certificate": check.ok,
        "forgetting": _normal(cert["body"]["forgetting"]),
        "covered": sorted(n for n, d in photos.items() if prove_item(cert, d)["covered"]),
        "leaves": len(cert["body"]["items"]["leaves"]),
        "artifacts": artifacts,
        "subjects": dict(subjects),
        "assets": dict(assets),
        "derivatives": count(ws, AssetDerivative),
        "fingerprints": count(ws, ErasedFingerprint),
        "consent_records": count(ws, ConsentRecord),
        "blobs": len(list(ws.store.entries())),
        "index_entries": len(FaceIndex(ws.face_index_path, ws.kek)),
        "checkpoints": sorted(p.name for p in (ws.config.home / "models").rglob("*") if p.is_file()),
        # the verifier's sealed samples are dropped once it has scanned
        "sample_files": sorted(p.name for p in (ws.config.home / "erasure").glob("*")),
        "audit_chain_ok": ws.verify_audit().ok,
        "interrupted": ws.interrupted_erasures(),
    }


@pytest.fixture(scope="module")
def uninterrupted(syn: Syn, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("uninterrupted")
    shutil.copytree(syn.template, root / "ws")
    with Workspace.open(root / "ws", actor="tester") as ws:
        result = ws.erase("subject", "Ada_Lovelace", reason=REASON)
        assert result["state"] == "completed" and result["verification"]["ok"], result["verification"]
        state = end_state(ws, syn.photos)
    assert state["covered"] == sorted(syn.of("Ada_Lovelace")) and state["sample_files"] == []
    assert state["steps"][STEPS.index("unlearn_models")][2]["unlearned"][0]["forgotten"] == 3
    return state


KILL_POINTS = [
    "after:approve",
    *(f"after:{step}" for step in STEPS),
    "inside:sisa_unlearn",
    "inside:unlearn_register",
    "inside:unlearn_models",
    "inside:remove_index",
    "inside:delete_blobs",
    "inside:tombstone_assets",
    "inside:verify",
]


def _resume(n: int, ws_path: Path, rid: str, where: str) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Resume explicitly, or by running any command (which finishes an interrupted erasure first)."""
    if n % 2 == 0:
        out = cli("status", "--json", "-w", str(ws_path))
        return out, f"resuming interrupted erasure {rid}" in out.stderr
    return cli("erasure", "resume", rid[:8], "--json", "-w", str(ws_path)), True


@pytest.mark.slow
def test_sigkill_at_every_step_boundary_resumes_to_the_same_end_state(
    syn: Syn, uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    assert len(STEPS) == 14 and len(KILL_POINTS) == 22
    runs = []
    for n, where in enumerate(KILL_POINTS):
        shutil.copytree(syn.template, tmp_path / f"ws-{n}")
        runs.append((tmp_path / f"ws-{n}", where))
    ids = killed_erasures(tmp_path, runs)
    with Workspace.open(runs[3][0], actor="tester") as ws:  # killed after step 2: half done
        assert ws.interrupted_erasures() == [ids[runs[3][0]]]
        assert ws.erasure(ids[runs[3][0]])["state"] == "executing"

    def resume_and_compare(n: int) -> list[str]:
        ws_path, where = runs[n]
        out, said_so = _resume(n, ws_path, ids[ws_path], where)
        problems = []
        if out.returncode != 0 or not said_so or "could not resume" in out.stderr:
            problems.append(f"{where}: resume exit {out.returncode}: {out.stderr[-800:]}")
        try:
            with Workspace.open(ws_path, actor="tester") as ws:
                state = end_state(ws, syn.photos)
        except Exception as exc:  # noqa: BLE001 - collected, so that every kill point is reported
            return [*problems, f"{where}: {exc!r}"]
        if state != uninterrupted:
            diff = {k: (state[k], uninterrupted[k]) for k in state if state[k] != uninterrupted[k]}
            problems.append(f"{where}: end state differs (got, expected): {json.dumps(diff, default=str)}")
        return problems

    with ThreadPoolExecutor(4) as pool:
        failures = [p for problems in pool.map(resume_and_compare, range(len(runs))) for p in problems]
    assert not failures, "\n".join(failures)


def test_a_corrupted_journal_is_a_clear_error_and_destroys_nothing(
    sws: Workspace, syn: Syn, tmp_path: Path
) -> None:
    root, db_path = sws.root, sws.config.home / "catalog.sqlite"
    planned = sws.erase("subject", "Ada_Lovelace", reason=REASON, execute=False)
    blobs = sorted(k for k, _ in sws.store.entries())
    sws.close()

    def assert_untouched() -> None:
        with Workspace.open(root) as ws:
            assert sorted(k for k, _ in ws.store.entries()) == blobs
            for data in syn.photos.values():
                assert ws.read_asset(sha(data)) == data
            assert count(ws, Asset, Asset.state == "active") == 13

    # 1. garbage in the plan of a planned request
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE erasure_requests SET plan = '{\"assets\": [' WHERE id = ?", (planned["id"],))
    out = cli("erasure", "approve", planned["id"], "-w", str(root))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"erasure {planned['id']}" in out.stderr and "damaged" in out.stderr, out.stderr
    for args in (["erasure", "list"], ["erasure", "show", planned["id"]], ["status"]):
        out = cli(*args, "-w", str(root))
        assert "Traceback" not in out.stderr, (args, out.stderr)
    assert_untouched()

    # 2. a deleted step row of an approved request: resume refuses to skip the step
    with sqlite3.connect(db_path) as db:
        db.execute("DELETE FROM erasure_requests")
    rid = _killed_erasure(root, tmp_path, "after:approve")
    with sqlite3.connect(db_path) as db:
        db.execute("DELETE FROM erasure_steps WHERE request_id = ? AND name = 'delete_blobs'", (rid,))
    out = cli("erasure", "resume", rid, "-w", str(root))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "damaged" in out.stderr and "delete_blobs" in out.stderr, out.stderr
    assert_untouched()

    # 3. a step row renamed to something the engine does not know
    with sqlite3.connect(db_path) as db:
        db.execute(
            "INSERT INTO erasure_steps (request_id, seq, name, summary) VALUES (?, ?, 'rm_rf', '{}')",
            (rid, STEPS.index("delete_blobs")),
        )
    out = cli("erasure", "resume", rid, "-w", str(root))
    assert out.returncode == 1 and "damaged" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert_untouched()

    # 4. a step summary that is not JSON, then a plan that lost its photos: the API says so too
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE erasure_steps SET summary = 'not json' WHERE request_id = ? AND seq = 0", (rid,))
    with Workspace.open(root) as ws:
        with pytest.raises(
            IntegrityError, match=f"erasure {rid} is damaged: a step summary is not valid JSON"
        ):
            ws.erasure_resume(rid)
        with pytest.raises(IntegrityError, match="damaged"):
            ws.erasure(rid)
        assert [r["id"] for r in ws.erasures()] == [rid]  # the list still shows it
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE erasure_requests SET plan = json_remove(plan, '$.assets') WHERE id = ?", (rid,))
    with Workspace.open(root) as ws, pytest.raises(IntegrityError, match="its plan lacks assets"):
        ws.erasure_resume(rid)
    assert_untouched()


# -- the certificate -------------------------------------------------------------------------
def test_a_certificate_with_one_byte_changed_fails_and_says_where(sws: Workspace, tmp_path: Path) -> None:
    rid = sws.erase("subject", "Ada_Lovelace", reason=REASON)["id"]
    out = cli("certificate", "export", rid, "--out", str(tmp_path / "cert.json"), "-w", str(sws.root))
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "cert.json").read_text()
    pem = (tmp_path / "cert.pub.pem").read_bytes()
    cert = json.loads(text)
    assert verify_certificate(cert, pem).ok
    body = cert["body"]
    # one changed byte in each section of the body: (what to find, what to put, where it is)
    cases = [
        (REASON, REASON.replace("117", "118"), "body.reason"),
        (
            body["items"]["leaves"][0],
            "0" + body["items"]["leaves"][0][1:]
            if body["items"]["leaves"][0][0] != "0"
            else "1" + body["items"]["leaves"][0][1:],
            "body.items",
        ),
        ('"photos": 3', '"photos": 2', "body.counts"),
        (
            body["request_id"],
            body["request_id"][:-1] + ("0" if body["request_id"][-1] != "0" else "1"),
            "body.request_id",
        ),
        (body["completed_at"], body["completed_at"].replace(":", ";", 1), "body.completed_at"),
    ]
    for old, new, where in cases:
        assert text.count(old) >= 1 and len(old.encode()) == len(new.encode())
        changed = text.replace(old, new, 1)
        assert sum(a != b for a, b in zip(changed.encode(), text.encode(), strict=True)) == 1
        check = verify_certificate(json.loads(changed), pem)
        assert not check.ok and check.where == where, (where, check)
        (tmp_path / "bad.json").write_text(changed)
        out = cli(
            "certificate",
            "verify",
            str(tmp_path / "bad.json"),
            "--public-key",
            str(tmp_path / "cert.pub.pem"),
        )
        assert out.returncode == 1 and "INVALID" in out.stdout and where in out.stdout, out.stdout
    # the signature itself
    sig = cert["signature"]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    check = verify_certificate({**cert, "signature": flipped}, pem)
    assert not check.ok and "signature" in (check.where or "")
    # another workspace's key
    with Workspace.init(tmp_path / "other", actor="x") as other:
        check = verify_certificate(cert, other.public_key_pem())
    assert not check.ok and "signed by another key" in check.reason


# -- sticky erasure ---------------------------------------------------------------------------
def test_erased_photos_stay_out_even_renamed_in_a_zip_and_so_do_new_photos_of_the_person(
    sws: Workspace, syn: Syn, tmp_path: Path
) -> None:
    sws.erase("subject", "Ada_Lovelace", reason=REASON)
    ada = syn.of("Ada_Lovelace")
    archive = tmp_path / "holiday.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for n, data in enumerate(ada.values()):
            zf.writestr(f"Someone_Else/IMG_{n:04d}.jpg", data)
    sws.add_source("other", at="2020-01-01")
    report = sws.ingest(archive, source="other", subject_from="dirname")
    assert report.ingested == 0 and len(report.rejected) == 3
    assert all("this photo was erased on" in r.reason for r in report.rejected)
    with pytest.raises(NotFound):  # the refused files created no subject
        sws.subject("Someone_Else")
    # a new photo of Ada, never seen before
    new = tmp_path / "new" / "Ada_Lovelace"
    new.mkdir(parents=True)
    (new / "fresh.jpg").write_bytes(synthetic_photo(0, 42, size=160))
    report = sws.ingest(new.parent, source="other", subject_from="dirname")
    assert report.ingested == 0
    [rejection] = report.rejected
    assert "a subject of this photo was erased" in rejection.reason
    # a photo that merely depicts her, owned by someone else
    (tmp_path / "m.csv").write_text("path,subject,depicted\nfresh.jpg,Alan_Turing,Ada_Lovelace\n")
    report = sws.ingest(new, source="other", manifest=tmp_path / "m.csv")
    assert report.ingested == 0 and "erased" in report.rejected[0].reason
    # the CLI says it too, with exit code 3
    out = cli(
        "ingest",
        str(archive),
        "--source",
        "other",
        "--subject-from",
        "dirname",
        "--json",
        "-w",
        str(sws.root),
    )
    assert out.returncode == 3 and "erased" in out.stdout


# -- erasing a source while an ingest into it runs -------------------------------------------
WAIT_THEN_CLI = "import sys; from disgorge.cli import app; sys.stdin.readline(); app()"


def test_erasing_a_source_while_an_ingest_into_it_runs(sws: Workspace, tmp_path: Path) -> None:
    root = sws.root
    bulk = tmp_path / "bulk"
    names = [f"Bulk_Person_{p:02d}" for p in range(10)]
    for i in range(1500):
        (bulk / names[i % 10]).mkdir(parents=True, exist_ok=True)
        (bulk / names[i % 10] / f"{i:05d}.jpg").write_bytes(synthetic_photo(20 + i % 10, i, size=96))
    first = tmp_path / "first" / names[0]
    first.mkdir(parents=True)
    (first / "seed.jpg").write_bytes(synthetic_photo(20, 99_999, size=96))
    sws.add_source("bulk", at="2020-01-01")
    assert sws.ingest(first.parent, source="bulk", subject_from="dirname").ingested == 1
    sws.close()

    env = {k: v for k, v in os.environ.items() if k != "DISGORGE_WORKSPACE"}
    # the eraser: the real CLI in another process, imported ahead and started on a signal,
    # so that it erases while the ingest is under way (not before it starts, not after it ends)
    erase_cmd = ["erase", "--source", "bulk", "--reason", REASON, "--yes", "--json", "-w", str(root)]
    eraser = subprocess.Popen(
        [sys.executable, "-c", WAIT_THEN_CLI, *erase_cmd],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    ingest_cmd = ["ingest", str(bulk), "-s", "bulk", "--subject-from", "dirname", "--workers", "2"]
    ingest = subprocess.Popen(
        [DISGORGE, *ingest_cmd, "--json", "-w", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        db = sqlite3.connect(root / ".disgorge" / "catalog.sqlite", timeout=60)
        while time.monotonic() < deadline and ingest.poll() is None:  # a first batch is in
            (n,) = db.execute(
                "SELECT count(*) FROM assets JOIN sources ON sources.id = assets.source_id "
                "WHERE sources.name = 'bulk'"
            ).fetchone()
            if n > 1:
                break
            time.sleep(0.02)
        db.close()
        erase_out, erase_err = eraser.communicate("go\n", timeout=300)
        out, err = ingest.communicate(timeout=300)
    finally:
        for proc in (eraser, ingest):
            if proc.poll() is None:
                proc.kill()
    assert eraser.returncode == 0, erase_err
    result = json.loads(erase_out)
    assert result["state"] == "completed" and result["verification"]["ok"], result["verification"]

    if ingest.returncode == 1:  # it began after the source was marked erasing: refused whole
        assert "source 'bulk' is erasing" in err or "source 'bulk' is erased" in err, err
    else:
        assert ingest.returncode in (0, 3), err
        report = json.loads(out)
        assert report["files"] == 1500
        reasons = Counter(r["reason"] for r in report["rejected"])
        assert set(reasons) <= {
            "source is erasing: an erasure of it is under way or done",
            "source is erased: an erasure of it is under way or done",
        }, reasons
        assert report["ingested"] + report["duplicates"] + sum(reasons.values()) == 1500
    with Workspace.open(root, actor="tester") as ws:
        with ws.reader() as session:
            from disgorge.catalog.models import Source

            bulk_id = session.scalar(select(Source.id).where(Source.name == "bulk"))
            states = Counter(session.scalars(select(Asset.state).where(Asset.source_id == bulk_id)))
            assert session.scalar(select(Source.state).where(Source.id == bulk_id)) == "erased"
        assert "active" not in states, states
        assert states["erased"] == result["plan"]["counts"]["photos"]
        gc = ws.gc(dry_run=True, grace_seconds=0)
        assert (gc.orphan_blobs, gc.temporaries) == (0, 0)
        # the other source's photos are all there
        assert count(ws, Asset, Asset.state == "active", Asset.source_id != bulk_id) == 13
        # and the source stays closed
        with pytest.raises(Exception, match="source 'bulk' is erased"):
            ws.ingest(first.parent, source="bulk", subject_from="dirname")


# -- Done when: real photos -------------------------------------------------------------------
FORGET = "Colin_Powell"


@dataclass
class LfwCase:
    root: Path  # the workspace, erased by the CLI; tests below only add to it (re-ingest)
    ref: str
    theirs: dict[str, bytes]  # their photos: path inside LFW -> bytes
    others: dict[str, bytes]
    needles: dict[str, bytes]  # what must not be on disk afterwards, found by our own scan
    before: list[tuple[str, str]]  # what our scan found before the erasure
    known_before: int  # of their photos, how many the face model named them on
    dry_run: dict[str, Any]
    dry_run_text: str
    result: dict[str, Any]
    faces_per_photo: dict[str, int] = field(default_factory=dict)
    derived: dict[str, int] = field(default_factory=dict)  # their derived values, by kind, before


@pytest.fixture(scope="module")
def lfw(tmp_path_factory: pytest.TempPathFactory) -> LfwCase:
    if not LFW.exists():
        pytest.skip(f"real test photos not present at {LFW} (../shared is not checked out)")
    from disgorge.vision.faces import analyze

    names = sorted(p.name for p in LFW.iterdir() if p.is_dir())
    assert FORGET in names[:6]  # so they are in both dataset versions
    photos = {str(p.relative_to(LFW)): p.read_bytes() for p in sorted(LFW.rglob("*.jpg"))}
    theirs = {k: v for k, v in photos.items() if k.startswith(f"{FORGET}/")}
    others = {k: v for k, v in photos.items() if k not in theirs}
    tmp = tmp_path_factory.mktemp("lfw")
    root = tmp / "ws"
    with Workspace.init(root, actor="tester") as ws:
        ws.add_source("lfw", at="2013-01-01")
        ws.add_policy(
            "lfw",
            "2013",
            text=b"we train face recognition on your photos, with your explicit consent",
            effective_from="2013-01-01",
            allows=["ai_training", "biometric_processing"],
            at="2013-01-01",
        )
        assert ws.ingest(LFW, source="lfw", subject_from="dirname", at="2013-02-01").ingested == 100
        consent = tmp / "consent.csv"
        consent.write_text(
            "subject,purpose,decision,at\n"
            + "".join(f"{n},biometric_processing,granted,2013-01-05\n" for n in names)
        )
        ws.import_consent(consent, at="2013-01-05")
        assert ws.analyze(workers=2).embedded_faces >= 100
        first = ws.build_dataset("faces", purpose="ai_training", subjects=names[:6], at="2014-01-01")
        second = ws.build_dataset("faces", purpose="ai_training", at="2014-02-01")
        assert (first.version, first.members, second.version, second.members) == ("1.0.0", 60, "1.1.0", 100)
        trained = ws.train_model("faceid", dataset="faces", shards=4, at="2014-03-01")
        assert (trained["model"], trained["dataset"], trained["samples"]) == (
            "model:faceid@1",
            "faces@1.1.0",
            100,
        )
        ws.record_run(
            "vendor-train",
            purpose="ai_training",
            inputs=["faces@1.0.0"],
            outputs=[{"kind": "model", "name": "vendor"}],
            at="2014-03-02",
        )
        ref = ws.subject_ref(FORGET)
        with ws.reader() as session:
            theirs_ids = select(Asset.id).where(Asset.sha256.in_([sha(d) for d in theirs.values()]))
            derived = dict(
                session.execute(
                    select(AssetDerivative.kind, func.count())
                    .where(AssetDerivative.asset_id.in_(theirs_ids))
                    .group_by(AssetDerivative.kind)
                ).all()
            )
        assert derived["embedding"] == derived["face"] == derived["crop"] == 10 and derived["phash"] >= 10
        known_before = sum(
            any(f["subject"] == ref for f in ws.predict("faceid", data)["faces"]) for data in theirs.values()
        )

    needles: dict[str, bytes] = {"external-id": FORGET.encode()}
    faces_per_photo = {}
    for name, data in theirs.items():
        needles.update(middle_windows(data, f"photo:{name}"))
        needles[f"sha256-hex:{name}"] = sha(data).encode()
        needles[f"sha256:{name}"] = bytes.fromhex(sha(data))
        analysis = analyze(data, embed=True, phash=False)
        faces_per_photo[name] = len(analysis.faces)
        for k, face in enumerate(analysis.faces):
            assert face.embedding is not None and len(face.embedding) == 512
            needles[f"embedding:{name}:{k}"] = face.embedding
            needles[f"embedding-part:{name}:{k}"] = face.embedding[200:232]
    before = raw_scan(root / ".disgorge", needles)

    dry = cli("erase", "--subject", FORGET, "--dry-run", "--json", "-w", str(root))
    assert dry.returncode == 0, dry.stderr
    text = cli("erase", "--subject", FORGET, "--dry-run", "-w", str(root))
    assert text.returncode == 0, text.stderr
    out = cli("erase", "--subject", FORGET, "--reason", REASON, "--yes", "--json", "-w", str(root))
    assert out.returncode == 0, out.stderr
    return LfwCase(
        root,
        ref,
        theirs,
        others,
        needles,
        before,
        known_before,
        json.loads(dry.stdout),
        text.stdout,
        json.loads(out.stdout),
        faces_per_photo,
        derived,
    )


@pytest.mark.slow
def test_lfw_the_dry_run_lists_exactly_the_blast_radius(lfw: LfwCase) -> None:
    plan = lfw.dry_run
    assert plan["scope"] == {"kind": "subject", "ref": lfw.ref}
    assert plan["subjects"] == [lfw.ref] and (plan["owned"], plan["depicting"]) == (10, 0)
    assert sorted(plan["datasets"], key=lambda d: d["dataset"]) == [
        {"dataset": "faces@1.0.0", "items": 10},
        {"dataset": "faces@1.1.0", "items": 10},
    ]
    assert plan["models_unlearn"] == ["model:faceid@1"]
    assert plan["models_retire"] == [
        {"model": "model:vendor@1", "why": "trained outside disgorge: cannot be unlearned"}
    ]
    assert plan["artifacts_retire"] == [] and plan["recipients"] == [] and plan["notes"] == []
    assert plan["counts"] == {
        "photos": 10,
        "subjects_shredded": 1,
        **{f"derived_{kind}": n for kind, n in lfw.derived.items()},  # as the catalog held them
        "dataset_versions": 2,
        "models_unlearned": 1,
        "models_retired": 1,
        "artifacts_retired": 0,
        "recipients": 0,
        "items_at_recipients": 0,
    }
    for line in (
        "erasure of subject " + lfw.ref,
        "dataset faces@1.0.0: 10 photo(s) -> new MAJOR version without them",
        "dataset faces@1.1.0: 10 photo(s) -> new MAJOR version without them",
        "unlearn model:faceid@1",
        "retire  model:vendor@1 (trained outside disgorge: cannot be unlearned)",
    ):
        assert line in lfw.dry_run_text, lfw.dry_run_text
    assert FORGET not in lfw.dry_run_text  # pseudonymous refs only
    # and the erasure did what the dry run said
    assert lfw.result["plan"]["counts"] == plan["counts"]
    assert lfw.result["state"] == "completed"


@pytest.mark.slow
def test_lfw_no_byte_of_them_remains_anywhere_in_the_workspace(lfw: LfwCase) -> None:
    home = lfw.root / ".disgorge"
    # our scan sees what there was to see: their photos' hashes in the catalog (the photos
    # themselves were only ever stored encrypted, their embeddings too: the face index is
    # sealed, design note 7)
    seen = {label.split(":")[0] for label, _ in lfw.before}
    assert "sha256-hex" in seen and not {"embedding", "embedding-part"} & seen, lfw.before
    assert any(f == "catalog.sqlite" for _, f in lfw.before)
    assert not any(f.startswith("index") for _, f in lfw.before)
    assert sum(lfw.faces_per_photo.values()) >= 10
    # afterwards nothing, in any file: blobs, the SQLite database, its WAL, indexes, models
    files = [p for p in home.rglob("*") if p.is_file()]
    assert home / "catalog.sqlite" in files and len(files) > 90
    assert raw_scan(home, lfw.needles) == []
    # the engine's own scan agrees
    ver = lfw.result["verification"]
    assert ver["ok"] and ver["forensic_scan"]["hits"] == [] and ver["forensic_scan"]["needles"] >= 50
    assert ver["active_models_using_erased_items"] == []


@pytest.mark.slow
def test_lfw_their_photos_are_refused_at_reingest_and_the_others_are_duplicates(lfw: LfwCase) -> None:
    out = cli(
        "ingest", str(LFW), "--source", "lfw", "--subject-from", "dirname", "--json", "-w", str(lfw.root)
    )
    assert out.returncode == 3, out.stderr
    report = json.loads(out.stdout)
    assert (report["files"], report["ingested"], report["duplicates"]) == (101, 0, 90)  # + a LICENSE file
    refused = {r["path"]: r["reason"] for r in report["rejected"] if r["path"].endswith(".jpg")}
    assert sorted(refused) == sorted(lfw.theirs) and len(report["rejected"]) == 11
    assert all("this photo was erased on" in why for why in refused.values())
    # refusing them wrote nothing of them anywhere
    assert raw_scan(lfw.root / ".disgorge", lfw.needles) == []


@pytest.mark.slow
def test_lfw_the_face_model_no_longer_knows_them(lfw: LfwCase) -> None:
    assert lfw.known_before >= 8  # it did know them
    with Workspace.open(lfw.root, actor="tester") as ws:
        models = {(m["name"], m["version"]): m for m in ws.models()}
        assert {k: m["state"] for k, m in models.items()} == {
            ("faceid", "1"): "retired",
            ("faceid", "2"): "active",
            ("vendor", "1"): "retired",
        }
        new = models[("faceid", "2")]
        assert (new["dataset"], new["samples"], new["classes"], new["unlearned_from"]) == (
            "faces@2.0.0",
            90,
            9,
            "1",
        )
        for data in lfw.theirs.values():
            assert all(f["subject"] != lfw.ref for f in ws.predict("faceid", data)["faces"])
        # it still knows the others
        for name in ("Tony_Blair/Tony_Blair_0001.jpg", "Hugo_Chavez/Hugo_Chavez_0001.jpg"):
            faces = ws.predict("faceid", lfw.others[name])["faces"]
            assert ws.subject_ref(name.split("/")[0]) in {f["subject"] for f in faces}
        audit = ws.model_audit("faceid", forgotten=[FORGET])
        assert audit["still_trained_on_them"] == 0
        [forgetting] = ws.erasure_certificate(lfw.result["id"])["body"]["forgetting"]
        assert (forgetting["from"], forgetting["model"], forgetting["forgotten"]) == (
            "model:faceid@1",
            "model:faceid@2",
            10,
        )


@pytest.mark.slow
def test_lfw_they_are_downstream_of_no_active_model(lfw: LfwCase) -> None:
    with Workspace.open(lfw.root, actor="tester") as ws:
        graph = ws.lineage(f"subject:{lfw.ref}")
        models = [n for n in graph.nodes if n["kind"] == "model"]
        assert {n["id"] for n in models} == {"model:faceid@1", "model:vendor@1"}
        assert all(n["state"] != "active" for n in graph.nodes if n["kind"] in ("model", "dataset_version"))
        for m in ws.models():
            if m["state"] == "active":
                up = ws.lineage(f"model:{m['name']}@{m['version']}", direction="upstream")
                assert up.subjects["count"] == 9 and lfw.ref not in up.subjects["sample"]
        assert ws.dataset("faces@1.0.0")["state"] == "erased"
        assert ws.dataset("faces@1.1.0")["state"] == "erased"
        assert ws.dataset("faces@2.0.0")["state"] == "active"


@pytest.mark.slow
def test_lfw_the_certificate_verifies_offline_with_only_the_public_key(lfw: LfwCase, tmp_path: Path) -> None:
    export = tmp_path / "export" / "cert.json"
    export.parent.mkdir()
    out = cli("certificate", "export", lfw.result["id"], "--out", str(export), "-w", str(lfw.root))
    assert out.returncode == 0, out.stderr
    # a folder holding only the certificate, the public key and two photos; no workspace
    offline = tmp_path / "offline"
    offline.mkdir()
    shutil.copy(export, offline / "cert.json")
    shutil.copy(export.with_suffix(".pub.pem"), offline / "key.pub.pem")
    theirs = next(iter(lfw.theirs.values()))
    (offline / "theirs.jpg").write_bytes(theirs)
    (offline / "someone.jpg").write_bytes(lfw.others["Tony_Blair/Tony_Blair_0001.jpg"])
    cert = json.loads((offline / "cert.json").read_text())
    body = cert["body"]
    assert body["scope"] == {"kind": "subject", "ref": lfw.ref} and body["reason"] == REASON
    assert FORGET not in (offline / "cert.json").read_text()
    assert len(body["items"]["leaves"]) == 10
    assert verify_certificate(cert, (offline / "key.pub.pem").read_bytes()).ok
    assert {item_leaf(body["items"]["salt"], d) for d in lfw.theirs.values()} == set(body["items"]["leaves"])

    ok = cli("certificate", "verify", "cert.json", "--public-key", "key.pub.pem", cwd=offline)
    assert ok.returncode == 0 and ok.stdout.startswith("valid: signature valid"), ok.stdout + ok.stderr
    covered = cli(
        "certificate",
        "verify",
        "cert.json",
        "--public-key",
        "key.pub.pem",
        "--prove-item",
        "theirs.jpg",
        cwd=offline,
    )
    assert covered.returncode == 0 and "theirs.jpg is among the 10 erased item(s)" in covered.stdout
    proof = json.loads(
        cli(
            "certificate",
            "verify",
            "cert.json",
            "--public-key",
            "key.pub.pem",
            "--prove-item",
            "theirs.jpg",
            "--json",
            cwd=offline,
        ).stdout
    )
    assert proof["item"]["covered"] and proof["item"]["merkle_root"] == body["items"]["merkle_root"]
    # the inclusion proof, checked by hand: leaf, then the siblings up to the signed root
    assert (
        proof["item"]["leaf"]
        == hashlib.sha256(bytes.fromhex(body["items"]["salt"]) + hashlib.sha256(theirs).digest()).hexdigest()
    )
    node = hashlib.sha256(b"\x00" + bytes.fromhex(proof["item"]["leaf"])).digest()
    for step in proof["item"]["proof"]:
        pair = bytes.fromhex(step["left"]) + node if "left" in step else node + bytes.fromhex(step["right"])
        node = hashlib.sha256(b"\x01" + pair).digest()
    assert node.hex() == body["items"]["merkle_root"] and 2 <= len(proof["item"]["proof"]) <= 4
    not_covered = cli(
        "certificate",
        "verify",
        "cert.json",
        "--public-key",
        "key.pub.pem",
        "--prove-item",
        "someone.jpg",
        cwd=offline,
    )
    assert (
        not_covered.returncode == 1 and "someone.jpg is NOT among the 10 erased item(s)" in not_covered.stdout
    )

    # one byte changed: the number of photos in the counts, 10 -> 19
    text = (offline / "cert.json").read_text()
    altered = text.replace('"photos": 10', '"photos": 19', 1)
    (offline / "cert.json").write_text(altered)
    bad = cli("certificate", "verify", "cert.json", "--public-key", "key.pub.pem", cwd=offline)
    assert bad.returncode == 1 and "INVALID" in bad.stdout and "(body.counts)" in bad.stdout, bad.stdout

    # the documented 15-line verifier (docs/certificate.md), which needs only `cryptography`
    (offline / "cert.json").write_text(text)
    snippet = _doc_snippet("verify-offline")
    assert (
        len(snippet.splitlines()) <= 15
        and "import disgorge" not in snippet
        and "from disgorge" not in snippet
    )
    (offline / "verify.py").write_text(snippet)
    run = subprocess.run(
        [sys.executable, "-I", "verify.py", "cert.json", "key.pub.pem"],
        capture_output=True,
        text=True,
        cwd=offline,
    )
    assert run.returncode == 0 and run.stdout.strip() == "valid", run.stdout + run.stderr
    (offline / "cert.json").write_text(altered)
    run = subprocess.run(
        [sys.executable, "-I", "verify.py", "cert.json", "key.pub.pem"],
        capture_output=True,
        text=True,
        cwd=offline,
    )
    assert run.returncode != 0 and "InvalidSignature" in run.stderr


def _doc_snippet(name: str) -> str:
    doc = (ROOT / "docs" / "certificate.md").read_text()
    start = doc.index(f"<!-- example: {name} -->")
    fence = doc.index("```python\n", start) + len("```python\n")
    return doc[fence : doc.index("```", fence)]
