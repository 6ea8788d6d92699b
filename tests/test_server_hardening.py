"""The erasure inbox under load and hostile peers (issue #12, defects 4 and 7), over real
HTTP on 127.0.0.1: uvicorn in a thread (``running_server``) or ``disgorge serve`` as a
separate process where its memory or its log is what is checked.

The sender "app" shared 24 photos (24 people) with "vendor", which registered two
senders: "app" and "other" (which sent nothing). Each test works on a fresh copy of the
vendor's workspace; requests are signed with the app's key as the app's outbox signs them.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import select as sql_select

from conftest import free_port
from disgorge import Workspace
from disgorge._time import utcnow
from disgorge.api import Limits, running_server
from disgorge.catalog.models import IncomingRequest, TransferItem
from disgorge.samples import synthetic_photo
from disgorge.sharing.documents import REQUEST_TYPE, sign_document
from disgorge.sharing.query import authorization

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
jsonschema = pytest.importorskip("jsonschema")
PHOTOS = 24


@dataclass
class Template:
    root: Path
    fingerprints: list[str]  # what the vendor received from the app, one per photo


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("server-hardening")
    folder = root / "photos"
    folder.mkdir()
    rows = ["path,subject"]
    for p in range(PHOTOS):
        (folder / f"{p}.jpg").write_bytes(synthetic_photo(p, 0, size=64))
        rows.append(f"{p}.jpg,user-{p}@x.example")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    purposes = ("third_party_sharing", "ai_training")
    (root / "consent.csv").write_text(
        "subject,purpose,decision,at\n"
        + "".join(f"user-{p}@x.example,{pp},granted,2020-01-01\n" for p in range(PHOTOS) for pp in purposes)
    )
    app = Workspace.init(root / "app", actor="app-dpo", at="2020-01-01")
    vendor = Workspace.init(root / "vendor", actor="vendor-dpo", at="2020-01-01")
    other = Workspace.init(root / "other", actor="other-dpo", at="2020-01-01")
    app.add_source("app", at="2020-01-01")
    app.add_policy("app", "1", text=b"p", effective_from="2020-01-01", allows=[*purposes], at="2020-01-01")
    app.import_consent(root / "consent.csv", at="2020-01-01")
    app.ingest(folder, source="app", manifest=root / "manifest.csv", at="2020-02-01")
    app.build_dataset("faces", purpose="ai_training", at="2020-03-01")
    app.add_peer("recipient", "vendor", public_key=vendor.public_key_pem(), endpoint="http://127.0.0.1:9")
    vendor.add_peer("sender", "app", public_key=app.public_key_pem())
    vendor.add_peer("sender", "other", public_key=other.public_key_pem())
    app.share("faces@1.0.0", to="vendor", purposes=["ai_training"], out=root / "bundle.zip", at="2020-04-01")
    vendor.receive_bundle(root / "bundle.zip")
    with vendor.reader() as session:
        fingerprints = sorted(session.scalars(sql_select(TransferItem.fingerprint)))
    for ws in (app, vendor, other):
        ws.close()
    assert len(fingerprints) == PHOTOS
    return Template(root, fingerprints)


@dataclass
class Env:
    app: Workspace
    other: Workspace
    vendor: Path
    vendor_key: bytes
    fingerprints: list[str]

    def request(self, *fingerprints: str, signer: Workspace | None = None) -> dict[str, Any]:
        """A signed erasure request naming ``fingerprints`` (signed by the app by default)."""
        body = {
            "type": REQUEST_TYPE,
            "nonce": secrets.token_hex(16),
            "request": "f" * 32,
            "recipient": "vendor",
            "recipient_key": self.vendor_key.hex(),
            "deadline": "2030-01-01T00:00:00Z",
            "reason": "GDPR Art. 17",
            "items": [{"id_kind": "fingerprint", "values": list(fingerprints)}],
        }
        return sign_document(signer or self.app, body)

    def auth(self, nonce: str, signer: Workspace | None = None, **kw: Any) -> str:
        return authorization(signer or self.app, nonce, self.vendor_key, **kw)

    def incoming(self, *where: Any) -> int:
        with Workspace.open(self.vendor) as ws, ws.reader() as session:
            query = sql_select(func.count()).select_from(IncomingRequest).where(*where)
            return int(session.scalar(query) or 0)


@pytest.fixture
def env(template: Template, tmp_path: Path) -> Iterator[Env]:
    shutil.copytree(template.root / "vendor", tmp_path / "vendor")
    with Workspace.open(tmp_path / "vendor") as vendor:
        key = vendor.public_key().public_bytes_raw()
    app = Workspace.open(template.root / "app", actor="app-dpo")
    other = Workspace.open(template.root / "other", actor="other-dpo")
    try:
        yield Env(app, other, tmp_path / "vendor", key, template.fingerprints)
    finally:
        app.close()
        other.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def call(
    url: str, method: str, path: str, doc: Any = None, *, headers: dict[str, str] | None = None
) -> Answer:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        data = json.dumps(doc).encode() if doc is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        kind = response.getheader("content-type", "")
        body = json.loads(raw) if "json" in kind else raw
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        conn.close()


def post(url: str, doc: Any) -> Answer:
    return call(url, "POST", "/v1/erasure-requests", doc)


def all_at_once(fn: Any, args: list[Any]) -> list[Any]:
    """``fn(arg)`` for every arg, each in its own thread, released together."""
    results: list[Any] = [None] * len(args)
    barrier = threading.Barrier(len(args))

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(args[i])
        except Exception as exc:  # noqa: BLE001 - reported by the assertions
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(args))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


def post_until_taken(url: str, doc: dict[str, Any], tries: int = 60) -> Answer:
    """Post as a sender does: again after Retry-After while the server says it is busy."""
    for _ in range(tries):
        answer = post(url, doc)
        if answer.status not in (429, 503):
            return answer
        time.sleep(float(answer.headers["retry-after"]))
    return answer


def wait_completed(env: Env, url: str, nonces: list[str], give_up_s: float = 600) -> dict[str, str]:
    """nonce -> final state, asked as the sender; stops looking after ``give_up_s``."""
    states: dict[str, str] = {}
    stop = time.monotonic() + give_up_s
    while len(states) < len(nonces) and time.monotonic() < stop:
        for nonce in nonces:
            if nonce not in states:
                answer = call(
                    url, "GET", f"/v1/erasure-requests/{nonce}", headers={"Authorization": env.auth(nonce)}
                )
                assert answer.status in (200, 202, 503), (answer.status, answer.body)
                if answer.status == 200:
                    states[nonce] = answer.body["body"]["state"]
        time.sleep(0.5)
    return states


# -- defect 4: concurrency ----------------------------------------------------------------
def test_forty_concurrent_requests_get_no_500_and_every_accepted_one_completes_across_a_restart(
    env: Env,
) -> None:
    held = [env.request(fp) for fp in env.fingerprints[:20]]  # 20 erasures to run
    unheld = [env.request(secrets.token_hex(32)) for _ in range(20)]  # signed, valid, naming nothing held
    docs = held + unheld
    with running_server(env.vendor, actor="vendor-server") as url:
        first = all_at_once(lambda d: post(url, d), docs)
        assert all(isinstance(a, Answer) for a in first), first
        assert {a.status for a in first} <= {200, 202, 503}, [(a.status, a.body) for a in first]
        for a in first:
            if a.status == 503:
                assert a.headers["retry-after"].isdigit() and "error" in a.body
        answers = [
            a if a.status != 503 else post_until_taken(url, d) for a, d in zip(first, docs, strict=True)
        ]
        assert [a.status for a in answers] == [202] * 20 + [200] * 20
        assert {a.body["body"]["state"] for a in answers[20:]} == {"not_found"}
    # stopped right away: most are still waiting in the catalog, and the next start takes them up
    nonces = [d["body"]["nonce"] for d in held]
    with running_server(env.vendor, actor="vendor-server") as url:
        states = wait_completed(env, url, nonces)
    assert states == dict.fromkeys(nonces, "completed")
    assert env.incoming(IncomingRequest.state == "completed") == 20


def test_overload_is_answered_503_with_retry_after_and_the_accepted_are_not_lost(env: Env) -> None:
    limits = Limits(catalog_slots=1, max_waiting=1, wait_s=1.0, retry_after_s=1)
    docs = [env.request(fp) for fp in env.fingerprints[:5]]
    with running_server(env.vendor, actor="vendor-server", limits=limits) as url:
        blocker = Workspace.open(env.vendor, actor="another-process")
        try:
            results: list[Any] = [None] * len(docs)
            threads = []
            with blocker.sessions.begin() as session:  # another process writes for a while
                session.execute(sql_select(1))
                for i, doc in enumerate(docs):
                    threads.append(
                        threading.Thread(target=lambda i=i, d=doc: results.__setitem__(i, post(url, d)))
                    )
                    threads[-1].start()
                give_up = time.monotonic() + 120
                while sum(r is not None for r in results) < len(docs) - 1 and time.monotonic() < give_up:
                    time.sleep(0.05)
                answered = [r for r in results if r is not None]
            for t in threads:
                t.join(120)
        finally:
            blocker.close()
        assert len(answered) == len(docs) - 1, "the server kept requests waiting behind the lock"
        assert all(r.status == 503 for r in answered), [(r.status, r.body) for r in answered]
        assert all(r.headers["retry-after"] == "1" and "busy" in r.body["error"] for r in answered)
        assert sorted(r.status for r in results) == [202] + [503] * (len(docs) - 1)  # the one in the slot
        retried = [
            r if r.status == 202 else post_until_taken(url, d) for r, d in zip(results, docs, strict=True)
        ]
        assert [r.status for r in retried] == [202] * len(docs)
        nonces = [d["body"]["nonce"] for d in docs]
        assert wait_completed(env, url, nonces) == dict.fromkeys(nonces, "completed")


# -- defect 7: hostile peers --------------------------------------------------------------
def _raw(url: str, head: bytes, body: bytes = b"", *, read_timeout: float = 30) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        sock.sendall(head + body)
        return _read_response(sock)


def _read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response from ``sock`` (its head and body may come in several reads)."""
    chunks: list[bytes] = []
    while not (b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks))):
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_bodies_are_refused_from_their_length_and_share_one_budget(env: Env) -> None:
    limits = Limits(max_body_bytes=1_000_000, body_budget_bytes=1_000_000)
    with running_server(env.vendor, actor="vendor-server", limits=limits) as url:
        # a declared 1 GB, a few bytes sent: answered at once, nothing read or buffered
        reply = _raw(
            url, b"POST /v1/erasure-requests HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n", b"{}"
        )
        assert reply.startswith(b"HTTP/1.1 413") and b'"error"' in reply
        # no length at all (chunked): refused before reading
        reply = _raw(
            url,
            b"POST /v1/erasure-requests HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"2\r\n{}\r\n0\r\n\r\n",
        )
        assert reply.startswith(b"HTTP/1.1 411")
        # one body under way holds the budget: a second one is told to come back
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            slow.sendall(b"POST /v1/erasure-requests HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\n{")
            for _ in range(100):  # until the server has started reading the first one
                second = call(url, "POST", "/v1/erasure-requests", {"x": "y" * 200_000})
                if second.status != 400:
                    break
                time.sleep(0.1)
            assert second.status == 503 and second.headers["retry-after"].isdigit(), second.body
            slow.sendall(b" " * 899_998 + b"}")
            first = _read_response(slow)
            assert first.startswith(b"HTTP/1.1 400") and b"not a signed disgorge document" in first
        assert post(url, {"x": "y" * 200_000}).status == 400  # the budget is free again


