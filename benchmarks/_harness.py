"""What every benchmark in this folder shares: the machine, the clock, the options, the tables.

Each script used to carry its own copy of these (three ``machine()`` functions that had
drifted apart, four timers with three ways of taking a percentile, ``--json`` defined six
times), so two benchmarks could not be read side by side. Here once:

* :func:`machine` describes where the numbers come from: CPU model and cores, memory,
  Python, SQLite, the platform, and *which* disgorge ran (version, the commit of the code
  imported, ``+dirty`` if its ``src/`` has uncommitted changes, and its path), with the load
  average when the run started; :func:`finish` adds the load average at the end. On a
  shared machine wall-clock times move with the other work, so every report carries both.
* :class:`Timing` is a list of seconds (wall clock, ``time.perf_counter``) with the CPU
  seconds of the same calls where measured, and one definition of p50 / p99 / min / max
  (linear interpolation between the closest ranks, as ``numpy.percentile`` does).
  :func:`measure` times a call ``repeat`` times after ``warmup`` untimed calls;
  :class:`Clock` times a ``with`` block.
* :func:`make_parser` is the argparse base: ``--json FILE``, ``--markdown``, and the
  before/after options ``--baseline-src DIR`` and ``--rounds N``.
* :func:`show` prints a ``rich`` table and, with ``--markdown``, the same table as Markdown
  (:func:`markdown`, built on :func:`markdown_table`), ready for ``docs/benchmarks.md``.
* :func:`before_after` runs a benchmark on the code of another checkout and on this one,
  alternating, each in its own process with ``PYTHONPATH`` pointing at that code's
  ``src/``, and prints the numbers that matter side by side in one table. That is how a
  refactor shows it is "not slower" in one run, on one machine state: make the other
  checkout with ``git worktree add --detach /tmp/disgorge-before COMMIT`` (the main
  checkout is not touched). Both runs execute *this* tree's benchmark script, so the
  measuring code is the same and only the code measured differs; the script must
  therefore use only what both versions have (the public ``Workspace`` methods, the CLI).

Private names of the package are not imported here: the harness itself only reads
``disgorge.__version__`` and ``disgorge.__file__``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "Clock",
    "Timing",
    "before_after",
    "describe",
    "finish",
    "load_average",
    "machine",
    "make_console",
    "make_parser",
    "markdown",
    "markdown_table",
    "measure",
    "percentile",
    "show",
    "write_json",
]

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


# -- the machine ---------------------------------------------------------------------------
def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` shows them."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _first(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def code_version() -> dict[str, str]:
    """Which disgorge this process imported: version, commit (``+dirty`` when its ``src/``
    differs from that commit) and path. With ``PYTHONPATH`` pointing at another checkout
    this names that checkout, so a before/after report says what it compared."""
    import disgorge

    package = Path(disgorge.__file__).resolve().parent
    commit = _git(package, "rev-parse", "--short=10", "HEAD") or "unknown"
    if commit != "unknown" and _git(package, "status", "--porcelain", "--", "."):
        commit += "+dirty"
    return {"disgorge": disgorge.__version__, "commit": commit, "code": str(package.parent)}


def machine(**extra: str) -> dict[str, str]:
    """Where the numbers come from, with the load average now (the start of the run).

    ``extra`` adds versions a benchmark depends on (numpy, dlib, scikit-learn)."""
    memory = _first("/proc/meminfo", "MemTotal")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {
        "nproc": str(cores),
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "memory": f"{int(memory.split()[0]) / 1024 / 1024:.0f} GiB" if memory else "unknown",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        **code_version(),
        **extra,
        "load_average": load_average(),
    }


def describe(info: dict[str, str]) -> str:
    """One line for the top of a report."""
    known = {"nproc", "cpu", "memory", "python", "sqlite", "platform", "disgorge", "commit", "code"}
    known |= {"load_average", "load_average_after"}
    extra = "".join(f", {k} {v}" for k, v in info.items() if k not in known)
    return (
        f"machine: {info['nproc']} cores ({info['cpu']}), {info['memory']} RAM, Python {info['python']}, "
        f"SQLite {info['sqlite']}{extra}, {info['platform']}; disgorge {info['disgorge']} "
        f"at {info['commit']} ({info['code']}); load average {info['load_average']} (1, 5, 15 min)"
    )


def finish(info: dict[str, str]) -> str:
    """Record the load average at the end of the run; a line saying both, for the report."""
    info["load_average_after"] = load_average()
    busy = float(info["load_average"].split()[0]) if info["load_average"] != "unknown" else 0.0
    note = " (other processes were busy: timings are noisy)" if busy > 1.0 else ""
    return (
        f"load average at the start {info['load_average']}, at the end {info['load_average_after']} "
        f"(1, 5, 15 min) on {info['nproc']} cores{note}"
    )


# -- timing --------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1), interpolating linearly between the closest ranks
    (``numpy.percentile``'s default), so every benchmark's p99 means the same thing."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Timing:
    """Seconds per call (wall clock) and, where measured, CPU seconds per call.

    ``timeouts`` calls were stopped at ``limit`` seconds (their time counts as ``limit``),
    which makes a percentile that lands on one a lower bound (:meth:`censored`)."""

    seconds: list[float]
    cpu: list[float] = field(default_factory=list)
    timeouts: int = 0
    limit: float = 0.0

    def pct(self, q: float) -> float:
        return percentile(self.seconds, q)

    def cpu_pct(self, q: float) -> float:
        return percentile(self.cpu, q)

    @property
    def p50(self) -> float:
        return self.pct(0.5)

    @property
    def p99(self) -> float:
        return self.pct(0.99)

    @property
    def min(self) -> float:
        return min(self.seconds) if self.seconds else math.nan

    @property
    def max(self) -> float:
        return max(self.seconds) if self.seconds else math.nan

    def censored(self, q: float) -> bool:
        """True when the percentile is a lower bound (it reaches a stopped call)."""
        return self.timeouts > 0 and self.pct(q) >= self.limit

    def summary(self) -> dict[str, float | int]:
        """For ``--json``: the count and the usual statistics, in seconds."""
        out: dict[str, float | int] = {"calls": len(self.seconds), "p50": self.p50, "p99": self.p99}
        out |= {"min": self.min, "max": self.max, "timeouts": self.timeouts}
        if self.cpu:
            out |= {"cpu_p50": self.cpu_pct(0.5), "cpu_p99": self.cpu_pct(0.99)}
        return out

    @classmethod
    def best_of(cls, passes: Sequence[Timing]) -> Timing:
        """Call by call, the fastest of several passes over the same calls: what other
        processes' noise leaves alone (a call is slowed by them in some passes, not all)."""
        seconds = [min(ts) for ts in zip(*(p.seconds for p in passes), strict=True)]
        cpu = [min(ts) for ts in zip(*(p.cpu for p in passes), strict=True)] if passes[0].cpu else []
        return cls(seconds, cpu)

    @classmethod
    def joined(cls, passes: Sequence[Timing]) -> Timing:
        """Every call of every pass."""
        return cls([s for p in passes for s in p.seconds], [c for p in passes for c in p.cpu])


