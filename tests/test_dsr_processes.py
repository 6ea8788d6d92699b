"""Cases, the access export and the sticky-copy blocklist with other processes writing the
same workspace at the same time, and with SIGKILLs in the middle (issue #15's features
under the house rule for anything that writes).

Every command is the real CLI (``disgorge.cli:main``) in its own process. Most run as
children forked from the driver of tests/_processes.py, which imported disgorge once; a
few are the installed ``disgorge`` console script itself. A kill is a real ``SIGKILL`` a
process sends itself at an exact point, armed from outside the code under test: the
erasure's fault-injection hook, or SQLAlchemy's public events around the commit of the
transaction that writes a given table. Nothing is mocked.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps
from sqlalchemy import select

from _processes import DEADLINE_S, drive_waves, no_lock_errors, photo_workspace, text
from conftest import DISGORGE, REASON, cli_env, sha, tiny_photos
from disgorge import Workspace
from disgorge.catalog.dsr_models import ErasedHashes
from disgorge.dsr.export import verify_export
from disgorge.samples import synthetic_photo

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses SIGKILL and fork (Linux only)"
)

PEOPLE = ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper"]
PER_PERSON = 2
GRACE = "Grace_Hopper"


# -- the workspace ------------------------------------------------------------------------------
def _photos() -> dict[tuple[str, int], bytes]:
    return {(p, i): synthetic_photo(n, i, size=200) for n, p in enumerate(PEOPLE) for i in range(PER_PERSON)}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 people x 2 drawn photos, one source (closed: copy it)."""
    return photo_workspace(tmp_path_factory.mktemp("dsr-processes"), _photos())


@pytest.fixture
def root(base: Path, tmp_path: Path) -> Path:
    shutil.copytree(base, tmp_path / "ws")
    return tmp_path / "ws"


RECEIVED = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()


def open_argv(root: Path, subject: str = GRACE) -> list[str]:
    return [
        "request", "open", "--kind", "access", "--subject", subject, "--received-at", RECEIVED,
        "--channel", "email", "--json", "-w", str(root),
    ]  # fmt: skip


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def verified_export(path: Path, ws: Workspace) -> str:
    """The sha256 of a complete export at ``path`` whose signed document and photos verify."""
    data = path.read_bytes()
    files = members(data)
    check = verify_export(json.loads(files["export.json"]), ws.public_key_pem(), files=files)
    assert check.ok, check.reason
    return sha(data)


def actions(ws: Workspace, action: str) -> list[dict[str, Any]]:
    return ws.audit_events(action=action, limit=10_000)


# -- cases and an export and an ingest, all at once --------------------------------------------
def test_cases_an_export_and_an_ingest_at_once_lose_nothing_and_race_safely(
    root: Path, tmp_path: Path
) -> None:
    with Workspace.open(root, actor="tester") as ws:  # the cases everyone races for
        shared = {
            what: ws.open_case("erasure", "Alan_Turing", received_at=RECEIVED, channel="post")["id"]
            for what in ("extend", "close", "verify")
        }
    w = ["-w", str(root)]
    opener = {
        "cmds": [{"argv": open_argv(root)} for _ in range(2)]
        + [
            {"argv": ["request", "extend", shared["extend"], "--by", "1m", "--reason", "many systems", *w]},
            {"argv": ["request", "close", shared["close"], "--outcome", "answered by post", *w]},
            {"argv": ["request", "verify", shared["verify"], "--method", "signed reply", *w]},
        ]
    }
    reader = {"cmds": [{"argv": ["request", "list", "--json", *w]}], "loop": True}
    new = tiny_photos(tmp_path / "new", ["New_Person"], 3)
    [jobs], consoles = drive_waves(
        tmp_path,
        [opener, opener, opener, reader],
        others=[
            ["subject", "export", GRACE, "-o", str(tmp_path / "grace.zip"), *w],
            ["ingest", str(new), "--source", "app", "--subject-from", "dirname", *w],
            open_argv(root, "Ada_Lovelace"),
        ],
    )
    everything = [r for runs in jobs for r in runs] + consoles
    no_lock_errors(*everything)
    export, ingest, console_open = consoles
    assert export["rc"] == 0 and ingest["rc"] == 0 and console_open["rc"] == 0, consoles
    opens = [r for r in everything if r["argv"][:2] == ["request", "open"]]
    assert len(opens) == 7 and all(r["rc"] == 0 for r in opens), opens
    opened = [json.loads(r["out"])["id"] for r in opens]
    assert len(set(opened)) == len(opened)  # seven processes, seven distinct cases
    # the one extension, the one close: exactly one process wins each race, the others are told
    for verb, refusal in (("extend", "one extension only"), ("close", "is completed: cannot close it")):
        runs = [r for r in everything if r["argv"][:2] == ["request", verb]]
        assert sorted(r["rc"] for r in runs) == [0, 1, 1], runs
        assert all(refusal in text(r) for r in runs if r["rc"]), runs
    verifies = [r for r in everything if r["argv"][:2] == ["request", "verify"]]
    assert [r["rc"] for r in verifies] == [0, 0, 0], verifies
    # the reader never saw a case twice, nor one go missing once seen
    seen: set[str] = set()
    snapshots = [r for r in jobs[3]]
    assert snapshots and all(r["rc"] == 0 for r in snapshots), snapshots
    for snapshot in snapshots:
        ids = [c["id"] for c in json.loads(snapshot["out"])]
        assert len(ids) == len(set(ids)) and seen <= set(ids), snapshot
        seen = set(ids)
    with Workspace.open(root, actor="tester") as ws:
        final = [c["id"] for c in ws.cases()]
        assert Counter(final) == Counter(opened + list(shared.values()))  # each exactly once
        assert seen <= set(final)
        assert len(actions(ws, "case.opened")) == len(final)
        [extended] = actions(ws, "case.extended")
        assert extended["payload"]["case"] == shared["extend"]
        assert ws.case(shared["extend"])["extended_at"] is not None
        [closed] = actions(ws, "case.closed")
        assert (
            closed["payload"]["case"] == shared["close"] and ws.case(shared["close"])["status"] == "completed"
        )
        assert len(actions(ws, "case.identity_verified")) == 3
        assert ws.status()["assets"] == len(_photos()) + 3  # the ingest's photos, each once
        [exported] = actions(ws, "subject.exported")
        assert exported["payload"]["sha256"] == verified_export(tmp_path / "grace.zip", ws)
        assert ws.verify_audit().ok
    assert (
        subprocess.run([DISGORGE, "audit", "verify", *w], env=cli_env(), timeout=DEADLINE_S).returncode == 0
    )


