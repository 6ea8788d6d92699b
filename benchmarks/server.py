"""Load benchmark of the erasure inbox (``disgorge serve``): many senders at once, on loopback.

Usage::

    .venv/bin/python benchmarks/server.py                      # 200 valid + 200 unauthenticated
    .venv/bin/python benchmarks/server.py --valid 50 --unauth 50 --variants hardened
    .venv/bin/python benchmarks/server.py --json results.json
    .venv/bin/python benchmarks/server.py --lock-s 20 --variants hardened,unbounded

What it does, all in one run:

1. builds two real workspaces in a temporary folder: a sender ("app") that ingested
   ``--valid`` photos of as many people and shared them with a recipient ("vendor") in a
   signed bundle; the vendor received it and registered the app as a sender. The vendor's
   workspace is copied afresh for each variant;
2. per variant, starts a real server in its own process on 127.0.0.1 and, all at once (one
   thread and one connection each, released by a barrier), sends ``--valid`` erasure
   requests signed by the app, each naming one photo the vendor holds, and ``--unauth``
   requests signed by a key no sender holds (a stranger). A valid request answered 503
   is sent again after its ``Retry-After``, as the app's outbox does, up to ``--retries``
   times; its latency is that of its first answer. Then it polls the state of every
   accepted request as the app does (signed queries) until all are answered for good or
   ``--drain-s`` passes (variants named in ``--drain``: each accepted request costs one
   erasure of this workspace, about 1-3 s here, mostly its forensic scan), stops the server
   and reads the catalog: every accepted request must be ``completed`` there;
   With ``--lock-s`` another process takes the vendor catalog's write lock just before the
   burst and holds it that long (a long import, a ``gc --vacuum``);
3. reports, per variant: answers by status (first answers, then after retries), p50/p99
   latency of the first answers, the server's peak RSS (``VmHWM``), how many accepted
   requests completed and how long the worker took to finish them.

Variants (``--variants``, side by side):

* ``hardened``: ``disgorge serve`` as shipped (``Limits()``: 4 catalog slots, 256 waiting);
* ``unbounded``: the same app with the limits off (40 catalog slots, as many waiting as
  come, a body budget of 1 TB): what the bounds buy;
* ``echo``: a plain FastAPI app under plain uvicorn that parses the body and answers 202,
  touching nothing: the floor the HTTP stack itself sets (no erasure, no drain).

The machine is reported with its load average: on a shared machine wall-clock times are
slower and noisier than on an idle one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    before_after,
    describe,
    finish,
    load_average,
    machine,
    make_console,
    make_parser,
    percentile,
    show,
    write_json,
)

from disgorge import Workspace
from disgorge.catalog.models import IncomingRequest, TransferItem
from disgorge.samples import synthetic_photo
from disgorge.sharing.documents import REQUEST_TYPE, sign_document
from disgorge.sharing.query import authorization

console = make_console(160)
GOAL_RSS_MB = 300

_LAUNCH = r"""
import json, sys
variant, path, port, limits = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
import uvicorn
if variant == "echo":
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    app = FastAPI()

    @app.post("/v1/erasure-requests")
    async def echo(request: Request) -> JSONResponse:
        doc = json.loads(await request.body())
        return JSONResponse({"body": {"nonce": doc["body"]["nonce"], "state": "acknowledged"}}, 202)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
else:
    from disgorge.api import Limits, create_app, uvicorn_config
    lim = Limits(**limits)
    app = create_app(path, limits=lim)
    uvicorn.Server(uvicorn_config(app, port=port, log_level="warning", limits=lim)).run()
