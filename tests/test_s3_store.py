"""A workspace whose sealed blobs live on S3-compatible object storage (``--store s3://...``).

The server is moto's S3 server (``python -m moto.server``), started here bound to
127.0.0.1: a mock of AWS's S3 API, and the only S3 implementation installable on these
machines. disgorge talks to it through s3fs exactly as it would to AWS S3 or MinIO (the
same API calls: PutObject, ListObjectVersions, DeleteObjects, GetObjectLockConfiguration);
what moto cannot show is a real provider's behaviour below the API (replication, storage
media). The checks look at the bucket directly with boto3, not through disgorge.

Without moto (or s3fs, or boto3) the module is skipped, saying so, unless
``DISGORGE_REQUIRE_S3`` is set: then it fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    add_source_with_policy,
    cli,
    free_port,
    run_cli_many,
    sha,
    sql,
    tiny_photos,
    write_people,
)
from disgorge import Workspace
from disgorge.errors import ErasureBlocked, WorkspaceError
from disgorge.signing import verify_certificate
from disgorge.vault.s3 import NO_OVERWRITE, NOT_REACHED

try:
    import boto3
    import moto  # noqa: F401 - the server below is moto's
    import s3fs  # noqa: F401 - the s3 extra
except ImportError as exc:  # pragma: no cover - depends on the install
    if os.environ.get("DISGORGE_REQUIRE_S3"):
        raise
    pytest.skip(
        f"{exc.name} is not installed (pip install 'disgorge[s3]' moto[server]); "
        "set DISGORGE_REQUIRE_S3=1 to fail instead",
        allow_module_level=True,
    )

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "disgorge-test-key",
    "AWS_SECRET_ACCESS_KEY": "disgorge-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    # nothing from the tester's own ~/.aws, and no instance metadata lookups
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a process of its own), with test credentials in the
    environment (the CLI's processes inherit them)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto's S3 server did not answer on {url}")
                time.sleep(0.1)
        with pytest.MonkeyPatch.context() as mp:
            for name in [n for n in os.environ if n.startswith("AWS_")]:
                mp.delenv(name)
            for name, value in CREDENTIALS.items():
                mp.setenv(name, value)
            yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def client(endpoint: str) -> Any:
    """boto3's S3 client on the server: the tests' own view of the bucket."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


NewBucket = Callable[..., str]


@pytest.fixture
def new_bucket(endpoint: str) -> NewBucket:
    """A factory of fresh buckets: ``new_bucket(versioned=True, locked=False)`` -> name."""

    def make(*, versioned: bool = False, locked: bool = False) -> str:
        name = "disgorge-" + secrets.token_hex(6)
        s3 = client(endpoint)
        s3.create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if locked else {}))
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    return make


def versions(endpoint: str, bucket: str, prefix: str = "") -> tuple[list[dict], list[dict]]:
    """Every object version and delete marker under ``prefix``, listed directly."""
    found: tuple[list[dict], list[dict]] = ([], [])
    for page in client(endpoint).get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        found[0].extend(page.get("Versions", []))
        found[1].extend(page.get("DeleteMarkers", []))
    return found


def s3_workspace(tmp_path: Path, endpoint: str, bucket: str) -> Workspace:
    """A workspace with its blobs under s3://bucket/ws, source lfw, 3 people x 2 photos."""
    ws = Workspace.init(
        tmp_path / "ws", actor="tester", at="2013-01-01", store=f"s3://{bucket}/ws", store_endpoint=endpoint
    )
    add_source_with_policy(ws, "lfw", text=b"p")
    report = ws.ingest(
        write_people(tmp_path / "photos", 2), source="lfw", subject_from="dirname", at="2013-06-01"
    )
    assert report.ok and report.ingested == 6, report.to_dict()
    return ws


def blob_keys(ws: Workspace, person: str | None = None) -> list[str]:
    """The object keys (under the bucket) of the photos' blobs, of one person or all."""
    rows = sql(ws, "SELECT a.blob_key, s.ref FROM assets a JOIN subjects s ON s.id = a.owner_id")
    ref = ws.subject(person)["ref"] if person else None
    return [f"ws/{k[:2]}/{k[2:4]}/{k}" for k, r in rows if k and (ref is None or r == ref)]


