"""Vision benchmark: face analysis on 1 and 2 processes, PDQ copy search at 1,000,000 hashes.

Usage::

    .venv/bin/python benchmarks/vision.py                   # both parts, defaults below
    .venv/bin/python benchmarks/vision.py --repeats 2       # run 1 and 2 processes twice each
    .venv/bin/python benchmarks/vision.py --skip-faces --hashes 200000
    .venv/bin/python benchmarks/vision.py --json results.json

What it does, in one run so every number comes from the same machine state:

1. **Face analysis.** Reads every photo of ``lfw10x10`` (100, 250x250) and ``deepface``
   (64, from 330x512 up to 4352x2903) into memory, orders them by SHA-256 of their bytes
   (``disgorge analyze`` takes photos in ingest order, which is unrelated to their size),
   and times ``disgorge.vision.faces.analyze(data, embed=True)`` — decode, PDQ hash, HOG
   detection (with the upsampling retry), 5-point landmarks, 128-d embedding and face
   crop — over all of them:

   - on 1 process: inline, as ``run_analyze`` does with ``workers=1``;
   - on 2 processes: through ``disgorge.pool.ordered_map`` in batches of
     ``disgorge.vision.analyze.BATCH`` photos, as ``run_analyze`` does.

   The models load before the clock starts in both (each worker loads its own copy in a
   warm-up task, and all start together); their load time is printed separately. The
   photos are in memory, so no disk is timed. Both runs must give the same faces and the
   same embeddings. Besides wall time the table shows the CPU seconds the processes got:
   on a machine shared with other work, "CPU share" below 100% means the processes were
   waiting for a core, and the wall-clock speed-up then says more about the other load
   than about disgorge. So two more views that other load does not move: the 1-process
   CPU seconds over the busiest worker's ("own cores"), and a model of ``ordered_map``'s
   schedule fed with the measured CPU seconds of each photo, for several batch sizes
   (what idle cores would give). The 1-process run also compares the process's CPU time
   with its calling thread's, to show whether dlib runs threads of its own.

2. **Copy search.** Builds a ``HashMatrix`` of ``--hashes`` random 256-bit hashes and
   plants near-copies of 8 query photos at known distances (inside and outside the
   threshold of 31 bits, and some near a dihedral variant only, as a mirrored copy would
   be). Then times ``HashMatrix.search`` with the 8 dihedral hashes of a photo (what
   ``disgorge find --by copy`` sends) and with 1 hash, over ``--queries`` queries each
   (p50 and p99), against the obvious baselines:

   - a Python loop over the stored hashes, one at a time: ``int.from_bytes`` of the
     stored 32 bytes, XOR with the query, ``int.bit_count()`` (over every stored hash
     unless ``--baseline-rows`` is smaller; then the time is extrapolated linearly);
   - the ``imagehash`` way: each hash a 16x16 boolean array and the distance
     ``count_nonzero(a.flatten() != b.flatten())``, which is ``ImageHash.__sub__``
     (emulated here, not imported; timed on ``--imagehash-rows`` hashes and extrapolated).

   The planted copies must be found exactly, with their distances, and the loop baseline
   must return the same matches as ``HashMatrix.search``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    before_after,
    describe,
    finish,
    machine,
    make_console,
    make_parser,
    measure,
    percentile,
    show,
    write_json,
)

from disgorge.pool import ordered_map
from disgorge.vision.analyze import BATCH
from disgorge.vision.faces import analyze
from disgorge.vision.models import dlib_models
from disgorge.vision.phash import DEFAULT_MAX_DISTANCE, HashMatrix, pdq_dihedral

console = make_console(150)

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
GOAL_SPEEDUP = 1.8
GOAL_QUERY_MS = 50.0


# -- part 1: face analysis -----------------------------------------------------------------
@dataclass
class Photo:
    name: str
    group: str
    data: bytes


def photos(root: Path, limit: int | None) -> list[Photo]:
    found = [
        Photo(str(p.relative_to(root)), group, p.read_bytes())
        for group, pattern in (("lfw10x10", "lfw10x10/*/*.jpg"), ("deepface", "deepface/*.jpg"))
        for p in root.glob(pattern)
    ]
    if not found:
        raise SystemExit(f"no photos under {root} (lfw10x10/*/*.jpg, deepface/*.jpg): see --faces")
    found.sort(key=lambda p: hashlib.sha256(p.data).hexdigest())
    return found[:limit] if limit else found


def _work(batch: list[bytes] | None, start_at: float = 0.0) -> dict:
    """Runs in a worker (or inline). ``None``: load the models, then wait for ``start_at``."""
    if batch is None:
        t = time.monotonic()
        dlib_models(False)
        loaded = time.monotonic() - t
        late = time.monotonic() - start_at
        if late < 0:
            time.sleep(-late)
        return {"pid": os.getpid(), "load_s": loaded, "late_s": max(late, 0.0)}
    started = time.monotonic()
    cpu = time.process_time()
    thread_cpu = time.thread_time()
    seconds, cpus, results = [], [], []
    for data in batch:
        t, c = time.perf_counter(), time.process_time()
        results.append(analyze(data, embed=True))
        seconds.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {
        "pid": os.getpid(),
        "start": started,
        "end": time.monotonic(),
        "cpu_s": time.process_time() - cpu,
        "thread_cpu_s": time.thread_time() - thread_cpu,
        "seconds": seconds,
        "cpu": cpus,
        "results": results,
    }


@dataclass
class FaceRun:
    name: str
    processes: int
    images: int
    faces: int
    wall_s: float
    cpu_s: float
    thread_cpu_s: float
    load_s: float
    per_image_s: list[float] = field(repr=False)
    per_image_cpu_s: list[float] = field(repr=False)
    embeddings: list[list[bytes]] = field(repr=False)
    worker_cpu_s: list[float] = field(default_factory=list)

    @property
    def ms_per_image(self) -> float:
        return 1000 * self.wall_s / self.images

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / (self.wall_s * self.processes)


def run_faces(items: list[Photo], workers: int, batch_size: int) -> FaceRun:
    datas = [p.data for p in items]
    batches = [datas[i : i + batch_size] for i in range(0, len(datas), batch_size)]
    load_s = 0.0
    start_at = 0.0
    if workers <= 1:
        t = time.monotonic()
        dlib_models(False)
        load_s = time.monotonic() - t
    else:
        start_at = time.monotonic() + 15.0  # time for every worker to start and load its models

    def jobs() -> Iterator[list[bytes] | None]:
        if workers > 1:
            yield from [None] * workers
        yield from batches

    outs, warm = [], []
    for _batch, out in ordered_map(_work, jobs(), args=lambda b: (b, start_at), workers=workers):
        (warm if "load_s" in out else outs).append(out)
    if warm:
        load_s = max(w["load_s"] for w in warm)
        if len({w["pid"] for w in warm}) != workers:
            console.print("[yellow]warning: a worker ran two warm-up tasks; its start was timed cold[/]")
        if any(w["late_s"] > 0 for w in warm):
            console.print("[yellow]warning: a worker loaded its models after the common start[/]")
    results = [r for out in outs for r in out["results"]]
    errors = [r.error for r in results if r.error]
    if errors:
        raise SystemExit(f"analysis failed on {len(errors)} photos: {errors[:3]}")
    return FaceRun(
        name=f"{workers} process{'es' if workers > 1 else ''}",
        processes=workers,
        images=len(results),
        faces=sum(len(r.faces) for r in results),
        wall_s=max(o["end"] for o in outs) - min(o["start"] for o in outs),
        cpu_s=sum(o["cpu_s"] for o in outs),
        thread_cpu_s=sum(o["thread_cpu_s"] for o in outs),
        load_s=load_s,
        per_image_s=[s for o in outs for s in o["seconds"]],
        per_image_cpu_s=[s for o in outs for s in o["cpu"]],
        embeddings=[[f.embedding or b"" for f in r.faces] for r in results],
        worker_cpu_s=[
            sum(o["cpu_s"] for o in outs if o["pid"] == pid) for pid in sorted({o["pid"] for o in outs})
        ],
    )


def modelled_makespan(costs: list[float], batch: int, workers: int) -> float:
    """Seconds ``ordered_map`` takes on ``workers`` idle cores, given each photo's CPU seconds.

    Follows ``ordered_map`` and ``ProcessPoolExecutor``: batches go to the first free worker
    in order; the first ``workers + 2`` are submitted at once, and batch ``k`` after that
    only once batches ``0 .. k - workers - 2`` are done (the caller waits for the oldest).
    """
    batches = [sum(costs[i : i + batch]) for i in range(0, len(costs), batch)]
    free = [0.0] * workers
    done: list[float] = []
    for k, cost in enumerate(batches):
        submitted = max(done[: k - workers - 1]) if k >= workers + 2 else 0.0
        w = min(range(workers), key=free.__getitem__)
        free[w] = max(free[w], submitted) + cost
        done.append(free[w])
    return max(done) if done else 0.0


def render_model(base: FaceRun, workers: int, current: int) -> Table:
    costs = base.per_image_cpu_s
    total = sum(costs)
    table = Table(
        title=f"modelled on {workers} idle cores: ordered_map's schedule of the 1-process run's CPU "
        "seconds per photo (no other load, no pool start)",
        title_justify="left",
    )
    for col in ("photos per batch", "batches", "modelled wall s", "speed-up"):
        table.add_column(col, justify="right")
    for size in sorted({1, 2, 4, 8, BATCH, current, 32}):
        span = modelled_makespan(costs, size, workers)
        mark = " (analyze's BATCH)" if size == BATCH else ""
        table.add_row(f"{size}{mark}", str(-(-len(costs) // size)), f"{span:.1f}", f"{total / span:.2f}x")
    return table


def same_analysis(a: FaceRun, b: FaceRun) -> bool:
    if [len(x) for x in a.embeddings] != [len(x) for x in b.embeddings]:
        return False
    for xs, ys in zip(a.embeddings, b.embeddings, strict=True):
        for x, y in zip(xs, ys, strict=True):
            if not np.allclose(np.frombuffer(x, "<f4"), np.frombuffer(y, "<f4"), atol=1e-5):
                return False
    return True


def render_faces(runs: list[FaceRun], base: FaceRun) -> Table:
    table = Table(
        title="face analysis: analyze(data, embed=True) = decode + PDQ + detect + landmarks + embed + crop",
        title_justify="left",
    )
    cols = ("run", "images", "faces", "wall s", "ms/image", "CPU s", "CPU s per process", "CPU share")
    for col in (*cols, "speed-up", "speed-up, own cores"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in runs:
        table.add_row(
            r.name,
            str(r.images),
            str(r.faces),
            f"{r.wall_s:.1f}",
            f"{r.ms_per_image:.0f}",
            f"{r.cpu_s:.1f}",
            " / ".join(f"{c:.1f}" for c in r.worker_cpu_s),
            f"{100 * r.cpu_share:.0f}%",
            f"{base.wall_s / r.wall_s:.2f}x",
            f"{base.cpu_s / max(r.worker_cpu_s):.2f}x",
        )
    return table


def render_groups(items: list[Photo], run: FaceRun) -> Table:
    table = Table(title=f"per photo, {run.name} (seconds of one analyze call)", title_justify="left")
    for col in ("set", "photos", "faces", "p50 ms", "p90 ms", "max ms"):
        table.add_column(col, justify="left" if col == "set" else "right")
    for group in ("lfw10x10", "deepface"):
        idx = [i for i, p in enumerate(items) if p.group == group]
        if not idx:
            continue
        secs = np.array([run.per_image_s[i] for i in idx]) * 1000
        table.add_row(
            group,
            str(len(idx)),
            str(sum(len(run.embeddings[i]) for i in idx)),
            f"{np.percentile(secs, 50):.0f}",
            f"{np.percentile(secs, 90):.0f}",
            f"{secs.max():.0f}",
        )
    return table


# -- part 2: copy search -------------------------------------------------------------------
@dataclass
class Plant:
    row: int
    photo: int  # which query photo it copies
    variant: int  # which of the 8 dihedral hashes it is near
    distance: int


def _flip(h: bytes, bits: int, rng: np.random.Generator) -> bytes:
    flips = np.zeros(256, dtype=np.uint8)
    flips[rng.choice(256, size=bits, replace=False)] = 1
    return bytes(a ^ b for a, b in zip(h, np.packbits(flips).tobytes(), strict=True))


#: (dihedral variant, distance) of the copies planted for every query photo
PLANTS = [(0, 0), (0, 8), (0, 31), (0, 32), (0, 60), (4, 10), (6, 31)]


def make_hashes(n: int, photos_n: int, seed: int) -> tuple[list[bytes], list[list[bytes]], list[Plant]]:
    rng = np.random.default_rng(seed)
    raw = rng.bytes(32 * n)
    stored = [raw[i : i + 32] for i in range(0, 32 * n, 32)]
    queries = [[rng.bytes(32) for _ in range(8)] for _ in range(photos_n)]
    rows = rng.choice(n, size=min(n, photos_n * len(PLANTS)), replace=False)
    plants = []
    for k, row in enumerate(rows.tolist()):
        photo, (variant, distance) = divmod(k, len(PLANTS))[0], PLANTS[k % len(PLANTS)]
        stored[row] = _flip(queries[photo][variant], distance, rng)
        plants.append(Plant(row, photo, variant, distance))
    return stored, queries, plants


def expected(plants: list[Plant], photo: int, ids: list[str], n_queries: int) -> list[tuple[str, int]]:
    hits = [
        (ids[p.row], p.distance, p.row)
        for p in plants
        if p.photo == photo and p.variant < n_queries and p.distance <= DEFAULT_MAX_DISTANCE
    ]
    return [(i, d) for i, d, _ in sorted(hits, key=lambda h: (h[1], h[2]))]


def loop_search(
    stored: list[bytes], ids: list[str], queries: list[bytes], max_distance: int = DEFAULT_MAX_DISTANCE
) -> list[tuple[str, int]]:
    """The baseline: one stored hash at a time, Python ints."""
    qs = [int.from_bytes(q, "big") for q in queries]
    out = []
    for i, h in enumerate(stored):
        v = int.from_bytes(h, "big")
        best = 256
        for q in qs:
            d = (v ^ q).bit_count()
            if d < best:
                best = d
        if best <= max_distance:
            out.append((ids[i], best))
    out.sort(key=lambda t: t[1])
    return out


class BoolHash:
    """What ``imagehash.ImageHash`` is: a boolean array, distance by element comparison."""

    def __init__(self, h: bytes) -> None:
        self.hash = np.unpackbits(np.frombuffer(h, dtype=np.uint8)).astype(bool).reshape(16, 16)

    def __sub__(self, other: BoolHash) -> int:
        return int(np.count_nonzero(self.hash.flatten() != other.hash.flatten()))


def imagehash_search(stored: list[BoolHash], queries: list[BoolHash], max_distance: int) -> int:
    hits = 0
    for h in stored:
        if min(h - q for q in queries) <= max_distance:
            hits += 1
    return hits


@dataclass
class SearchRow:
    method: str
    queries: int
    rows_timed: int
    samples: int
    p50_ms: float
    p99_ms: float | None
    cpu_p50_ms: float | None
    memory_mb: float
    note: str = ""
    speedup: float | None = None


def _timed(fn, repeat: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (the calling thread's: a search is single-threaded) per call."""
    timing, _ = measure(fn, repeat, cpu="thread")
    return timing.seconds, timing.cpu