"""
#: another process that takes the catalog's write lock and holds it (``--lock-s``)
_LOCKER = r"""
import sys, time
from sqlalchemy import select
from disgorge import Workspace
ws = Workspace.open(sys.argv[1], actor="another-process")
with ws.sessions.begin() as session:
    session.execute(select(1))
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
ws.close()
"""
_UNBOUNDED = {
    "catalog_slots": 40,
    "max_waiting": 1_000_000,
    "wait_s": 3600.0,
    "body_budget_bytes": 1 << 40,
}


# -- the workspaces ------------------------------------------------------------------------
def build(root: Path, photos: int) -> list[str]:
    """The app shares ``photos`` photos (one person each) with the vendor; the fingerprints
    the vendor received (what the app's requests name)."""
    folder = root / "photos"
    folder.mkdir(parents=True)
    rows = ["path,subject"]
    for p in range(photos):
        (folder / f"{p}.jpg").write_bytes(synthetic_photo(p, 0, size=64))
        rows.append(f"{p}.jpg,user-{p}@x.example")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    purposes = ("third_party_sharing", "ai_training")
    (root / "consent.csv").write_text(
        "subject,purpose,decision,at\n"
        + "".join(f"user-{p}@x.example,{pp},granted,2020-01-01\n" for p in range(photos) for pp in purposes)
    )
    app = Workspace.init(root / "app", actor="app-dpo", at="2020-01-01")
    vendor = Workspace.init(root / "vendor", actor="vendor-dpo", at="2020-01-01")
    stranger = Workspace.init(root / "stranger", actor="stranger", at="2020-01-01")
    try:
        app.add_source("app", at="2020-01-01")
        app.add_policy(
            "app", "1", text=b"policy", effective_from="2020-01-01", allows=[*purposes], at="2020-01-01"
        )
        app.import_consent(root / "consent.csv", at="2020-01-01")
        app.ingest(folder, source="app", manifest=root / "manifest.csv", at="2020-02-01")
        app.build_dataset("faces", purpose="ai_training", at="2020-03-01")
        app.add_peer("recipient", "vendor", public_key=vendor.public_key_pem(), endpoint="http://127.0.0.1:9")
        vendor.add_peer("sender", "app", public_key=app.public_key_pem())
        app.share(
            "faces@1.0.0", to="vendor", purposes=["ai_training"], out=root / "bundle.zip", at="2020-04-01"
        )
        vendor.receive_bundle(root / "bundle.zip")
        with vendor.reader() as session:
            return sorted(session.scalars(select(TransferItem.fingerprint)))
    finally:
        for ws in (app, vendor, stranger):
            ws.close()


def request(signer: Workspace, vendor_key: bytes, fingerprint: str) -> dict[str, Any]:
    body = {
        "type": REQUEST_TYPE,
        "nonce": secrets.token_hex(16),
        "request": "f" * 32,
        "recipient": "vendor",
        "recipient_key": vendor_key.hex(),
        "deadline": "2030-01-01T00:00:00Z",
        "reason": "load benchmark",
        "items": [{"id_kind": "fingerprint", "values": [fingerprint]}],
    }
    return sign_document(signer, body)


# -- one variant ---------------------------------------------------------------------------
@dataclass
class Result:
    variant: str
    first: dict[str, int] = field(default_factory=dict)  # status -> count, first answers
    final: dict[str, int] = field(default_factory=dict)  # valid requests, after retries
    retries: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p50_valid_ms: float = 0.0
    p99_valid_ms: float = 0.0
    burst_s: float = 0.0
    rss_start_mb: float = 0.0
    rss_peak_mb: float = 0.0
    accepted: int = 0
    completed: int = 0
    completed_in_catalog: int | None = None
    drain_s: float | None = None
    errors_5xx: int = 0  # answers 5xx but 503, and connections that failed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def _call(port: int, method: str, path: str, data: bytes | None = None, auth: str | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"raw": raw[:200].decode(errors="replace")}
        return response.status, response.getheader("retry-after"), body
    finally:
        conn.close()


def _start(variant: str, vendor: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    if variant == "hardened":
        cli = Path(sys.executable).with_name("disgorge")
        argv = [str(cli), "serve", "--port", str(port), "-w", str(vendor)]
    else:
        limits = json.dumps(_UNBOUNDED if variant == "unbounded" else {})
        argv = [sys.executable, "-c", _LAUNCH, variant, str(vendor), str(port), limits]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    give_up = time.monotonic() + 120
    while True:
        try:
            if _call(port, "GET", "/healthz")[0] == 200:
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > give_up:
                raise SystemExit(f"{variant}: the server did not start; see {log}") from None
            time.sleep(0.1)


def run_variant(variant: str, root: Path, args: argparse.Namespace, fingerprints: list[str]) -> Result:
    vendor = root / f"vendor-{variant}"
    shutil.copytree(root / "vendor", vendor)
    app = Workspace.open(root / "app", actor="app-dpo")
    stranger = Workspace.open(root / "stranger", actor="stranger")
    with Workspace.open(vendor) as ws:
        vendor_key = ws.public_key().public_bytes_raw()
    valid = [
        json.dumps(request(app, vendor_key, fingerprints[i % len(fingerprints)])) for i in range(args.valid)
    ]
    unauth = [
        json.dumps(request(stranger, vendor_key, fingerprints[i % len(fingerprints)]))
        for i in range(args.unauth)
    ]
    port = _free_port()
    proc = _start(variant, vendor, port, root / f"{variant}.log")
    result = Result(variant, rss_start_mb=_status_kb(proc.pid, "VmRSS") / 1024)
    try:
        bodies = [(True, d) for d in valid] + [(False, d) for d in unauth]
        first: list[Any] = [None] * len(bodies)
        final: list[Any] = [None] * len(bodies)
        barrier = threading.Barrier(len(bodies) + 1)

        def one(i: int) -> None:
            is_valid, data = bodies[i]
            barrier.wait()
            start = time.perf_counter()
            try:
                status, retry_after, _ = _call(port, "POST", "/v1/erasure-requests", data.encode())
            except OSError as exc:
                status, retry_after = f"{exc.__class__.__name__}", None
            first[i] = (status, (time.perf_counter() - start) * 1000)
            tries = 0
            while is_valid and status in (429, 503) and tries < args.retries:
                time.sleep(float(retry_after or 1))
                tries += 1
                try:
                    status, retry_after, _ = _call(port, "POST", "/v1/erasure-requests", data.encode())
                except OSError as exc:
                    status = f"{exc.__class__.__name__}"
            final[i] = (status, tries)

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(bodies))]
        for t in threads:
            t.start()
        locker = None
        if args.lock_s > 0:  # another process writes for a while, from just before the burst
            locker = subprocess.Popen(
                [sys.executable, "-c", _LOCKER, str(vendor), str(args.lock_s)], stdout=subprocess.PIPE
            )
            assert locker.stdout is not None and locker.stdout.readline().strip() == b"locked"
        barrier.wait()
        burst = time.perf_counter()
        for t in threads:
            t.join(args.drain_s)
        result.burst_s = time.perf_counter() - burst
        if locker is not None:
            locker.wait(args.lock_s + 60)
        result.first = dict(sorted(Counter(str(s) for s, _ in first).items()))
        result.final = dict(
            sorted(Counter(str(s) for (v, _), (s, _) in zip(bodies, final, strict=True) if v).items())
        )
        result.retries = sum(f[1] for f in final if f)
        lat = sorted(ms for _, ms in first)
        lat_valid = sorted(ms for (v, _), (_, ms) in zip(bodies, first, strict=True) if v)
        result.p50_ms, result.p99_ms = _pct(lat, 0.50), _pct(lat, 0.99)
        result.p50_valid_ms, result.p99_valid_ms = _pct(lat_valid, 0.50), _pct(lat_valid, 0.99)
        seen = [str(s) for s, _ in first] + [str(f[0]) for f in final if f]
        result.errors_5xx = sum(1 for s in seen if s != "503" and not s.startswith(("2", "4")))
        accepted = [
            json.loads(data)["body"]["nonce"]
            for (v, data), (s, _) in zip(bodies, final, strict=True)
            if v and s == 202
        ]
        result.accepted = len(accepted)
        if variant in args.drain.split(",") and accepted:
            result.completed, result.drain_s = drain(port, app, vendor_key, accepted, args.drain_s)
        result.rss_peak_mb = _status_kb(proc.pid, "VmHWM") / 1024
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
        app.close()
        stranger.close()
    if variant != "echo":
        with Workspace.open(vendor) as ws, ws.reader() as session:
            result.completed_in_catalog = int(
                session.scalar(
                    select(func.count())
                    .select_from(IncomingRequest)
                    .where(IncomingRequest.state == "completed")
                )
                or 0
            )
        if not args.keep:
            shutil.rmtree(vendor, ignore_errors=True)
    return result