# -- init, the URL, credentials ---------------------------------------------------------------
def test_init_with_an_s3_store_ingests_and_reads_back(
    endpoint: str, new_bucket: NewBucket, tmp_path: Path
) -> None:
    bucket = new_bucket()
    out = cli(
        "init",
        tmp_path / "ws",
        "--json",
        "--store-endpoint",
        endpoint,
        env={"DISGORGE_STORE": f"s3://{bucket}/ws/"},
    )
    assert out.returncode == 0, out.stderr
    home = tmp_path / "ws" / ".disgorge"
    config = (home / "config.toml").read_text()
    assert f'url = "s3://{bucket}/ws"' in config and f'endpoint = "{endpoint}"' in config
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in config  # credentials stay in the environment
    assert CREDENTIALS["AWS_ACCESS_KEY_ID"] not in config
    assert json.loads(out.stdout)["store"] == f"s3://{bucket}/ws"
    photos = write_people(tmp_path / "photos", 2)
    out = cli("source", "add", "lfw", "-w", tmp_path / "ws")
    assert out.returncode == 0, out.stderr
    out = cli("ingest", photos, "-s", "lfw", "--subject-from", "dirname", "-w", tmp_path / "ws")
    assert out.returncode == 0, out.stderr
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.status()["assets"] == 6
        for path in photos.rglob("*.jpg"):
            assert ws.read_asset(sha(path.read_bytes())) == path.read_bytes()  # the sha256 check
        stored, _ = versions(endpoint, bucket, "ws/")
        assert sorted(v["Key"] for v in stored) == sorted(blob_keys(ws))
    assert not any((home / "blobs").rglob("*")) if (home / "blobs").exists() else True


def test_a_url_or_endpoint_carrying_secrets_is_refused_before_anything_is_made(
    endpoint: str, new_bucket: NewBucket, tmp_path: Path
) -> None:
    bucket = new_bucket()
    secret = "wJalrXUtnFEMIK7MDENGbPxRfiCY"
    bad = [
        ("--store", f"s3://AKIAEXAMPLE:{secret}@{bucket}/ws"),
        ("--store", f"s3://{bucket}/ws?X-Amz-Signature={secret}"),
        ("--store", f"/tmp/{secret}"),  # a folder outside the workspace: outside the scan
    ]
    for option, value in bad:
        out = cli("init", tmp_path / "ws", option, value, "--store-endpoint", endpoint)
        assert out.returncode != 0 and "--store" in out.stderr, out.stderr
        assert secret not in out.stderr + out.stdout
        assert not (tmp_path / "ws" / ".disgorge").exists()
    out = cli(
        "init",
        tmp_path / "ws",
        "--store",
        f"s3://{bucket}/ws",
        "--store-endpoint",
        endpoint.replace("http://", f"http://key:{secret}@"),
    )
    assert out.returncode != 0 and "--store-endpoint" in out.stderr and secret not in out.stderr
    assert not (tmp_path / "ws" / ".disgorge").exists()


def test_missing_credentials_and_a_missing_bucket_are_clear_errors(
    endpoint: str, new_bucket: NewBucket, tmp_path: Path
) -> None:
    bucket = new_bucket()
    bare = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    store = ["--store", f"s3://{bucket}/ws", "--store-endpoint", endpoint]
    out = cli("init", tmp_path / "ws", *store, env=bare)
    assert out.returncode != 0
    assert "no AWS credentials" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "ws" / ".disgorge").exists()  # nothing half-made is left
    out = cli(
        "init", tmp_path / "ws", "--store", "s3://no-such-bucket-disgorge/ws", "--store-endpoint", endpoint
    )
    assert out.returncode != 0 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    # a workspace made with credentials, opened without them
    assert cli("init", tmp_path / "ws", *store).returncode == 0
    out = cli("status", "-w", tmp_path / "ws", env=bare)
    assert out.returncode != 0 and "no AWS credentials" in out.stderr and "Traceback" not in out.stderr
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AWS_ACCESS_KEY_ID")
        mp.delenv("AWS_SECRET_ACCESS_KEY")
        with pytest.raises(WorkspaceError, match="no AWS credentials"):
            Workspace.open(tmp_path / "ws")


