"""``disgorge demo``'s story, every step over HTTP, by people with their own tokens.

A dating app and a vision vendor, each a workspace served by ``disgorge serve``'s app on
127.0.0.1. Their privacy officers and ML engineers never touch a shell after the
workspaces are made: sources and policies, consent, photos (uploaded and ingested), a
dataset through the consent gate, a transfer the gate refuses and a privacy officer then
backfills under a legal override, the violation audit, the vendor's analysis and SISA
model, one person's erasure reaching the vendor through its inbox, the regulator's order
to disgorge the whole transfer approved by a second privacy officer, and a certificate
that verifies. Each step is the principal's own (the audit log names them).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROLE_USERS, Api, serve_api
from disgorge import Workspace
from disgorge.samples import synthetic_photo

pytest.importorskip("uvicorn")
pytest.importorskip("dlib")

USERS = [f"user-{i:04d}@dating.example" for i in range(4)]
STOCK = ["stock-0001@licensed.example", "stock-0002@licensed.example"]
PHOTOS_EACH = 3
ASKER = USERS[1]


def _zip_of(people: list[str], offset: int = 0) -> bytes:
    """Drawn portraits, one folder per person (the folder names the subject)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for p, person in enumerate(people):
            for i in range(PHOTOS_EACH):
                archive.writestr(f"{person}/{i}.jpg", synthetic_photo(p + offset, i, size=160))
    return buffer.getvalue()


def _csv(rows: list[tuple[str, str, str]]) -> str:
    return "subject,purpose,decision,at\n" + "".join(f"{s},{p},{d},2013-01-10\n" for s, p, d in rows)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.text}"
    )
    return response.json()


def wait(api: Api, who: str, path: str, done: set[str], timeout: float = 240) -> dict[str, Any]:
    return api.wait(who, path, done, timeout)


def ingest(api: Api, source: str, archive: bytes) -> dict[str, Any]:
    upload = ok(api.call("privacy_officer", "POST", "/v1/uploads", content=archive), 201)["upload"]
    body = {"source": source, "archive": upload, "subject_from": "dirname"}
    job = ok(api.call("privacy_officer", "POST", "/v1/ingest", json=body), 202)
    job = wait(api, "privacy_officer", f"/v1/jobs/{job['id']}", {"succeeded", "failed"})
    assert job["state"] == "succeeded", job["error"]
    result: dict[str, Any] = job["result"]
    return result


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Api, Api]]:
    Workspace.init(tmp_path / "app", actor="owner").close()
    Workspace.init(tmp_path / "vendor", actor="owner").close()
    with serve_api(tmp_path / "app") as app, serve_api(tmp_path / "vendor") as vendor:
        yield app, vendor