def drain(
    port: int, app: Workspace, vendor_key: bytes, nonces: list[str], budget_s: float
) -> tuple[int, float]:
    """Poll every accepted request as its sender does until all are completed; (how many, s)."""
    start = time.perf_counter()
    done: set[str] = set()
    while len(done) < len(nonces) and time.perf_counter() - start < budget_s:
        for nonce in nonces:
            if nonce in done:
                continue
            status, _, body = _call(
                port, "GET", f"/v1/erasure-requests/{nonce}", auth=authorization(app, nonce, vendor_key)
            )
            if status == 200 and body["body"]["state"] == "completed":
                done.add(nonce)
            elif status not in (202, 503):
                console.print(f"  unexpected answer for a request: {status} {body}")
                done.add(nonce)
        if len(done) < len(nonces):
            time.sleep(2.0)
    return len(done), time.perf_counter() - start


def _pct(values: list[float], q: float) -> float:
    return percentile(values, q) if values else 0.0


# -- the report ----------------------------------------------------------------------------
def render(results: list[Result], args: argparse.Namespace) -> Table:
    table = Table(
        title=f"{args.valid} valid + {args.unauth} unauthenticated requests at once, 127.0.0.1"
        + (f", the catalog locked by another process for {args.lock_s:.0f} s" if args.lock_s else ""),
        show_lines=False,
    )
    table.add_column("")
    for r in results:
        table.add_column(r.variant, justify="right")

    def row(label: str, values: list[str]) -> None:
        table.add_row(label, *values)

    row("first answers, by status", [" ".join(f"{s}:{n}" for s, n in r.first.items()) for r in results])
    row("valid, after retries", [" ".join(f"{s}:{n}" for s, n in r.final.items()) for r in results])
    row("retries after 503", [str(r.retries) for r in results])
    row("errors (5xx but 503, failed connections)", [str(r.errors_5xx) for r in results])
    row("p50 / p99, all (ms)", [f"{r.p50_ms:.0f} / {r.p99_ms:.0f}" for r in results])
    row("p50 / p99, valid (ms)", [f"{r.p50_valid_ms:.0f} / {r.p99_valid_ms:.0f}" for r in results])
    row("all answered in (s)", [f"{r.burst_s:.1f}" for r in results])
    row("server RSS at start / peak (MB)", [f"{r.rss_start_mb:.0f} / {r.rss_peak_mb:.0f}" for r in results])
    row(
        "accepted (202) -> completed",
        [
            "-"
            if r.variant == "echo"
            else f"{r.accepted} -> {r.completed} ({r.completed_in_catalog} in catalog)"
            if r.drain_s is not None
            else f"{r.accepted} (not waited for)"
            for r in results
        ],
    )
    row(
        "worker finished them in (s)", [f"{r.drain_s:.0f}" if r.drain_s is not None else "-" for r in results]
    )
    row(
        "goal: no error, all completed, RSS < 300 MB",
        [
            "-"
            if r.variant == "echo" or r.drain_s is None
            else (
                "met"
                if r.errors_5xx == 0
                and r.completed == r.accepted == r.completed_in_catalog
                and r.rss_peak_mb < GOAL_RSS_MB
                else "MISSED"
            )
            for r in results
        ],
    )
    return table


