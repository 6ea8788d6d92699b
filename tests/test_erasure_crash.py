"""Interrupted erasures: SIGKILLs at every step boundary, failed steps, corrupted journals.

Kills are real ``SIGKILL``s of real ``python`` processes: a small driver script runs the
erasure with the public API and kills itself at an exact point (right after a step is
marked done, or inside a step), armed through the erasure's documented fault-injection
hook (``disgorge.erasure.steps.inject``), not by patching its internals. A request
that is executing or failed blocks a new one of its scope until it is resumed.

The tests run on the synthetic workspace of conftest.py (``syn``, copied by ``sws``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import REASON, Syn, cli, count, only_request, sha
from disgorge import ErasureBlocked, IntegrityError, NotFound, Workspace
from disgorge.catalog.models import (
    Artifact,
    Asset,
    AssetDerivative,
    ConsentRecord,
    ErasedFingerprint,
    Subject,
)
from disgorge.erasure.certificate import prove_item, verify_certificate
from disgorge.erasure.steps import STEPS, inject

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses SIGKILL and fork (Linux only)"
)


# -- the journal: kills and corruption --------------------------------------------------------
DRIVER = r"""
import contextlib, json, os, signal, sys
from datetime import UTC, datetime

from disgorge import Workspace
from disgorge.erasure.requests import approve
from disgorge.erasure.steps import inject
import disgorge.training.registry, disgorge.vision.index, sklearn  # imported once, before the forks

REASON = "GDPR Art. 17 request 2024-117"


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def arm(where):  # the kill point, armed through the erasure's fault-injection hook
    point = where.split(":", 1)[1]
    if where.startswith("after:"):  # right after the step is marked done (committed)
        return inject(point, marked=die)
    if where == "inside:delete_blobs":  # right after the first photo blob is deleted
        return inject(point, blob_deleted=die)
    if where == "inside:tombstone_assets":  # before the step's transaction commits
        return inject(point, committing=die)
    if where == "inside:verify":  # the verification is committed, the samples not yet dropped
        return inject(point, verified=die)
    if where in ("inside:unlearn_models", "inside:remove_index"):  # done, not yet marked done
        return inject(point, after=die)
    if where == "inside:sisa_unlearn":  # the shards are retrained, nothing is registered yet
        from disgorge.training import SISAClassifier

        unlearn = SISAClassifier.unlearn

        def patched(self, *a, **k):
            unlearn(self, *a, **k)
            die()

        SISAClassifier.unlearn = patched
        return contextlib.nullcontext()
    if where == "inside:unlearn_register":  # the old version is retired, the new one not registered
        import disgorge.runs.service as runs

        open_run = runs.open_run

        def patched(ctx, job, *a, **k):
            if job.startswith("unlearn:"):
                die()
            return open_run(ctx, job, *a, **k)

        runs.open_run = patched
        return contextlib.nullcontext()
    raise SystemExit(f"unknown kill point {where}")


def erase(ws, kind, ident, where):
    if where == "after:approve":  # approved (committed), not yet run
        planned = ws.erase(kind, ident, reason=REASON, execute=False)
        approve(ws.ctx, planned["id"], at=datetime.now(UTC))
        die()
    with arm(where):
        ws.erase(kind, ident, reason=REASON)


results, running = {}, {}
todo = json.loads(sys.argv[1])
while todo or running:
    while todo and len(running) < 4:  # a few at a time: each waits mostly on fsync
        ws_path, kind, ident, where = todo.pop(0)
        pid = os.fork()
        if pid == 0:  # the child: run the erasure until it is killed
            try:
                ws = Workspace.open(ws_path, actor="tester")
                erase(ws, kind, ident, where)
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
    rid = only_request(ws)
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
    assert len(STEPS) == 15 and len(KILL_POINTS) == 23
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


# -- what an unfinished request blocks ----------------------------------------------------------
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


def test_a_failed_erasure_blocks_a_new_one_of_its_scope_until_resumed(sws: Workspace) -> None:
    """Fault injection: one step raises. A fresh plan would miss what the failed request
    already removed, so the only way on is to resume it."""

    def broken() -> None:
        raise OSError("disk went away")

    with inject("delete_blobs", before=broken), pytest.raises(OSError, match="disk went away"):
        sws.erase("subject", "Ada_Lovelace", reason=REASON)
    rid = only_request(sws)
    assert sws.erasure(rid)["state"] == "failed"
    with pytest.raises(ErasureBlocked, match=f"erasure {rid} of this scope failed part-way.*resume {rid}"):
        sws.erase("subject", "Ada_Lovelace", reason=REASON)
    assert sws.erasure_resume(rid)["state"] == "completed"