# -- cases: SIGKILLs before and after the commit ------------------------------------------------
def test_a_case_write_killed_before_its_commit_leaves_nothing_after_it_everything(
    root: Path, tmp_path: Path
) -> None:
    with Workspace.open(root, actor="tester") as ws:
        first = ws.open_case("access", GRACE, received_at=RECEIVED, channel="email")
        second = ws.open_case("access", GRACE, received_at=RECEIVED, channel="email")
    w = ["-w", str(root)]
    before = {"table": "dsr_cases", "at": "before_commit"}
    after = {"table": "dsr_cases", "at": "after_commit"}
    extend = ["request", "extend", "--by", "1m", "--reason", "many systems", *w]
    [jobs], _ = drive_waves(
        tmp_path,
        [
            {"cmds": [{"argv": open_argv(root, "Ada_Lovelace"), "kill": before}]},
            {"cmds": [{"argv": open_argv(root, "Alan_Turing"), "kill": after}]},
            {"cmds": [{"argv": [*extend[:2], first["id"], *extend[2:]], "kill": before}]},
            {"cmds": [{"argv": [*extend[:2], second["id"], *extend[2:]], "kill": after}]},
            {"cmds": [{"argv": open_argv(root)}]},  # a bystander, unharmed
        ],
    )
    killed = [runs[0] for runs in jobs[:4]]
    assert [r["rc"] for r in killed] == [-signal.SIGKILL] * 4, killed
    assert all(r["out"] == "" for r in killed)  # none of them got to say anything
    [bystander] = jobs[4]
    assert bystander["rc"] == 0, bystander
    with Workspace.open(root, actor="tester") as ws:
        cases = ws.cases()
        refs = Counter(c["subject"] for c in cases)
        assert refs[ws.subject_ref("Ada_Lovelace")] == 0  # killed before its commit: not there
        assert refs[ws.subject_ref("Alan_Turing")] == 1  # killed after: there, once
        assert len(cases) == 4 and len(actions(ws, "case.opened")) == 4  # every case has its event
        assert ws.case(first["id"])["due_at"] == first["due_at"]  # not extended
        assert ws.case(second["id"])["due_at"] != second["due_at"]  # extended, once
        assert [e["payload"]["case"] for e in actions(ws, "case.extended")] == [second["id"]]
        assert ws.verify_audit().ok
    # the killed extension can be made again; the committed one cannot
    [jobs], _ = drive_waves(
        tmp_path,
        [
            {"cmds": [{"argv": [*extend[:2], first["id"], *extend[2:]]}]},
            {"cmds": [{"argv": [*extend[:2], second["id"], *extend[2:]]}]},
            {"cmds": [{"argv": open_argv(root, "Ada_Lovelace")}]},
        ],
    )
    (again,), (twice,), (reopened,) = jobs
    assert again["rc"] == 0 and reopened["rc"] == 0, (again, reopened)
    assert twice["rc"] == 1 and "one extension only" in text(twice), twice
    no_lock_errors(bystander, again, twice, reopened)
    with Workspace.open(root, actor="tester") as ws:
        assert len(ws.cases()) == 5 and len(actions(ws, "case.opened")) == 5
        assert len(actions(ws, "case.extended")) == 2
        assert ws.verify_audit().ok


