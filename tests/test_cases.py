"""Data-subject requests as cases: due dates per jurisdiction, one extension, identity
verification before an erasure, an objection the consent gate then applies, the CLI's
overdue list, and the API's routes with their scopes. No external id leaves as data."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import DENIED, PEOPLE, assert_private, cli, serve_api, smoke_workspace
from disgorge import Workspace
from disgorge.dsr.cases import Span, add_span
from disgorge.errors import ErasureBlocked, InvalidInput

ADA, _, GRACE = PEOPLE


def test_one_month_is_the_same_day_next_month_clamped_to_its_end() -> None:
    jan31 = datetime(2024, 1, 31, 9, 30, tzinfo=UTC)
    assert add_span(jan31, Span(months=1)) == datetime(2024, 2, 29, 9, 30, tzinfo=UTC)  # leap year
    assert add_span(jan31.replace(year=2025), Span(months=1)).date().isoformat() == "2025-02-28"
    assert add_span(datetime(2025, 11, 30, tzinfo=UTC), Span(months=2)).date().isoformat() == "2026-01-30"
    assert add_span(datetime(2025, 3, 15, tzinfo=UTC), Span(days=45)).date().isoformat() == "2025-04-29"


@pytest.fixture
def empty(tmp_path: Path):
    ws = Workspace.init(tmp_path / "ws", actor="officer")
    yield ws
    ws.close()


def test_due_dates_per_jurisdiction_and_one_extension(empty: Workspace) -> None:
    gdpr = empty.open_case("access", ADA, received_at="2024-01-31", channel="email", at="2024-02-01")
    assert gdpr["due_at"] == "2024-02-29T00:00:00Z" and gdpr["days_left"] == 28 and not gdpr["overdue"]
    ccpa = empty.open_case(
        "access", ADA, received_at="2024-01-31", channel="portal", jurisdiction="ccpa", at="2024-02-01"
    )
    assert ccpa["due_at"] == "2024-03-16T00:00:00Z"
    # gdpr: at most two further months; ccpa: at most 45 days
    with pytest.raises(InvalidInput, match="at most 2 month"):
        empty.extend_case(gdpr["id"], by="3m", reason="complex")
    with pytest.raises(InvalidInput, match="at most 45 day"):
        empty.extend_case(ccpa["id"], by="46d", reason="complex")
    extended = empty.extend_case(gdpr["id"], by="2m", reason="many systems to search", at="2024-02-10")
    assert extended["due_at"] == "2024-04-29T00:00:00Z"
    assert extended["extension_reason"] == "many systems to search"
    with pytest.raises(InvalidInput, match=r"already extended.*one extension only"):
        empty.extend_case(gdpr["id"], by="1m", reason="still more")
    assert empty.case(gdpr["id"])["due_at"] == "2024-04-29T00:00:00Z"
    # a person the workspace holds nothing about can still ask: the case keeps their ref
    assert gdpr["subject"].startswith("sub_") and ADA not in json.dumps(empty.cases())


def test_overdue_and_due_soon_from_the_cli(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    Workspace.init(root, actor="officer").close()
    now = datetime.now(UTC)
    late = (now - timedelta(days=62)).date().isoformat()
    soon = (now - timedelta(days=25)).date().isoformat()
    fresh = now.date().isoformat()
    ids = {}
    for name, received, subject in [("late", late, ADA), ("soon", soon, GRACE), ("fresh", fresh, GRACE)]:
        done = cli(
            "request", "open", "--kind", "erasure", "--subject", subject, "--received-at", received,
            "--channel", "email", "--json", cwd=root,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        ids[name] = json.loads(done.stdout)["id"]
    overdue = cli("request", "list", "--overdue", "--json", cwd=root)
    assert [c["id"] for c in json.loads(overdue.stdout)] == [ids["late"]]
    assert json.loads(overdue.stdout)[0]["overdue"] is True
    within = cli("request", "list", "--due-within", "7d", "--json", cwd=root)
    assert {c["id"] for c in json.loads(within.stdout)} == {ids["late"], ids["soon"]}
    every = cli("request", "list", "--json", cwd=root)
    assert len(json.loads(every.stdout)) == 3
    assert ADA not in every.stdout and GRACE not in every.stdout
    shown = cli("request", "show", ids["late"], cwd=root)
    assert "OVERDUE by" in shown.stdout, shown.stdout
    # the second extension is refused with a clear message
    first = cli("request", "extend", ids["fresh"], "--by", "2m", "--reason", "complex request", cwd=root)
    assert first.returncode == 0, first.stderr
    second = cli("request", "extend", ids["fresh"], "--by", "1m", "--reason", "again", cwd=root)
    assert second.returncode == 1 and "one extension only" in second.stderr
    closed = cli("request", "close", ids["soon"], "--refused", "--outcome", "identity not shown", cwd=root)
    assert closed.returncode == 0, closed.stderr
    assert (
        json.loads(cli("request", "list", "--status", "refused", "--json", cwd=root).stdout)[0]["id"]
        == ids["soon"]
    )
    with Workspace.open(root) as ws:
        assert_private(ws)


def test_erasure_case_needs_a_verified_identity_then_links_its_erasure(tmp_path: Path) -> None:
    ws = smoke_workspace(tmp_path)
    try:
        case = ws.open_case("erasure", ADA, received_at="2013-08-01", channel="email", at="2013-08-02")
        with pytest.raises(ErasureBlocked, match="identity is unverified"):
            ws.erase_case(case["id"], reason="GDPR Art. 17 request")
        ws.verify_case_identity(case["id"], how="code sent to the account e-mail", failed=True)
        with pytest.raises(ErasureBlocked, match="identity is failed"):
            ws.erase_case(case["id"], reason="GDPR Art. 17 request")
        verified = ws.verify_case_identity(case["id"], how="signed reply from the account e-mail")
        assert verified["identity"]["state"] == "verified" and verified["identity"]["by"] == "tester"
        assert ws.erasures() == []  # nothing was started by the refused attempts
        result = ws.erase_case(case["id"], reason="GDPR Art. 17 request", wait=0)
        assert result["erasure"]["state"] == "completed" and result["erasure"]["certificate"]
        assert result["case"]["erasure_id"] == result["erasure"]["id"]
        assert result["erasure"]["scope"] == {"kind": "subject", "ref": case["subject"]}
        assert ws.subject(case["subject"])["state"] == "erased"
        with pytest.raises(ErasureBlocked, match="already started"):
            ws.erase_case(case["id"], reason="again")
        closed = ws.close_case(case["id"], outcome="erased, certificate sent")
        assert closed["status"] == "completed" and closed["days_left"] is None
        actions = [e["action"] for e in ws.audit_events(limit=1000)]
        for action in (
            "case.opened",
            "case.identity_failed",
            "case.identity_verified",
            "case.erasure_started",
        ):
            assert action in actions
        assert_private(ws)
    finally:
        ws.close()


def test_an_objection_denies_the_purpose_and_shows_what_used_it(tmp_path: Path) -> None:
    ws = smoke_workspace(tmp_path)
    try:
        built = ws.build_dataset("faces", purpose="ai_training", at="2013-08-01")
        assert ws.consent_check(ADA, "ai_training", at="2013-09-02")["allowed"]
        case = ws.open_case(
            "objection", ADA, received_at="2013-09-01", channel="post", purpose="ai_training", at="2013-09-02"
        )
        assert [u["use"] for u in case["used"]] == [f"dataset:faces@{built.version}"]
        check = ws.consent_check(ADA, "ai_training", at="2013-09-02")
        assert not check["allowed"] and check["covered"] == 0
        now = ws.subject(ADA)["consent_now"]
        assert now["ai_training"] == "denied" and now["data_mining"] == "none"  # that purpose only
        # a later build leaves the objector out
        again = ws.build_dataset("faces", purpose="ai_training", at="2013-09-03")
        assert again.excluded > built.excluded
        with pytest.raises(InvalidInput, match="purpose"):
            ws.open_case("objection", DENIED, received_at="2013-09-01", channel="post")
        assert_private(ws)
    finally:
        ws.close()


def test_api_cases_with_scopes(tmp_path: Path) -> None:
    smoke_workspace(tmp_path).close()
    with serve_api(tmp_path / "ws") as api:
        body = {"kind": "erasure", "subject": GRACE, "received_at": "2013-08-01", "channel": "portal"}
        assert api.call("viewer", "POST", "/v1/cases", json=body).status_code == 403
        assert api.call("auditor", "POST", "/v1/cases", json=body).status_code == 403
        opened = api.call("privacy_officer", "POST", "/v1/cases", json=body)
        assert opened.status_code == 201, opened.text
        case = opened.json()
        assert GRACE not in opened.text and case["due_at"] == "2013-09-01T00:00:00Z"
        listed = api.call("auditor", "GET", "/v1/cases", params={"overdue": "true", "kind": "erasure"})
        assert listed.status_code == 200 and listed.json()["total"] == 1
        assert api.call("auditor", "GET", "/v1/cases", params={"status": "refused"}).json()["total"] == 0
        assert api.call("viewer", "GET", "/v1/cases").status_code == 403
        assert api.call("viewer", "GET", f"/v1/cases/{case['id']}").status_code == 403
        assert api.call("auditor", "GET", f"/v1/cases/{case['id']}").json()["id"] == case["id"]
        path = f"/v1/cases/{case['id']}"
        early = api.call("privacy_officer", "POST", path + "/erase", json={"reason": "GDPR Art. 17"})
        assert early.status_code == 409 and "verify it first" in early.json()["detail"]
        assert api.call("auditor", "POST", path + "/verify", json={"method": "in person"}).status_code == 403
        verify = api.call("privacy_officer", "POST", path + "/verify", json={"method": "ID shown in person"})
        assert verify.json()["identity"]["by"] == "officer-1"
        extend = api.call("privacy_officer", "POST", path + "/extend", json={"by": "2m", "reason": "complex"})
        assert extend.status_code == 200 and extend.json()["due_at"] == "2013-11-01T00:00:00Z"
        started = api.call("privacy_officer", "POST", path + "/erase", json={"reason": "GDPR Art. 17"})
        assert started.status_code == 202, started.text
        assert started.json()["case"]["erasure_id"] == started.json()["erasure"]["id"]
        closed = api.call("privacy_officer", "POST", path + "/close", json={"outcome": "erasure started"})
        assert closed.json()["status"] == "completed"
        assert GRACE not in api.call("auditor", "GET", "/v1/cases").text

        # an access case answered with its export (photo bytes: privacy officers only)
        body = {"kind": "access", "subject": GRACE, "received_at": "2013-08-01", "channel": "portal"}
        access = api.call("privacy_officer", "POST", "/v1/cases", json=body).json()["id"]
        path = f"/v1/cases/{access}"
        assert api.call("privacy_officer", "POST", path + "/export").status_code == 409  # unverified
        api.call("privacy_officer", "POST", path + "/verify", json={"method": "ID shown in person"})
        assert api.call("auditor", "POST", path + "/export").status_code == 403
        zipped = api.call("privacy_officer", "POST", path + "/export")
        assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
        kept = api.call("auditor", "GET", path).json()["export_sha256"]
        assert kept == hashlib.sha256(zipped.content).hexdigest()


def test_an_access_case_is_answered_with_an_export_whose_sha256_the_case_keeps(tmp_path: Path) -> None:
    """`request export` refuses an unverified requester, then writes the export and records
    its sha256 on the case (what was handed over can be proved later)."""
    with smoke_workspace(tmp_path) as ws:
        case = ws.open_case(
            "access", "Ada_Lovelace", received_at="2013-08-01", channel="portal", at="2013-08-01"
        )
        root = ws.ctx.config.root
    out = tmp_path / "ada.zip"
    refused = cli("request", "export", case["id"][:10], "-o", out, cwd=root)
    assert refused.returncode == 1 and "verify it first" in refused.stderr and not out.exists()
    assert cli("request", "verify", case["id"][:10], "--method", "code by post", cwd=root).returncode == 0
    done = cli("request", "export", case["id"][:10], "-o", out, "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert result["export"]["sha256"] == digest == result["case"]["export_sha256"]
    assert result["export"]["photo_files"] == 2 and "Ada" not in done.stdout
    with Workspace.open(root) as ws:
        assert ws.case(case["id"])["export_sha256"] == digest
        actions = [e["action"] for e in ws.audit_events(limit=10)]
        assert "case.export_made" in actions and "subject.exported" in actions
    wrong = cli(
        "request",
        "open",
        "--kind",
        "erasure",
        "--subject",
        "Grace_Hopper",
        "--received-at",
        "2013-08-01",
        "--channel",
        "email",
        "--json",
        cwd=root,
    )
    erasure_case = json.loads(wrong.stdout)["id"]
    bad = cli("request", "export", erasure_case[:10], "-o", tmp_path / "x.zip", cwd=root)
    assert bad.returncode == 1 and "not an access request" in bad.stderr