def test_deep_json_is_a_json_400_and_405_names_the_allowed_methods(env: Env) -> None:
    with running_server(env.vendor, actor="vendor-server") as url:
        deep = b"[" * 100_000 + b"]" * 100_000
        head = b"POST /v1/erasure-requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        reply = _raw(url, head + b"Content-Length: %d\r\n\r\n" % len(deep), deep)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"] == "the request body is nested too deeply"
        nested: Any = "x"
        for _ in range(20):  # parses fine, yet no request is nested like this
            nested = [nested]
        shallow_but_deep = {"body": {"a": nested}}
        answer = post(url, shallow_but_deep)
        assert answer.status == 400 and "nested too deeply" in answer.body["error"]
        answer = call(url, "DELETE", "/v1/erasure-requests")
        assert answer.status == 405 and answer.headers["allow"] == "POST" and "error" in answer.body
        answer = call(url, "PUT", f"/v1/erasure-requests/{'0' * 32}")
        assert answer.status == 405 and answer.headers["allow"] == "GET"


def test_slow_headers_are_cut_off(env: Env) -> None:
    with running_server(env.vendor, actor="vendor-server", limits=Limits(header_timeout_s=1.0)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(b"POST /v1/erasure-requests HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 408")
            assert sock.recv(65536) == b""  # closed
        with socket.create_connection((host, int(port)), timeout=30) as sock:  # says nothing at all
            assert sock.recv(65536).startswith(b"HTTP/1.1 408")
        assert call(url, "GET", "/healthz").status == 200  # others are served as before


def test_only_the_sender_reads_the_state_of_its_request(env: Env) -> None:
    doc = env.request(env.fingerprints[0])
    nonce = doc["body"]["nonce"]
    path = f"/v1/erasure-requests/{nonce}"
    with running_server(env.vendor, actor="vendor-server") as url:
        assert post(url, doc).status == 202

        def ask(auth: str | None) -> Answer:
            return call(url, "GET", path, headers={"Authorization": auth} if auth else {})

        anyone = ask(None)
        assert anyone.status == 401 and anyone.headers["www-authenticate"] == "Disgorge"
        assert "nonce" not in json.dumps(anyone.body) and nonce not in json.dumps(anyone.body)
        assert ask("Bearer " + nonce).status == 401
        assert ask("Disgorge bm90IGpzb24").status == 401
        stranger = Workspace.init(env.vendor.parent / "stranger", actor="stranger")
        try:
            assert ask(env.auth(nonce, signer=stranger)).status == 403  # no registered sender
        finally:
            stranger.close()
        assert ask(env.auth(nonce, signer=env.other)).status == 404  # another sender's request
        assert ask(env.auth(nonce, at=utcnow() - timedelta(hours=1))).status == 403  # stale
        assert ask(env.auth("0" * 32)).status == 401  # signed for another nonce
        mine = ask(env.auth(nonce))
        assert mine.status in (200, 202) and mine.body["body"]["nonce"] == nonce
        assert wait_completed(env, url, [nonce]) == {nonce: "completed"}


def test_the_openapi_declares_what_the_server_accepts(env: Env) -> None:
    with Workspace.open(env.vendor) as ws:
        ws.add_principal("reader", role="viewer")
        token = ws.create_token("reader")["token"]
    with running_server(env.vendor, actor="vendor-server") as url:
        spec = call(url, "GET", "/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}).body
    post_op = spec["paths"]["/v1/erasure-requests"]["post"]
    schema = post_op["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(env.request(*env.fingerprints[:3]))
    rejected = [
        {"body": {}, "signature": "x"},
        {"body": {"type": "something/1"}, "signature": "x"},
        {**env.request(env.fingerprints[0]), "algorithm": "Ed24519"},
    ]
    no_items = env.request(env.fingerprints[0])
    del no_items["body"]["items"]
    short_nonce = env.request(env.fingerprints[0])
    short_nonce["body"]["nonce"] = "abc"
    for body in [*rejected, no_items, short_nonce]:
        assert not validator.is_valid(body), body
    assert "Retry-After" in post_op["responses"]["503"]["headers"]
    get_op = spec["paths"]["/v1/erasure-requests/{nonce}"]["get"]
    assert any(p["name"] == "Authorization" and p["in"] == "header" for p in get_op["parameters"])
    assert {"401", "403", "404"} <= set(get_op["responses"])


# -- ``disgorge serve`` as its own process: its memory and its log --------------------------
def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture
def served(env: Env) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    cli = Path(sys.executable).with_name("disgorge")
    proc = subprocess.Popen(
        [str(cli), "serve", "--port", str(port), "-w", str(env.vendor)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        give_up = time.monotonic() + 60
        while True:
            try:
                if call(url, "GET", "/healthz").status == 200:
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < give_up, "disgorge serve did not start in 60 s"
                time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)


def _send_big(url: str, size: int) -> bytes:
    """POST ``size`` bytes of JSON, stopping as soon as the server answers (it may refuse
    without reading); the server's reply."""
    host, port = url.removeprefix("http://").split(":")
    chunk = b" " * (1 << 20)
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(b"POST /v1/erasure-requests HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{" % size)
        sent = 1
        try:
            while sent < size - 1:
                if select.select([sock], [], [], 0)[0]:
                    break
                part = chunk[: min(len(chunk), size - 1 - sent)]
                sock.sendall(part)
                sent += len(part)
            else:
                sock.sendall(b"}")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return sock.recv(65536)
        except ConnectionResetError:
            return b""


def test_six_concurrent_60_mb_bodies_cost_the_server_one_body(served: tuple[str, Any]) -> None:
    url, proc = served
    before = _rss_kb(proc.pid, "VmRSS")
    replies = all_at_once(lambda _: _send_big(url, 60 * 1024 * 1024), list(range(6)))
    statuses = sorted(r.split(b" ")[1].decode() for r in replies if isinstance(r, bytes) and r)
    assert statuses and set(statuses) <= {"400", "503"} and "500" not in statuses, replies
    grown_mb = (_rss_kb(proc.pid, "VmHWM") - before) / 1024
    # one 60 MB body is read, decoded and parsed (~2 copies); six at once were ~860 MB
    assert grown_mb < 200, f"the server grew by {grown_mb:.0f} MB"


def test_the_access_log_holds_no_whole_nonce(env: Env, served: tuple[str, Any]) -> None:
    url, proc = served
    doc = env.request(env.fingerprints[0])
    nonce = doc["body"]["nonce"]
    assert post(url, doc).status == 202
    path = f"/v1/erasure-requests/{nonce}"
    assert call(url, "GET", path, headers={"Authorization": env.auth(nonce)}).status in (200, 202)
    assert call(url, "GET", path).status == 401
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    lines = [line for line in stderr.splitlines() if "/v1/erasure-requests" in line]
    assert len(lines) >= 3, stderr
    assert nonce not in stderr and nonce[:16] not in stderr
    assert any(f"/v1/erasure-requests/{nonce[:8]}..." in line and " 401 " in line for line in lines)
    assert not any(os.fspath(env.vendor) in line for line in lines)