def _ms(xs: list[float], q: float) -> float:
    return percentile(xs, q / 100) * 1000


def _size_mb(objs: list) -> float:
    return (sys.getsizeof(objs) + sum(sys.getsizeof(o) for o in objs)) / 1e6


def run_search(args: argparse.Namespace) -> tuple[list[SearchRow], dict]:
    n = args.hashes
    with console.status(f"making {n:,} hashes ..."):
        stored, queries, plants = make_hashes(n, 8, args.seed)
        ids = [f"{i:032x}" for i in range(n)]  # asset ids are 32 hex characters
    t = time.perf_counter()
    matrix = HashMatrix.from_hashes(list(zip(ids, stored, strict=True)))
    build_s = time.perf_counter() - t
    words_mb = matrix.words.nbytes / 1e6
    ids_mb = _size_mb(ids)
    stored_mb = _size_mb(stored)

    # correctness: every planted copy found with its distance, nothing else
    problems = []
    for photo in range(8):
        for nq in (8, 1):
            got = matrix.search(queries[photo][:nq])
            if got != expected(plants, photo, ids, nq):
                problems.append(f"photo {photo}, {nq} queries: {got}")
    planted_hits8 = sum(len(expected(plants, p, ids, 8)) for p in range(8))
    planted_hits1 = sum(len(expected(plants, p, ids, 1)) for p in range(8))

    rng = np.random.default_rng(args.seed + 1)
    extra = [[rng.bytes(32) for _ in range(8)] for _ in range(max(args.queries - 8, 0))]
    pool = queries + extra
    rows: list[SearchRow] = []
    for nq in (1, 8):
        matrix.search(pool[0][:nq])  # first call: page faults of the buffers
        wall, cpu = _timed(lambda k, nq=nq: matrix.search(pool[k % len(pool)][:nq]), args.queries)
        rows.append(
            SearchRow(
                "HashMatrix.search",
                nq,
                n,
                len(wall),
                _ms(wall, 50),
                _ms(wall, 99),
                _ms(cpu, 50),
                words_mb,
                f"build {build_s:.2f} s; + ids {ids_mb:.0f} MB",
            )
        )

    # the Python loop baseline
    b_rows = min(args.baseline_rows or n, n)
    b_stored, b_ids = stored[:b_rows], ids[:b_rows]
    agree = True
    for nq in (1, 8):
        for photo in range(min(2, len(queries))):
            if loop_search(b_stored, b_ids, queries[photo][:nq]) != HashMatrix.from_hashes(
                list(zip(b_ids, b_stored, strict=True))
            ).search(queries[photo][:nq]):
                agree = False
    scale = n / b_rows
    for nq in (1, 8):
        wall, cpu = _timed(lambda k, nq=nq: loop_search(b_stored, b_ids, pool[k][:nq]), args.baseline_repeats)
        rows.append(
            SearchRow(
                "Python loop: int.from_bytes ^ bit_count()",
                nq,
                b_rows,
                len(wall),
                _ms(wall, 50) * scale,
                None,
                _ms(cpu, 50) * scale,
                stored_mb,
                "full scan" if scale == 1 else f"timed on {b_rows:,}, x{scale:g} extrapolated",
            )
        )

    # the imagehash way, on a sample
    i_rows = min(args.imagehash_rows, n)
    bool_stored = [BoolHash(h) for h in stored[:i_rows]]
    scale = n / i_rows
    # per hash: the object (56 bytes, with its __dict__ ~112) and a 16x16 bool array (112 + 256)
    one = 56 + 112 + sys.getsizeof(bool_stored[0].hash)
    bool_mb = (sys.getsizeof(bool_stored) + i_rows * one) * scale / 1e6
    for nq in (1, 8):
        qs = [[BoolHash(q) for q in pool[k][:nq]] for k in range(args.baseline_repeats)]
        wall, cpu = _timed(
            lambda k, qs=qs: imagehash_search(bool_stored, qs[k], DEFAULT_MAX_DISTANCE), len(qs)
        )
        rows.append(
            SearchRow(
                "imagehash-style: bool arrays, count_nonzero(a != b)",
                nq,
                i_rows,
                len(wall),
                _ms(wall, 50) * scale,
                None,
                _ms(cpu, 50) * scale,
                bool_mb,
                f"timed on {i_rows:,}, x{scale:g} extrapolated",
            )
        )
    ours = {r.queries: r.p50_ms for r in rows if r.method == "HashMatrix.search"}
    for r in rows:
        r.speedup = r.p50_ms / ours[r.queries]

    first = next(iter(sorted((args.faces / "lfw10x10").glob("*/*.jpg"))), None)
    dihedral_ms = None
    if first is not None:
        from disgorge.vision.image import rgb_array

        rgb = rgb_array(first.read_bytes())
        pdq_dihedral(rgb)
        wall, _ = _timed(lambda k: pdq_dihedral(rgb), 20)
        dihedral_ms = _ms(wall, 50)
    facts = {
        "hashes": n,
        "build_s": build_s,
        "words_mb": words_mb,
        "ids_mb": ids_mb,
        "stored_bytes_list_mb": stored_mb,
        "planted": len(plants),
        "planted_within_threshold_8_queries": planted_hits8,
        "planted_within_threshold_1_query": planted_hits1,
        "problems": problems,
        "baseline_agrees": agree,
        "pdq_dihedral_250px_ms": dihedral_ms,
    }
    return rows, facts


