"""Legal holds and restore-check with other processes reading and writing the same
workspace at the same time, and with SIGKILLs in the middle (issue #15's holds and
restore-without-resurrection under the house rule for anything that writes).

Every command is the real CLI (``disgorge.cli:main``) in its own process: children forked
from the driver of tests/_processes.py, which imported disgorge once. A kill is a real
``SIGKILL`` a process sends itself at an exact point, armed from outside the code under
test: the erasure's fault-injection hook, or SQLAlchemy's public events around the commit
of the transaction that writes a given row. A pause is the same hook with a fault that
waits for the test to let it go. Nothing is mocked.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

from _processes import Driven, drive, no_lock_errors, one, photo_workspace, text, wait_for
from conftest import REASON, sha
from disgorge import Workspace
from disgorge.errors import NotFound, RestoreNeeded
from disgorge.samples import synthetic_photo
from test_restore import restore_catalog

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses SIGKILL and fork (Linux only)"
)

PEOPLE = ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper"]
PER_PERSON = 2
GRACE, ADA = "Grace_Hopper", "Ada_Lovelace"
LITIGATION = "litigation 2026-CV-0142 (preservation order)"
INQUIRY = "regulator inquiry 2026/88 preservation"


# -- the workspace ------------------------------------------------------------------------------
def _photos() -> dict[tuple[str, int], bytes]:
    return {(p, i): synthetic_photo(n, i, size=160) for n, p in enumerate(PEOPLE) for i in range(PER_PERSON)}


def mirrored(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        ImageOps.mirror(im.convert("RGB")).save(out, "JPEG", quality=90)
        return out.getvalue()


def of(person: str) -> list[bytes]:
    return [data for (p, _), data in _photos().items() if p == person]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 people x 2 drawn photos, one source (closed: copy it)."""
    return photo_workspace(tmp_path_factory.mktemp("holds-restore"), _photos())


def copy_of(base: Path, where: Path) -> Path:
    shutil.copytree(base, where)
    return where


def w(root: Path) -> list[str]:
    return ["-w", str(root)]


def withheld_erasure(root: Path, *holds: tuple[str, str, str]) -> tuple[list[str], str]:
    """Place the holds (kind, name, reason), then erase Grace: every photo of hers withheld.
    Returns the hold ids and the erasure's id."""
    with Workspace.open(root, actor="tester") as ws:
        ids = [ws.add_hold(kind, name, reason=reason)["id"] for kind, name, reason in holds]
        done = ws.erase("subject", GRACE, reason=REASON)
        assert done["state"] == "completed", done["error"]
        assert done["plan"]["withheld"]["photos"] == PER_PERSON
        assert all(ws.asset(sha(d))["state"] == "withheld" for d in of(GRACE))
    return ids, done["id"]


def follow_ups(ws: Workspace, original: str) -> list[dict[str, Any]]:
    return [e for e in ws.erasures() if e["scope"]["ref"] == f"release:{original}"]


def assert_erased(ws: Workspace, photos: list[bytes]) -> None:
    for data in photos:
        with pytest.raises(NotFound):
            ws.asset(sha(data))


# -- legal holds ----------------------------------------------------------------------------
def test_two_releases_at_once_start_one_follow_up_while_others_read(base: Path, tmp_path: Path) -> None:
    root = copy_of(base, tmp_path / "ws")
    (first, second), original = withheld_erasure(
        root, ("subject", GRACE, LITIGATION), ("source", "app", INQUIRY)
    )
    reader = {
        "cmds": [
            {"argv": ["hold", "list", "--json", *w(root)]},
            {"argv": ["erasure", "list", "--json", *w(root)]},
        ],
        "loop": True,
    }

    def release(hold: str) -> list[str]:
        return ["hold", "release", hold, "--reason", "the matter is closed", *w(root)]

    jobs = drive(
        tmp_path,
        *({"cmds": [{"argv": [*release(hold), "--json"]}]} for hold in (first, second)),
        reader,
        reader,
    )
    releases = [r for (r,) in jobs[:2]]
    reads = [r for runs in jobs[2:] for r in runs]
    no_lock_errors(*releases, *reads)
    assert not [r for r in releases + reads if GRACE in r["out"] + r["err"]]  # refs, never names
    assert [r["rc"] for r in releases] == [0, 0], releases
    started = [e["id"] for r in releases for e in json.loads(r["out"])["erasures"]]
    # one process started the follow-up, the other left it (known: when a reader's resume
    # claims the approved follow-up before its starter does, the starter reports none)
    assert len(started) <= 1, releases
    assert len(reads) >= 2 and all(r["rc"] == 0 for r in reads), [r for r in reads if r["rc"]]
    for r in reads:  # every snapshot whole: both holds, the first erasure, at most one follow-up
        listed = json.loads(r["out"])
        if r["argv"][0] == "hold":
            assert sorted(h["id"] for h in listed) == sorted((first, second)), r
        else:
            refs = [e["scope"]["ref"] for e in listed]
            assert original in [e["id"] for e in listed] and refs.count(f"release:{original}") <= 1, r
    with Workspace.open(root, actor="tester") as ws:
        [follow_up] = follow_ups(ws, original)
        assert started in ([], [follow_up["id"]])
        view = ws.erasure(follow_up["id"])
        assert view["state"] == "completed", view["error"]
        assert view["verification"]["ok"], view["verification"]
        assert view["plan"]["counts"]["photos"] == PER_PERSON
        assert_erased(ws, of(GRACE))
        assert ws.subject(GRACE)["state"] == "erased"
        assert all(not h["active"] for h in ws.holds())
        assert len(ws.audit_events(action="hold.released", limit=100)) == 2
        assert ws.verify_audit().ok
    [(check,)] = drive(tmp_path, {"cmds": [{"argv": ["verify", follow_up["id"], "--json", *w(root)]}]})
    assert check["rc"] == 0 and json.loads(check["out"])["ok"], check


