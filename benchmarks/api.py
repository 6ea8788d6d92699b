"""REST API benchmark: 50 concurrent clients against a big workspace, beside the same calls in-process.

Usage::

    .venv/bin/python benchmarks/api.py                        # 100,000 assets, 50 clients x 20 calls
    .venv/bin/python benchmarks/api.py --assets 20000 --subjects 2000 --clients 10 --per-client 10
    .venv/bin/python benchmarks/api.py --fresh --json results.json --markdown

What it does, all in one run so every number comes from the same machine state:

1. builds a real workspace (``Workspace.init``) and bulk-loads the synthetic catalog of
   ``benchmarks/lineage.py`` into it (``generate_catalog``: ``--subjects`` subjects,
   ``--assets`` photos over five sources, owner and depicted links, ``--datasets`` dataset
   versions of 10-50 % of the photos each, ``--models`` models trained on them); gives every
   subject a real data key wrapped by the workspace's KEK, writes one ``asset.ingested``
   audit event per photo (as the ingest does: the log is as long as a real one), and files
   ``--erasures`` erasure requests (planned, not run) for subjects of the median photo
   count. No photo bytes: nothing here reads them. Cached in ``--cache`` while the
   parameters match (``--fresh`` rebuilds);
2. starts ``disgorge serve`` on that workspace, in its own process on 127.0.0.1, as shipped
   (``Limits()``: 4 catalog slots, 256 waiting, 503 after 5 s of waiting), and gives
   ``--clients`` tokens of a ``privacy_officer`` (who may call everything below);
3. per operation, three ways, one after the other:

   * **in-process**: the call a user of the Python API would make on an open ``Workspace``
     (``ws.status()``, ``ws.lineage(...)``, ``ws.erasure_plan(...)``, ``ws.erasures()``,
     ``find_events(ws.ctx, ...)``, ``ws.sources()``, ``list_assets(ws.ctx, ...)``),
     ``--sequential`` times, one caller;
   * **HTTP, 1 client**: the same operation over the API, ``--sequential`` times, one
     keep-alive connection: in-process vs this is the cost of HTTP (auth, JSON, uvicorn);
   * **HTTP, N clients**: ``--clients`` clients (httpx, asyncio, one connection and one
     token each), each making ``--per-client`` calls back to back, all released at once
     after one untimed call each; a phase stops after ``--phase-s`` seconds (calls not
     started are counted as skipped). Latency is per call, from sending to the whole body
     read; an error is any answer that is not 2xx (503s counted apart) or a failed
     connection.

   The subjects asked about rotate over ``--samples`` subjects of the middle half by photo
   count (the same ones in every way of calling);
4. prints one table: p50 / p99 of each way, what HTTP adds at p50, throughput and errors
   under load, and the goal (p99 under 100 ms for the reads, no errors).

The clients run in this process and the server in its own, on the same machine: on a
2-core machine they compete for the CPU with each other (and with anything else running),
so the numbers under load are an upper bound for a server with its own cores. The machine
line gives the load average at the start and the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Timing,
    describe,
    finish,
    machine,
    make_console,
    make_parser,
    measure,
    show,
    write_json,
)
from lineage import Params, generate_catalog

from disgorge import Workspace, audit
from disgorge.api import endpoints
from disgorge.assets import list_assets
from disgorge.audit.service import find_events
from disgorge.catalog import make_engine, upgrade

console = make_console(200)

GOAL_P99_MS = 100.0
HOPS = 50
ROLE = "privacy_officer"
PRINCIPAL = "bench-officer"
_DONE = ".complete"


# -- the workspace -------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    assets: int
    subjects: int
    datasets: int
    models: int
    exports: int
    erasures: int
    seed: int

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _db(root: Path) -> Path:
    return root / ".disgorge" / "catalog.sqlite"


def build_workspace(path: Path, s: Setup) -> dict[str, Any]:
    """The workspace in ``path`` (created); what the run needs to know of it."""
    started = time.perf_counter()
    Workspace.init(path, actor="bench").close()
    db = _db(path)
    params = Params(s.assets, s.subjects, s.datasets, s.models, s.exports, 0.03, s.seed)
    with console.status("generating the catalog (benchmarks/lineage.py) ..."):
        shape, _ = generate_catalog(db, params)
    console.print(f"  catalog generated in {shape.seconds:.0f} s")
    with Workspace.open(path, actor="bench") as ws:
        con = sqlite3.connect(db, isolation_level=None)
        try:
            with console.status("wrapping a data key per subject ..."):
                subjects = con.execute("SELECT id, ref FROM subjects").fetchall()
                con.execute("BEGIN")
                con.executemany(
                    "UPDATE subjects SET dek_wrapped = ? WHERE id = ?",
                    [(ws.vault.new_wrapped_dek(ref), sid) for sid, ref in subjects],
                )
                con.execute("COMMIT")
            rows = con.execute(
                "SELECT a.id, a.source_id, s.ref FROM assets AS a JOIN subjects AS s ON s.id = a.owner_id "
                "ORDER BY a.rowid"
            ).fetchall()
            per_subject = con.execute(
                "SELECT s.ref, count(*) FROM asset_subjects AS l JOIN subjects AS s ON s.id = l.subject_id "
                "GROUP BY l.subject_id ORDER BY s.ref"
            ).fetchall()
        finally:
            con.close()
        with console.status(f"writing {len(rows):,} audit events (one per photo, as the ingest does) ..."):
            for start in range(0, len(rows), 50_000):
                with ws.transaction() as session:
                    audit.append_many(
                        session,
                        (
                            (
                                "asset.ingested",
                                {
                                    "asset": a,
                                    "source_id": src,
                                    "owner": ref,
                                    "depicted": [],
                                    "media_type": "image/jpeg",
                                },
                            )
                            for a, src, ref in rows[start : start + 50_000]
                        ),
                        actor="bench",
                    )
        counts = sorted(c for _, c in per_subject)
        low, high = counts[len(counts) // 4], counts[3 * len(counts) // 4]
        middle = [ref for ref, c in per_subject if low <= c <= high]
        refs = random.Random(s.seed).sample(middle, min(len(middle), 1000))
        with console.status(f"filing {s.erasures} erasure requests (planned) ..."):
            for ref in refs[: s.erasures]:
                ws.erase("subject", ref, reason="benchmark: a planned request", execute=False)
        ws.add_principal(PRINCIPAL, role=ROLE)
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    return {
        "shape": asdict(shape),
        "subjects": refs[s.erasures :],  # those with a planned request would not plan again
        "median_photos": counts[len(counts) // 2],
        "audit_events": len(rows),
        "seconds": time.perf_counter() - started,
    }


def ensure_workspace(cache: Path, s: Setup, fresh: bool) -> tuple[Path, dict[str, Any]]:
    cache.mkdir(parents=True, exist_ok=True)
    root, marker = cache / "workspace", cache / _DONE
    if not fresh and marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("setup") == s.key() and root.exists():
            engine = make_engine(f"sqlite:///{_db(root)}")
            upgrade(engine)  # a cached catalog follows later migrations
            engine.dispose()
            return root, saved
    marker.unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    console.print(f"building the workspace in {root} ...")
    info = build_workspace(root, s)
    saved = {"setup": s.key(), **info}
    marker.write_text(json.dumps(saved, indent=2) + "\n")
    console.print(f"built in {info['seconds']:.0f} s")
    return root, saved


# -- the operations ------------------------------------------------------------------------
Request = tuple[str, str, dict[str, Any] | None]


@dataclass
class Op:
    name: str
    #: a read (the goal applies) or a computation (the erasure plan: a dry run)
    read: bool
    #: the route it needs (skipped when the server has none)
    route: tuple[str, str]
    http: Callable[[int], Request]
    local: Callable[[Workspace, int], Any]


def operations(refs: list[str]) -> list[Op]:
    def ref(k: int) -> str:
        return refs[k % len(refs)]

    return [
        Op(
            "status",
            True,
            ("GET", "/v1/status"),
            lambda k: ("GET", "/v1/status", None),
            lambda ws, k: ws.status(),
        ),
        Op(
            "lineage of a subject (downstream)",
            True,
            ("POST", "/v1/lineage"),
            lambda k: (
                "POST",
                "/v1/lineage",
                {"kind": "subject", "id": ref(k), "direction": "downstream", "hops": HOPS},
            ),
            lambda ws, k: ws.lineage(f"subject:{ref(k)}", direction="downstream", max_depth=HOPS),
        ),
        Op(
            "erasure plan of a subject (dry run)",
            False,
            ("POST", "/v1/erasures/plan"),
            lambda k: ("POST", "/v1/erasures/plan", {"kind": "subject", "id": ref(k)}),
            lambda ws, k: ws.erasure_plan("subject", ref(k)),
        ),
        Op(
            "erasure requests, a page of 100",
            True,
            ("GET", "/v1/erasures"),
            lambda k: ("GET", "/v1/erasures?limit=100", None),
            lambda ws, k: ws.erasures()[:100],
        ),
        Op(
            "audit events, a page of 100",
            True,
            ("GET", "/v1/audit/events"),
            lambda k: ("GET", "/v1/audit/events?limit=100", None),
            lambda ws, k: find_events(ws.ctx, limit=100),
        ),
        Op(
            "sources",
            True,
            ("GET", "/v1/sources"),
            lambda k: ("GET", "/v1/sources", None),
            lambda ws, k: ws.sources(),
        ),
        Op(
            "photos' entries, a page of 100",
            True,
            ("GET", "/v1/assets"),
            lambda k: ("GET", "/v1/assets?limit=100", None),
            lambda ws, k: list_assets(ws.ctx, limit=100),
        ),
    ]


# -- the server ----------------------------------------------------------------------------
def start_server(root: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).parent / "disgorge"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISGORGE_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(script), "serve", "--port", str(port), "-w", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    give_up = time.monotonic() + 120
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"the server did not answer within 120 s; see {log}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- timing --------------------------------------------------------------------------------
def cpu_of(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Load:
    """The calls of one operation under load."""

    seconds: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    wall: float = 0.0
    #: CPU seconds the server and this process (the clients) used during the phase
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if not s.startswith("2"))

    def summary(self) -> dict[str, Any]:
        t = Timing(self.seconds)
        return {
            "calls": len(self.seconds),
            "p50": t.p50,
            "p99": t.p99,
            "max": t.max,
            "statuses": dict(self.statuses),
            "errors": self.errors,
            "skipped": self.skipped,
            "wall_s": self.wall,
            "per_s": len(self.seconds) / self.wall if self.wall else 0.0,
            "server_cpu_per_call": self.server_cpu / len(self.seconds) if self.seconds else 0.0,
            "client_cpu_per_call": self.client_cpu / len(self.seconds) if self.seconds else 0.0,
        }


def sequential_http(url: str, token: str, op: Op, n: int) -> tuple[Timing, Counter[str]]:
    statuses: Counter[str] = Counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:

        def call(k: int) -> None:
            method, path, body = op.http(k)
            statuses[str(client.request(method, path, json=body).status_code)] += 1

        for k in range(3):
            call(k)
        statuses.clear()
        timing, _ = measure(call, n, cpu="thread")
    return timing, statuses


async def concurrent_http(
    url: str, tokens: list[str], op: Op, per_client: int, limit_s: float, server_pid: int
) -> Load:
    load = Load()
    ready = asyncio.Barrier(len(tokens))
    clock: dict[str, float] = {}

    async def client(i: int, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=limit_s) as c:
            method, path, body = op.http(i)
            await c.request(method, path, json=body)  # untimed: the connection is open
            await ready.wait()
            if "start" not in clock:
                clock["cpu"], clock["server_cpu"] = time.process_time(), cpu_of(server_pid)
            stop = clock.setdefault("start", time.monotonic()) + limit_s
            for j in range(per_client):
                if time.monotonic() > stop:
                    load.skipped += per_client - j
                    return
                method, path, body = op.http(i * per_client + j)
                t = time.perf_counter()
                try:
                    answer = await c.request(method, path, json=body)
                    status = str(answer.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                load.seconds.append(time.perf_counter() - t)
                load.statuses[status] += 1

    await asyncio.gather(*(client(i, t) for i, t in enumerate(tokens)))
    load.wall = time.monotonic() - clock["start"]
    load.server_cpu = cpu_of(server_pid) - clock["server_cpu"]
    load.client_cpu = time.process_time() - clock["cpu"]
    return load


# -- the report ----------------------------------------------------------------------------
def _ms(v: float) -> str:
    return f"{v * 1000:,.1f}" if v == v else "-"


def render(rows: list[dict[str, Any]], clients: int) -> Table:
    table = Table(
        title=f"REST API vs in-process, p50 / p99 in ms; load: {clients} clients at once on loopback",
        title_justify="left",
    )
    for name, right in (
        ("operation", False),
        ("in-process", True),
        ("HTTP, 1 client", True),
        ("HTTP adds (p50)", True),
        (f"HTTP, {clients} clients", True),
        ("calls/s", True),
        ("CPU ms/call: server, clients", True),
        ("errors", True),
        (f"p99 < {GOAL_P99_MS:.0f} ms, 0 errors", False),
    ):
        table.add_column(name, justify="right" if right else "left")
    for r in rows:
        local, one, many = r["in_process"], r["http_1"], r["http_n"]
        errors = many["errors"] + sum(n for s, n in one["statuses"].items() if not s.startswith("2"))
        if r["read"]:
            ok = many["p99"] * 1000 < GOAL_P99_MS and errors == 0 and not many["skipped"]
            goal = "[green]yes[/]" if ok else "[red]no[/]"
        else:
            goal = "(a computation)" if errors == 0 else "[red]errors[/]"
        skipped = f", {many['skipped']} skipped" if many["skipped"] else ""
        table.add_row(
            r["name"],
            f"{_ms(local['p50'])} / {_ms(local['p99'])}",
            f"{_ms(one['p50'])} / {_ms(one['p99'])}",
            f"{(one['p50'] - local['p50']) * 1000:+,.1f}",
            f"{_ms(many['p50'])} / {_ms(many['p99'])}",
            f"{many['per_s']:,.0f}",
            f"{_ms(many['server_cpu_per_call'])}, {_ms(many['client_cpu_per_call'])}",
            f"{errors}{skipped}"
            + (
                f" ({', '.join(f'{k}: {v}' for k, v in many['statuses'].items() if not k.startswith('2'))})"
                if many["errors"]
                else ""
            ),
            goal,
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__, compare=False)
    parser.add_argument("--assets", type=int, default=100_000, help="photos (default 100000)")
    parser.add_argument("--subjects", type=int, default=10_000, help="subjects (default 10000)")
    parser.add_argument("--datasets", type=int, default=10, help="dataset versions (default 10)")
    parser.add_argument("--models", type=int, default=20, help="models (default 20)")
    parser.add_argument("--exports", type=int, default=5, help="exports of models (default 5)")
    parser.add_argument("--erasures", type=int, default=50, help="planned erasure requests (default 50)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument(
        "--per-client", type=int, default=20, help="calls per client and operation (default 20)"
    )
    parser.add_argument(
        "--sequential", type=int, default=100, help="calls of each operation, one caller (default 100)"
    )
    parser.add_argument(
        "--samples", type=int, default=50, help="subjects asked about, in rotation (default 50)"
    )
    parser.add_argument(
        "--phase-s",
        type=float,
        default=120.0,
        help="seconds an operation's load phase may take (default 120)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "disgorge-bench-api",
        help="folder of the cached workspace",
    )
    parser.add_argument("--fresh", action="store_true", help="rebuild the workspace even if cached")
    args = parser.parse_args(argv)
    if min(args.assets, args.subjects, args.clients, args.per_client, args.sequential, args.samples) < 1:
        parser.error(
            "--assets, --subjects, --clients, --per-client, --sequential and --samples must be positive"
        )
    setup = Setup(
        args.assets, args.subjects, args.datasets, args.models, args.exports, args.erasures, args.seed
    )

    info = machine(httpx=httpx.__version__)
    console.print(describe(info))
    root, saved = ensure_workspace(args.cache, setup, args.fresh)
    shape = saved["shape"]
    size_mb = _db(root).stat().st_size / 1e6
    console.print(
        f"workspace: {shape['assets']:,} photos, {shape['subjects']:,} subjects, {shape['datasets']} dataset "
        f"versions ({shape['members']:,} memberships), {shape['models']} models, {saved['audit_events']:,} "
        f"audit events, {args.erasures} erasure requests; catalog {size_mb:,.0f} MB; subjects asked about: "
        f"{args.samples} of the middle half by photos (median {saved['median_photos']})"
    )
    refs = saved["subjects"][: args.samples]
    served = {(e.method, e.path) for e in endpoints()}
    ops = [op for op in operations(refs) if op.route in served]
    missing = [op.name for op in operations(refs) if op.route not in served]
    if missing:
        console.print(f"[yellow]no route for {missing}: left out[/]")

    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="disgorge-bench-api-") as tmp,
        Workspace.open(root, actor="bench") as ws,
    ):
        tokens = [ws.create_token(PRINCIPAL, expires="1d") for _ in range(args.clients)]
        port = free_port()
        log = Path(tmp) / "server.log"
        server = start_server(root, port, log)
        url = f"http://127.0.0.1:{port}"
        try:
            for op in ops:
                console.print(f"[bold]{op.name}[/]: in-process ...", end="")
                local, _ = measure(lambda k, op=op: op.local(ws, k), args.sequential, warmup=3)
                console.print(" HTTP, 1 client ...", end="")
                one, one_statuses = sequential_http(url, tokens[0]["token"], op, args.sequential)
                console.print(f" HTTP, {args.clients} clients ...", end="")
                many = asyncio.run(
                    concurrent_http(
                        url, [t["token"] for t in tokens], op, args.per_client, args.phase_s, server.pid
                    )
                )
                console.print(f" {many.wall:.1f} s")
                rows.append(
                    {
                        "name": op.name,
                        "route": " ".join(op.route),
                        "read": op.read,
                        "in_process": Timing(local.seconds).summary(),
                        "http_1": {**Timing(one.seconds).summary(), "statuses": dict(one_statuses)},
                        "http_n": many.summary(),
                    }
                )
        finally:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
            for t in tokens:
                ws.revoke_token(t["id"])
        log_tail = log.read_text(errors="replace").splitlines()
        errors_logged = [line for line in log_tail if line.startswith(("ERROR", "CRITICAL"))]
    show(console, render(rows, args.clients), args.markdown)
    if errors_logged:
        console.print(f"[red]the server logged {len(errors_logged)} errors[/], e.g. {errors_logged[0]}")
    console.print(finish(info))
    write_json(
        args.json,
        {
            "machine": info,
            "setup": asdict(setup),
            "workspace": {**shape, "audit_events": saved["audit_events"], "catalog_mb": size_mb},
            "clients": args.clients,
            "per_client": args.per_client,
            "sequential": args.sequential,
            "operations": rows,
            "server_errors_logged": len(errors_logged),
            "goal_p99_ms": GOAL_P99_MS,
        },
    )
    bad = [
        r for r in rows if r["http_n"]["errors"] or (r["read"] and r["http_n"]["p99"] * 1000 >= GOAL_P99_MS)
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