def _tree_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


CpuClock = Literal["process", "thread", "tree"]
_CPU: dict[str, Callable[[], float]] = {
    "process": time.process_time,
    "thread": time.thread_time,
    "tree": _tree_cpu,
}


class Clock:
    """Wall-clock and CPU seconds of a ``with`` block.

    ``cpu="process"`` counts every thread of this process (SQLite, BLAS); ``"thread"`` only
    the calling one (to tell whether a library runs threads of its own); ``"tree"`` adds the
    child processes that ended and were waited for inside the block (the erasure's forensic
    scan). On a loaded machine CPU seconds move far less than wall-clock ones."""

    def __init__(self, cpu: CpuClock = "process") -> None:
        self._cpu = _CPU[cpu]
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._started, self._cpu_started = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._started
        self.cpu = self._cpu() - self._cpu_started


def measure(
    call: Callable[[int], T], repeat: int = 1, *, warmup: int = 0, cpu: CpuClock = "process"
) -> tuple[Timing, T]:
    """Time ``call(k)`` for k in ``0 .. repeat - 1`` after ``warmup`` untimed calls (page
    cache, statement caches, first-call page faults); the timing and the last result."""
    for k in range(warmup):
        call(k)
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    seconds, cpus = [], []
    result: T
    for k in range(repeat):
        with Clock(cpu) as clock:
            result = call(k)
        seconds.append(clock.wall)
        cpus.append(clock.cpu)
    return Timing(seconds, cpus), result


