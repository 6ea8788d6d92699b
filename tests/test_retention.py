"""Retention schedules: a source's or a dataset's photos are erased once kept longer than
its rule, through the normal erasure path (one erasure, one signed certificate per run).

Real workspaces (the synthetic one: four people's 13 photos ingested from source ``app`` on
2013-02-01, a dataset, a SISA model and an external one), real erasures with their
forensic scans, real CLI processes and a real API server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SYN_PEOPLE, Syn, cli, sha, tiny_photos
from disgorge import Workspace
from disgorge.errors import InvalidInput, NotFound

LITIGATION = "litigation 2026-CV-0142 (preservation order)"
#: after the synthetic workspace's dataset (2014-01-01) and models (2014-03-01)
LATER = "2015-01-01"
RUN_AT = "2015-06-01"


def _active(ws: Workspace, data: bytes) -> bool:
    try:
        return ws.asset(sha(data))["state"] == "active"
    except NotFound:
        return False


def _gone(ws: Workspace, data: bytes) -> bool:
    try:
        ws.asset(sha(data))
    except NotFound:
        return True
    return False


def _ingest_later(ws: Workspace, tmp_path: Path) -> dict[str, bytes]:
    """Two photos of a newcomer, ingested from ``app`` on :data:`LATER`."""
    folder = tiny_photos(tmp_path / "later", ["Late_Comer"], 2)
    report = ws.ingest(folder, source="app", subject_from="dirname", at=LATER)
    assert report.ingested == 2, report
    return {p.name: p.read_bytes() for p in (folder / "Late_Comer").iterdir()}


def _audit_actions(ws: Workspace) -> list[str]:
    return [e["action"] for e in ws.audit_events(limit=1000)]


def test_a_source_rule_erases_what_expired_once_with_one_certificate(
    sws: Workspace, syn: Syn, tmp_path: Path
) -> None:
    later = _ingest_later(sws, tmp_path)
    rule = sws.set_retention("source", "app", days=365, at=RUN_AT)
    assert rule == {
        "kind": "source",
        "name": "app",
        "days": 365,
        "set_at": "2015-06-01T00:00:00Z",
        "set_by": "tester",
    }
    assert sws.retention_rules() == [rule]

    due = sws.retention_due(at=RUN_AT)
    assert due["photos"] == len(syn.photos)  # the 2013 photos; the 2015 ones have months left
    assert due["rules"] == [
        {"kind": "source", "name": "app", "days": 365, "cutoff": "2014-06-01T00:00:00Z", "expired": 13}
    ]

    # the dry run plans the erasure and changes nothing
    events = len(_audit_actions(sws))
    dry = sws.run_retention(dry_run=True, at=RUN_AT)
    assert dry["erasure"] is None and dry["dry_run"]
    assert dry["plan"] is not None
    assert dry["plan"]["counts"]["photos"] == 13
    assert dry["plan"]["scope"]["kind"] == "set"
    assert sws.erasures() == []
    assert len(_audit_actions(sws)) == events
    assert all(_active(sws, d) for d in [*syn.photos.values(), *later.values()])

    done = sws.run_retention(at=RUN_AT)
    erasure = done["erasure"]
    assert erasure is not None
    assert erasure["state"] == "completed", erasure["error"]
    assert erasure["verification"] is not None and erasure["verification"]["ok"]
    assert erasure["reason"] == "retention: source app keeps photos 365 days"
    assert done["photos"] == 13 and not done["dry_run"]
    assert [e["id"] for e in sws.erasures()] == [erasure["id"]]
    certificate = sws.erasure_certificate(erasure["id"])["body"]
    assert certificate["reason"] == erasure["reason"]
    assert sws.verify_erasure(erasure["id"])["ok"]
    assert all(_gone(sws, d) for d in syn.photos.values())
    assert all(_active(sws, d) for d in later.values())
    assert sws.model("faceid")["state"] == "retired"  # every photo it learned from is gone

    # idempotent: nothing more has expired at the same instant, and no erasure is made
    again = sws.run_retention(at=RUN_AT)
    assert again["photos"] == 0 and again["erasure"] is None and again["plan"] is None
    assert len(sws.erasures()) == 1
    # the newcomer's photos expire a year after their own ingest
    assert sws.retention_due(at="2015-12-31T23:59:59Z")["photos"] == 0
    second = sws.run_retention(at="2016-01-01")["erasure"]
    assert second is not None and second["state"] == "completed", second
    assert all(_gone(sws, d) for d in later.values())

    actions = _audit_actions(sws)
    assert actions.count("retention.set") == 1 and actions.count("retention.run") == 2
    text = json.dumps(sws.audit_events(limit=1000))
    assert not any(person in text for person in [*SYN_PEOPLE, "Late_Comer"])
    assert sws.verify_audit().ok


def test_a_dataset_rule_reaches_every_version_and_the_earliest_rule_wins(sws: Workspace, syn: Syn) -> None:
    sws.build_dataset("small", purpose="ai_training", subjects=["Ada_Lovelace"], at=LATER)
    sws.build_dataset("small", purpose="ai_training", subjects=["Edsger_Dijkstra"], at=LATER)
    sws.set_retention("source", "app", days=36_500, at=RUN_AT)  # a century: nothing expires by it
    sws.set_retention("dataset", "small", days=365, at=RUN_AT)
    due = sws.retention_due(at=RUN_AT)
    assert {(r["kind"], r["expired"]) for r in due["rules"]} == {("source", 0), ("dataset", 6)}

    done = sws.run_retention(at=RUN_AT)
    assert done["erasure"] is not None and done["erasure"]["state"] == "completed", done["erasure"]
    assert done["erasure"]["reason"] == "retention: dataset small keeps photos 365 days"
    members = {**syn.of("Ada_Lovelace"), **syn.of("Edsger_Dijkstra")}
    for name, data in syn.photos.items():
        assert _gone(sws, data) == (name in members), name

    # a rule set again replaces the old one; cleared, it is gone
    assert sws.set_retention("dataset", "small", days=30, at=RUN_AT)["days"] == 30
    assert [r["days"] for r in sws.retention_rules() if r["kind"] == "dataset"] == [30]
    assert sws.clear_retention("dataset", "small")["days"] == 30
    assert [r["kind"] for r in sws.retention_rules()] == ["source"]
    with pytest.raises(NotFound):
        sws.clear_retention("dataset", "small")


def test_a_held_photo_is_withheld_not_erased_and_not_counted_again(sws: Workspace, syn: Syn) -> None:
    hold = sws.add_hold("subject", "Grace_Hopper", reason=LITIGATION)
    sws.set_retention("source", "app", days=365, at=RUN_AT)
    assert sws.run_retention(dry_run=True, at=RUN_AT)["plan"]["withheld"]["photos"] == 4

    done = sws.run_retention(at=RUN_AT)
    erasure = done["erasure"]
    assert erasure is not None and erasure["state"] == "completed", erasure
    assert erasure["plan"]["withheld"]["photos"] == 4  # Grace's three, and the group photo showing her
    certificate = sws.erasure_certificate(erasure["id"])["body"]
    assert certificate["withheld"]["holds"][0]["reason"] == LITIGATION
    held = {**syn.of("Grace_Hopper"), "group.jpg": syn.photos["group.jpg"]}
    for name, data in syn.photos.items():
        if name in held:
            assert sws.asset(sha(data))["state"] == "withheld"
        else:
            assert _gone(sws, data), name

    # withheld photos are the hold's business now: the next run finds nothing
    assert sws.run_retention(at=RUN_AT)["erasure"] is None
    # released, the hold's follow-up erasure finishes them
    [follow_up] = sws.release_hold(hold["id"], reason="the court lifted the order")["erasures"]
    assert follow_up["state"] == "completed", follow_up["error"]
    assert all(_gone(sws, d) for d in held.values())


def test_a_queued_run_is_left_alone_by_the_next_one(sws: Workspace, syn: Syn) -> None:
    sws.set_retention("source", "app", days=365, at=RUN_AT)
    queued = sws.run_retention(at=RUN_AT, run=False)["erasure"]
    assert queued is not None and queued["state"] == "approved"
    # the next run (cron again, before the job runner got to it) makes no second erasure
    again = sws.run_retention(at=RUN_AT)
    assert again["erasure"] is None and again["photos"] == 0 and again["pending"] == [queued["id"]]
    assert again["rules"][0]["expired"] == 0
    finished = sws.erasure_resume(queued["id"])
    assert finished["state"] == "completed", finished["error"]
    assert sws.retention_due(at=RUN_AT) == {
        "at": "2015-06-01T00:00:00Z",
        "rules": [
            {"kind": "source", "name": "app", "days": 365, "cutoff": "2014-06-01T00:00:00Z", "expired": 0}
        ],
        "photos": 0,
        "pending": [],
    }


def test_bad_rules_are_refused_clearly(sws: Workspace) -> None:
    for days in (0, -3):
        with pytest.raises(InvalidInput, match="whole number of days from 1"):
            sws.set_retention("source", "app", days=days)
    with pytest.raises(InvalidInput, match="whole number"):
        sws.set_retention("source", "app", days=True)  # a bool is no number of days
    with pytest.raises(NotFound, match="no source named 'nowhere'"):
        sws.set_retention("source", "nowhere", days=30)
    with pytest.raises(NotFound, match="no dataset named"):
        sws.set_retention("dataset", "nothing", days=30)
    with pytest.raises(InvalidInput, match="without @VERSION"):
        sws.set_retention("dataset", "faces@1.0.0", days=30)
    with pytest.raises(InvalidInput, match="source or a dataset"):
        sws.set_retention("model", "faceid", days=30)
    assert sws.retention_rules() == []
    nothing = sws.run_retention()  # no rule: nothing expires, nothing is made
    assert (nothing["rules"], nothing["photos"], nothing["erasure"]) == ([], 0, None)
    assert sws.erasures() == []


def test_retention_cli(sws: Workspace, syn: Syn) -> None:
    root = sws.ctx.config.root
    sws.close()
    usage = cli("source", "retention", "app", cwd=root)
    assert usage.returncode == 2 and "--days" in usage.stderr
    negative = cli("source", "retention", "app", "--days", "-3", cwd=root)
    assert negative.returncode == 1 and "from 1" in negative.stderr
    unknown = cli("dataset", "retention", "nothing", "--days", "30", cwd=root)
    assert unknown.returncode == 1 and "no dataset named" in unknown.stderr

    set_ = cli("source", "retention", "app", "--days", "365", "--json", cwd=root)
    assert set_.returncode == 0, set_.stderr
    assert json.loads(set_.stdout)["days"] == 365
    listed = cli("retention", "list", "--at", RUN_AT, cwd=root)
    assert listed.returncode == 0, listed.stderr
    assert "source app: photos kept 365 day(s)" in listed.stdout and "13 photo(s) expired" in listed.stdout

    dry = cli("retention", "run", "--dry-run", "--at", RUN_AT, cwd=root)
    assert dry.returncode == 0, dry.stderr
    assert "nothing changed" in dry.stdout and "erasure of set retention:" in dry.stdout
    ran = cli("retention", "run", "--json", "--at", RUN_AT, cwd=root)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["photos"] == 13 and result["erasure"]["state"] == "completed"
    again = cli("retention", "run", "--at", RUN_AT, cwd=root)
    assert again.returncode == 0 and "nothing to erase" in again.stdout

    cleared = cli("source", "retention", "app", "--clear", cwd=root)
    assert cleared.returncode == 0 and "removed (was 365 day(s))" in cleared.stdout
    with Workspace.open(root) as ws:
        assert ws.retention_rules() == []
        assert [e["state"] for e in ws.erasures()] == ["completed"]


def test_retention_over_the_api(sws: Workspace, syn: Syn) -> None:
    """Real uvicorn on 127.0.0.1: an admin sets the rule, an officer runs it (a dry run,
    then the run, queued for the job runner), an auditor reads the rules."""
    pytest.importorskip("uvicorn")
    from conftest import serve_api

    root = sws.ctx.config.root
    sws.close()
    with serve_api(root) as api:
        body = {"days": 365}
        assert api.call("privacy_officer", "PUT", "/v1/retention/source/app", json=body).status_code == 403
        assert api.call("admin", "PUT", "/v1/retention/source/app", json={"days": 0}).status_code == 422
        missing = api.call("admin", "PUT", "/v1/retention/source/nowhere", json=body)
        assert missing.status_code == 404, missing.text
        put = api.call("admin", "PUT", "/v1/retention/source/app", json=body)
        assert put.status_code == 200, put.text
        assert put.json()["days"] == 365 and put.json()["set_by"] == "admin-1"
        listed = api.call("auditor", "GET", "/v1/retention")
        assert [r["name"] for r in listed.json()["items"]] == ["app"]
        due = api.call("auditor", "GET", "/v1/retention/due").json()
        assert due["photos"] == 13  # ingested in 2013: long past a year

        assert api.call("auditor", "POST", "/v1/retention/run", json={}).status_code == 403
        dry = api.call("privacy_officer", "POST", "/v1/retention/run", json={"dry_run": True})
        assert dry.status_code == 202, dry.text
        assert dry.json()["erasure"] is None and dry.json()["plan"]["counts"]["photos"] == 13
        assert api.call("auditor", "GET", "/v1/erasures").json()["items"] == []

        ran = api.call("privacy_officer", "POST", "/v1/retention/run", json={"dry_run": False})
        assert ran.status_code == 202, ran.text
        queued = ran.json()["erasure"]
        assert queued["state"] == "approved"
        done = api.wait("auditor", f"/v1/erasures/{queued['id']}", ["completed", "failed"])
        assert done["state"] == "completed", done["error"]
        certificate = api.call("auditor", "GET", f"/v1/erasures/{queued['id']}/certificate")
        assert certificate.status_code == 200 and certificate.json()["body"]["reason"].startswith(
            "retention:"
        )
        nothing = api.call("privacy_officer", "POST", "/v1/retention/run", json={})
        assert nothing.status_code == 202 and nothing.json()["erasure"] is None

        cleared = api.call("admin", "DELETE", "/v1/retention/source/app")
        assert cleared.status_code == 200, cleared.text
        assert api.call("auditor", "GET", "/v1/retention").json()["items"] == []
    with Workspace.open(root) as ws:
        assert all(_gone(ws, d) for d in syn.photos.values())
