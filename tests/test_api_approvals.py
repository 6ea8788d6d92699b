"""The two-person rule over HTTP: who may approve an erasure, and when it runs.

Erasing a whole source cannot be undone, so one requested over the API by a privacy
officer waits (``planned``) for the approval of another privacy officer
(``approvals_required``, a setting); the requester's own approval, an ML engineer's or an
admin's do not count, one deny ends the request, and the certificate names the approvers
by principal id. A request for one subject runs on the requester's own approval. Two
officers approving at the same moment start it once.

Each test has its own workspace (the smoke workspace: source ``lfw``, three people) and a
real server on loopback with a token per role and a second privacy officer ("officer-2").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import PEOPLE, Api, serve_api, smoke_workspace

A, B = "privacy_officer", "officer-2"
REASON = "GDPR Art. 17 request 2024-117"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    smoke_workspace(tmp_path).close()
    with serve_api(tmp_path / "ws") as served:
        yield served


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def principal_id(api: Api, who: str) -> str:
    return str(ok(api.call(who, "GET", "/v1/me"))["id"])


def create(api: Api, who: str, kind: str, ident: str) -> dict[str, Any]:
    return dict(
        ok(api.call(who, "POST", "/v1/erasures", json={"kind": kind, "id": ident, "reason": REASON}), 202)
    )


def approve(api: Api, who: str, request_id: str) -> Any:
    return api.call(who, "POST", f"/v1/erasures/{request_id}/approve", json={"reason": f"checked by {who}"})


def show(api: Api, request_id: str) -> dict[str, Any]:
    return dict(ok(api.call(A, "GET", f"/v1/erasures/{request_id}")))


def wait_until_done(api: Api, request_id: str, timeout: float = 120) -> dict[str, Any]:
    give_up = time.monotonic() + timeout
    while True:
        view = show(api, request_id)
        if view["state"] in ("completed", "failed", "denied", "cancelled"):
            assert view["state"] == "completed", (view["state"], view["error"])
            return view
        assert time.monotonic() < give_up, f"erasure {request_id} still {view['state']} after {timeout} s"
        time.sleep(0.1)


def certified(api: Api, request_id: str) -> dict[str, Any]:
    """The request's certificate, checked by the API's own verifier."""
    cert = dict(ok(api.call("auditor", "GET", f"/v1/erasures/{request_id}/certificate")))
    check = ok(api.call("auditor", "POST", "/v1/certificates/verify", json={"certificate": cert}))
    assert check["ok"] is True, check
    return cert


def active_photos(api: Api) -> int:
    page = ok(api.call(A, "GET", "/v1/assets", params={"source": "lfw", "state": "active", "limit": 1}))
    return int(page["total"])


def decisions(api: Api, request_id: str) -> list[tuple[str, str, str]]:
    """(actor, principal id, decision) of the audit log's erasure.decision events for a request."""
    page = ok(
        api.call("auditor", "GET", "/v1/audit/events", params={"action": "erasure.decision", "limit": 1000})
    )
    return [
        (e["actor"], e["payload"]["principal"], e["payload"]["decision"])
        for e in page["items"]
        if e["payload"].get("request") == request_id
    ]


def test_a_source_erasure_waits_for_another_officer(api: Api) -> None:
    a_id, b_id = principal_id(api, A), principal_id(api, B)
    view = create(api, A, "source", "lfw")
    assert view["state"] == "planned"
    assert view["approvals_required"] == 1
    assert view["approvals"] == []

    own = approve(api, A, view["id"])
    assert own.status_code == 403, own.text
    assert own.headers["content-type"].startswith("application/problem+json")
    for who in ("ml_engineer", "viewer", "auditor"):  # no erasure:approve scope
        assert approve(api, who, view["id"]).status_code == 403, who
    assert show(api, view["id"])["state"] == "planned"
    assert show(api, view["id"])["approvals"] == [], "a refused approval was recorded"

    second = ok(approve(api, B, view["id"]), 202)
    assert second["state"] in ("approved", "running", "completed"), second["state"]
    assert [(v["principal"], v["decision"]) for v in second["approvals"]] == [(b_id, "approve")]
    done = wait_until_done(api, view["id"])
    assert done["certificate"] is True
    assert active_photos(api) == 0

    cert = certified(api, view["id"])
    approvers = [a["principal"] for a in cert["body"]["approvals"]]
    assert approvers == [b_id], cert["body"]["approvals"]
    assert a_id not in approvers
    assert decisions(api, view["id"]) == [("officer-2", b_id, "approve")]


def test_a_deny_ends_the_request(api: Api) -> None:
    b_id = principal_id(api, B)
    view = create(api, A, "source", "lfw")
    assert view["state"] == "planned"
    short = api.call(B, "POST", f"/v1/erasures/{view['id']}/deny", json={"reason": ""})
    assert short.status_code == 422, "a deny needs its reason"
    denied = ok(api.call(B, "POST", f"/v1/erasures/{view['id']}/deny", json={"reason": "not verified yet"}))
    assert denied["state"] == "denied"
    assert [(v["principal"], v["decision"]) for v in denied["approvals"]] == [(b_id, "deny")]

    for who in (B, A, "admin"):
        late = approve(api, who, view["id"])
        assert late.status_code == 409, (who, late.status_code, late.text)
    assert api.call(A, "POST", f"/v1/erasures/{view['id']}/deny", json={"reason": "again"}).status_code == 409
    assert show(api, view["id"])["state"] == "denied"
    assert api.call("auditor", "GET", f"/v1/erasures/{view['id']}/certificate").status_code in (404, 409, 422)
    assert active_photos(api) == 2 * len(PEOPLE), "a denied erasure touched the source"
    assert decisions(api, view["id"]) == [("officer-2", b_id, "deny")]

    again = create(api, A, "source", "lfw")  # a denied request does not block a new one
    assert again["state"] == "planned" and again["id"] != view["id"]


