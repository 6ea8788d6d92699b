"""Erasure that reaches a recipient over real HTTP: two workspaces, the recipient's
``disgorge serve`` app run by uvicorn on loopback, and the faults of issue #7.

The sender "app" shared a dataset of three people (two photos each) with "vendor",
which received the bundle. Each test works on fresh copies of both workspaces; the
vendor's server listens on one port chosen for this module (the sender registered it).
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import count, free_port, raw_scan, sha
from disgorge import Workspace
from disgorge.api import running_server
from disgorge.catalog.models import Asset, AuditEvent, ErasureRequest, IncomingRequest, TransferItem
from disgorge.erasure.certificate import verify_certificate
from disgorge.errors import DisgorgeError
from disgorge.samples import synthetic_photo
from disgorge.sharing import inbox
from disgorge.sharing.documents import REQUEST_TYPE, RESPONSE_TYPE, sign_document, verify_document
from disgorge.sharing.query import authorization

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
FORGET = "user-1@x.example"
PEOPLE = 3
PER_PERSON = 2
REASON = "GDPR Art. 17 request #7"


PORT = free_port()
BASE = f"http://127.0.0.1:{PORT}"


def call(
    method: str, path: str, doc: Any = None, *, raw: bytes | None = None, auth: str | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else None)
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    request = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            kind = response.headers.get("content-type", "")
            return response.status, json.loads(body) if "json" in kind else body
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Server:
    """The vendor's app under uvicorn in a background thread, on PORT."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stack: ExitStack | None = None

    def start(self) -> None:
        self.stack = ExitStack()
        url = self.stack.enter_context(running_server(self.root, port=PORT, actor="vendor-server"))
        assert url == BASE

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.close()
            self.stack = None