# -- erasure -----------------------------------------------------------------------------------
def test_an_erasure_on_a_versioned_bucket_leaves_no_version_or_delete_marker(
    endpoint: str, new_bucket: NewBucket, tmp_path: Path
) -> None:
    bucket = new_bucket(versioned=True)
    ws = s3_workspace(tmp_path, endpoint, bucket)
    try:
        ada = blob_keys(ws, "Ada_Lovelace")
        others = sorted(set(blob_keys(ws)) - set(ada))
        assert len(ada) == 2 and len(others) == 4
        s3 = client(endpoint)
        # older versions and a delete marker, as a bucket's history has them: a second PUT of
        # the same bytes, and a plain DELETE (a marker) followed by the bytes put back
        for key in ada:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            s3.delete_object(Bucket=bucket, Key=key)
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        held, markers = versions(endpoint, bucket, "ws/")
        assert sum(v["Key"] in ada for v in held) == 6 and sum(m["Key"] in ada for m in markers) == 2
        photos = {p.name: p.read_bytes() for p in (tmp_path / "photos").rglob("*.jpg")}

        done = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17")
        assert done["state"] == "completed"
        held, markers = versions(endpoint, bucket, "ws/")
        assert not [v for v in held if v["Key"] in ada] and not [m for m in markers if m["Key"] in ada]
        assert sorted(v["Key"] for v in held) == others and not markers  # the others untouched
        for name, data in photos.items():
            if not name.startswith("Ada_Lovelace"):
                assert ws.read_asset(sha(data)) == data

        cert = ws.erasure_certificate(done["id"])
        assert verify_certificate(cert, ws.public_key_pem()).ok
        verification = cert["body"]["verification"]
        assert verification["ok"] and verification["forensic_scan"]["hits"] == []
        listed = verification["forensic_scan"]["blob_store"]
        assert listed["store"] == f"s3://{bucket}/ws" and listed["versioning"] == "Enabled"
        assert listed["objects_checked"] == 2
        assert listed["versions_left"] == 0 and listed["delete_markers_left"] == 0
        assert listed["overwrite"] == NO_OVERWRITE and listed["not_scanned"] == NOT_REACHED
        step = next(s for s in cert["body"]["steps"] if s["step"] == "delete_blobs")["summary"]
        assert step["blobs_deleted"] == 2 and step["overwritten"] == 0 and step["overwrite"] == NO_OVERWRITE
        assert step["object_versions_deleted"] == 6 and step["delete_markers_deleted"] == 2
        later = ws.verify_erasure(done["id"])  # the later check lists the versions again
        assert later["ok"] and later["blob_store"]["objects_checked"] == 2
        assert later["blob_store"]["versions_left"] == 0 and later["blob_store"]["delete_markers_left"] == 0
        again = ws.ingest(tmp_path / "photos" / "Ada_Lovelace", source="lfw", subject_from="dirname")
        assert again.ingested == 0 and len(again.rejected) == 2  # erasure is sticky
        assert ws.verify_audit().ok
    finally:
        ws.close()


def test_a_version_left_behind_fails_the_verification(
    endpoint: str, new_bucket: NewBucket, tmp_path: Path
) -> None:
    """The verifier lists, it does not trust the delete: a version put back between the
    deletion and the verification (as a replication or a second writer could) is found."""
    from disgorge.erasure.steps import inject

    bucket = new_bucket(versioned=True)
    ws = s3_workspace(tmp_path, endpoint, bucket)
    try:
        ada = blob_keys(ws, "Ada_Lovelace")
        s3 = client(endpoint)
        saved = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in ada}

        def put_back() -> None:
            s3.put_object(Bucket=bucket, Key=ada[0], Body=saved[ada[0]])

        with inject("delete_blobs", after=put_back):
            done = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17")
        listed = done["verification"]["forensic_scan"]["blob_store"]
        assert listed["versions_left"] == 1 and not done["verification"]["ok"]
        assert ws.verify_erasure(done["id"])["blob_store"]["versions_left"] == 1
    finally:
        ws.close()


