"""An audit log edited in SQLite: verification names the first bad event.

What every bad-input test checks is said in conftest.py ("bad input").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_private, cli, ingest_good, run_cli_many, sql
from disgorge import Workspace
from disgorge._time import parse_instant
from disgorge.audit.log import event_hash


# -- 12: tampered audit log -----------------------------------------------------------------------
def _middle_ingest_event(ws: Workspace) -> int:
    events = ws.audit_events(limit=1000, action="asset.ingested")
    assert len(events) == 12
    return events[5]["seq"]


@pytest.mark.parametrize("column", ["payload", "actor", "action"])
def test_audit_event_edited_in_sqlite_is_named(ws: Workspace, photo_dir: Path, column: str) -> None:
    ingest_good(ws, photo_dir)
    assert ws.verify_audit().ok
    seq = _middle_ingest_event(ws)
    (value,) = sql(ws, f"SELECT {column} FROM audit_events WHERE seq = ?", seq)[0]
    edited = value.replace("image/jpeg", "image/png") if column == "payload" else value + "x"
    assert edited != value
    sql(ws, f"UPDATE audit_events SET {column} = ? WHERE seq = ?", edited, seq)

    report = ws.verify_audit()

    assert not report.ok
    assert report.first_bad_seq == seq
    assert report.events == seq - 1
    assert "edited" in (report.reason or "")


def test_audit_event_edited_and_rehashed_breaks_the_next_link(ws: Workspace, photo_dir: Path) -> None:
    ingest_good(ws, photo_dir)
    seq = _middle_ingest_event(ws)
    action, actor, payload, prev = sql(
        ws, "SELECT action, actor, payload, prev_hash FROM audit_events WHERE seq = ?", seq
    )[0]
    event = next(e for e in ws.audit_events(limit=1000) if e["seq"] == seq)
    payload = payload.replace("image/jpeg", "image/png")
    digest = event_hash(
        seq, parse_instant(event["at"]), parse_instant(event["recorded_at"]), action, actor, payload, prev
    )
    sql(ws, "UPDATE audit_events SET payload = ?, hash = ? WHERE seq = ?", payload, digest, seq)

    report = ws.verify_audit()

    assert not report.ok
    assert report.first_bad_seq == seq + 1
    assert "prev_hash" in (report.reason or "")


@pytest.mark.parametrize("which", ["last", "middle"])
def test_deleted_audit_event_is_detected(ws: Workspace, photo_dir: Path, which: str) -> None:
    ingest_good(ws, photo_dir)
    last = ws.status()["audit_events"]
    seq = last if which == "last" else _middle_ingest_event(ws)
    sql(ws, "DELETE FROM audit_events WHERE seq = ?", seq)

    report = ws.verify_audit()

    assert not report.ok
    assert report.first_bad_seq == seq
    assert "missing" in (report.reason or "")


def test_cli_audit_verify_exits_1_and_names_the_edited_event(ws: Workspace, photo_dir: Path) -> None:
    ingest_good(ws, photo_dir)
    intact = cli("audit", "verify", "-w", ws.root)
    assert intact.returncode == 0, intact.stderr
    assert "audit chain intact" in intact.stdout
    seq = _middle_ingest_event(ws)
    sql(ws, "UPDATE audit_events SET payload = '{}' WHERE seq = ?", seq)

    broken, as_json = run_cli_many(
        ["audit", "verify", "-w", ws.root], ["audit", "verify", "--json", "-w", ws.root]
    )

    assert broken.returncode == 1
    assert f"audit chain broken at event {seq}:" in broken.stderr
    assert "Traceback" not in broken.stderr + broken.stdout
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["first_bad_seq"] == seq
    assert_private(ws, broken.stdout + broken.stderr)