def test_two_approvals_when_the_setting_asks_for_two(api: Api) -> None:
    assert api.call(A, "PUT", "/v1/settings/approvals_required", json={"value": 2}).status_code == 403
    settings = ok(api.call("admin", "PUT", "/v1/settings/approvals_required", json={"value": 2}))
    assert settings["approvals_required"] == 2
    third = ok(
        api.call("admin", "POST", "/v1/principals", json={"name": "officer-3", "role": "privacy_officer"}),
        201,
    )
    token = ok(api.call("admin", "POST", "/v1/principals/officer-3/tokens", json={"expires": "1h"}), 201)[
        "token"
    ]
    api.tokens["officer-3"] = token
    b_id, c_id = principal_id(api, B), third["id"]

    view = create(api, A, "source", "lfw")
    assert view["state"] == "planned" and view["approvals_required"] == 2
    first = ok(approve(api, B, view["id"]), 202)
    assert first["state"] == "planned", "one approval of the two ran it"
    assert approve(api, B, view["id"]).status_code in (409, 422), "the same officer counted twice"
    assert approve(api, A, view["id"]).status_code == 403
    admin = approve(api, "admin", view["id"])  # holds erasure:approve, but is no privacy officer
    assert admin.status_code == 403, admin.text
    assert show(api, view["id"])["state"] == "planned"

    ok(approve(api, "officer-3", view["id"]), 202)
    wait_until_done(api, view["id"])
    cert = certified(api, view["id"])
    assert sorted(a["principal"] for a in cert["body"]["approvals"]) == sorted([b_id, c_id])
    assert decisions(api, view["id"]) == [("officer-2", b_id, "approve"), ("officer-3", c_id, "approve")]


def test_one_subject_runs_on_the_requesters_approval(api: Api) -> None:
    a_id = principal_id(api, A)
    view = create(api, A, "subject", "Ada_Lovelace")
    assert view["approvals_required"] == 0
    assert view["state"] in ("approved", "running", "completed"), view["state"]
    wait_until_done(api, view["id"])
    cert = certified(api, view["id"])
    assert [a["principal"] for a in cert["body"]["approvals"]] == [a_id]
    assert decisions(api, view["id"]) == [("officer-1", a_id, "approve")]
    assert ok(api.call(A, "GET", "/v1/status"))["subjects_erased"] == 1
    log = api.call("auditor", "GET", "/v1/audit/events", params={"limit": 1000}).text
    assert "Ada_Lovelace" not in log, "the audit log names a subject by its external id"


def test_more_subjects_than_the_threshold_need_another_officer(api: Api) -> None:
    ok(api.call("admin", "PUT", "/v1/settings/approval_subject_threshold", json={"value": 0}))
    view = create(api, A, "subject", "Ada_Lovelace")
    assert view["state"] == "planned" and view["approvals_required"] == 1
    assert approve(api, A, view["id"]).status_code == 403
    ok(approve(api, B, view["id"]), 202)
    wait_until_done(api, view["id"])


def test_two_officers_approving_at_once_start_it_once(api: Api) -> None:
    ok(
        api.call("admin", "POST", "/v1/principals", json={"name": "officer-3", "role": "privacy_officer"}),
        201,
    )
    api.tokens["officer-3"] = ok(api.call("admin", "POST", "/v1/principals/officer-3/tokens", json={}), 201)[
        "token"
    ]
    view = create(api, A, "source", "lfw")
    barrier = threading.Barrier(2)
    answers: dict[str, Any] = {}

    def decide(who: str) -> None:
        barrier.wait()
        answers[who] = approve(api, who, view["id"])

    threads = [threading.Thread(target=decide, args=(who,)) for who in (B, "officer-3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    statuses = sorted(r.status_code for r in answers.values())
    # one approval runs it; the other finds it no longer planned (or the catalog busy: retry)
    assert statuses in ([202, 409], [202, 503]), [r.text for r in answers.values()]
    wait_until_done(api, view["id"])

    events = ok(
        api.call("auditor", "GET", "/v1/audit/events", params={"action": "erasure.approved", "limit": 1000})
    )
    approved = [e for e in events["items"] if e["payload"].get("request") == view["id"]]
    assert len(approved) == 1, approved
    jobs = ok(api.call("admin", "GET", "/v1/jobs", params={"limit": 1000}))["items"]
    runs = [
        j for j in jobs if j.get("kind") == "erasure" and (j.get("params") or {}).get("request") == view["id"]
    ]
    assert len(runs) == 1, runs
    steps = show(api, view["id"])["steps"]
    assert len(steps) == len({s["step"] for s in steps}), "a step was journaled twice"
    cert = certified(api, view["id"])
    [winner] = [who for who, r in answers.items() if r.status_code == 202]
    assert [a["principal"] for a in cert["body"]["approvals"]] == [principal_id(api, winner)]