def headline(results: dict[str, Any]) -> dict[str, float]:
    """What ``--baseline-src`` compares, in seconds, per variant: first-answer latencies, the
    burst, and the time the worker took to finish the accepted requests."""
    out: dict[str, float] = {}
    for r in results.get("results", []):
        v = r["variant"]
        out[f"{v}: p50 of first answers, valid"] = r["p50_valid_ms"] / 1000
        out[f"{v}: p99 of first answers, valid"] = r["p99_valid_ms"] / 1000
        out[f"{v}: all answered in"] = r["burst_s"]
        if r["drain_s"] is not None:
            out[f"{v}: worker finished the accepted in"] = r["drain_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--valid", type=int, default=200, help="valid requests (one photo each)")
    parser.add_argument("--unauth", type=int, default=200, help="requests signed by an unknown key")
    parser.add_argument("--variants", default="hardened,unbounded,echo")
    parser.add_argument("--retries", type=int, default=60, help="sends of a valid request after a 503")
    parser.add_argument(
        "--drain-s", type=float, default=900.0, help="longest wait for the accepted to complete"
    )
    parser.add_argument(
        "--drain",
        default="hardened",
        help="variants whose accepted requests are waited for (comma-separated)",
    )
    parser.add_argument(
        "--lock-s",
        type=float,
        default=0.0,
        help="another process holds the write lock this long during the burst",
    )
    parser.add_argument("--keep", action="store_true", help="keep the workspaces (printed)")
    args = parser.parse_args(argv)
    if args.baseline_src:
        return before_after(__file__, args, argv, headline)

    info = machine()
    console.print(describe(info))
    root = Path(tempfile.mkdtemp(prefix="disgorge-server-bench-"))
    try:
        start = time.perf_counter()
        fingerprints = build(root, max(1, args.valid))
        console.print(
            f"built the sender and the vendor ({len(fingerprints)} photos) "
            f"in {time.perf_counter() - start:.1f} s"
        )
        results = []
        for variant in args.variants.split(","):
            start = time.perf_counter()
            results.append(run_variant(variant.strip(), root, args, fingerprints))
            console.print(f"{variant}: {time.perf_counter() - start:.0f} s; load {load_average()}")
        show(console, render(results, args), args.markdown)
        console.print(finish(info))
        write_json(args.json, {"machine": info, "results": [asdict(r) for r in results]})
    finally:
        if args.keep:
            console.print(f"workspaces kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