def test_an_object_locked_bucket_refuses_the_erasure_and_changes_nothing(
    endpoint: str, new_bucket: NewBucket, tmp_path: Path
) -> None:
    bucket = new_bucket(locked=True)
    ws = s3_workspace(tmp_path, endpoint, bucket)
    try:
        ada = blob_keys(ws, "Ada_Lovelace")
        s3 = client(endpoint)
        for key in ada:  # one of them under a legal hold, as a locked bucket allows
            s3.put_object_legal_hold(Bucket=bucket, Key=key, LegalHold={"Status": "ON"})
        before = versions(endpoint, bucket, "ws/")
        events = len(ws.audit_events(limit=1000))
        with pytest.raises(ErasureBlocked, match="Object Lock") as refused:
            ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17")
        assert "Ada_Lovelace" not in str(refused.value)
        assert ws.erasures() == []  # no request recorded, nothing claimed
        assert len(ws.audit_events(limit=1000)) == events
        assert versions(endpoint, bucket, "ws/") == before
        for path in (tmp_path / "photos").rglob("*.jpg"):
            assert ws.read_asset(sha(path.read_bytes())) == path.read_bytes()
        out = cli(
            "erase", "--subject", "Ada_Lovelace", "--reason", "GDPR Art. 17", "--yes", "-w", tmp_path / "ws"
        )
        assert out.returncode != 0 and "Object Lock" in out.stderr and "Traceback" not in out.stderr
        for key in ada:
            s3.put_object_legal_hold(Bucket=bucket, Key=key, LegalHold={"Status": "OFF"})
    finally:
        ws.close()


# -- many processes, gc ------------------------------------------------------------------------
def test_two_ingests_at_once_both_land(endpoint: str, new_bucket: NewBucket, tmp_path: Path) -> None:
    bucket = new_bucket(versioned=True)
    with Workspace.init(
        tmp_path / "ws", actor="tester", store=f"s3://{bucket}/ws", store_endpoint=endpoint
    ) as ws:
        add_source_with_policy(ws, "lfw", text=b"p")
    a = tiny_photos(tmp_path / "a", ["Ada_Lovelace", "Alan_Turing"], 10)
    b = tiny_photos(tmp_path / "b", ["Skip_0", "Skip_1", "Grace_Hopper", "Edsger_Dijkstra"], 10)
    for skip in ("Skip_0", "Skip_1"):
        shutil.rmtree(b / skip)
    outs = run_cli_many(
        *(
            ["ingest", folder, "-s", "lfw", "--subject-from", "dirname", "-w", tmp_path / "ws"]
            for folder in (a, b)
        )
    )
    for out in outs:
        assert out.returncode == 0, out.stderr
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.status()["assets"] == 40
        for path in [*a.rglob("*.jpg"), *b.rglob("*.jpg")]:
            assert ws.read_asset(sha(path.read_bytes())) == path.read_bytes()
        held, markers = versions(endpoint, bucket, "ws/")
        assert sorted(v["Key"] for v in held) == sorted(blob_keys(ws)) and not markers
        assert ws.verify_audit().ok


def test_gc_removes_an_orphan_blob_with_every_version(
    endpoint: str, new_bucket: NewBucket, tmp_path: Path
) -> None:
    bucket = new_bucket(versioned=True)
    ws = s3_workspace(tmp_path, endpoint, bucket)
    try:
        orphan = secrets.token_hex(32)
        key = f"ws/{orphan[:2]}/{orphan[2:4]}/{orphan}"
        s3 = client(endpoint)
        s3.put_object(Bucket=bucket, Key=key, Body=b"left by a crash")
        s3.put_object(Bucket=bucket, Key=key, Body=b"left by a crash")
        report = ws.gc(grace_seconds=0)
        assert report.orphan_blobs == 1
        held, markers = versions(endpoint, bucket, "ws/")
        assert not [v for v in held if v["Key"] == key] and not markers
        assert sorted(v["Key"] for v in held) == sorted(blob_keys(ws))
        for path in (tmp_path / "photos").rglob("*.jpg"):
            assert ws.read_asset(sha(path.read_bytes())) == path.read_bytes()
    finally:
        ws.close()