def test_the_demo_story_over_http_with_each_persons_token(servers: tuple[Api, Api]) -> None:
    app, vendor = servers
    # -- the dating app: its privacy officer sets up the source, consent and photos ---------
    ok(app.call("privacy_officer", "POST", "/v1/sources", json={"name": "dating-app", "kind": "app"}), 201)
    policy = {
        "version": "2013",
        "text": "2013 policy: your photos show your profile.",
        "effective_from": "2013-01-01",
        "allows": ["ai_inference"],
    }
    ok(app.call("privacy_officer", "POST", "/v1/sources/dating-app/policies", json=policy), 201)
    consent = [(u, "ai_inference", "granted") for u in USERS]
    consent += [(u, "ai_training", "granted" if i % 3 == 0 else "denied") for i, u in enumerate(USERS)]
    imported = ok(app.call("privacy_officer", "POST", "/v1/consent/import", json={"text": _csv(consent)}))
    assert imported["imported"] == len(consent)
    assert ingest(app, "dating-app", _zip_of(USERS))["ingested"] == len(USERS) * PHOTOS_EACH
    # the ML engineer builds the matching dataset through the gate
    matching = ok(
        app.call("ml_engineer", "POST", "/v1/datasets", json={"name": "matching", "purpose": "ai_inference"}),
        201,
    )
    assert matching["members"] == len(USERS) * PHOTOS_EACH

    # -- 2014: the photos leave for the vendor -----------------------------------------------
    vendor_key = vendor.call(None, "GET", "/v1/public-key").text
    app_key = app.call(None, "GET", "/v1/public-key").text
    recipient = {
        "name": "vendor",
        "public_key": vendor_key,
        "endpoint": vendor.url,
        "agreement": "2014 pilot",
    }
    ok(app.call("privacy_officer", "POST", "/v1/recipients", json=recipient), 201)
    ok(
        vendor.call(
            "privacy_officer", "POST", "/v1/senders", json={"name": "dating-app", "public_key": app_key}
        ),
        201,
    )
    share = {
        "dataset": f"matching@{matching['version']}",
        "to": "vendor",
        "purposes": ["ai_training", "biometric_processing"],
        "bundle": False,
    }
    refused = app.call("privacy_officer", "POST", "/v1/transfers", json=share)
    assert refused.status_code == 403 and refused.json()["type"] == "urn:disgorge:problem:consent-denied"
    override = {"basis": "legal", "reason": "backfilling the 2014 transfer from contract records"}
    transfer = ok(
        app.call("privacy_officer", "POST", "/v1/transfers", json={**share, "override": override}), 201
    )
    assert transfer["items"] == len(USERS) * PHOTOS_EACH
    # the auditor finds the transfer in the violation audit; a viewer may not look
    violations = ok(app.call("auditor", "GET", "/v1/violations"))
    assert any(v["job"] == "share:vendor" for v in violations["items"]), violations
    assert app.call("viewer", "GET", "/v1/violations").status_code == 403

    # -- the vendor: its own officer and engineer -------------------------------------------
    terms = {
        "version": "contract-2014",
        "text": "the app warrants consent",
        "effective_from": "2013-01-01",
        "allows": ["ai_training", "biometric_processing"],
    }
    for source in ("dating-app-2014", "stock"):
        ok(
            vendor.call("privacy_officer", "POST", "/v1/sources", json={"name": source, "kind": "partner"}),
            201,
        )
        ok(vendor.call("privacy_officer", "POST", f"/v1/sources/{source}/policies", json=terms), 201)
    claimed = [(p, u, "granted") for p in USERS + STOCK for u in ("ai_training", "biometric_processing")]
    ok(vendor.call("privacy_officer", "POST", "/v1/consent/import", json={"text": _csv(claimed)}))
    ingest(vendor, "dating-app-2014", _zip_of(USERS))
    ingest(vendor, "stock", _zip_of(STOCK, offset=len(USERS)))
    legacy = {"sender": "dating-app", "source": "dating-app-2014"}
    assert (
        ok(vendor.call("privacy_officer", "POST", "/v1/transfers/legacy", json=legacy), 201)["items"]
        == len(USERS) * PHOTOS_EACH
    )
    job = ok(
        vendor.call("ml_engineer", "POST", "/v1/analysis", json={"embedder": "portrait", "workers": 1}), 202
    )
    assert (
        wait(vendor, "ml_engineer", f"/v1/jobs/{job['id']}", {"succeeded", "failed"})["state"] == "succeeded"
    )
    faces = ok(
        vendor.call("ml_engineer", "POST", "/v1/datasets", json={"name": "faces", "purpose": "ai_training"}),
        201,
    )
    train = {"name": "face-id", "dataset": f"faces@{faces['version']}", "shards": 2, "slices": 2}
    job = ok(vendor.call("ml_engineer", "POST", "/v1/models", json=train), 202)
    trained = wait(vendor, "ml_engineer", f"/v1/jobs/{job['id']}", {"succeeded", "failed"})
    assert trained["state"] == "succeeded", trained["error"]

    # -- one user asks to be erased: the app's officer plans, requests, and it runs ----------
    plan = ok(app.call("privacy_officer", "POST", "/v1/erasures/plan", json={"kind": "subject", "id": ASKER}))
    assert plan["counts"]["photos"] == PHOTOS_EACH and plan["counts"]["recipients"] == 1
    first = ok(
        app.call(
            "privacy_officer",
            "POST",
            "/v1/erasures",
            json={"kind": "subject", "id": ASKER, "reason": "GDPR Art. 17 request 2026-001"},
        ),
        202,
    )
    assert first["state"] == "approved"  # one subject: the requester's own approval is enough
    first = wait(app, "auditor", f"/v1/erasures/{first['id']}", {"completed", "failed"})
    assert first["state"] == "completed", first["error"]
    assert [r["state"] for r in first["recipients"]] == ["completed"]
    assert ASKER not in json.dumps(first)

    # -- the regulator: disgorge the whole transfer; the two-person rule ---------------------
    order = {
        "kind": "transfer",
        "id": transfer["transfer"],
        "reason": "regulator order 2026-17: disgorge the 2014 transfer",
    }
    second = ok(app.call("privacy_officer", "POST", "/v1/erasures", json=order), 202)
    assert (second["state"], second["approvals_required"]) == ("planned", 1)
    path = f"/v1/erasures/{second['id']}"
    assert app.call("privacy_officer", "POST", f"{path}/approve", json={"reason": "mine"}).status_code == 403
    assert app.call("ml_engineer", "POST", f"{path}/approve", json={}).status_code == 403
    approved = ok(app.call("officer-2", "POST", f"{path}/approve", json={"reason": "checked the order"}), 202)
    assert approved["state"] == "approved"
    second = wait(app, "auditor", path, {"completed", "failed"})
    assert second["state"] == "completed", second["error"]
    assert [r["state"] for r in second["recipients"]] == ["completed"]

    # -- proof: the certificate names the approver and verifies; the audit names everyone ----
    certificate = ok(app.call("auditor", "GET", f"{path}/certificate"))
    officer_2 = ok(app.call("officer-2", "GET", "/v1/me"))
    assert [a["principal"] for a in certificate["body"]["approvals"]] == [officer_2["id"]]
    assert ok(app.call("auditor", "POST", "/v1/certificates/verify", json={"certificate": certificate}))["ok"]
    certificate["body"]["counts"]["items_at_recipients"] += 1
    assert not ok(app.call("auditor", "POST", "/v1/certificates/verify", json={"certificate": certificate}))[
        "ok"
    ]
    for api in (app, vendor):
        assert ok(api.call("auditor", "GET", "/v1/audit/verify"))["ok"]
    actors = {
        e["actor"]
        for e in ok(app.call("auditor", "GET", "/v1/audit/events", params={"limit": 1000}))["items"]
    }
    assert {ROLE_USERS["privacy_officer"], ROLE_USERS["ml_engineer"], "officer-2"} <= actors
    # the vendor's model forgot the app's users: every version after the erasures was unlearned
    models = ok(vendor.call("viewer", "GET", "/v1/models", params={"name": "face-id"}))["items"]
    assert any(m["unlearned_from"] for m in models), models