def test_a_release_killed_in_its_follow_up_is_finished_by_the_next_command(
    base: Path, tmp_path: Path
) -> None:
    root = copy_of(base, tmp_path / "ws")
    (hold,), original = withheld_erasure(root, ("subject", GRACE, LITIGATION))
    release = ["hold", "release", hold[:8], "--reason", "the order was lifted", *w(root)]
    killed = one(tmp_path, release, {"step": "delete_blobs", "point": "blob_deleted"})
    assert killed["rc"] == -signal.SIGKILL and killed["out"] == "", killed
    with Workspace.open(root, actor="tester") as ws:
        [follow_up] = follow_ups(ws, original)
        assert follow_up["state"] == "executing"
        assert [h["active"] for h in ws.holds()] == [False]  # the release was committed first
    # two commands at once, each resumes what was interrupted on opening: one runs it, the
    # other is told another process has it (and goes on)
    listed, erasures = drive(
        tmp_path,
        {"cmds": [{"argv": ["hold", "list", "--json", *w(root)]}]},
        {"cmds": [{"argv": ["erasure", "list", "--json", *w(root)]}]},
    )
    no_lock_errors(*listed, *erasures)
    assert listed[0]["rc"] == 0 and erasures[0]["rc"] == 0, (listed, erasures)
    assert [h["active"] for h in json.loads(listed[0]["out"])] == [False]
    again, check = drive(
        tmp_path,
        {"cmds": [{"argv": release}]},
        {"cmds": [{"argv": ["verify", follow_up["id"], "--json", *w(root)]}]},
    )
    assert again[0]["rc"] == 1 and "was released on" in text(again[0]), again
    assert check[0]["rc"] == 0 and json.loads(check[0]["out"])["ok"], check
    with Workspace.open(root, actor="tester") as ws:
        [done] = follow_ups(ws, original)
        view = ws.erasure(done["id"])
        assert view["state"] == "completed" and view["verification"]["ok"], view
        assert_erased(ws, of(GRACE))
        assert len(ws.audit_events(action="hold.released", limit=100)) == 1
        assert ws.verify_audit().ok


# -- restore-check ----------------------------------------------------------------------------
def restored(base: Path, where: Path) -> tuple[Path, str]:
    """A workspace whose catalog was restored from a backup taken before Ada's erasure
    (the ledger, elsewhere from the backup, remembers it). Returns it and the erasure's id."""
    live = copy_of(base, where / "live")
    backup = copy_of(base, where / "backup")
    with Workspace.open(live, actor="tester") as ws:
        done = ws.erase("subject", ADA, reason=REASON)
        assert done["state"] == "completed", done["error"]
    restore_catalog(backup, live)
    shutil.rmtree(backup)
    with pytest.raises(RestoreNeeded):
        Workspace.open(live).close()
    return live, done["id"]