# -- the access export: SIGKILLs mid-write ------------------------------------------------------
def test_an_export_killed_mid_write_leaves_no_partial_file_and_each_completed_one_is_audited_once(
    root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    w = ["-w", str(root)]
    targets = {k: out / f"{k}.zip" for k in ("before_commit", "after_commit", "whole")}

    def export(target: Path) -> list[str]:
        return ["subject", "export", GRACE, "-o", str(target), *w]

    # killed with the zip written (fsynced) beside its target, its audit event not yet
    # committed / committed and the zip not yet renamed into place; and one left whole
    [jobs], _ = drive_waves(
        tmp_path,
        [
            {"cmds": [{"argv": export(targets[k]), "kill": {"table": "audit_events", "at": k}}]}
            for k in ("before_commit", "after_commit")
        ]
        + [{"cmds": [{"argv": export(targets["whole"])}]}],
    )
    (before,), (after,), (whole,) = jobs
    assert before["rc"] == after["rc"] == -signal.SIGKILL, (before, after)
    assert whole["rc"] == 0, whole
    assert not targets["before_commit"].exists() and not targets["after_commit"].exists()
    # a real console-script export killed the moment its temporary file appears: whatever it
    # had reached, the target is absent or whole
    raced = out / "raced.zip"
    proc = subprocess.Popen(
        [DISGORGE, *export(raced)], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    give_up = time.monotonic() + DEADLINE_S
    try:
        while proc.poll() is None and time.monotonic() < give_up:
            if any(n.startswith(".raced.zip.") for n in os.listdir(out)):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=DEADLINE_S)
    with Workspace.open(root, actor="tester") as ws:
        events = [e["payload"]["sha256"] for e in actions(ws, "subject.exported")]
        # audited before the rename: a file that made it to its target always has its event
        complete = {p.name: verified_export(p, ws) for p in out.glob("*.zip")}
        assert set(complete) <= {"whole.zip", "raced.zip"} and "whole.zip" in complete
        assert all(events.count(digest) == 1 for digest in complete.values()), (events, complete)
        # the only events without a file: the one killed after its commit, and perhaps the raced one
        assert 1 <= len(events) - len(complete) <= 2, events
        assert ws.verify_audit().ok
    # nothing partial at any target; a leftover is the dot-prefixed temporary file only
    assert all(n.startswith(".") and n.endswith(".part") for n in os.listdir(out) if not n.endswith(".zip"))
    # the killed exports are simply made again
    [jobs], _ = drive_waves(
        tmp_path,
        [{"cmds": [{"argv": export(targets[k])}]} for k in ("before_commit", "after_commit")]
        + ([{"cmds": [{"argv": export(raced)}]}] if not raced.exists() else []),
    )
    assert all(r["rc"] == 0 for runs in jobs for r in runs), jobs
    no_lock_errors(whole, *(r for runs in jobs for r in runs))
    with Workspace.open(root, actor="tester") as ws:
        events = [e["payload"]["sha256"] for e in actions(ws, "subject.exported")]
        complete = {p.name: verified_export(p, ws) for p in out.glob("*.zip")}
        assert len(complete) == 4
        assert all(events.count(digest) == 1 for digest in complete.values()), (events, complete)
        assert ws.verify_audit().ok
    # and their part files (photos in clear) are gone: an export wipes a killed one's
    assert not [n for n in os.listdir(out) if n.endswith(".part")], os.listdir(out)


# -- the sticky-copy blocklist: a real `disgorge erase` killed mid-erasure ----------------------
def _jpeg(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def near_copies(data: bytes) -> dict[str, bytes]:
    """A mirrored and a half-size copy."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        half = im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)
        return {"mirror.jpg": _jpeg(ImageOps.mirror(im)), "half.jpg": _jpeg(half)}


KILL_POINTS = (
    "before",
    "blob_deleted",
    "marked",
)  # of delete_blobs: nothing kept yet; kept, a blob gone; done


def test_an_erase_killed_mid_erasure_and_resumed_by_two_processes_keeps_each_hash_once(
    base: Path, tmp_path: Path
) -> None:
    roots = {point: tmp_path / f"ws-{point}" for point in KILL_POINTS}
    for path in roots.values():
        shutil.copytree(base, path)

    def erase(path: Path) -> list[str]:
        return ["erase", "--subject", "Ada_Lovelace", "--reason", REASON, "--yes", "--json", "-w", str(path)]

    # a real `disgorge erase` per workspace, killed at its point (alone: every CLI command
    # resumes an interrupted erasure first, so a command started after the kill would finish
    # it before the checks below; the case is opened beside the resume instead)
    [jobs], _ = drive_waves(
        tmp_path,
        [
            {"cmds": [{"argv": erase(roots[p]), "kill": {"step": "delete_blobs", "point": p}}]}
            for p in KILL_POINTS
        ],
    )
    killed = [runs[0] for runs in jobs]
    assert [r["rc"] for r in killed] == [-signal.SIGKILL] * 3, killed
    rids = {}
    for point, path in roots.items():
        with Workspace.open(path, actor="tester") as ws:
            [request] = ws.erasures()
            assert request["state"] != "completed"
            with ws.reader() as session:
                kept = list(session.scalars(select(ErasedHashes.request_id)))
            assert len(kept) == (0 if point == "before" else PER_PERSON), (point, kept)
            rids[point] = request["id"]
    # three processes resume each at once: the resume command, a case opened and a case list
    # (any command resumes); then `disgorge verify`
    resume, verify = drive_waves(
        tmp_path,
        [
            job
            for point, path in roots.items()
            for job in (
                {"cmds": [{"argv": ["erasure", "resume", rids[point], "--json", "-w", str(path)]}]},
                {"cmds": [{"argv": open_argv(path)}]},
                {"cmds": [{"argv": ["request", "list", "--json", "-w", str(path)]}]},
            )
        ],
        [
            {"cmds": [{"argv": ["verify", rids[point], "--json", "-w", str(path)]}]}
            for point, path in roots.items()
        ],
    )[0]
    busy = "is being run by another process right now"  # the other one has it: told, not run twice
    opened = [runs[0] for runs in resume[1::3]]
    for (resumed,), (made,), (listed,) in zip(resume[::3], resume[1::3], resume[2::3], strict=True):
        assert resumed["rc"] == 0 or (resumed["rc"] == 1 and busy in resumed["err"]), resumed
        assert made["rc"] == 0, made
        assert listed["rc"] == 0 and len(json.loads(listed["out"])) <= 1, listed
    for (check,) in verify:
        assert check["rc"] == 0 and json.loads(check["out"])["ok"], check
        assert json.loads(check["out"])["catalog"]["perceptual_hashes_kept"] == PER_PERSON
    no_lock_errors(*opened, *(r for runs in resume + verify for r in runs))
    for point, path in roots.items():
        rid = rids[point]
        with Workspace.open(path, actor="tester") as ws:
            assert ws.erasure(rid)["state"] == "completed"
            assert len(ws.cases()) == 1  # the case opened beside the resume, once
            with ws.reader() as session:
                kept = list(session.scalars(select(ErasedHashes.request_id)))
            assert kept == [rid] * PER_PERSON, point  # each erased photo's hashes, once
            # near-copies of the erased photos are refused at ingest; another person's copy is not
            incoming = tmp_path / f"incoming-{point}" / "Someone_Else"
            incoming.mkdir(parents=True)
            for i in range(PER_PERSON):
                for name, data in near_copies(_photos()[("Ada_Lovelace", i)]).items():
                    (incoming / f"{i}-{name}").write_bytes(data)
            (incoming / "other-mirror.jpg").write_bytes(
                near_copies(_photos()[("Alan_Turing", 0)])["mirror.jpg"]
            )
            report = ws.ingest(incoming.parent, source="app", subject_from="dirname")
            refused = {r.path: r.reason for r in report.rejected}
            assert len(refused) == 2 * PER_PERSON and report.ingested == 1, report.to_dict()
            assert all(f"erased by request {rid}" in reason for reason in refused.values()), refused
            assert ws.verify_audit().ok


def test_exports_to_one_file_at_once_write_it_once_and_the_others_are_refused(
    root: Path, tmp_path: Path
) -> None:
    target = tmp_path / "grace.zip"
    argv = ["subject", "export", GRACE, "-o", str(target), "-w", str(root)]
    [jobs], _ = drive_waves(tmp_path, [{"cmds": [{"argv": argv}]} for _ in range(3)])
    runs = [r for (r,) in jobs]
    no_lock_errors(*runs)
    assert sorted(r["rc"] for r in runs) == [0, 1, 1], runs
    assert all("already exists" in text(r) for r in runs if r["rc"]), runs
    [winner] = [r for r in runs if r["rc"] == 0]
    with Workspace.open(root, actor="tester") as ws:
        digest = verified_export(target, ws)
        assert digest in " ".join(winner["out"].split())  # the sha256 it reported is the file's
        assert [e["payload"]["sha256"] for e in actions(ws, "subject.exported")] == [digest]
        assert ws.verify_audit().ok
    assert os.listdir(tmp_path).count("grace.zip") == 1
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".grace.zip.")]  # no temporary file left
