"""Retention runs with other processes on the same workspace, and with a SIGKILL in the
middle: cron and the API at once make one erasure; a run killed inside its erasure is
finished by the next command; a later run never erases twice.

Real CLI processes forked by the driver of tests/_processes.py; kills are
real SIGKILLs armed through the erasure's fault-injection hook.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from _processes import drive, no_lock_errors, one
from disgorge import Workspace
from test_holds_restore_processes import (  # noqa: F401  (base is a fixture)
    PEOPLE,
    PER_PERSON,
    assert_erased,
    base,
    copy_of,
    of,
    w,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL (Linux only)")

LATER = "2099-01-01"  # every photo has expired by then under a 30-day rule


def _with_rule(base: Path, where: Path) -> Path:  # noqa: F811
    root = copy_of(base, where)
    with Workspace.open(root, actor="tester") as ws:
        ws.set_retention("source", "app", days=30)
    return root


def _retention_erasures(ws: Workspace) -> list[dict]:
    return [e for e in ws.erasures() if e["scope"]["ref"].startswith("retention:")]


def test_two_runs_at_once_make_one_erasure_while_others_read(base: Path, tmp_path: Path) -> None:  # noqa: F811
    root = _with_rule(base, tmp_path / "ws")
    run = {"cmds": [{"argv": ["retention", "run", "--json", "--at", LATER, *w(root)]}]}
    reader = {"cmds": [{"argv": ["erasure", "list", "--json", *w(root)]}], "loop": True}
    first, second, reads = drive(tmp_path, run, run, reader)
    results = [*first, *second]
    assert all(r["rc"] == 0 for r in results), results
    no_lock_errors(*results, *reads)
    assert all(r["rc"] == 0 for r in reads), reads
    made = [json.loads(r["out"])["erasure"] for r in results]
    assert sum(1 for m in made if m) == 1, made  # one run made it, the other left it to that one
    with Workspace.open(root, actor="tester") as ws:
        [erasure] = _retention_erasures(ws)
        assert erasure["state"] == "completed"
        assert ws.verify_erasure(erasure["id"])["ok"]
        for person in PEOPLE:
            assert_erased(ws, of(person))
        assert ws.verify_audit().ok
    again = one(tmp_path, ["retention", "run", "--json", "--at", LATER, *w(root)])
    assert again["rc"] == 0 and json.loads(again["out"])["erasure"] is None


def test_a_run_killed_inside_its_erasure_is_finished_by_the_next_command(base: Path, tmp_path: Path) -> None:  # noqa: F811
    root = _with_rule(base, tmp_path / "ws")
    kill = {"step": "delete_blobs", "point": "blob_deleted"}
    killed = one(tmp_path, ["retention", "run", "--json", "--at", LATER, *w(root)], kill)
    assert killed["rc"] == -signal.SIGKILL, killed
    # cron again before anyone looked: it finishes the killed run's erasure, makes none of its own
    again = one(tmp_path, ["retention", "run", "--json", "--at", LATER, *w(root)])
    assert again["rc"] == 0, again
    assert "resuming interrupted erasure" in again["err"]
    assert json.loads(again["out"])["erasure"] is None
    with Workspace.open(root, actor="tester") as ws:
        [erasure] = _retention_erasures(ws)
        assert erasure["state"] == "completed"
        assert ws.erasure(erasure["id"])["plan"]["counts"]["photos"] == len(PEOPLE) * PER_PERSON
        assert ws.verify_erasure(erasure["id"])["ok"]
        for person in PEOPLE:
            assert_erased(ws, of(person))
