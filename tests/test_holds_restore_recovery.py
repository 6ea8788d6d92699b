"""Recovery of legal-hold releases and restore-checks cut off at the worst moment, with real
processes and SIGKILLs (helpers shared with tests/test_holds_restore_processes.py):

* a release killed right after its commit, before any follow-up erasure: the next command
  finishes what the hold held back (before, the photos stayed withheld for good);
* a restore-check killed inside its replay erasure: the next restore-check finishes that
  replay (before, it refused: the open replay blocked a new plan, and every other command
  refused the workspace);
* a release whose follow-up another command took up on opening still reports it.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from _processes import Driven, one, text, wait_for
from disgorge import Workspace
from disgorge.errors import RestoreNeeded
from test_holds_restore_processes import (  # noqa: F401  (base is a fixture)
    GRACE,
    LITIGATION,
    assert_erased,
    assert_replayed_once,
    base,
    copy_of,
    follow_ups,
    of,
    restored,
    w,
    withheld_erasure,
)


def test_a_release_killed_after_its_commit_still_finishes_what_the_hold_held_back(
    base: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Killed the moment the release is committed, before any follow-up exists: the hold
    is released (a second release is refused), so whatever runs next must still finish the
    erasure it held back; withheld photos must not stay behind for ever."""
    root = copy_of(base, tmp_path / "ws")
    (hold,), original = withheld_erasure(root, ("subject", GRACE, LITIGATION))
    release = ["hold", "release", hold, "--reason", "the order was lifted", *w(root)]
    killed = one(tmp_path, release, {"table": "legal_holds", "at": "after_commit"})
    assert killed["rc"] == -signal.SIGKILL, killed
    again = one(tmp_path, release)
    assert again["rc"] == 1 and "was released on" in text(again), again
    ran = one(tmp_path, ["hold", "list", "--json", *w(root)])
    assert ran["rc"] == 0, ran
    with Workspace.open(root, actor="tester") as ws:
        assert [h["active"] for h in ws.holds()] == [False]
        [follow_up] = follow_ups(ws, original)
        assert ws.erasure(follow_up["id"])["state"] == "completed"
        assert_erased(ws, of(GRACE))


@pytest.mark.parametrize(
    "kill",
    [
        pytest.param({"step": "delete_blobs", "point": "blob_deleted"}, id="inside-the-replay"),
        pytest.param({"step": "certificate", "point": "marked"}, id="replay-certified-not-completed"),
    ],
)
def test_restore_check_killed_inside_its_replay_erasure_is_finished_by_the_next_one(
    base: Path,  # noqa: F811
    tmp_path: Path,
    kill: dict[str, Any],
) -> None:
    live, original = restored(base, tmp_path)
    killed = one(tmp_path, ["restore-check", "--json", *w(live)], kill)
    assert killed["rc"] == -signal.SIGKILL and killed["out"] == "", killed
    refused = one(tmp_path, ["status", *w(live)])
    assert refused["rc"] == 1 and "restore-check" in text(refused), refused
    with pytest.raises(RestoreNeeded):
        Workspace.open(live).close()
    with Workspace.open(live, actor="tester", check_ledger=False) as ws:
        [replay] = [e for e in ws.erasures() if e["scope"]["ref"] == f"restore:{original}"]
        assert replay["state"] in ("executing", "verifying"), replay
    # nor can the operator resume it: every command but restore-check is refused
    resume = one(tmp_path, ["erasure", "resume", replay["id"], *w(live)])
    assert resume["rc"] == 1 and "restore-check" in text(resume), resume
    finished = one(tmp_path, ["restore-check", "--json", *w(live)])
    assert finished["rc"] == 0, finished
    report = json.loads(finished["out"])
    assert report["ok"] and report["missing"] == 1, report
    assert_replayed_once(live, original, tmp_path)


def test_a_release_whose_follow_up_another_process_picked_up_still_reports_it(
    base: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The follow-up is approved (committed), and before the releasing process claims it,
    another command opens the workspace and resumes it (the CLI resumes approved erasures on
    open). The release's own run is then told "being run by another process": it must
    still answer with the follow-up it started (it once answered "erasures": [])."""
    root = copy_of(base, tmp_path / "ws")
    (hold,), original = withheld_erasure(root, ("subject", GRACE, LITIGATION))
    flag = tmp_path / "approved"
    release = ["hold", "release", hold, "--reason", "the order was lifted", "--json", *w(root)]
    running = Driven(
        tmp_path,
        [
            {
                "cmds": [
                    {
                        "argv": release,
                        "kill": {"table": "erasure_steps", "at": "after_commit", "pause": str(flag)},
                    }
                ]
            }
        ],
    )
    resumer = flag.with_name("resumed")
    try:
        wait_for(flag.with_suffix(".here"), "the follow-up being approved")
        # another command resumes it on opening, and is mid-way when the release goes on
        other = Driven(
            tmp_path,
            [
                {
                    "cmds": [
                        {
                            "argv": ["hold", "list", "--json", *w(root)],
                            "kill": {"step": "delete_blobs", "point": "before", "pause": str(resumer)},
                        }
                    ]
                }
            ],
        )
        try:
            wait_for(resumer.with_suffix(".here"), "the other command resuming the follow-up")
            flag.with_suffix(".go").touch()
            [[released]] = running.results()
        finally:
            resumer.with_suffix(".go").touch()
        [[other_run]] = other.results()
    finally:
        flag.with_suffix(".go").touch()
        resumer.with_suffix(".go").touch()
    assert other_run["rc"] == 0 and "resuming interrupted erasure" in other_run["err"], other_run
    assert released["rc"] == 0, released
    with Workspace.open(root, actor="tester") as ws:
        [follow_up] = follow_ups(ws, original)
        assert follow_up["state"] == "completed"
    assert [e["id"] for e in json.loads(released["out"])["erasures"]] == [follow_up["id"]], released