@dataclass
class Template:
    root: Path
    photos: dict[str, bytes]  # file name -> bytes
    owner: dict[str, str]  # file name -> subject

    def of(self, subject: str) -> dict[str, bytes]:
        return {n: d for n, d in self.photos.items() if self.owner[n] == subject}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("sharing-http")
    folder = root / "photos"
    folder.mkdir()
    photos, owner, rows = {}, {}, ["path,subject"]
    for p in range(PEOPLE):
        for i in range(PER_PERSON):
            name = f"{p}_{i}.jpg"
            photos[name] = synthetic_photo(p, i, size=96)
            owner[name] = f"user-{p}@x.example"
            (folder / name).write_bytes(photos[name])
            rows.append(f"{name},{owner[name]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    purposes = ("third_party_sharing", "ai_training", "biometric_processing")
    (root / "consent.csv").write_text(
        "subject,purpose,decision,at\n"
        + "".join(f"user-{p}@x.example,{pp},granted,2020-01-01\n" for p in range(PEOPLE) for pp in purposes)
    )
    app = Workspace.init(root / "app", actor="app-dpo", at="2020-01-01")
    vendor = Workspace.init(root / "vendor", actor="vendor-dpo", at="2020-01-01")
    app.add_source("app", at="2020-01-01")
    app.add_policy(
        "app", "1", text=b"policy", effective_from="2020-01-01", allows=[*purposes], at="2020-01-01"
    )
    app.import_consent(root / "consent.csv", at="2020-01-01")
    app.ingest(folder, source="app", manifest=root / "manifest.csv", at="2020-02-01")
    app.build_dataset("faces", purpose="ai_training", at="2020-03-01")
    app.add_peer("recipient", "vendor", public_key=vendor.public_key_pem(), endpoint=BASE)
    vendor.add_peer("sender", "app", public_key=app.public_key_pem())
    vendor.close()
    shutil.copytree(root / "vendor", root / "vendor-empty")  # registered the sender, received nothing
    vendor = Workspace.open(root / "vendor", actor="vendor-dpo")
    app.share(
        "faces@1.0.0",
        to="vendor",
        purposes=["ai_training", "biometric_processing"],
        out=root / "bundle.zip",
        at="2020-04-01",
    )
    vendor.receive_bundle(root / "bundle.zip")
    app.close()
    vendor.close()
    return Template(root, photos, owner)


@dataclass
class Pair:
    app: Workspace
    vendor: Workspace
    vendor_root: Path
    server: Server
    template: Template


def _pair(template: Template, tmp_path: Path, vendor_copy: str) -> Iterator[Pair]:
    shutil.copytree(template.root / "app", tmp_path / "app")
    shutil.copytree(template.root / vendor_copy, tmp_path / "vendor")
    app = Workspace.open(tmp_path / "app", actor="app-dpo")
    vendor = Workspace.open(tmp_path / "vendor", actor="vendor-dpo")
    server = Server(tmp_path / "vendor")
    try:
        yield Pair(app, vendor, tmp_path / "vendor", server, template)
    finally:
        server.stop()
        app.close()
        vendor.close()


@pytest.fixture
def pair(template: Template, tmp_path: Path) -> Iterator[Pair]:
    yield from _pair(template, tmp_path, "vendor")


@pytest.fixture
def pair_empty(template: Template, tmp_path: Path) -> Iterator[Pair]:
    """The vendor registered the sender but never received the bundle."""
    yield from _pair(template, tmp_path, "vendor-empty")


def state(pair: Pair, nonce: str) -> tuple[int, Any]:
    """The recipient's answer about ``nonce``, asked as the sender (a signed query)."""
    signed = authorization(pair.app, nonce, pair.vendor.public_key().public_bytes_raw())
    return call("GET", f"/v1/erasure-requests/{nonce}", auth=signed)


def wait_answered(pair: Pair, nonce: str, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    give_up = time.monotonic() + timeout
    while True:
        status, doc = state(pair, nonce)
        if status != 202 or time.monotonic() > give_up:
            return status, doc
        time.sleep(0.1)


def resign(ws: Workspace, doc: dict[str, Any], change: Any) -> dict[str, Any]:
    """A copy of ``doc`` whose body ``change`` altered, correctly signed by ``ws``."""
    body = copy.deepcopy(doc["body"])
    change(body)
    body.pop("public_key")
    return sign_document(ws, body)


def vendor_assets_of(pair: Pair, subject: str) -> list[str]:
    return [sha(d) for d in pair.template.of(subject).values()]


# -- the story ------------------------------------------------------------------------------
def test_a_subject_erased_at_the_sender_is_erased_at_the_recipient_over_http(pair: Pair) -> None:
    theirs = vendor_assets_of(pair, FORGET)
    for s, d in zip(theirs, pair.template.of(FORGET).values(), strict=True):
        assert pair.vendor.read_asset(s) == d
    needles: dict[str, bytes] = {}
    for name, data in pair.template.of(FORGET).items():
        needles[f"sha256-hex:{name}"] = sha(data).encode()
        needles[f"sha256:{name}"] = bytes.fromhex(sha(data))
        for f in (0.3, 0.5, 0.7):
            needles[f"photo:{name}@{f}"] = data[int(len(data) * f) : int(len(data) * f) + 32]
    home = pair.vendor_root / ".disgorge"
    assert any(label.startswith("sha256-hex") for label, _ in raw_scan(home, needles))  # the scan sees

    pair.server.start()
    view = pair.app.erase("subject", FORGET, reason=REASON, wait=60)

    assert view["state"] == "completed", [(n["state"], n["last_error"]) for n in view["recipients"]]
    [notice] = view["recipients"]
    assert notice["recipient"] == "vendor" and notice["state"] == "completed" and notice["delivery"] == "http"
    cert = pair.app.erasure_certificate(view["id"])
    assert verify_certificate(cert, pair.app.public_key_pem()).ok
    [theirs_cert] = cert["body"]["recipients"]
    assert theirs_cert["state"] == "completed" and theirs_cert["nonce"] == notice["nonce"]
    check = verify_certificate(theirs_cert["certificate"], pair.vendor.public_key_pem())
    assert check.ok, check.reason
    assert len(theirs_cert["certificate"]["body"]["items"]["leaves"]) == PER_PERSON
    # the vendor's own certificate is not the sender's: another key does not verify it
    assert not verify_certificate(theirs_cert["certificate"], pair.app.public_key_pem()).ok
    # the recipient answers the same when asked again
    status, doc = state(pair, notice["nonce"])
    assert status == 200 and verify_document(doc, RESPONSE_TYPE)["certificate"] == theirs_cert["certificate"]

    # at the vendor: their photos are gone, the others are still there
    for s in theirs:
        with pytest.raises(DisgorgeError):
            pair.vendor.read_asset(s)
    for subject in ("user-0@x.example", "user-2@x.example"):
        for s in vendor_assets_of(pair, subject):
            assert pair.vendor.asset(s)["state"] == "active"
    assert count(pair.vendor, Asset, Asset.state == "active") == (PEOPLE - 1) * PER_PERSON
    assert count(pair.vendor, IncomingRequest, IncomingRequest.state == "completed") == 1
    assert raw_scan(home, needles) == []


def test_the_server_documents_itself_and_answers_errors_as_json(pair: Pair) -> None:
    pair.server.start()
    assert call("GET", "/healthz")[0] == 200
    status, pem = call("GET", "/v1/public-key")
    assert status == 200 and pem == pair.vendor.public_key_pem()
    # the OpenAPI document is for authenticated callers only, and there is no /docs page
    assert call("GET", "/openapi.json")[0] == 404 and call("GET", "/docs")[0] == 404
    assert call("GET", "/v1/openapi.json")[0] == 401
    pair.vendor.add_principal("ops", role="viewer")
    token = pair.vendor.create_token("ops")["token"]
    status, spec = call("GET", "/v1/openapi.json", auth=f"Bearer {token}")
    assert status == 200
    paths = spec["paths"]
    assert {"post"} <= set(paths["/v1/erasure-requests"])
    assert {"get"} <= set(paths["/v1/erasure-requests/{nonce}"])
    assert "/v1/public-key" in paths and "/healthz" in paths
    assert "requestBody" in paths["/v1/erasure-requests"]["post"]
    # errors are RFC 9457 problem details, with "error" kept for older senders
    status, doc = state(pair, "0" * 32)
    assert (status, doc["error"], doc["detail"], doc["status"]) == (
        404,
        "no such request",
        "no such request",
        404,
    )
    assert doc["type"].startswith("urn:disgorge:problem:")
    assert call("GET", "/nowhere")[0] == 404 and "error" in call("GET", "/nowhere")[1]
    status, doc = call("POST", "/v1/erasure-requests", raw=b"{not json")
    assert status == 400 and doc["error"] == "the request body is not JSON"
    status, doc = call("POST", "/v1/erasure-requests", {"hello": "world"})
    assert status == 400 and "not a signed disgorge document" in doc["error"]
    # a body over the limit is refused from its declared length, before it is read
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    try:
        conn.putrequest("POST", "/v1/erasure-requests")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(65 * 1024 * 1024))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413 and "larger than" in json.loads(response.read())["error"]
    finally:
        conn.close()


# -- faults ---------------------------------------------------------------------------------
def test_a_request_from_an_unknown_sender_is_refused_and_nothing_is_erased(
    pair: Pair, tmp_path: Path
) -> None:
    stranger = Workspace.init(tmp_path / "stranger", actor="stranger")
    try:
        with pair.vendor.reader() as session:
            fingerprints = sorted(session.scalars(select(TransferItem.fingerprint)))
        body = {
            "type": REQUEST_TYPE,
            "nonce": secrets.token_hex(16),
            "request": "f" * 32,
            "recipient": "vendor",
            "recipient_key": pair.vendor.public_key().public_bytes_raw().hex(),
            "deadline": "2030-01-01T00:00:00Z",
            "reason": "all of it",
            "items": [{"id_kind": "fingerprint", "values": fingerprints}],
        }
        pair.server.start()
        status, doc = call("POST", "/v1/erasure-requests", sign_document(stranger, body))
        assert status == 403 and "no registered sender" in doc["error"]
        # the registered sender's document, altered after signing, is refused too
        forged = sign_document(pair.app, body)
        forged["body"]["reason"] = "something else"
        status, doc = call("POST", "/v1/erasure-requests", forged)
        assert status == 400 and "signature does not match" in doc["error"]
    finally:
        stranger.close()
    assert count(pair.vendor, Asset, Asset.state == "active") == PEOPLE * PER_PERSON
    assert count(pair.vendor, IncomingRequest) == 0 and count(pair.vendor, ErasureRequest) == 0


def test_a_replayed_nonce_is_refused_and_the_same_request_twice_is_one_erasure(pair: Pair) -> None:
    view = pair.app.erase("subject", FORGET, reason=REASON, wait=0.2)  # the vendor is down
    assert view["state"] == "awaiting_recipients" and view["recipients"][0]["state"] == "pending"
    doc = pair.app.erasure_request_document(view["id"], "vendor")
    nonce = doc["body"]["nonce"]
    pair.server.start()

    status, first = call("POST", "/v1/erasure-requests", doc)
    assert status == 202 and verify_document(first, RESPONSE_TYPE)["state"] == "acknowledged"
    status, done = wait_answered(pair, nonce)
    assert status == 200 and done["body"]["state"] == "completed"
    # the sender retrying: the same document is the same request, answered again
    status, again = call("POST", "/v1/erasure-requests", doc)
    assert status == 200 and again["body"]["certificate"] == done["body"]["certificate"]
    # a different request under the used nonce is a replay
    replay = resign(pair.app, doc, lambda b: b.update(deadline="2099-01-01T00:00:00Z"))
    status, refused = call("POST", "/v1/erasure-requests", replay)
    assert status == 409 and "replay" in refused["error"]
    assert count(pair.vendor, ErasureRequest) == 1 and count(pair.vendor, IncomingRequest) == 1
    assert count(pair.vendor, AuditEvent, AuditEvent.action == "erasure.request_replayed") == 1
    assert count(pair.vendor, Asset, Asset.state == "active") == (PEOPLE - 1) * PER_PERSON

    final = pair.app.erasure_resume(view["id"], wait=30)
    assert final["state"] == "completed" and final["recipients"][0]["state"] == "completed"


def test_items_the_recipient_never_received_are_a_signed_not_found(pair_empty: Pair) -> None:
    pair = pair_empty
    pair.server.start()
    view = pair.app.erase("subject", FORGET, reason=REASON, wait=30)
    assert view["state"] == "completed", view
    [notice] = view["recipients"]
    assert notice["state"] == "not_found"
    [theirs] = pair.app.erasure_certificate(view["id"])["body"]["recipients"]
    assert theirs["state"] == "not_found" and theirs["certificate"] is None
    status, doc = state(pair, notice["nonce"])
    body = verify_document(doc, RESPONSE_TYPE)
    assert status == 200 and body["public_key"] == pair.vendor.public_key().public_bytes_raw().hex()
    assert body["state"] == "not_found" and body["named"] == PER_PERSON and body["matched"] == 0
    assert count(pair.vendor, ErasureRequest) == 0


def test_a_recipient_that_is_down_leaves_the_request_overdue_and_it_resumes(pair: Pair) -> None:
    view = pair.app.erase("subject", FORGET, reason=REASON, wait=0.5, deadline_days=0)
    assert view["state"] == "awaiting_recipients"
    [notice] = view["recipients"]
    assert notice["state"] == "overdue" and notice["attempts"] >= 2
    assert "unreachable" in notice["last_error"]
    # nothing lost: the signed request is kept, the vendor still holds the photos
    assert pair.app.erasure_request_document(view["id"], "vendor")["body"]["nonce"] == notice["nonce"]
    assert all(pair.vendor.read_asset(s) for s in vendor_assets_of(pair, FORGET))
    with pytest.raises(DisgorgeError):
        pair.app.erasure_certificate(view["id"])

    pair.server.start()
    final = pair.app.erasure_resume(view["id"], wait=60)
    assert final["state"] == "completed", final
    [theirs] = pair.app.erasure_certificate(view["id"])["body"]["recipients"]
    assert theirs["state"] == "completed"
    assert verify_certificate(theirs["certificate"], pair.vendor.public_key_pem()).ok
    assert count(pair.vendor, Asset, Asset.state == "active") == (PEOPLE - 1) * PER_PERSON


def test_an_answer_whose_certificate_does_not_verify_is_an_exception(pair: Pair) -> None:
    view = pair.app.erase("subject", FORGET, reason=REASON, wait=0)  # the vendor is down
    doc = pair.app.erasure_request_document(view["id"], "vendor")
    answer = pair.vendor.receive_erasure_request(doc)  # the vendor erases, via the file route
    assert answer["body"]["state"] == "completed"

    def tamper(body: dict[str, Any]) -> None:
        body["certificate"]["body"]["reason"] = "nothing to see here"

    # the vendor's answer correctly signed, but the certificate inside altered
    result = pair.app.erasure_ack(resign(pair.vendor, answer, tamper))
    assert result["state"] == "exception"
    assert result["erasure"]["state"] == "awaiting_recipients"
    # the answer itself altered after signing
    altered = copy.deepcopy(answer)
    altered["body"]["matched"] = 99
    assert pair.app.erasure_ack(altered)["state"] == "exception"
    # an answer signed by someone else
    assert pair.app.erasure_ack(resign(pair.app, answer, lambda b: None))["state"] == "exception"
    notice = pair.app.erasure(view["id"])["recipients"][0]
    assert notice["state"] == "exception"
    with pytest.raises(DisgorgeError):
        pair.app.erasure_certificate(view["id"])
    # the genuine answer still completes it
    result = pair.app.erasure_ack(answer)
    assert result["state"] == "completed" and result["erasure"]["state"] == "completed"


def test_a_request_received_before_a_crash_is_finished_when_the_server_starts(pair: Pair) -> None:
    view = pair.app.erase("subject", FORGET, reason=REASON, wait=0)  # the vendor is down
    doc = pair.app.erasure_request_document(view["id"], "vendor")
    nonce = doc["body"]["nonce"]
    # the vendor accepted it and planned its erasure, then died before recording the plan
    status, _ = inbox.receive(pair.vendor.ctx, doc)
    assert status == 202
    pair.vendor.erase("request", nonce, reason="as if interrupted", execute=False)

    pair.server.start()  # the worker takes up what was under way
    status, done = wait_answered(pair, nonce)
    assert status == 200 and done["body"]["state"] == "completed", done
    assert count(pair.vendor, ErasureRequest) == 1  # the planned one, not a second
    final = pair.app.erasure_resume(view["id"], wait=30)
    assert final["state"] == "completed"


def test_disgorge_serve_listens_on_loopback(template: Template, tmp_path: Path) -> None:
    shutil.copytree(template.root / "vendor", tmp_path / "vendor")
    cli = Path(sys.executable).with_name("disgorge")
    proc = subprocess.Popen(
        [str(cli), "serve", "--port", str(PORT), "-w", str(tmp_path / "vendor")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        give_up = time.monotonic() + 30
        while True:
            try:
                status, health = call("GET", "/healthz")
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < give_up, "disgorge serve did not start in 30 s"
                time.sleep(0.1)
        assert status == 200 and health["ok"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{PORT}" in stderr
    assert os.path.exists(tmp_path / "vendor" / ".disgorge")


def test_the_recipients_model_trained_on_the_shared_photos_forgets_the_subject(pair: Pair) -> None:
    """Issue #7's done-when: share, the recipient trains, the sender erases one subject over
    HTTP, and the recipient's model forgets them (portrait embeddings of the drawn photos)."""
    vendor = pair.vendor
    assert vendor.analyze(workers=1, embedder="portrait").embedded_faces == PEOPLE * PER_PERSON
    vendor.build_dataset("train", purpose="ai_training", at="2020-05-01")
    vendor.train_model("face-id", dataset="train@1.0.0", shards=2, slices=1, at="2020-05-02")
    theirs_there = vendor.subject_ref(f"app/{pair.app.subject_ref(FORGET)}")  # re-keyed by the vendor
    held_out = synthetic_photo(1, 50, size=96)  # a pose of user-1 nobody stored
    assert [f["subject"] for f in vendor.predict("face-id", held_out)["faces"]] == [theirs_there]

    pair.server.start()
    view = pair.app.erase("subject", FORGET, reason=REASON, wait=60)
    assert view["state"] == "completed" and view["recipients"][0]["state"] == "completed"

    answer = vendor.predict("face-id", held_out)
    assert answer["model"] == "model:face-id@2"
    assert all(f["subject"] != theirs_there for f in answer["faces"])
    cert = pair.app.erasure_certificate(view["id"])
    inner = cert["body"]["recipients"][0]["certificate"]["body"]
    assert [m["model"] for m in inner["forgetting"]] == ["model:face-id@2"]
    assert verify_certificate(cert, pair.app.public_key_pem()).ok
