"""Looking photos up over the API, garbage collection, and erasure documents carried by hand.

Real uvicorn on 127.0.0.1 (``serve_api``) over copies of the synthetic workspace (faces
analysed, a SISA model trained) and a real app/vendor pair without an endpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import Api, Syn, add_source_with_policy, serve_api, sha, tiny_photos
from disgorge import Workspace

pytest.importorskip("uvicorn")


def _upload(api: Api, who: str, data: bytes) -> str:
    answer = api.call(who, "POST", "/v1/uploads", content=data)
    assert answer.status_code == 201, answer.text
    upload: str = answer.json()["upload"]
    return upload


def wait_state(api: Api, path: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
    return api.wait("auditor", path, states, timeout)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_copies_faces_and_predictions_need_the_scopes_that_identify_people(syn: Syn, tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    shutil.copytree(syn.template, tmp_path / "ws")
    ada = syn.of("Ada_Lovelace")["Ada_Lovelace_1.jpg"]
    with Workspace.open(tmp_path / "ws") as ws:
        ada_ref = ws.subject_ref("Ada_Lovelace")
        expected = ws.predict("faceid", ada)  # what the Python API says
    with serve_api(tmp_path / "ws") as api:
        # an exact copy is found by anyone who may read photo metadata; the upload is wiped
        upload = _upload(api, "privacy_officer", ada)
        found = ok(api.call("auditor", "POST", "/v1/find", json={"upload": upload}))
        assert found["by"] == "copy" and found["matches"][0]["sha256"] == sha(ada)
        assert api.call("auditor", "POST", "/v1/find", json={"upload": upload}).status_code == 404
        assert api.call("viewer", "POST", "/v1/find", json={"upload": "upl_" + "0" * 32}).status_code == 403
        # the same person, and a model's guess, are face recognition: subject:read too
        upload = _upload(api, "privacy_officer", ada)
        refused = api.call("ml_engineer", "POST", "/v1/find", json={"upload": upload, "by": "face"})
        assert refused.status_code == 403 and "subject:read" in refused.json()["detail"]
        faces = ok(api.call("auditor", "POST", "/v1/find", json={"upload": upload, "by": "face"}))
        assert faces["matches"] and faces["matches"][0]["owner"] == ada_ref
        upload = _upload(api, "privacy_officer", ada)
        assert (
            api.call("ml_engineer", "POST", "/v1/models/faceid/predict", json={"upload": upload}).status_code
            == 403
        )
        guess = ok(api.call("privacy_officer", "POST", "/v1/models/faceid/predict", json={"upload": upload}))
        assert guess == expected and guess["faces"]
        # gc is an admin's
        assert api.call("privacy_officer", "POST", "/v1/gc", json={}).status_code == 403
        report = ok(api.call("admin", "POST", "/v1/gc", json={"dry_run": True}))
        assert report["orphan_blobs"] == 0


def test_a_recipient_without_an_endpoint_is_reached_with_documents_carried_by_hand(tmp_path: Path) -> None:
    photos = tiny_photos(tmp_path / "photos", ["eve_example", "fay_example"], 2)
    with (
        Workspace.init(tmp_path / "app", actor="tester", at="2013-01-01") as app,
        Workspace.init(tmp_path / "vendor", actor="tester", at="2013-01-01") as vendor,
    ):
        add_source_with_policy(app, "app", allows=("ai_training", "third_party_sharing"))
        app.ingest(photos, source="app", subject_from="dirname", at="2013-02-01")
        app.build_dataset("faces", purpose="ai_training", at="2013-03-01")
        app.add_peer("recipient", "vendor", public_key=vendor.public_key_pem(), agreement="DSA-1")
        vendor.add_peer("sender", "app", public_key=app.public_key_pem(), at="2013-01-01")
        app.share(
            "faces@1.0.0", to="vendor", purposes=["ai_training"], out=tmp_path / "b.zip", at="2013-04-01"
        )
        vendor.receive_bundle(tmp_path / "b.zip", at="2013-04-02")
    with serve_api(tmp_path / "app") as app_api, serve_api(tmp_path / "vendor") as vendor_api:
        body = {"kind": "subject", "id": "eve_example", "reason": "GDPR Art. 17 request 7"}
        created = ok(app_api.call("privacy_officer", "POST", "/v1/erasures", json=body), 202)
        path = f"/v1/erasures/{created['id']}"
        view = wait_state(app_api, path, {"awaiting_recipients", "completed", "failed"})
        assert view["state"] == "awaiting_recipients", view
        request = ok(app_api.call("privacy_officer", "GET", f"{path}/recipients/vendor/request"))
        assert app_api.call("auditor", "GET", f"{path}/recipients/vendor/request").status_code == 403
        answer = ok(
            vendor_api.call("privacy_officer", "POST", "/v1/inbox/documents", json={"document": request})
        )
        assert answer["body"]["state"] in ("acknowledged", "completed")
        if answer["body"]["state"] != "completed":  # the vendor finishes it, then answers again
            answer = ok(
                vendor_api.call("privacy_officer", "POST", "/v1/inbox/documents", json={"document": request})
            )
        assert answer["body"]["state"] == "completed"
        acked = ok(app_api.call("privacy_officer", "POST", "/v1/erasures/answers", json={"document": answer}))
        assert acked["erasure"]["state"] == "completed" and acked["state"] == "completed"
        # a second request: the vendor never answers, so it is closed by hand
        body = {"kind": "subject", "id": "fay_example", "reason": "GDPR Art. 17 request 8"}
        second = ok(app_api.call("privacy_officer", "POST", "/v1/erasures", json=body), 202)
        path = f"/v1/erasures/{second['id']}"
        assert (
            wait_state(app_api, path, {"awaiting_recipients", "completed", "failed"})["state"]
            == "awaiting_recipients"
        )
        closed = ok(
            app_api.call(
                "privacy_officer",
                "POST",
                f"{path}/recipients/vendor/close",
                json={"reason": "no answer in 30 days"},
            )
        )
        assert closed["state"] == "closed", closed
        ok(app_api.call("privacy_officer", "POST", f"{path}/resume"), 202)
        view = wait_state(app_api, path, {"completed", "failed"})
        assert view["state"] == "completed", view