def test_a_local_workspace_certificate_is_as_before(tmp_path: Path) -> None:
    """The folder store's erasure says what it always said: no ``blob_store`` entry, and
    the delete_blobs step's summary as before."""
    with Workspace.init(tmp_path / "ws", actor="tester") as ws:
        add_source_with_policy(ws, "lfw", text=b"p")
        ws.ingest(write_people(tmp_path / "photos", 1), source="lfw", subject_from="dirname")
        done = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17")
        body = ws.erasure_certificate(done["id"])["body"]
        assert "blob_store" not in body["verification"]["forensic_scan"]
        step = next(s for s in body["steps"] if s["step"] == "delete_blobs")["summary"]
        assert set(step) - {"perceptual_hashes_kept"} == {"blobs_deleted", "overwritten"}


def test_a_request_planned_before_the_blobs_moved_to_a_locked_bucket_refuses_to_run(
    endpoint: str, new_bucket: NewBucket, tmp_path: Path
) -> None:
    """A bucket with Object Lock met between planning and running (moto enables Object
    Lock only on an empty bucket, so here the blobs move to one): the run refuses before
    it claims the request or runs a step."""
    bucket, locked = new_bucket(versioned=True), new_bucket(locked=True)
    ws = s3_workspace(tmp_path, endpoint, bucket)
    planned = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17", execute=False)
    keys = blob_keys(ws)
    ws.close()
    s3 = client(endpoint)
    for key in keys:
        s3.copy_object(Bucket=locked, Key=key, CopySource={"Bucket": bucket, "Key": key})
    config = tmp_path / "ws" / ".disgorge" / "config.toml"
    config.write_text(config.read_text().replace(f"s3://{bucket}/ws", f"s3://{locked}/ws"))
    with Workspace.open(tmp_path / "ws") as ws:
        before = versions(endpoint, locked, "ws/")
        with pytest.raises(ErasureBlocked, match="Object Lock"):
            ws.erasure_approve(planned["id"])
        shown = ws.erasure(planned["id"])
        assert shown["state"] == "approved"  # recorded as approved, never claimed nor run
        assert all(s["done_at"] is None for s in shown["steps"]), shown["steps"]
        assert versions(endpoint, locked, "ws/") == before
        for path in (tmp_path / "photos").rglob("*.jpg"):
            assert ws.read_asset(sha(path.read_bytes())) == path.read_bytes()


def test_an_erasure_failed_between_two_blobs_resumes_to_no_version_left(
    endpoint: str, new_bucket: NewBucket, tmp_path: Path
) -> None:
    from disgorge.erasure.steps import inject

    bucket = new_bucket(versioned=True)
    ws = s3_workspace(tmp_path, endpoint, bucket)
    try:
        ada = blob_keys(ws, "Ada_Lovelace")

        def gone() -> None:
            raise OSError("the network went away")

        with inject("delete_blobs", blob_deleted=gone), pytest.raises(OSError, match="went away"):
            ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17")
        [request] = [e["id"] for e in ws.erasures() if e["state"] == "failed"]
        held, _ = versions(endpoint, bucket, "ws/")
        assert sum(v["Key"] in ada for v in held) == 1  # the first blob went, the second not yet
        done = ws.erasure_resume(request)
        assert done["state"] == "completed" and done["verification"]["ok"]
        held, markers = versions(endpoint, bucket, "ws/")
        assert not [v for v in held if v["Key"] in ada] and not markers
        assert done["verification"]["forensic_scan"]["blob_store"]["objects_checked"] == 2
    finally:
        ws.close()
