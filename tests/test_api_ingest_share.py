"""Photos in and out over the API: uploads, the ingest job, sharing, bundles, legacy transfers.

Real uvicorn on 127.0.0.1 (``serve_api``), real archives, two real workspaces for sharing.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from conftest import Api, add_source_with_policy, serve_api, sha, tiny_photos
from disgorge import Workspace, uploads

pytest.importorskip("uvicorn")


def _zip(folder: Path, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*.jpg")):
            archive.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _upload(api: Api, who: str, data: bytes) -> str:
    answer = api.call(who, "POST", "/v1/uploads", content=data)
    assert answer.status_code == 201, answer.text
    assert answer.json()["bytes"] == len(data)
    upload: str = answer.json()["upload"]
    return upload


def _wait_job(api: Api, who: str, job_id: str, timeout: float = 120) -> dict[str, Any]:
    return api.wait(who, f"/v1/jobs/{job_id}", ("succeeded", "failed"), timeout)


def _ingest(api: Api, who: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = api.call(who, "POST", "/v1/ingest", json=body)
    assert answer.status_code == 202, answer.text
    return _wait_job(api, who, answer.json()["id"])


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    with Workspace.init(tmp_path / "ws", actor="tester", at="2013-01-01") as ws:
        add_source_with_policy(ws, "app")
    return tmp_path / "ws"


def test_an_uploaded_archive_is_ingested_by_a_job_and_the_upload_is_wiped(
    workspace: Path, tmp_path: Path
) -> None:
    photos = tiny_photos(tmp_path / "photos", ["ann_example", "bob_example"], 3)
    with serve_api(workspace) as api:
        archive = _upload(api, "privacy_officer", _zip(photos, {"../evil.jpg": b"x", "notes.txt": b"hello"}))
        job = _ingest(
            api, "privacy_officer", {"source": "app", "archive": archive, "subject_from": "dirname"}
        )
        assert job["state"] == "succeeded", job["error"]
        result = job["result"]
        assert (result["ingested"], result["rejected"]) == (6, 2), result
        # the job keeps counts and reasons, never the archive's member names
        assert "evil" not in str(job) and "notes" not in str(job)
        assert job["total"] and job["done"] == job["total"] >= result["ingested"]  # progress reached the end
        # used once: the upload is gone, a second ingest of it is a 404
        assert not list(uploads_dir_of(workspace).glob(archive + "*"))
        again = api.call("privacy_officer", "POST", "/v1/ingest", json={"source": "app", "archive": archive})
        assert again.status_code == 404
        # an ML engineer may not bring photos in
        assert api.call("ml_engineer", "POST", "/v1/uploads", content=b"x").status_code == 403
        status = api.call("viewer", "GET", "/v1/status").json()
        assert status["assets"] == 6
    with Workspace.open(workspace) as ws:
        stored = {sha(p.read_bytes()) for p in photos.rglob("*.jpg")}
        assert all(ws.read_asset(digest) for digest in stored)


def test_an_unused_upload_is_wiped_by_gc_and_bad_uploads_are_refused(workspace: Path) -> None:
    with serve_api(workspace) as api:
        upload = _upload(api, "admin", b"PK not really a zip")
        assert api.call("admin", "POST", "/v1/uploads", content=b"").status_code == 422
        bad = _ingest(api, "admin", {"source": "app", "archive": upload})
        assert bad["state"] == "failed" and bad["error"], bad
        unused = _upload(api, "admin", b"some bytes nobody ingests")
        assert (
            api.call("admin", "POST", "/v1/ingest", json={"source": "nope", "archive": "upl_x"}).status_code
            == 404
        )
    path = uploads_dir_of(workspace) / unused
    assert path.exists()
    old = time.time() - 7200
    os.utime(path, (old, old))
    with Workspace.open(workspace) as ws:
        report = ws.gc(grace_seconds=3600)
    assert report.temporaries >= 1 and not path.exists()


def test_a_dataset_is_shared_as_a_bundle_and_received_by_the_recipient_over_the_api(tmp_path: Path) -> None:
    photos = tiny_photos(tmp_path / "photos", ["cat_example", "dan_example"], 2)
    with Workspace.init(tmp_path / "app", actor="tester", at="2013-01-01") as app:
        add_source_with_policy(app, "app", allows=("ai_training", "third_party_sharing"))
        app.ingest(photos, source="app", subject_from="dirname", at="2013-02-01")
        consent = tmp_path / "consent.csv"
        consent.write_text(
            "subject,purpose,decision,at\n"
            + "".join(
                f"{p},{u},granted,2013-01-05\n"
                for p in ("cat_example", "dan_example")
                for u in ("ai_training", "third_party_sharing")
            )
        )
        app.import_consent(consent, at="2013-01-05")
        app.build_dataset("faces", purpose="ai_training", at="2013-03-01")
        app_key = app.public_key_pem()
    with Workspace.init(tmp_path / "vendor", actor="tester", at="2013-01-01") as vendor:
        vendor_key = vendor.public_key_pem()
        vendor.add_peer("sender", "app", public_key=app_key, at="2013-01-01")
    with Workspace.open(tmp_path / "app") as app:
        app.add_peer("recipient", "vendor", public_key=vendor_key, agreement="DSA-1")
    with serve_api(tmp_path / "app") as app_api, serve_api(tmp_path / "vendor") as vendor_api:
        refused = app_api.call(
            "privacy_officer",
            "POST",
            "/v1/transfers",
            json={"dataset": "faces", "to": "vendor", "purposes": ["biometric_processing"]},
        )
        assert refused.status_code == 403, refused.text
        shared = app_api.call(
            "privacy_officer",
            "POST",
            "/v1/transfers",
            json={"dataset": "faces", "to": "vendor", "purposes": ["ai_training"]},
        )
        assert shared.status_code == 201, shared.text
        report = shared.json()
        assert report["items"] == 4 and report["download"] and report["bundle"] is None
        bundle = app_api.call("privacy_officer", "GET", f"/v1/files/{report['download']}")
        assert bundle.status_code == 200 and bundle.content[:2] == b"PK"
        assert app_api.call("privacy_officer", "GET", f"/v1/files/{report['download']}").status_code == 404
        upload = _upload(vendor_api, "privacy_officer", bundle.content)
        received = vendor_api.call("privacy_officer", "POST", "/v1/bundles", json={"upload": upload})
        assert received.status_code == 201, received.text
        assert received.json()["ingested"] == 4 and received.json()["transfer"] == report["transfer"]


def uploads_dir_of(root: Path) -> Path:
    with Workspace.open(root) as ws:
        return uploads.uploads_dir(ws.ctx)