def assert_replayed_once(live: Path, original: str, tmp_path: Path) -> None:
    """Ada's photos gone again, her photos refused at ingest, the workspace opens, and a
    further restore-check replays nothing."""
    with Workspace.open(live, actor="tester") as ws:
        assert_erased(ws, of(ADA))
        assert ws.subject(ADA)["state"] == "erased"
        replays = [e for e in ws.erasures() if e["scope"]["ref"] == f"restore:{original}"]
        assert replays and all(e["state"] == "completed" for e in replays), replays
        assert ws.status()["assets"] == len(_photos()) - PER_PERSON
        assert ws.verify_audit().ok
    again = tmp_path / "again" / "Someone_Else"  # under another name: only what was put back knows them
    again.mkdir(parents=True)
    for i, data in enumerate(of(ADA)):
        (again / f"{i}.jpg").write_bytes(data)
    (again / "mirror.jpg").write_bytes(mirrored(of(ADA)[0]))
    argv = ["ingest", str(again.parent), "--source", "app", "--subject-from", "dirname", "--json", *w(live)]
    (ingest,), (check,) = drive(
        tmp_path, {"cmds": [{"argv": argv}]}, {"cmds": [{"argv": ["restore-check", "--json", *w(live)]}]}
    )
    assert ingest["rc"] == 3, ingest  # every file refused
    report = json.loads(ingest["out"])
    reasons = sorted(r["reason"] for r in report["rejected"])
    assert report["ingested"] == 0 and len(reasons) == PER_PERSON + 1, report
    assert sum("re-ingestion refused" in r for r in reasons) == PER_PERSON, reasons  # the fingerprints
    assert sum("near-copy" in r for r in reasons) == 1, reasons  # the blocklist hashes
    with Workspace.open(live, actor="tester") as ws:
        assert ws.status()["assets"] == len(_photos()) - PER_PERSON  # nothing came back
    assert check["rc"] == 0, check
    report = json.loads(check["out"])
    assert report["ok"] and report["missing"] == 0 and report["replayed"] == [], report


RECORDING = {"table": "meta", "value": "ledger_replayed:"}  # the transaction that records the replay


@pytest.mark.parametrize(
    ("kill", "left"),
    [
        # the replay erasure completed, its fingerprints, hashes and record not yet committed
        pytest.param({**RECORDING, "at": "before_commit"}, 1, id="recording-the-replay"),
        # all of it committed, the process killed before it could say so
        pytest.param({**RECORDING, "at": "after_commit"}, 0, id="recorded"),
    ],
)
def test_restore_check_killed_in_the_middle_is_finished_by_the_next_one(
    base: Path, tmp_path: Path, kill: dict[str, Any], left: int
) -> None:
    live, original = restored(base, tmp_path)
    killed = one(tmp_path, ["restore-check", "--json", *w(live)], kill)
    assert killed["rc"] == -signal.SIGKILL and killed["out"] == "", killed
    status = one(tmp_path, ["status", *w(live)])
    if left:  # not recorded: still refused, by every process
        assert status["rc"] == 1 and "restore-check" in text(status), status
        with pytest.raises(RestoreNeeded):
            Workspace.open(live).close()
    else:
        assert status["rc"] == 0, status
    finished = one(tmp_path, ["restore-check", "--json", *w(live)])
    assert finished["rc"] == 0, finished
    report = json.loads(finished["out"])
    assert report["ok"] and report["missing"] == left and len(report["replayed"]) == left, report
    no_lock_errors(killed, status, finished)
    assert_replayed_once(live, original, tmp_path)


def test_commands_while_restore_check_runs_are_refused_and_change_nothing(base: Path, tmp_path: Path) -> None:
    live, original = restored(base, tmp_path)
    new = tmp_path / "new" / "New_Person"
    new.mkdir(parents=True)
    (new / "0.jpg").write_bytes(synthetic_photo(7, 0, size=160))
    flag = tmp_path / "paused"
    running = Driven(
        tmp_path,
        [
            {
                "cmds": [
                    {
                        "argv": ["restore-check", "--json", *w(live)],
                        "kill": {"step": "delete_blobs", "point": "before", "pause": str(flag)},
                    }
                ]
            }
        ],
    )
    try:
        wait_for(flag.with_suffix(".here"), "the replay erasure reaching delete_blobs")
        others = drive(
            tmp_path,
            {"cmds": [{"argv": ["status", *w(live)]}]},
            {
                "cmds": [
                    {
                        "argv": [
                            "ingest",
                            str(new.parent),
                            "--source",
                            "app",
                            "--subject-from",
                            "dirname",
                            *w(live),
                        ]
                    }
                ]
            },
            {"cmds": [{"argv": ["hold", "add", "--subject", GRACE, "--reason", LITIGATION, *w(live)]}]},
            {"cmds": [{"argv": ["erase", "--subject", GRACE, "--reason", REASON, "--yes", *w(live)]}]},
        )
    finally:
        flag.with_suffix(".go").touch()
    [[finished]] = running.results()
    refused = [r for (r,) in others]
    no_lock_errors(finished, *refused)
    for r in refused:
        assert r["rc"] == 1 and "restore-check" in text(r), r
    assert finished["rc"] == 0, finished
    assert json.loads(finished["out"])["ok"]
    with Workspace.open(live, actor="tester") as ws:
        assert ws.holds() == []
        assert [e["scope"]["kind"] for e in ws.erasures()] == ["set"]  # the replay only
        assert ws.subject(GRACE)["state"] == "active"
        with pytest.raises(NotFound):
            ws.subject("New_Person")
    assert_replayed_once(live, original, tmp_path)