# -- options and output --------------------------------------------------------------------
def make_parser(doc: str | None, *, compare: bool = True) -> argparse.ArgumentParser:
    """The options every benchmark has; a script adds its own. ``compare=False`` leaves out
    the before/after options (for a benchmark whose results are not times)."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the results here")
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    if not compare:
        return p
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        metavar="DIR",
        help="before/after: run this benchmark on the code of the checkout DIR (its src/) and on "
        "this tree's, each in its own process, alternating, and print both side by side "
        "(make DIR with: git worktree add --detach /tmp/disgorge-before COMMIT)",
    )
    p.add_argument(
        "--rounds", type=int, default=1, help="with --baseline-src: before/after pairs to run (default 1)"
    )
    return p


def make_console(width: int = 150) -> Console:
    """A console as wide as the terminal, or ``width`` when the output goes to a file."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else width)


def _plain(cell: Any) -> str:
    if isinstance(cell, Text):
        return cell.plain
    return Text.from_markup(str(cell)).plain


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[bool] = ()) -> str:
    """A GitHub-flavoured Markdown table; ``right[i]`` aligns column ``i`` to the right."""

    def cell(v: Any) -> str:
        return _plain(v).replace("|", "\\|").replace("\n", " ")

    align = [right[i] if i < len(right) else False for i in range(len(columns))]
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |"]
    lines.append("|" + "|".join("---:" if r else "---" for r in align) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(table: Table) -> str:
    """A ``rich`` table as Markdown (markup stripped; its title as a bold line above)."""
    columns = [_plain(c.header) for c in table.columns]
    cells = [list(c.cells) for c in table.columns]
    rows = [[col[i] for col in cells] for i in range(table.row_count)]
    right = [c.justify == "right" for c in table.columns]
    title = f"**{_plain(table.title)}**\n\n" if table.title else ""
    return title + markdown_table(columns, rows, right)


def show(out: Console, table: Table, as_markdown: bool = False) -> None:
    """Print a table; with ``--markdown``, its Markdown after it."""
    out.print(table)
    if as_markdown:
        print(markdown(table) + "\n", flush=True)


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")


# -- before / after ------------------------------------------------------------------------
#: options of the parent run that its children must not get (value-taking ones: True)
_PARENT_ONLY = {"--baseline-src": True, "--rounds": True, "--json": True}


def _child_argv(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _PARENT_ONLY:
            skip = _PARENT_ONLY[name] and "=" not in arg
            continue
        out.append(arg)
    return out


@dataclass
class _Run:
    label: str
    round: int
    src: Path
    rc: int = 0
    wall_s: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, float] = field(default_factory=dict)


def _ratio_cell(before: list[float], after: list[float]) -> str:
    if not before or not after:
        return "-"
    b, a = percentile(before, 0.5), percentile(after, 0.5)
    if not b or math.isnan(a) or math.isnan(b):
        return "-"
    r = a / b
    mark = " [red](slower?)[/]" if r > 1.10 else ""
    return f"{r:.2f}x{mark}"


def _seconds(v: float) -> str:
    if math.isnan(v):
        return "-"
    return f"{v * 1000:,.1f} ms" if v < 1 else f"{v:,.2f} s"


def _cell(values: list[float]) -> str:
    return " / ".join(_seconds(v) for v in values) if values else "-"


def before_after(
    script: str | Path,
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    headline: Callable[[dict[str, Any]], dict[str, float]],
    *,
    child_args: Sequence[str] = (),
    width: int = 160,
) -> int:
    """Run ``script`` on ``args.baseline_src``'s code ("before") and on this tree's ("after").

    ``argv`` (``sys.argv[1:]`` when None) goes to both runs minus ``--baseline-src``,
    ``--rounds`` and ``--json``, plus ``child_args`` (e.g. ``--plain``: public API only, so
    the same script runs on both versions). Each run is a process of its own with
    ``PYTHONPATH=<code>/src`` and writes its ``--json`` to a temporary file; ``headline``
    picks from that the numbers to compare, in seconds (lower is better). Runs alternate,
    before first (the first run builds any cached data, so the older code makes it and the
    newer one must read it), ``args.rounds`` times. With ``--json`` the parent writes both
    runs' full results and the comparison."""
    out = make_console(width)
    script = Path(script).resolve()
    baseline = args.baseline_src.resolve()
    if not (baseline / "src" / "disgorge" / "__init__.py").exists():
        raise SystemExit(
            f"--baseline-src {baseline}: no src/disgorge there; make the checkout with "
            "git worktree add --detach /tmp/disgorge-before COMMIT"
        )
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    child = [*_child_argv(sys.argv[1:] if argv is None else argv), *child_args]
    info = machine()
    out.print(describe(info))
    runs: list[_Run] = []
    with tempfile.TemporaryDirectory(prefix="disgorge-before-after-") as tmp:
        for n in range(1, args.rounds + 1):
            for label, src in (("before", baseline / "src"), ("after", ROOT / "src")):
                run = _Run(label, n, src)
                result = Path(tmp) / f"{label}-{n}.json"
                cmd = [sys.executable, str(script), *child, "--json", str(result)]
                env = {
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")])),
                }
                out.rule(f"{label} (round {n}): PYTHONPATH={src}")
                out.print("$ " + shlex.join(cmd[1:]), highlight=False)
                started = time.perf_counter()
                run.rc = subprocess.run(cmd, env=env, check=False).returncode
                run.wall_s = time.perf_counter() - started
                if result.exists():
                    run.results = json.loads(result.read_text())
                    run.headline = headline(run.results)
                if run.rc != 0:
                    out.print(f"[red]{label} (round {n}) exited with {run.rc}[/]")
                runs.append(run)
    finish(info)

    def commit(label: str) -> str:
        for r in runs:
            if r.label == label and r.results.get("machine"):
                return str(r.results["machine"].get("commit", "?"))
        return "?"

    metrics = list(dict.fromkeys(k for r in runs for k in r.headline))
    by = {label: [r for r in runs if r.label == label] for label in ("before", "after")}
    table = Table(
        title=f"before/after, {args.rounds} round(s), alternating, before first "
        "(one value per round; the ratio of the medians)",
        title_justify="left",
    )
    table.add_column("what")
    table.add_column(f"before ({commit('before')})", justify="right")
    table.add_column(f"after ({commit('after')})", justify="right")
    table.add_column("after / before", justify="right")
    for m in metrics:
        b = [r.headline[m] for r in by["before"] if m in r.headline]
        a = [r.headline[m] for r in by["after"] if m in r.headline]
        table.add_row(m, _cell(b), _cell(a), _ratio_cell(b, a))

    def loads(label: str) -> str:
        return " | ".join(
            f"{r.results.get('machine', {}).get('load_average', '?').split()[0]} -> "
            f"{r.results.get('machine', {}).get('load_average_after', '?').split()[0]}"
            for r in by[label]
        )

    table.add_row("load average (1 min), start -> end", loads("before"), loads("after"), "")
    table.add_row(
        "the run took (setup included)",
        _cell([r.wall_s for r in by["before"]]),
        _cell([r.wall_s for r in by["after"]]),
        "",
    )
    out.rule("before/after")
    show(out, table, args.markdown)
    out.print(
        f"before: {baseline / 'src'}; after: {ROOT / 'src'}; ratios above 1.10 are marked; " + finish(info)
    )
    write_json(
        args.json,
        {
            "machine": info,
            "baseline_src": str(baseline),
            "child_argv": child,
            "runs": [
                {
                    "label": r.label,
                    "round": r.round,
                    "src": str(r.src),
                    "rc": r.rc,
                    "wall_s": r.wall_s,
                    "headline": r.headline,
                    "results": r.results,
                }
                for r in runs
            ],
        },
    )
    return max(r.rc for r in runs)