def render_search(rows: list[SearchRow], n: int) -> Table:
    table = Table(title=f"copy search over {n:,} PDQ hashes (threshold 31 bits)", title_justify="left")
    for col in ("method", "hashes/search", "p50 ms", "p99 ms", "CPU p50 ms", "memory MB", "x slower", "note"):
        table.add_column(col, justify="left" if col in ("method", "note") else "right")
    for r in rows:
        table.add_row(
            r.method,
            str(r.queries),
            f"{r.p50_ms:,.1f}",
            f"{r.p99_ms:,.1f}" if r.p99_ms is not None else f"({r.samples} runs)",
            f"{r.cpu_p50_ms:,.1f}" if r.cpu_p50_ms is not None else "",
            f"{r.memory_mb:,.0f}",
            f"{r.speedup:,.0f}x" if r.speedup and r.speedup > 1.5 else "1x",
            r.note,
        )
    return table


# -- main ----------------------------------------------------------------------------------
def headline(results: dict[str, Any]) -> dict[str, float]:
    """What ``--baseline-src`` compares, in seconds: face analysis (wall and CPU, per run) and
    the p50 of ``HashMatrix.search``."""
    out: dict[str, float] = {}
    for n, r in enumerate(results.get("faces", {}).get("runs", []), 1):
        out[f"faces, {r['name']} (#{n}): wall"] = r["wall_s"]
        out[f"faces, {r['name']} (#{n}): CPU"] = r["cpu_s"]
    for r in results.get("search", {}).get("rows", []):
        if r["method"] == "HashMatrix.search":
            out[f"HashMatrix.search, {r['queries']} hash(es), p50"] = r["p50_ms"] / 1000
    return out


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--faces", type=Path, default=FACES, help=f"photo folder (default {FACES})")
    parser.add_argument("--limit", type=int, default=None, help="analyse only this many photos")
    parser.add_argument("--workers", type=int, default=2, help="processes of the parallel run (default 2)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"photos per task (default {BATCH})")
    parser.add_argument("--repeats", type=int, default=1, help="face runs per setting (default 1)")
    parser.add_argument("--hashes", type=int, default=1_000_000, help="hashes in the matrix (default 1e6)")
    parser.add_argument("--queries", type=int, default=200, help="timed searches per setting (default 200)")
    parser.add_argument(
        "--baseline-rows", type=int, default=0, help="hashes the Python loop scans (default: all of them)"
    )
    parser.add_argument("--baseline-repeats", type=int, default=3, help="timed baseline scans (default 3)")
    parser.add_argument(
        "--imagehash-rows", type=int, default=20_000, help="hashes the imagehash-style loop scans (20000)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-faces", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args(argv)
    if args.baseline_src:
        return before_after(__file__, args, argv, headline)

    import dlib

    info = machine(numpy=np.__version__, dlib=dlib.__version__)
    console.print(describe(info))
    report: dict = {"machine": info}
    ok = True

    if not args.skip_faces:
        items = photos(args.faces, args.limit)
        mb = sum(len(p.data) for p in items) / 1e6
        console.print(
            f"photos: {len(items)} ({sum(p.group == 'lfw10x10' for p in items)} lfw10x10, "
            f"{sum(p.group == 'deepface' for p in items)} deepface), {mb:.1f} MB, in memory, "
            f"in SHA-256 order; batches of {args.batch}"
        )
        runs: list[FaceRun] = []
        for rep in range(args.repeats):
            for w in (1, args.workers):
                with console.status(f"analyze on {w} process(es), round {rep + 1} ..."):
                    runs.append(run_faces(items, w, args.batch))
        singles = [r for r in runs if r.processes == 1]
        multis = [r for r in runs if r.processes > 1]
        base = min(singles, key=lambda r: r.wall_s)
        best = min(multis, key=lambda r: r.wall_s)
        show(console, render_faces(runs, base), args.markdown)
        show(console, render_groups(items, base), args.markdown)
        show(console, render_model(base, args.workers, args.batch), args.markdown)
        modelled = sum(base.per_image_cpu_s) / modelled_makespan(
            base.per_image_cpu_s, args.batch, args.workers
        )
        same = all(same_analysis(base, r) for r in runs)
        speedup = base.wall_s / best.wall_s
        own = base.cpu_s / max(best.worker_cpu_s)
        threads = base.cpu_s / base.thread_cpu_s if base.thread_cpu_s else 1.0
        console.print(
            f"model load per process (not timed above): {max(r.load_s for r in runs):.2f} s; "
            f"same faces and embeddings in every run: {'yes' if same else 'NO'}\n"
            f"dlib threads: the 1-process run used {base.cpu_s:.1f} CPU s, of which "
            f"{base.thread_cpu_s:.1f} s on the calling thread (ratio {threads:.2f}: "
            f"{'single-threaded, nothing to pin' if threads < 1.05 else 'dlib uses more threads'})\n"
            "speed-up, own cores = CPU s of the 1-process run / CPU s of the busiest process: the "
            "speed-up if each process had a core to itself (imbalance and per-process overhead "
            "count, other load does not)\n"
            f"goal: >= {GOAL_SPEEDUP}x on {args.workers} processes: wall clock "
            f"{'met' if speedup >= GOAL_SPEEDUP else 'MISSED'} ({speedup:.2f}x, best runs, CPU share "
            f"{100 * base.cpu_share:.0f}% / {100 * best.cpu_share:.0f}%); with a core per process "
            f"{'met' if own >= GOAL_SPEEDUP else 'MISSED'} ({own:.2f}x); modelled on idle cores, "
            f"batches of {args.batch}: {'met' if modelled >= GOAL_SPEEDUP else 'MISSED'} ({modelled:.2f}x)\n"
            f"CPU seconds of the {args.workers}-process run over the 1-process run: "
            f"{best.cpu_s / base.cpu_s:.3f} (pickling, transfers, per-process caches)"
        )
        ok &= same
        report["faces"] = {
            "images": len(items),
            "batch": args.batch,
            "runs": [
                {
                    k: v
                    for k, v in asdict(r).items()
                    if k not in ("per_image_s", "per_image_cpu_s", "embeddings")
                }
                | {"ms_per_image": r.ms_per_image, "cpu_share": r.cpu_share}
                for r in runs
            ],
            "speedup": speedup,
            "speedup_own_cores": own,
            "speedup_modelled": modelled,
            "same_results": same,
        }

    if not args.skip_search:
        rows, facts = run_search(args)
        show(console, render_search(rows, args.hashes), args.markdown)
        q8 = next(r for r in rows if r.method == "HashMatrix.search" and r.queries == 8)
        console.print(
            f"matrix: {facts['words_mb']:.1f} MB of packed hashes "
            f"({facts['words_mb'] * 1e6 / args.hashes:.0f} bytes each) + {facts['ids_mb']:.0f} MB of "
            f"asset-id strings; built in {facts['build_s']:.2f} s; "
            f"the loop's list of 32-byte bytes objects: {facts['stored_bytes_list_mb']:.0f} MB\n"
            f"planted copies: {facts['planted']} (within the threshold: "
            f"{facts['planted_within_threshold_8_queries']} with 8 hashes, "
            f"{facts['planted_within_threshold_1_query']} with 1): "
            f"{'all found with their distances, no other match' if not facts['problems'] else 'PROBLEMS'}; "
            f"the loop returns the same matches: {'yes' if facts['baseline_agrees'] else 'NO'}\n"
            + (
                "pdq_dihedral of a 250x250 photo (the 8 query hashes): "
                f"{facts['pdq_dihedral_250px_ms']:.1f} ms\n"
                if facts["pdq_dihedral_250px_ms"] is not None
                else ""
            )
            + f"goal: < {GOAL_QUERY_MS:.0f} ms per query at {args.hashes:,} hashes (8 dihedral hashes, p50): "
            f"{'met' if q8.p50_ms < GOAL_QUERY_MS else 'MISSED'} ({q8.p50_ms:.1f} ms; p99 {q8.p99_ms:.1f} ms)"
        )
        for p in facts["problems"]:
            console.print(f"[red]{p}[/]")
        ok &= not facts["problems"] and facts["baseline_agrees"]
        report["search"] = {"rows": [asdict(r) for r in rows], **facts}

    console.print(finish(info))
    write_json(args.json, report)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
