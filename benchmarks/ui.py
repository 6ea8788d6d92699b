"""Web UI benchmark: time to render the overview, a subject's page and a 500-node lineage graph in a
real browser at 100,000 photos, beside the same data fetched from the REST API.

Usage::

    .venv/bin/python benchmarks/ui.py                      # 100,000 photos, a 500-node graph
    .venv/bin/python benchmarks/ui.py --assets 2000 --subjects 200 --graph-nodes 60   # quick
    .venv/bin/python benchmarks/ui.py --fresh --json results.json --markdown

What it does, all in one run so every number comes from the same machine state:

1. the workspace: the one ``benchmarks/api.py`` builds (``ensure_workspace``: the synthetic
   catalog of ``benchmarks/lineage.py`` loaded into a real workspace, ``--assets`` photos,
   ``--subjects`` subjects with real data keys, an ``asset.ingested`` audit event per photo,
   50 planned erasure requests), cached under ``--workdir``; on top of it, through the public
   ``Workspace`` API (cached too): a source with a policy, 6 real JPEGs for each of two
   subjects (ingested), five consent decisions for the first, a dataset of the second's
   photos and ``--graph-nodes`` / 2 runs and models fed by it (``record_run``: chains of
   ``--chain-depth`` fine-tunes), so the graph downstream of that dataset has about
   ``--graph-nodes`` nodes (the run prints the count the API answers), and a password for a
   ``privacy_officer``;
2. ``disgorge serve`` on 127.0.0.1 in its own process, as shipped, and headless Debian
   Chromium through chromium-driver (Selenium), logged in once through ``/ui/login``;
3. per page, one cold load (browser cache emptied first) and ``--repeat`` warm ones, each
   from navigation start to the ``load`` event (``loadEventEnd`` of the navigation entry)
   or, for a page with a lineage graph, to the moment ``#graph`` gets ``data-ready="1"``
   (``graph.js`` sets it once drawn; a ``MutationObserver`` installed before the page's own
   scripts records ``performance.now()`` then), whichever the page is usable at. Pages: the
   overview ``/ui/``; the subject with 6 photos and 5 consent decisions; the lineage page of
   the dataset (~500 nodes); and the page of the subject whose photos fed that dataset (its
   graph embedded, as many hops as the subject page draws);
4. beside each page, the REST calls a client would make for the same data (httpx, one
   keep-alive connection, a bearer token of the same role; the lineage question is the
   one the page's graph asked, read from its ``data-src``), one cold and ``--repeat`` warm:
   the floor any UI pays;
5. prints the times (cold, warm p50 / p95), the goal (< 1 s, on the warm p95) and where the
   time goes (warm p50): the HTML's first byte and the server's CPU per load, ``load``,
   ``graph.json``, the graph drawn; for a graph page, its layouts run again alone on the
   drawn page (dagre as ``graph.js`` uses it, and breadthfirst), and one more load under
   V8's sampling profiler (DevTools protocol), the browser's main thread by script file.

Percentiles interpolate between ranks (``benchmarks/_harness.py``). The browser, the server
and this script share the machine's cores (and, on a shared machine, other work): the
machine line gives the load average at the start and the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Timing, describe, finish, machine, make_console, make_parser, show, write_json
from api import PRINCIPAL, Setup, cpu_of, ensure_workspace, free_port, start_server

from disgorge import Workspace
from disgorge.samples import synthetic_photo

console = make_console(200)

GOAL_S = 1.0
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PASSWORD = "benchmark-password-1"  # a throwaway workspace's
SOURCE = "ui-bench-app"
PAGE_SUBJECT = "Page_Subject"  # 6 photos, 5 consent decisions, a small dataset's model
GRAPH_SUBJECT = "Graph_Subject"  # 6 photos in the dataset that feeds the big graph
PHOTOS = 6
DATASET = "ui-bench-lineage"
SMALL_DATASET = "ui-bench-subject"
_DONE = ".ui-complete"

#: records when #graph gets data-ready="1"; installed before any of the page's scripts run
READY_PROBE = """
new MutationObserver(() => {
  const g = document.getElementById('graph');
  if (g && g.dataset.ready === '1' && window.__benchReady === undefined) {
    window.__benchReady = performance.now();
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-ready']});
"""

#: what a load left in the page's performance timeline (ms from navigation start)
READ_TIMES = """
const n = performance.getEntriesByType('navigation')[0];
const g = document.getElementById('graph');
const json = performance.getEntriesByType('resource').filter(r => r.name.includes('graph.json'));
return {
  status: n.responseStatus, request: n.requestStart, first_byte: n.responseStart,
  html_end: n.responseEnd, html_bytes: n.encodedBodySize, dom: n.domContentLoadedEventEnd,
  load: n.loadEventEnd, ready: window.__benchReady === undefined ? null : window.__benchReady,
  nodes: g && g.dataset.nodes ? Number(g.dataset.nodes) : null, has_graph: g !== null,
  graph_state: g ? (g.dataset.ready || null) : null, graph_src: g ? (g.dataset.src || null) : null,
  json_start: json.length ? json[0].startTime : null, json_end: json.length ? json[0].responseEnd : null,
  json_bytes: json.length ? json[0].encodedBodySize : null,
  resources: performance.getEntriesByType('resource').length,
};
"""


# -- the workspace -------------------------------------------------------------------------
@dataclass(frozen=True)
class Extra:
    graph_nodes: int
    chain_depth: int

    @property
    def chains(self) -> int:
        return max(1, round((self.graph_nodes - 1) / (2 * self.chain_depth)))


def add_pages_data(root: Path, extra: Extra, tmp: Path) -> dict[str, Any]:
    """The subjects, dataset, runs and password the pages show, through the public API."""
    started = time.perf_counter()
    folder = tmp / "photos"
    for p, person in enumerate((PAGE_SUBJECT, GRAPH_SUBJECT)):
        (folder / person).mkdir(parents=True)
        for i in range(PHOTOS):
            (folder / person / f"{i}.jpg").write_bytes(synthetic_photo(p, i))
    consent = tmp / "consent.csv"
    consent.write_text(
        "subject,purpose,decision,at\n"
        f"{PAGE_SUBJECT},ai_training,granted,2026-01-15\n"
        f"{PAGE_SUBJECT},biometric_processing,granted,2026-02-01\n"
        f"{PAGE_SUBJECT},third_party_sharing,denied,2026-03-01\n"
        f"{PAGE_SUBJECT},ai_generative_training,denied,2026-04-01\n"
        f"{PAGE_SUBJECT},data_mining,granted,2026-05-01\n"
        f"{GRAPH_SUBJECT},ai_training,granted,2026-01-15\n"
    )
    with Workspace.open(root, actor="bench") as ws:
        ws.add_source(SOURCE, kind="app")
        ws.add_policy(
            SOURCE, "2026", text=b"we train face models", effective_from="2026-01-01", allows=["ai_training"]
        )
        report = ws.ingest(folder, source=SOURCE, subject_from="dirname")
        if report.ingested != 2 * PHOTOS:
            raise SystemExit(f"ingested {report.ingested} of {2 * PHOTOS} photos: {report}")
        ws.import_consent(consent)
        small = ws.build_dataset(SMALL_DATASET, purpose="ai_training", subjects=[PAGE_SUBJECT])
        ws.record_run(
            "train:ui-bench-small",
            purpose="ai_training",
            inputs=[f"dataset:{SMALL_DATASET}@{small.version}"],
            outputs=[{"kind": "model", "name": "ui-bench-small", "version": "1"}],
        )
        big = ws.build_dataset(DATASET, purpose="ai_training", subjects=[GRAPH_SUBJECT])
        dataset = f"{DATASET}@{big.version}"
        with console.status(f"recording {extra.chains} x {extra.chain_depth} runs ..."):
            for c in range(extra.chains):
                parent = f"dataset:{dataset}"
                for k in range(extra.chain_depth):
                    name = f"ui-bench-{c:03d}-{k}"
                    ws.record_run(
                        f"{'train' if k == 0 else 'finetune'}:{name}",
                        purpose="ai_training",
                        inputs=[parent],
                        outputs=[{"kind": "model", "name": name, "version": "1"}],
                    )
                    parent = f"model:{name}@1"
        ws.set_password(PRINCIPAL, PASSWORD)
        refs = {p: ws.subject_ref(p) for p in (PAGE_SUBJECT, GRAPH_SUBJECT)}
    return {
        "dataset": dataset,
        "hops": 2 * extra.chain_depth,
        "page_subject": refs[PAGE_SUBJECT],
        "graph_subject": refs[GRAPH_SUBJECT],
        "seconds": time.perf_counter() - started,
    }


def ensure_pages_data(cache: Path, setup: Setup, extra: Extra, fresh: bool) -> tuple[Path, dict[str, Any]]:
    """``benchmarks/api.py``'s workspace with the pages' data on top, both cached in ``cache``."""
    marker = cache / _DONE
    base_marker = cache / ".complete"
    known = base_marker.stat().st_mtime_ns if base_marker.exists() and not fresh else None
    root, saved = ensure_workspace(cache, setup, fresh)
    key = json.dumps({"setup": setup.key(), "graph_nodes": extra.graph_nodes, "depth": extra.chain_depth})
    if marker.exists() and known == base_marker.stat().st_mtime_ns:
        pages = json.loads(marker.read_text())
        if pages.get("key") == key:
            return root, {**saved, **pages}
    if marker.exists():  # the pages' data of other parameters is in there: start again
        marker.unlink()
        return ensure_pages_data(cache, setup, extra, True)
    with tempfile.TemporaryDirectory(prefix="disgorge-bench-ui-") as tmp:
        console.print("adding the pages' subjects, dataset and runs ...")
        try:
            pages = {"key": key, **add_pages_data(root, extra, Path(tmp))}
        except BaseException:
            base_marker.unlink(missing_ok=True)  # half done: the next run builds it all again
            raise
    marker.write_text(json.dumps(pages, indent=2) + "\n")
    console.print(f"  added in {pages['seconds']:.0f} s")
    return root, {**saved, **pages}


# -- the browser ---------------------------------------------------------------------------
def new_browser() -> Any:
    """Headless Debian Chromium through chromium-driver, as ``tests/conftest.py`` starts it."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never downloads anything
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(120)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": READY_PROBE})
    return driver


def log_in(driver: Any, url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{url}/ui/login")
    driver.find_element(By.ID, "username").send_keys(PRINCIPAL)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, 60).until(
        lambda d: d.find_elements(By.ID, "whoami") or d.find_elements(By.ID, "error")
    )
    if driver.find_elements(By.ID, "error"):
        raise SystemExit("could not log in to the web UI")


def visit(driver: Any, url: str, server_pid: int, timeout: float) -> dict[str, Any]:
    """Load ``url``; wait for the graph if the page has one; what the timeline says (ms)."""
    cpu = cpu_of(server_pid)
    driver.get(url)  # returns once the load event has fired
    give_up = time.monotonic() + timeout
    while True:
        times: dict[str, Any] = driver.execute_script(READ_TIMES)
        done = times["ready"] is not None or times["graph_state"] == "error"
        if not times["has_graph"] or done or time.monotonic() > give_up:
            break
        time.sleep(0.02)
    times["server_cpu"] = (cpu_of(server_pid) - cpu) * 1000
    times["not_drawn"] = times["has_graph"] and times["ready"] is None
    return times


#: the drawn graph's layouts run again, alone (graph.js keeps its cytoscape in window.disgorgeGraph)
LAYOUTS = """
const cy = window.disgorgeGraph;
if (!cy) { return null; }
const out = {};
for (const [name, options] of [
  ['dagre', {name: 'dagre', rankDir: 'LR', nodeSep: 18, rankSep: 60, animate: false}],
  ['breadthfirst', {name: 'breadthfirst', directed: true, animate: false}],
]) {
  const t = performance.now();
  cy.layout(options).run();
  out[name] = performance.now() - t;
}
return out;
"""


def layout_times(driver: Any, repeat: int) -> dict[str, float] | None:
    """Median ms of the graph's layout alone, run again on the page as drawn: how much of the
    drawing is the layout (dagre, as graph.js uses it; breadthfirst, the simplest)."""
    runs = [driver.execute_script(LAYOUTS) for _ in range(repeat)]
    if not runs or runs[0] is None:
        return None
    return {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}


def js_profile(driver: Any, url: str, server_pid: int, timeout: float) -> dict[str, float]:
    """One more load of ``url`` under the V8 sampling profiler (DevTools protocol): ms of the
    renderer's main thread by script file (``(program)``: the browser's own work, such as
    style, layout and paint; ``(idle)``: waiting, for the network or the server)."""
    driver.execute_cdp_cmd("Profiler.enable", {})
    driver.execute_cdp_cmd("Profiler.setSamplingInterval", {"interval": 250})  # microseconds
    driver.execute_cdp_cmd("Profiler.start", {})
    try:
        visit(driver, url, server_pid, timeout)
    finally:
        profile = driver.execute_cdp_cmd("Profiler.stop", {})["profile"]
        driver.execute_cdp_cmd("Profiler.disable", {})
    where = {}
    for n in profile["nodes"]:
        frame = n["callFrame"]
        name = frame["url"].rsplit("/", 1)[-1].split("?")[0] or frame["functionName"]
        where[n["id"]] = name if name.startswith("(") or "." in name else "(native: canvas, DOM)"
    spent: Counter[str] = Counter()
    deltas = profile.get("timeDeltas", [])
    for i, node in enumerate(profile.get("samples", [])):
        spent[where[node]] += (deltas[i + 1] if i + 1 < len(deltas) else 0) / 1000
    return dict(spent.most_common())


# -- the REST API --------------------------------------------------------------------------
Call = tuple[str, str, dict[str, Any] | None]


def rest_time(client: httpx.Client, calls: list[Call]) -> list[float]:
    """Seconds of each call, one after the other, each answer read whole; fails on a non-2xx."""
    seconds = []
    for method, path, body in calls:
        started = time.perf_counter()
        answer = client.request(method, path, json=body)
        answer.read()
        seconds.append(time.perf_counter() - started)
        if not answer.is_success:
            raise SystemExit(f"{method} {path}: {answer.status_code} {answer.text[:200]}")
    return seconds


def route(call: Call) -> str:
    """A call named by its route: ``{ref}`` and ``{sha256}`` for the ids in its path."""

    def part(segment: str) -> str:
        if segment.startswith("sub_"):
            return "{ref}"
        return "{sha256}" if len(segment) == 64 else segment

    return f"{call[0]} " + "/".join(part(x) for x in call[1].split("?")[0].split("/"))


# -- the run -------------------------------------------------------------------------------
@dataclass
class Page:
    name: str
    path: str
    rest: list[Call]
    rest_note: str
    #: nodes in the API's answer to the page's lineage question (None: the page has none)
    api_nodes: int | None = None
    loads: list[dict[str, Any]] = field(default_factory=list)
    layouts: dict[str, float] | None = None
    profile: dict[str, float] | None = None
    rest_s: list[float] = field(default_factory=list)
    #: per pass, the seconds of each call
    rest_calls: list[list[float]] = field(default_factory=list)

    def warm(self, key: str) -> Timing:
        return Timing([v[key] / 1000 for v in self.loads[1:] if v.get(key) is not None])

    def rendered(self, v: dict[str, Any]) -> float:
        """Seconds until the page is usable: the graph drawn if it has one, else load."""
        return float(v["ready"] if v["has_graph"] and v["ready"] is not None else v["load"]) / 1000


def pages_of(saved: dict[str, Any], client: httpx.Client) -> list[Page]:
    dataset, hops = saved["dataset"], saved["hops"]
    pages: list[Page] = [
        Page(
            "overview",
            "/ui/",
            [
                ("GET", "/v1/status", None),
                ("GET", "/v1/cases?status=open", None),
                ("GET", "/v1/erasures", None),
                ("GET", "/v1/audit/verify", None),
                ("GET", "/v1/datasets", None),
                ("GET", "/v1/models", None),
            ],
            "status, open cases, erasures, audit verify, datasets, models",
        ),
    ]
    for label, ref in (
        ("subject (6 photos)", saved["page_subject"]),
        ("subject who fed the big graph", saved["graph_subject"]),
    ):
        view = client.get(f"/v1/subjects/{ref}").json()
        photos = [("GET", f"/v1/assets/{a['sha256']}/bytes", None) for a in view["assets"]]
        pages.append(
            Page(
                label,
                f"/ui/subjects/{ref}",
                [
                    ("GET", f"/v1/subjects/{ref}", None),
                    ("POST", "/v1/lineage", {"kind": "subject", "id": ref, "direction": "downstream"}),
                    *photos,
                ],
                f"subject, its lineage, {len(photos)} photos' bytes",
            )
        )
    pages.insert(
        2,
        Page(
            "lineage graph",
            f"/ui/lineage?kind=dataset&id={dataset}&direction=downstream&hops={hops}",
            [
                (
                    "POST",
                    "/v1/lineage",
                    {"kind": "dataset", "id": dataset, "direction": "downstream", "hops": hops},
                )
            ],
            "lineage",
        ),
    )
    return pages


def ask_as_the_page(p: Page, client: httpx.Client) -> None:
    """Make the page's REST lineage question the one its graph asked (``#graph``'s
    ``data-src``: kind, id, direction, hops), and count the nodes of the API's answer."""
    src = p.loads[-1].get("graph_src") if p.loads else None
    if src:
        query = dict(parse_qsl(urlsplit(src).query))
        body: dict[str, Any] = {k: query[k] for k in ("kind", "id", "direction") if k in query}
        if "hops" in query:
            body["hops"] = int(query["hops"])
        p.rest = [c if c[1] != "/v1/lineage" else ("POST", "/v1/lineage", body) for c in p.rest]
    asked = [b for _, path, b in p.rest if path == "/v1/lineage"]
    if asked:
        p.api_nodes = len(client.post("/v1/lineage", json=asked[0]).json()["nodes"])


def _ms(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v * 1000:,.0f}"


def slowest_call(p: Page) -> str:
    if len(p.rest_calls) < 2:
        return ""
    p50 = [Timing(list(c)).p50 for c in zip(*p.rest_calls[1:], strict=True)]
    k = max(range(len(p50)), key=p50.__getitem__)
    return f"{route(p.rest[k])}: {_ms(p50[k])}"


def render(pages: list[Page], repeat: int) -> tuple[Table, Table]:
    times = Table(
        title=f"Web UI in headless Chromium vs the same data from the REST API; ms, 1 cold + {repeat} warm",
        title_justify="left",
    )
    for name, right in (
        ("page", False),
        ("waits for", False),
        ("cold", True),
        ("warm p50", True),
        ("warm p95", True),
        (f"< {GOAL_S:.0f} s", False),
        ("nodes: page / API", True),
        ("REST calls", False),
        ("REST cold", True),
        ("REST p50", True),
        ("REST p95", True),
    ):
        times.add_column(name, justify="right" if right else "left")
    parts = Table(title="Where the time goes, warm p50, ms from navigation start", title_justify="left")
    for name in (
        "page",
        "HTML first byte",
        "server CPU per load",
        "HTML KiB",
        "load",
        "graph.json start-end",
        "graph.json KiB",
        "drawn (data-ready)",
        "layout alone: dagre, breadthfirst",
        "slowest REST call, p50",
    ):
        parts.add_column(name, justify="left" if name == "page" else "right")
    for p in pages:
        if not p.loads:
            continue
        statuses = {v["status"] for v in p.loads}
        bad = [s for s in statuses if s != 200]
        rendered = Timing([p.rendered(v) for v in p.loads[1:]])
        cold = p.rendered(p.loads[0])
        graph = p.loads[-1]["has_graph"]
        ok = not bad and not any(v["not_drawn"] for v in p.loads) and rendered.pct(0.95) < GOAL_S
        rest = Timing(p.rest_s[1:])
        times.add_row(
            p.name + (f" [red](HTTP {', '.join(map(str, bad))})[/]" if bad else ""),
            "graph drawn" if graph else "load",
            _ms(cold),
            _ms(rendered.p50),
            _ms(rendered.pct(0.95)),
            "[green]yes[/]" if ok else "[red]no[/]",
            f"{p.loads[-1]['nodes']} / {p.api_nodes}" if graph else "",
            p.rest_note,
            _ms(p.rest_s[0]),
            _ms(rest.p50),
            _ms(rest.pct(0.95)),
        )
        json_start, json_end = p.warm("json_start").p50, p.warm("json_end").p50
        parts.add_row(
            p.name,
            _ms(p.warm("first_byte").p50),
            _ms(p.warm("server_cpu").p50),
            f"{p.loads[-1]['html_bytes'] / 1024:,.1f}",
            _ms(p.warm("load").p50),
            f"{_ms(json_start)}-{_ms(json_end)}" if graph else "",
            f"{(p.loads[-1]['json_bytes'] or 0) / 1024:,.1f}" if graph else "",
            _ms(p.warm("ready").p50) if graph else "",
            f"{p.layouts['dagre']:,.0f}, {p.layouts['breadthfirst']:,.0f}" if p.layouts else "",
            slowest_call(p),
        )
    return times, parts


#: the columns of the profile table: script files, and V8's names for the rest
PROFILE_COLUMNS = (
    ("cytoscape", ("cytoscape.min.js",)),
    ("dagre", ("dagre.min.js", "cytoscape-dagre.js")),
    ("graph.js, htmx", ("graph.js", "htmx.min.js")),
    ("canvas, DOM calls", ("(native: canvas, DOM)",)),
    ("browser (program)", ("(program)",)),
    ("GC", ("(garbage collector)",)),
    ("idle", ("(idle)",)),
)


def render_profile(pages: list[Page]) -> Table:
    table = Table(
        title="The browser's main thread during one more load of each graph page, ms "
        "(V8 sampling profiler, 0.25 ms; until the profiler stops, just after data-ready)",
        title_justify="left",
    )
    table.add_column("page")
    for name, _ in PROFILE_COLUMNS:
        table.add_column(name, justify="right")
    table.add_column("other", justify="right")
    for p in pages:
        if not p.profile:
            continue
        named = {f for _, files in PROFILE_COLUMNS for f in files}
        cells = [f"{sum(p.profile.get(f, 0.0) for f in files):,.0f}" for _, files in PROFILE_COLUMNS]
        other = sum(v for k, v in p.profile.items() if k not in named)
        table.add_row(p.name, *cells, f"{other:,.0f}")
    return table


def chromium_version() -> str:
    try:
        out = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip().removeprefix("Chromium ").split(" built")[0] or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__, compare=False)
    parser.add_argument("--assets", type=int, default=100_000, help="photos (default 100000)")
    parser.add_argument("--subjects", type=int, default=10_000, help="subjects (default 10000)")
    parser.add_argument(
        "--graph-nodes", type=int, default=500, help="nodes of the lineage graph, about (default 500)"
    )
    parser.add_argument(
        "--chain-depth", type=int, default=5, help="models per fine-tune chain in that graph (default 5)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="warm loads of each page (default 5)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for a graph to be drawn (default 60)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "disgorge-bench-ui",
        help="folder of the cached workspaces (one per --assets)",
    )
    parser.add_argument("--fresh", action="store_true", help="rebuild the workspace even if cached")
    parser.add_argument(
        "--build-only", action="store_true", help="build (or check) the cached workspace, then stop"
    )
    args = parser.parse_args(argv)
    if min(args.assets, args.subjects, args.graph_nodes, args.chain_depth, args.repeat) < 1:
        parser.error("--assets, --subjects, --graph-nodes, --chain-depth and --repeat must be positive")
    import selenium

    info = machine(chromium=chromium_version(), selenium=selenium.__version__, httpx=httpx.__version__)
    console.print(describe(info))
    setup = Setup(args.assets, args.subjects, 10, 20, 5, 50, args.seed)
    extra = Extra(args.graph_nodes, args.chain_depth)
    root, saved = ensure_pages_data(args.workdir / f"assets-{args.assets}", setup, extra, args.fresh)
    shape = saved["shape"]
    console.print(
        f"workspace: {shape['assets'] + 2 * PHOTOS:,} photos, {shape['subjects'] + 2:,} subjects, "
        f"{saved['audit_events']:,}+ audit events; graph: dataset {saved['dataset']}, "
        f"{extra.chains} chains of {extra.chain_depth} models, hops {saved['hops']}"
    )
    if args.build_only:
        return 0
    with Workspace.open(root, actor="bench") as ws:
        token = ws.create_token(PRINCIPAL, expires="1d")
    pages: list[Page] = []
    with tempfile.TemporaryDirectory(prefix="disgorge-bench-ui-") as tmp:
        log = Path(tmp) / "server.log"
        port = free_port()
        server = start_server(root, port, log)
        url = f"http://127.0.0.1:{port}"
        driver = None
        try:
            headers = {"Authorization": f"Bearer {token['token']}"}
            # the client waits while the browser runs: drop an idle connection before uvicorn
            # does (its keep-alive timeout is 5 s), or the next call meets a reset
            keep = httpx.Limits(keepalive_expiry=2.0)
            with httpx.Client(base_url=url, headers=headers, timeout=120, limits=keep) as client:
                pages = pages_of(saved, client)
                driver = new_browser()
                log_in(driver, url)
                for p in pages:
                    console.print(f"[bold]{p.name}[/] {p.path}: browser ...", end="")
                    for k in range(1 + args.repeat):
                        if k == 0:
                            driver.execute_cdp_cmd("Network.clearBrowserCache", {})
                        p.loads.append(visit(driver, url + p.path, server.pid, args.timeout))
                    if p.loads[-1]["ready"] is not None:
                        p.layouts = layout_times(driver, 3)
                        p.profile = js_profile(driver, url + p.path, server.pid, args.timeout)
                    ask_as_the_page(p, client)
                    console.print(" REST ...", end="")
                    p.rest_calls = [rest_time(client, p.rest) for _ in range(1 + args.repeat)]
                    p.rest_s = [sum(c) for c in p.rest_calls]
                    console.print(f" {_ms(p.rendered(p.loads[-1]))} ms, REST {_ms(p.rest_s[-1])} ms")
        finally:
            if driver is not None:
                driver.quit()
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
            with Workspace.open(root, actor="bench") as ws:
                ws.revoke_token(token["id"])
        errors_logged = [
            ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith(("ERROR", "CRITICAL"))
        ]
    times, parts = render(pages, args.repeat)
    show(console, times, args.markdown)
    show(console, parts, args.markdown)
    if any(p.profile for p in pages):
        show(console, render_profile(pages), args.markdown)
    if errors_logged:
        console.print(f"[red]the server logged {len(errors_logged)} errors[/], e.g. {errors_logged[0]}")
    console.print(finish(info))
    met = all(
        p.loads
        and all(v["status"] == 200 and not v["not_drawn"] for v in p.loads)
        and Timing([p.rendered(v) for v in p.loads[1:]]).pct(0.95) < GOAL_S
        for p in pages
    )
    write_json(
        args.json,
        {
            "machine": info,
            "setup": {**vars(setup), "graph_nodes": extra.graph_nodes, "chain_depth": extra.chain_depth},
            "workspace": {**shape, "audit_events": saved["audit_events"], "dataset": saved["dataset"]},
            "pages": [
                {
                    "name": p.name,
                    "path": p.path,
                    "loads_ms": p.loads,
                    "layouts_ms": p.layouts,
                    "profile_ms": p.profile,
                    "rest_calls": p.rest_note,
                    "rest_s": p.rest_s,
                    "rest_routes": [route(c) for c in p.rest],
                    "rest_calls_s": p.rest_calls,
                }
                for p in pages
            ],
            "goal_s": GOAL_S,
            "goal_met": met,
            "server_errors_logged": len(errors_logged),
        },
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
