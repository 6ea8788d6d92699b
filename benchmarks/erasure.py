"""Erasure benchmark: one subject at 1,000,000 assets, a whole 100,000-photo source, the forensic scan.

Usage::

    .venv/bin/python benchmarks/erasure.py                 # 1M assets, of which a 100k-photo source
    .venv/bin/python benchmarks/erasure.py --assets 50000 --source-assets 5000 --subjects 5000
    .venv/bin/python benchmarks/erasure.py --fresh         # regenerate the cached workspace
    .venv/bin/python benchmarks/erasure.py --json results.json
    .venv/bin/python benchmarks/erasure.py --a-variants shipped --a-order 3,4 --skip-scan --skip-source
    .venv/bin/python benchmarks/erasure.py --assets 50000 --source-assets 5000 --subjects 5000 \
        --cache /tmp/disgorge-bench-erasure-small --baseline-src /tmp/disgorge-before   # before/after

What it does, all in one run:

1. builds a real disgorge workspace (``Workspace.init``) and bulk-loads the synthetic catalog of
   ``benchmarks/lineage.py`` into its SQLite file (its ``generate_catalog``: subjects, assets over
   five sources, owner and depicted links, ``--datasets`` dataset versions of 10-50 % of the
   assets each, ``--models`` models trained outside disgorge on them, exports, evaluation runs),
   then adds a sixth source ``tainted-scrape`` of ``--source-assets`` photos (90 % owned by
   subjects who appear nowhere else, 10 % by subjects of the rest of the catalog; about 30 % of
   them in every dataset version). Every subject gets a real data key wrapped by the workspace
   KEK (``vault.new_wrapped_dek``); every photo of the source and every photo of the subjects
   erased in part A gets a real encrypted blob (``vault.put_blob``, random bytes behind a JPEG
   header, ``--blob-kb`` KB on average) and a sealed PDQ-hash row. The workspace is cached in
   ``--cache`` and copied (database copied, blobs hard-linked) before each variant runs, so
   every variant starts from the same state;
2. **A. one subject** (the ``--erase-subjects`` subjects with the median number of photos who
   also appear in someone else's photo, and the subject with the most photos): the dry run
   (``Workspace.erasure_plan``) and the full ``Workspace.erase`` (plan, approve, every journal
   step, certificate), timed step by step. The verifier's forensic scan is limited to the
   catalog's files (``catalog.sqlite``, its WAL and shared memory: where the subject's bytes
   could survive once their blobs are deleted) and timed apart; the full-tree scan is part C.
   Two variants: the purge as shipped (``disgorge.catalog.purge_free_space`` as the engine
   calls it: a WAL checkpoint for an erasure of fewer than 1,000 photos, the verifier then
   VACUUMing only if its scan finds a sample in the database's files; design note 16) and the
   previous release's, which VACUUMed the whole catalog in every erasure. After each
   variant an independent check (``grep -a -o -F`` and ``bytes.find``, not ``scan_tree``) looks
   in the catalog's files for the sha256 (hex, as the catalog stores it) of every photo of the
   erased subjects and for their wrapped data keys, with live photos as a positive control;
3. **C. forensic scan** of the whole workspace (catalog and every blob, page cache warm) with
   the needles the verifier would take for 20 photos (about one subject's: ~100 needles),
   1,000 and 10,000 photos: ``scan_tree`` (best of 3) against ``bytes.find`` once per needle
   and against ``grep -c -a -F -f NEEDLES`` (needles holding a newline or NUL byte left out
   for grep). The baselines read a sample: the first ``--baseline-mb`` / 2 MB of the catalog
   and as many MB of blobs, ``bytes.find`` stopping after ``--baseline-s`` seconds (their
   speed per MB does not depend on how much they read);
4. **B. a whole source**: ``Workspace.erase("source", "tainted-scrape")`` end to end (the
   verifier's full-tree scan included), side by side with what a user would otherwise do
   with the same number of encrypted blob files: open, overwrite with zeros, ``fsync``,
   unlink each (on a copy of the source's blob files, made before the erasure; stopped
   after ``--overwrite-s`` seconds, the rate then being over the files done).

The machine is reported with its load average at each part: on a shared machine
wall-clock times are slower and noisier than on an idle one.

``--plain`` times only what the public API shows (``Workspace.erasure_plan``,
``Workspace.erase``, in wall-clock seconds and in CPU seconds of this process and the
scan's): no step timed apart, the verifier's scan as shipped (the whole workspace, in part A
too), part A as shipped only, part B without the overwrite baseline; no C or V. It imports
nothing of the engine's, so the same script runs on any version of disgorge:
``--baseline-src DIR`` runs it on the code of the checkout DIR and on this tree's,
alternating, and prints both side by side (``benchmarks/_harness.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Clock,
    before_after,
    describe,
    finish,
    load_average,
    machine,
    make_console,
    make_parser,
    show,
    write_json,
)
from lineage import PRIME, Params, chunks, generate_catalog, hex_id, timestamp

from disgorge import Workspace
from disgorge.catalog import SCHEMA_HEAD, current_revision, make_engine, upgrade
from disgorge.erasure.forensics import scan_tree
from disgorge.vision import load_hash_matrix

console = make_console(160)

GOAL_SUBJECT_S = 2.0
GOAL_SCAN_MBS = 200.0
SOURCE_NAME = "tainted-scrape"
_DONE = ".complete"
_CATALOG_FILES = ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm")


# -- the workspace -------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    assets: int
    source_assets: int
    subjects: int
    datasets: int
    models: int
    exports: int
    erase_subjects: int
    blob_kb: int
    seed: int

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _photo(rng: random.Random, mean_kb: int) -> bytes:
    size = int(mean_kb * 1024 * rng.uniform(0.5, 1.5))
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(size - 11)


def build_workspace(path: Path, s: Setup) -> dict[str, Any]:
    """The pristine workspace in ``path`` (created); returns what the run needs to know."""
    started = time.perf_counter()
    rng = random.Random(s.seed)
    ws = Workspace.init(path, actor="bench")
    db = Path(ws.config.resolved_catalog_url().removeprefix("sqlite:///"))
    ws.close()
    params = Params(s.assets - s.source_assets, s.subjects, s.datasets, s.models, s.exports, 0.03, s.seed)
    with console.status("generating the catalog (benchmarks/lineage.py) ..."):
        shape, _ = generate_catalog(db, params)
    console.print(f"  lineage generator: {shape.seconds:.0f} s")

    # the tainted source: photos owned by subjects found nowhere else (90 %) or by others (10 %)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA cache_size=-1000000")
    con.execute("BEGIN")
    source_id = 6
    con.execute(
        "INSERT INTO sources (id, name, kind, description, created_at, state) "
        "VALUES (?, ?, 'scrape', '', ?, 'active')",
        (source_id, SOURCE_NAME, timestamp(0)),
    )
    only_here = max(1, s.source_assets // 10)  # 10 photos each
    first = s.subjects + 1
    con.executemany(
        "INSERT INTO subjects (id, ref, dek_wrapped, state, created_at) VALUES (?, ?, ?, 'active', ?)",
        (
            (i, "sub_" + hex_id(i, b"subject", 16), bytes(60), timestamp(i))
            for i in range(first, first + only_here)
        ),
    )
    source_rows: list[tuple[str, int]] = []
    for n in range(s.source_assets):
        owner = first + n % only_here if rng.random() < 0.9 else rng.randrange(1, s.subjects + 1)
        source_rows.append((hex_id(n + 1, b"source-asset", 16), owner))
    con.executemany(
        "INSERT INTO assets (id, sha256, size, media_type, width, height, source_id, owner_id, "
        "ingested_at, state) VALUES (?, ?, 0, 'image/jpeg', 250, 250, ?, ?, ?, 'active')",
        (
            (a, hex_id(n, b"source-sha", 32), source_id, o, timestamp(10))
            for n, (a, o) in enumerate(source_rows)
        ),
    )
    con.executemany(
        "INSERT INTO asset_subjects (asset_id, subject_id, role) VALUES (?, ?, 'owner')", source_rows
    )
    datasets = [r[0] for r in con.execute("SELECT artifact_id FROM dataset_versions ORDER BY artifact_id")]
    for dataset_id in datasets:
        a, b = rng.randrange(1, PRIME), rng.randrange(PRIME)
        con.execute(
            "INSERT INTO dataset_member_rows (dataset_id, asset_id) SELECT ?, id FROM assets "
            "WHERE source_id = ? AND ((rowid * ? + ?) % ?) < ? ORDER BY id",
            (dataset_id, source_id, a, b, PRIME, int(0.3 * PRIME)),
        )
    con.execute(
        "UPDATE dataset_versions SET members = "
        "(SELECT count(*) FROM dataset_member_rows AS m WHERE m.dataset_id = dataset_versions.artifact_id)"
    )
    con.execute("COMMIT")

    # the subjects erased in part A: the median photo count, shown in someone else's photo
    per_subject = con.execute(
        "SELECT subject_id, count(*), sum(role = 'depicted') FROM asset_subjects "
        "WHERE subject_id <= ? GROUP BY subject_id",
        (s.subjects,),
    ).fetchall()
    counts = sorted(c for _, c, _ in per_subject)
    median = counts[len(counts) // 2]
    typical = sorted(sid for sid, c, d in per_subject if c == median and d)
    picked = random.Random(s.seed + 1).sample(typical, min(s.erase_subjects, len(typical)))
    heaviest = max(per_subject, key=lambda r: (r[1], -r[0]))[0]
    chosen = [*picked, heaviest]
    con.close()

    # real data keys for every subject, wrapped by the KEK
    ws = Workspace.open(path, actor="bench")
    with console.status("wrapping a data key per subject ..."):
        t = time.perf_counter()
        con = sqlite3.connect(db, isolation_level=None)
        subjects = con.execute("SELECT id, ref FROM subjects").fetchall()
        wrapped = {sid: ws.vault.new_wrapped_dek(ref) for sid, ref in subjects}
        con.execute("BEGIN")
        con.executemany(
            "UPDATE subjects SET dek_wrapped = ? WHERE id = ?", [(w, i) for i, w in wrapped.items()]
        )
        con.execute("COMMIT")
        wrap_s = time.perf_counter() - t
    console.print(f"  {len(subjects):,} data keys wrapped in {wrap_s:.1f} s")
    refs = dict(subjects)

    # real encrypted blobs: the source's photos and every photo of the chosen subjects
    marks = ",".join("?" * len(chosen))
    rows = con.execute(
        f"SELECT id, owner_id FROM assets WHERE source_id = ? OR id IN "
        f"(SELECT asset_id FROM asset_subjects WHERE subject_id IN ({marks})) ORDER BY id",
        (source_id, *chosen),
    ).fetchall()
    run_id = hex_id(1, b"bench-analyze", 16)
    con.execute(
        "INSERT INTO runs (id, job, purpose, state, parameters, code_version, started_at, ended_at, "
        "consent_check, override_justification, actor, external) VALUES "
        "(?, 'analyze', 'ai_training', 'completed', '{}', 'bench', ?, ?, '{}', NULL, 'bench', 0)",
        (run_id, timestamp(20), timestamp(21)),
    )
    t = time.perf_counter()
    blob_bytes = 0
    with console.status(f"writing {len(rows):,} encrypted blobs ..."):
        for chunk in chunks(iter(rows), 5000):
            updates, phashes = [], []
            for asset_id, owner_id in chunk:
                owner = SimpleNamespace(ref=refs[owner_id], dek_wrapped=wrapped[owner_id])
                data = _photo(rng, s.blob_kb)
                blob_bytes += len(data)
                key = ws.vault.put_blob(owner, asset_id, data)  # type: ignore[arg-type]
                updates.append((hashlib.sha256(data).hexdigest(), len(data), key, asset_id))
                sealed = ws.vault.seal(owner, os.urandom(32), f"phash:{asset_id}")  # type: ignore[arg-type]
                phashes.append((asset_id, sealed, run_id, timestamp(22)))
            con.execute("BEGIN")
            con.executemany("UPDATE assets SET sha256 = ?, size = ?, blob_key = ? WHERE id = ?", updates)
            con.executemany(
                "INSERT INTO asset_derivatives (asset_id, kind, face_index, value_enc, blob_key, run_id, "
                "state, created_at) VALUES (?, 'phash', 0, ?, NULL, ?, 'active', ?)",
                phashes,
            )
            con.execute("COMMIT")
    blob_s = time.perf_counter() - t
    console.print(f"  {len(rows):,} blobs ({blob_bytes / 1e9:.2f} GB) written in {blob_s:.0f} s")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    ws.close()
    return {
        "subjects": [refs[i] for i in chosen],
        "heaviest": refs[heaviest],
        "median_photos": median,
        "blobs": len(rows),
        "blob_bytes": blob_bytes,
        "shape": asdict(shape),
        "seconds": time.perf_counter() - started,
    }


def ensure_workspace(cache: Path, s: Setup, fresh: bool) -> tuple[Path, dict[str, Any]]:
    cache.mkdir(parents=True, exist_ok=True)
    pristine, marker = cache / "pristine", cache / _DONE
    if not fresh and marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("setup") == s.key() and pristine.exists():
            migrate_cached(pristine)
            prime_hash_cache(pristine)
            return pristine, saved
    marker.unlink(missing_ok=True)
    shutil.rmtree(pristine, ignore_errors=True)
    console.print(f"building the workspace in {pristine} ...")
    info = build_workspace(pristine, s)
    prime_hash_cache(pristine)
    saved = {"setup": s.key(), **info}
    marker.write_text(json.dumps(saved, indent=2) + "\n")
    console.print(f"built in {info['seconds']:.0f} s")
    return pristine, saved


def prime_hash_cache(pristine: Path) -> None:
    """Write the sealed PDQ cache (``index/pdq.sealed``) that ``analyze`` keeps current in a
    real workspace: the catalog here was bulk-loaded, not analysed."""
    ws = Workspace.open(pristine, actor="bench")
    try:
        if ws.hash_cache.path.exists():
            return
        started = time.perf_counter()
        matrix = load_hash_matrix(ws.reader, ws.vault, cache=ws.hash_cache)
        console.print(
            f"  PDQ cache primed, as analyze keeps it: {len(matrix.ids):,} hashes decrypted "
            f"in {time.perf_counter() - started:.1f} s"
        )
    finally:
        ws.close()


def migrate_cached(pristine: Path) -> None:
    """Bring a cached workspace built by an older disgorge to the current schema (the
    migrations add tables; the generated rows stay as they are)."""
    engine = make_engine(f"sqlite:///{pristine / '.disgorge' / 'catalog.sqlite'}")
    try:
        have = current_revision(engine)
        if have != SCHEMA_HEAD:
            console.print(f"  cached catalog at schema {have}: migrating to {SCHEMA_HEAD} ...")
            upgrade(engine)
            raw = engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
    finally:
        engine.dispose()


def fresh_copy(pristine: Path, run: Path) -> Path:
    """A working copy: files copied, blobs hard-linked (erasure unlinks them), except the
    blobs an erasure may overwrite in place before unlinking (photos whose owner's key can
    outlive the erasure: :func:`overwritable_blobs`), which are copied, so that the pristine
    workspace keeps its bytes."""
    shutil.rmtree(run, ignore_errors=True)
    src_home, dst_home = pristine / ".disgorge", run / ".disgorge"
    copy = overwritable_blobs(src_home / "catalog.sqlite")
    for dirpath, _dirs, files in os.walk(src_home):
        rel = Path(dirpath).relative_to(src_home)
        (dst_home / rel).mkdir(parents=True, exist_ok=True)
        in_blobs = rel.parts[:1] == ("blobs",)
        for name in files:
            src, dst = Path(dirpath) / name, dst_home / rel / name
            if in_blobs and name not in copy:
                os.link(src, dst)
            else:
                shutil.copy2(src, dst)
    return run


def overwritable_blobs(db: Path) -> set[str]:
    """Blob keys of photos that show someone besides their owner, or whose owner has photos
    in more than one source: erasing a subject or a source keeps such an owner's key, so
    the engine zeroes those blobs before unlinking them (through any hard link)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {
            key
            for (key,) in con.execute(
                "SELECT blob_key FROM assets WHERE blob_key IS NOT NULL AND ("
                "id IN (SELECT asset_id FROM asset_subjects WHERE role != 'owner') OR owner_id IN "
                "(SELECT owner_id FROM assets GROUP BY owner_id HAVING count(DISTINCT source_id) > 1))"
            )
        }
    finally:
        con.close()


def tree_bytes(root: Path) -> tuple[int, int]:
    files = total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            total += os.path.getsize(os.path.join(dirpath, name))
    return files, total


def warm(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 24):
                total += len(block)
    return total


# -- timing the engine ---------------------------------------------------------------------
@dataclass
class Timer:
    """Seconds spent per engine phase during one erasure (filled by the patched engine)."""

    phases: dict[str, float] = field(default_factory=dict)
    scan_bytes: int = 0
    scan_hits: int = 0
    needles: int = 0
    hit_offsets: list[int] = field(default_factory=list)  # hits in catalog.sqlite

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds


CURRENT = Timer()


@contextmanager
def timed(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        CURRENT.add(name, time.perf_counter() - started)


def _wrap(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def inner(*args: Any, **kwargs: Any) -> Any:
        with timed(name):
            return fn(*args, **kwargs)

    return inner


def _step_timer(name: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """A (start, stop) pair for a step's ``before`` and ``after`` points."""
    started: list[float] = []

    def start() -> None:
        started.append(time.perf_counter())

    def stop() -> None:
        CURRENT.add(name, time.perf_counter() - started.pop())

    return start, stop


class Patches:
    """Instruments ErasureEngine (per step, plan, scan, purge) and selects scan and purge.

    Not installed with ``--plain`` (the before/after run), which uses the public API only."""

    def __init__(self) -> None:
        self.saved: dict[tuple[Any, str], Any] = {}
        self.scan_scope = "catalog"  # "catalog" or "full"
        self.purge = "shipped"  # "shipped" (purge_free_space as the engine calls it) or "always-vacuum"
        self.installed = False
        self.steps: list[str] = []  # the engine's steps in journal order, for the tables
        self.hooks = ExitStack()  # the step timers armed with disgorge.erasure.steps.inject

    def _set(self, owner: Any, name: str, value: Any) -> None:
        self.saved.setdefault((owner, name), getattr(owner, name))
        setattr(owner, name, value)

    def install(self) -> None:
        # the engine is imported here, not at the top, so that --plain runs on any version
        from disgorge.erasure import removal, requests, verifier
        from disgorge.erasure.steps import STEPS, inject

        self.original_purge = removal.purge_free_space
        self.steps = list(STEPS)
        self.installed = True
        for step in STEPS:  # each step timed through the engine's fault-injection hook
            start, stop = _step_timer(f"step:{step}")
            self.hooks.enter_context(inject(step, before=start, after=stop))
        self._set(requests, "create", _wrap(requests.create, "plan+record"))
        self._set(requests, "approve", _wrap(requests.approve, "approve (re-plan, journal)"))
        self._set(verifier, "verify", _wrap(verifier.verify, "verify()"))
        self._set(verifier, "scan_tree", self._scan)
        self._set(verifier, "purge_free_space", self._purge)
        self._set(removal, "purge_free_space", self._purge)

    def uninstall(self) -> None:
        self.hooks.close()
        for (owner, name), value in self.saved.items():
            setattr(owner, name, value)
        self.saved.clear()

    def _scan(self, root: Path, needles: dict[str, bytes], *, stats: Any = None) -> list[Any]:
        CURRENT.needles = len(needles)
        with timed("forensic scan"):
            if self.scan_scope == "full":
                CURRENT.scan_bytes = tree_bytes(root)[1]
                hits = scan_tree(root, needles, stats=stats)
            else:
                view = root.parent / ".catalog-scan"
                shutil.rmtree(view, ignore_errors=True)
                view.mkdir()
                try:
                    for name in _CATALOG_FILES:
                        if (root / name).exists():
                            os.link(root / name, view / name)
                            CURRENT.scan_bytes += (root / name).stat().st_size
                    hits = scan_tree(view, needles, stats=stats)
                finally:
                    shutil.rmtree(view, ignore_errors=True)
        CURRENT.scan_hits = len(hits)
        CURRENT.hit_offsets = [h.offset for h in hits if h.file == "catalog.sqlite"]
        for h in hits[:5]:
            console.print(f"  [red]HIT[/] {h.label} in {h.file} at {h.offset}")
        if len(hits) > 5:
            console.print(f"  [red]... and {len(hits) - 5} more hits[/]")
        return hits

    def _purge(self, engine: Any, *, vacuum: bool = True) -> None:
        vacuum = vacuum or self.purge == "always-vacuum"
        with timed("purge (VACUUM)" if vacuum else "purge (checkpoint)"):
            self.original_purge(engine, vacuum=vacuum)


def locate(db: Path, offsets: list[int]) -> dict[str, int]:
    """Where in the SQLite file each offset lies: a free page, the unallocated gap of a live
    B-tree page (between its cell pointers and its cells), a freeblock, or a cell."""
    out: dict[str, int] = {}
    if not offsets:
        return out
    with open(db, "rb") as fh:
        header = fh.read(100)
        size = int.from_bytes(header[16:18], "big")
        size = 65536 if size == 1 else size

        def page(n: int) -> bytes:
            fh.seek((n - 1) * size)
            return fh.read(size)

        free: set[int] = set()
        trunk = int.from_bytes(header[32:36], "big")
        while trunk:
            data = page(trunk)
            free.add(trunk)
            count = int.from_bytes(data[4:8], "big")
            free.update(int.from_bytes(data[8 + 4 * i : 12 + 4 * i], "big") for i in range(count))
            trunk = int.from_bytes(data[0:4], "big")
        for offset in offsets:
            number, rel = offset // size + 1, offset % size
            data = page(number)
            start = 100 if number == 1 else 0
            if number in free:
                where = "free page"
            else:
                kind = data[start]
                cells = int.from_bytes(data[start + 3 : start + 5], "big")
                content = int.from_bytes(data[start + 5 : start + 7], "big") or 65536
                pointers_end = start + (12 if kind in (2, 5) else 8) + 2 * cells
                blocks, block = [], int.from_bytes(data[start + 1 : start + 3], "big")
                while block and len(blocks) < 10_000:
                    blocks.append((block, int.from_bytes(data[block + 2 : block + 4], "big")))
                    block = int.from_bytes(data[block : block + 2], "big")
                if pointers_end <= rel < content:
                    where = "unallocated gap of a live page"
                elif any(b <= rel < b + n for b, n in blocks):
                    where = "freeblock of a live page"
                else:
                    where = "cell of a live page"
            out[where] = out.get(where, 0) + 1
    return out


def freelist(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA freelist_count").fetchone()[0], con.execute(
            "PRAGMA page_count"
        ).fetchone()[0]
    finally:
        con.close()


# -- part A: one subject -------------------------------------------------------------------
def erase_subject(ws: Workspace, ref: str, label: str) -> dict[str, Any]:
    global CURRENT
    con = sqlite3.connect(ws.config.home / "catalog.sqlite")
    try:  # the verifier checks the lineage of every active model: their number matters
        sql = "SELECT count(*) FROM artifacts WHERE kind = 'model' AND state = 'active'"
        active = con.execute(sql).fetchone()[0]
    finally:
        con.close()
    CURRENT = Timer()
    t = time.perf_counter()
    plan = ws.erasure_plan("subject", ref)
    dry = time.perf_counter() - t
    CURRENT = Timer()
    error = None
    with Clock("tree") as clock:  # CPU: this process and the scan's child process
        try:
            result = ws.erase("subject", ref, reason="benchmark: erasure request")
        except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
            result, error = {}, f"{type(exc).__name__}: {exc}"[:300]
    if error:
        console.print(f"  [red]erasure of {label} failed[/]: {error}")
    total = clock.wall
    timer = CURRENT
    ok = bool((result.get("verification") or {}).get("ok"))
    scan = timer.phases.get("forensic scan", 0.0)
    purge = sum(v for k, v in timer.phases.items() if k.startswith("purge"))
    return {
        "subject": label,
        "photos": plan["counts"]["photos"],
        "depicting": plan.get("depicting"),
        "datasets": plan["counts"]["dataset_versions"],
        "models_active": active,
        "models_retired": plan["counts"]["models_retired"],
        "artifacts_retired": plan["counts"]["artifacts_retired"],
        "dry_run_s": dry,
        "total_s": total,
        "cpu_s": clock.cpu,
        "scan_s": scan,
        "scan_mb": timer.scan_bytes / 1e6,
        "needles": timer.needles,
        "hits": timer.scan_hits,
        "purge_s": purge,
        "without_scan_s": total - scan,
        "without_scan_and_purge_s": total - scan - purge,
        "ok": ok,
        "error": error,
        "phases": timer.phases,
    }


def subject_traces(db: Path, refs: list[str]) -> tuple[list[bytes], list[bytes]]:
    """What the catalog holds of these subjects before their erasure: the sha256 (hex, as
    stored) of every photo they own or appear in, and their wrapped data keys."""
    con = sqlite3.connect(db)
    try:
        marks = ",".join("?" * len(refs))
        hexes = [
            sha.encode()
            for (sha,) in con.execute(
                "SELECT DISTINCT a.sha256 FROM assets AS a JOIN asset_subjects AS l ON l.asset_id = a.id "
                f"JOIN subjects AS s ON s.id = l.subject_id WHERE s.ref IN ({marks})",
                refs,
            )
        ]
        keys = [k for (k,) in con.execute(f"SELECT dek_wrapped FROM subjects WHERE ref IN ({marks})", refs)]
    finally:
        con.close()
    return hexes, keys


def raw_check(
    home: Path, hexes: list[bytes], keys: list[bytes], controls: list[bytes], tmp: Path
) -> dict[str, Any]:
    """An independent look (not scan_tree) at the catalog's files: ``grep -a -o -F`` for the
    sha256 hex strings (and, as a positive control, for photos that were not erased), and
    ``bytes.find`` for the wrapped keys."""
    files = [home / n for n in _CATALOG_FILES if (home / n).exists()]
    pattern = tmp / "traces.txt"
    pattern.write_bytes(b"\n".join(hexes + controls) + b"\n")
    proc = subprocess.run(
        ["grep", "-a", "-o", "-h", "-F", "-f", str(pattern), *map(str, files)],
        capture_output=True,
        env={**os.environ, "LC_ALL": "C"},
        check=False,
    )
    seen = set(proc.stdout.split())
    keys_found = 0
    for path in files:
        data = path.read_bytes()
        keys_found += sum(1 for k in keys if data.find(k) >= 0)
    return {
        "hex": len(hexes),
        "hex_found": len(seen & set(hexes)),
        "keys": len(keys),
        "keys_found": keys_found,
        "controls": len(controls),
        "controls_found": len(seen & set(controls)),
        "files": [f"{p.name} ({p.stat().st_size / 1e6:,.0f} MB)" for p in files],
    }


def part_a(
    pristine: Path,
    run: Path,
    saved: dict[str, Any],
    patches: Patches,
    assets: int,
    tmp: Path,
    variants: tuple[str, ...] = ("shipped", "always-vacuum"),
    order: list[int] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"assets": assets, "variants": list(variants)}
    out |= {"instrumented": patches.installed, "steps": patches.steps}
    refs = list(saved["subjects"])
    labels = [f"typical #{i + 1}" for i in range(len(refs) - 1)] + ["most photos"]
    if order:  # 1-based positions in the list above
        refs, labels = [refs[i - 1] for i in order], [labels[i - 1] for i in order]
    for variant in variants:
        fresh_copy(pristine, run)
        db = run / ".disgorge" / "catalog.sqlite"
        warm([db])
        hexes, keys = subject_traces(db, refs)
        con = sqlite3.connect(db)
        controls = [
            sha.encode()
            for (sha,) in con.execute("SELECT sha256 FROM assets WHERE blob_key IS NULL ORDER BY id LIMIT 5")
        ]
        con.close()
        patches.purge = variant
        patches.scan_scope = "catalog"
        rows = []
        ws = Workspace.open(run, actor="bench")
        try:
            with console.status(f"A: erasing {len(refs)} subjects, purge by {variant} ..."):
                for ref, label in zip(refs, labels, strict=True):
                    rows.append(erase_subject(ws, ref, label))
        finally:
            ws.close()
        free, pages = freelist(db)
        check = raw_check(run / ".disgorge", hexes, keys, controls, tmp)
        out[variant] = {
            "rows": rows,
            "freelist": free,
            "pages": pages,
            "db_mb": db.stat().st_size / 1e6,
            "raw_check": check,
        }
        console.print(
            f"  {variant}: done; independent check of {', '.join(check['files'])}: "
            f"{check['hex_found']} of {check['hex']} erased photos' sha256 (hex) found, "
            f"{check['keys_found']} of {check['keys']} wrapped keys found; "
            f"control: {check['controls_found']} of {check['controls']} live photos' sha256 found "
            f"(load {load_average()})"
        )
    return out


def render_a(a: dict[str, Any]) -> list[Table]:
    tables = []
    for variant, title in (
        ("shipped", "purge as shipped: WAL checkpoint; VACUUM only if the scan finds a stale copy"),
        ("always-vacuum", "the previous release: checkpoint + VACUUM + checkpoint in every erasure"),
    ):
        if variant not in a:
            continue
        res = a[variant]
        apart = a.get("instrumented", True)  # --plain: nothing inside erase() is timed apart
        plain = "" if apart else " (--plain: public API only, the verifier scans the whole workspace)"
        table = Table(
            title=f"A. one subject at {a['assets']:,} assets: {title}; catalog {res['db_mb']:,.0f} MB, "
            f"{res['freelist']:,} free pages of {res['pages']:,} after{plain}",
            title_justify="left",
        )
        for col in (
            "subject",
            "photos",
            "datasets",
            "models active before",
            "models retired",
            "dry run",
            "end to end",
            "of which purge",
            "of which catalog scan",
            "without scan",
            "without scan, purge",
            "scan hits",
        ):
            table.add_column(col, justify="left" if col == "subject" else "right")
        for r in res["rows"]:
            table.add_row(
                r["subject"],
                f"{r['photos']} ({r['depicting']} by others)",
                str(r["datasets"]),
                str(r["models_active"]),
                f"{r['models_retired']} (+{r['artifacts_retired']} other)",
                f"{r['dry_run_s']:.2f} s",
                f"{r['total_s']:.2f} s",
                f"{r['purge_s']:.2f} s" if apart else "-",
                f"{r['scan_s']:.2f} s ({r['scan_mb']:,.0f} MB, {r['needles']} needles)" if apart else "-",
                _goal(r["without_scan_s"], GOAL_SUBJECT_S) if apart else "-",
                _goal(r["without_scan_and_purge_s"], GOAL_SUBJECT_S) if apart else "-",
                (f"{r['hits']}" if apart else "-") + _status(r),
            )
        tables.append(table)
    return tables


def render_phases(a: dict[str, Any]) -> Table:
    table = Table(
        title="A. where the time goes (seconds per phase; steps in journal order; ↳: part of a step above)",
        title_justify="left",
    )
    table.add_column("phase")
    cols = []
    for variant in a["variants"]:
        for r in a[variant]["rows"]:
            cols.append(r)
            table.add_column(f"{r['subject']}\n({variant})", justify="right")
    names: list[str] = ["plan+record", "approve (re-plan, journal)"] + [f"step:{s}" for s in a["steps"]]
    extra = sorted({k for r in cols for k in r["phases"]} - set(names))
    for name in names + extra:
        table.add_row(_phase_label(name), *[f"{r['phases'].get(name, 0.0):.3f}" for r in cols])
    table.add_row("total (erase)", *[f"{r['total_s']:.3f}" for r in cols])
    return table


_NESTED = {
    "verify()": "↳ verify() (inside step:verify)",
    "forensic scan": "↳ scan_tree (inside verify())",
    "purge (VACUUM)": "↳ purge_free_space with VACUUM (purge step, or verify after a hit)",
    "purge (checkpoint)": "↳ purge_free_space, checkpoint only (the purge_database step)",
}


def _phase_label(name: str) -> str:
    """Rows marked ↳ are parts of the steps above them, not added to the total."""
    return _NESTED.get(name, name)


def _status(r: dict[str, Any]) -> str:
    if r["ok"]:
        return ""
    return " [red](failed)[/]" if r["error"] else " [red](not ok)[/]"


def _goal(seconds: float, goal: float) -> str:
    mark = "[green]✓[/]" if seconds < goal else "[red]✗[/]"
    return f"{seconds:.2f} s {mark}"


# -- part C: the forensic scan -------------------------------------------------------------
def sample_needles(ws: Workspace, n_photos: int, rng: random.Random) -> dict[str, bytes]:
    """The needles the verifier takes for ``n_photos`` photos (windows, sha256 raw and hex, key)."""
    from disgorge.erasure.samples import windows  # the verifier's windows

    needles: dict[str, bytes] = {}
    con = sqlite3.connect(ws.config.home / "catalog.sqlite")
    try:
        rows = con.execute(
            "SELECT a.id, a.sha256, a.blob_key, s.ref, s.dek_wrapped FROM assets AS a "
            "JOIN subjects AS s ON s.id = a.owner_id WHERE a.blob_key IS NOT NULL AND a.state = 'active'"
        ).fetchall()
    finally:
        con.close()
    for n, (asset_id, sha, key, ref, dek) in enumerate(rng.sample(rows, min(n_photos, len(rows)))):
        owner = SimpleNamespace(ref=ref, dek_wrapped=dek)
        data = ws.vault.get_blob(owner, asset_id, key)  # type: ignore[arg-type]
        for w, window in enumerate(windows(data)):
            needles[f"photo:{n}:{w}"] = window
        needles[f"sha256-hex:{n}"] = sha.encode()
        needles[f"sha256:{n}"] = bytes.fromhex(sha)
        if n % 10 == 0:
            needles[f"wrapped-key:{n}"] = dek
    return needles


def tree_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for dirpath, _dirs, names in os.walk(root):
        for name in sorted(names):
            path = Path(dirpath) / name
            if not path.is_symlink() and path.is_file():
                files.append(path)
    return files


def baseline_sample(root: Path, mb: int, tmp: Path) -> list[Path]:
    """What the baselines read: the first ``mb / 2`` MB of the catalog (as a file of its own)
    and blob files up to ``mb / 2`` MB."""
    half = mb * 1_000_000 // 2
    head = tmp / "catalog-head.bin"
    with open(root / "catalog.sqlite", "rb") as src, open(head, "wb") as dst:
        dst.write(src.read(half))
    out, total = [head], 0
    for path in tree_files(root / "blobs"):
        if total >= half:
            break
        out.append(path)
        total += path.stat().st_size
    return out


def baseline_find(files: list[Path], needles: dict[str, bytes], budget_s: float) -> tuple[float, int]:
    """``bytes.find`` once per needle over each 8 MB piece (overlapping like the scanner's
    chunks), until ``budget_s`` has passed: (seconds, bytes covered)."""
    started = time.perf_counter()
    values = list(needles.values())
    overlap = max(map(len, values)) - 1
    total = 0
    for path in files:
        with open(path, "rb") as fh:
            tail = b""
            while piece := fh.read(8 << 20):
                window = tail + piece
                for needle in values:
                    window.find(needle)
                total += len(piece)
                tail = window[-overlap:]
                if time.perf_counter() - started > budget_s:
                    return time.perf_counter() - started, total
    return time.perf_counter() - started, total


def baseline_grep(files: list[Path], needles: dict[str, bytes], tmp: Path) -> tuple[float, int, int] | None:
    """``grep -c -a -F -f NEEDLES FILE...`` (needles with a newline or NUL byte left out):
    (seconds, bytes, needles used)."""
    if shutil.which("grep") is None:
        return None
    usable = [n for n in needles.values() if b"\n" not in n and b"\x00" not in n]
    pattern = tmp / "needles.bin"
    pattern.write_bytes(b"\n".join(usable) + b"\n")
    started = time.perf_counter()
    for i in range(0, len(files), 2000):  # argument lists of bounded length
        subprocess.run(
            ["grep", "-c", "-a", "-F", "-f", str(pattern), *map(str, files[i : i + 2000])],
            capture_output=True,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    return time.perf_counter() - started, sum(p.stat().st_size for p in files), len(usable)


def part_c(
    ws: Workspace, root: Path, baseline_mb: int, budget_s: float, sizes: list[int], tmp: Path
) -> list[dict[str, Any]]:
    rng = random.Random(11)
    files, total = tree_bytes(root)
    with console.status(f"C: warming the page cache ({total / 1e9:.1f} GB) ..."):
        warm(tree_files(root))
    rows = []
    sample = baseline_sample(root, baseline_mb, tmp)
    for n_photos in sizes:
        needles = sample_needles(ws, n_photos, rng)
        sampled = sum(1 for k in needles if k.startswith("sha256:"))
        times = []
        with console.status(f"C: scan_tree, {len(needles):,} needles over {total / 1e9:.1f} GB, 3 times ..."):
            for _ in range(3):
                t = time.perf_counter()
                hits = scan_tree(root, needles)
                times.append(time.perf_counter() - t)
        scan_s = min(times)
        row: dict[str, Any] = {
            "photos": n_photos,
            "needles": len(needles),
            "files": files,
            "mb": total / 1e6,
            "scan_s": scan_s,
            "scan_mbs": total / 1e6 / scan_s,
            "scan_hits": len(hits),
            "scan_s_all": times,
            "expected_hits": sampled + (sampled + 9) // 10,
        }
        with console.status(f"C: bytes.find per needle, {len(needles):,} needles ..."):
            find_s, find_b = baseline_find(sample, needles, budget_s)
        row["find_mbs"] = find_b / 1e6 / find_s
        row["find_mb"] = find_b / 1e6
        with console.status(f"C: grep -F -f, {len(needles):,} needles ..."):
            g = baseline_grep(sample, needles, tmp)
        if g is not None:
            row["grep_mbs"] = g[1] / 1e6 / g[0]
            row["grep_mb"] = g[1] / 1e6
            row["grep_needles"] = g[2]
        rows.append(row)
        console.print(
            f"  {len(needles):,} needles: scan_tree {row['scan_mbs']:,.0f} MB/s (load {load_average()})"
        )
    return rows


def render_c(rows: list[dict[str, Any]]) -> Table:
    first = rows[0]
    table = Table(
        title=f"C. forensic scan of the whole workspace: {first['files']:,} files, {first['mb']:,.0f} MB, "
        "page cache warm; scan_tree: best of 3 (all 3 in brackets); baselines: on a sample of catalog "
        "and blobs, MB read in brackets",
        title_justify="left",
    )
    for col in (
        "needles (photos)",
        "scan_tree",
        "hits (expected)",
        "bytes.find per needle",
        "grep -c -a -F -f",
        "scan_tree vs find",
        "scan_tree vs grep",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['needles']:,} ({r['photos']:,})",
            f"{_goal_mbs(r['scan_mbs'])} ({r['scan_s']:.1f} s; "
            + "/".join(f"{t:.1f}" for t in r["scan_s_all"])
            + ")",
            f"{r['scan_hits']:,} ({r['expected_hits']:,})",
            f"{r['find_mbs']:,.1f} MB/s ({r['find_mb']:,.0f} MB)",
            f"{r['grep_mbs']:,.1f} MB/s ({r['grep_mb']:,.0f} MB, {r['grep_needles']:,} needles)"
            if "grep_mbs" in r
            else "-",
            f"{r['scan_mbs'] / r['find_mbs']:,.0f}x",
            f"{r['scan_mbs'] / r['grep_mbs']:,.1f}x" if "grep_mbs" in r else "-",
        )
    return table


def _goal_mbs(mbs: float) -> str:
    mark = "[green]✓[/]" if mbs >= GOAL_SCAN_MBS else "[red]✗[/]"
    return f"{mbs:,.0f} MB/s {mark}"


# -- part V: what verify() costs besides the scan --------------------------------------------
def part_v(pristine: Path, run: Path, refs: list[str]) -> dict[str, Any]:
    """The parts of ``ErasureEngine.verify`` other than ``scan_tree``, each timed on its own on a
    fresh copy (all models active), by the same calls: the lineage check
    (``active_models_using`` for each subject's photos: downstream of what holds them) and
    ``load_hash_matrix`` (the copy search's matrix) with no cache (every sealed PDQ hash
    decrypted), building the cache, and from the cache as ``analyze`` leaves it."""
    from sqlalchemy import select

    from disgorge.catalog.models import Asset, AssetSubject, Subject
    from disgorge.erasure.verifier import active_models_using

    fresh_copy(pristine, run)
    ws = Workspace.open(run, actor="bench")
    out: dict[str, Any] = {"lineage": []}
    try:
        with ws.reader() as session:
            for ref in refs:
                subject = session.scalar(select(Subject.id).where(Subject.ref == ref))
                assets = list(
                    session.scalars(
                        select(Asset.id).join(AssetSubject).where(AssetSubject.subject_id == subject)
                    )
                )
                t = time.perf_counter()
                found = active_models_using(session, assets)
                out["lineage"].append((len(assets), len(found), time.perf_counter() - t))
        t = time.perf_counter()
        matrix = load_hash_matrix(ws.reader, ws.vault)
        out["hash_matrix_s"], out["hashes"] = time.perf_counter() - t, len(matrix)
        ws.hash_cache.path.unlink(missing_ok=True)
        t = time.perf_counter()
        load_hash_matrix(ws.reader, ws.vault, cache=ws.hash_cache)
        out["hash_cache_build_s"] = time.perf_counter() - t
        t = time.perf_counter()
        load_hash_matrix(ws.reader, ws.vault, cache=ws.hash_cache)
        out["hash_cache_warm_s"] = time.perf_counter() - t
    finally:
        ws.close()
    console.print(f"  V: done (load {load_average()})")
    return out


def render_v(v: dict[str, Any]) -> Table:
    table = Table(
        title="V. verify() besides the scan, each part timed on its own (fresh copy, all models active)",
        title_justify="left",
    )
    table.add_column("part")
    table.add_column("seconds", justify="right")
    table.add_column("what")
    for photos, models, seconds in v["lineage"]:
        table.add_row(
            "lineage check",
            f"{seconds:.2f}",
            f"a subject's {photos} photos: {models} active models reach them",
        )
    hashes = f"{v['hashes']:,} PDQ hashes"
    table.add_row("load_hash_matrix, no cache", f"{v['hash_matrix_s']:.2f}", f"{hashes}, each decrypted")
    table.add_row("load_hash_matrix, building the cache", f"{v['hash_cache_build_s']:.2f}", hashes)
    table.add_row(
        "load_hash_matrix, from the cache",
        f"{v['hash_cache_warm_s']:.2f}",
        f"{hashes} (as analyze leaves it)",
    )
    return table


# -- part B: a whole source ----------------------------------------------------------------
def source_blob_paths(ws: Workspace) -> list[Path]:
    con = sqlite3.connect(ws.config.home / "catalog.sqlite")
    try:
        keys = [
            k
            for (k,) in con.execute(
                "SELECT a.blob_key FROM assets AS a JOIN sources AS s ON s.id = a.source_id "
                "WHERE s.name = ? AND a.blob_key IS NOT NULL",
                (SOURCE_NAME,),
            )
        ]
    finally:
        con.close()
    root = Path(ws.store.root)
    return [root / k[:2] / k[2:4] / k for k in keys]


def overwrite_and_unlink(paths: list[Path], budget_s: float) -> tuple[float, int]:
    """What a user would do without crypto-shredding: zero every file, fsync, unlink; until
    ``budget_s`` has passed. (seconds, files done)."""
    started = time.perf_counter()
    zeros = bytes(1 << 20)
    for done, path in enumerate(paths):
        if time.perf_counter() - started > budget_s:
            return time.perf_counter() - started, done
        fd = os.open(path, os.O_WRONLY)
        try:
            size = os.fstat(fd).st_size
            written = 0
            while written < size:
                written += os.write(fd, zeros[: min(len(zeros), size - written)])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(path)
    return time.perf_counter() - started, len(paths)


def baseline_overwrite(run: Path, tmp: Path, budget_s: float) -> dict[str, Any]:
    """The user's alternative, on copies of the source's blob files."""
    ws = Workspace.open(run, actor="bench")
    try:
        paths = source_blob_paths(ws)
    finally:
        ws.close()
    if budget_s <= 0:  # --plain: the user's alternative does not depend on disgorge's code
        mb = sum(p.stat().st_size for p in paths) / 1e6
        return {"photos": len(paths), "mb": mb, "seconds": 0.0, "files": 0, "skipped": True}
    copies = tmp / "baseline-blobs"
    shutil.rmtree(copies, ignore_errors=True)
    copies.mkdir(parents=True)
    with console.status(f"B: copying {len(paths):,} blob files for the baseline ..."):
        targets = []
        for p in paths:
            dst = copies / p.name[:2] / p.name
            dst.parent.mkdir(exist_ok=True)
            shutil.copyfile(p, dst)
            targets.append(dst)
        os.sync()
    nbytes = sum(p.stat().st_size for p in targets)
    with console.status(f"B: baseline: overwrite + fsync + unlink {len(targets):,} files ..."):
        seconds, done = overwrite_and_unlink(targets, budget_s)
    shutil.rmtree(copies, ignore_errors=True)
    console.print(f"  baseline: {done:,} files in {seconds:.1f} s (load {load_average()})")
    return {"photos": len(paths), "mb": nbytes / 1e6, "seconds": seconds, "files": done}


def erase_source(run: Path, patches: Patches, scope: str, variant: str) -> dict[str, Any]:
    global CURRENT
    patches.scan_scope = scope
    patches.purge = variant
    ws = Workspace.open(run, actor="bench")
    try:
        CURRENT = Timer()
        with (
            console.status(f"B: erase --source {SOURCE_NAME}, purge by {variant} ..."),
            Clock("tree") as clock,
        ):
            result = ws.erase("source", SOURCE_NAME, reason="benchmark: tainted source")
        total = clock.wall
        timer = CURRENT
    finally:
        ws.close()
    where = locate(run / ".disgorge" / "catalog.sqlite", timer.hit_offsets)
    console.print(
        f"  erase --source ({variant}) done in {total:.1f} s; catalog hits: {where or 'none'} "
        f"(load {load_average()})"
    )
    steps = {s["step"]: s["summary"] for s in result["steps"]}
    return {
        "total_s": total,
        "cpu_s": clock.cpu,
        "phases": timer.phases,
        "scan_s": timer.phases.get("forensic scan", 0.0),
        "scan_mb": timer.scan_bytes / 1e6,
        "needles": timer.needles,
        "hits": timer.scan_hits,
        "ok": bool((result.get("verification") or {}).get("ok")),
        "keys_destroyed": steps.get("shred_keys", {}).get("keys_destroyed"),
        "photos": steps.get("tombstone_assets", {}).get("tombstoned"),
        "scope": scope,
        "hits_where": where,
    }


def part_b(
    pristine: Path, run: Path, patches: Patches, scope: str, tmp: Path, budget_s: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"instrumented": patches.installed, "steps": patches.steps}
    for variant in ("shipped",):  # 100,000 photos: the purge VACUUMs either way
        fresh_copy(pristine, run)
        warm([run / ".disgorge" / "catalog.sqlite"])
        if "baseline" not in out:
            out["baseline"] = baseline_overwrite(run, tmp, budget_s)
        out[variant] = erase_source(run, patches, scope, variant)
    return out


def render_b(b: dict[str, Any]) -> Table:
    base = b["baseline"]
    n = base["photos"]
    table = Table(
        title=f"B. erasing a whole source: {n:,} photos, {base['mb']:,.0f} MB of encrypted blobs",
        title_justify="left",
    )
    table.add_column("path")
    table.add_column("seconds", justify="right")
    table.add_column("photos/s", justify="right")
    table.add_column("what it covers")

    def row(name: str, seconds: float, what: str) -> None:
        table.add_row(name, f"{seconds:,.1f}", f"{n / seconds:,.0f}" if seconds else "-", what)

    for variant, label in (("shipped", "as shipped"),):
        r = b[variant]
        ph = r["phases"]
        status = "[green]ok[/]" if r["ok"] else "[red]NOT OK[/]"
        if not b.get("instrumented", True):  # --plain: only the end-to-end time
            row(
                f"erase --source, end to end ({label}, --plain)",
                r["total_s"],
                f"plan .. verify (the whole tree scanned, as shipped): {status}; + certificate; "
                f"{r['keys_destroyed']:,} data keys destroyed, {r['photos']:,} photos tombstoned",
            )
            continue
        if variant == "shipped":
            row(
                "crypto-shredding: the shred_keys step",
                ph.get("step:shred_keys", 0.0),
                f"{r['keys_destroyed']:,} data keys destroyed: every photo of a subject found only "
                "in this source is unreadable from then on",
            )
            row(
                "the delete_blobs step",
                ph.get("step:delete_blobs", 0.0),
                "unlinked; those whose owner keeps a key (about 10 %) zeroed first",
            )
        executed = ph.get("plan+record", 0.0) + ph.get("approve (re-plan, journal)", 0.0)
        executed += sum(
            v for k, v in ph.items() if k.startswith("step:") and k not in ("step:verify", "step:certificate")
        )
        purge = sum(v for k, v in ph.items() if k.startswith("purge"))
        row(
            f"erase --source, executed ({label})",
            executed,
            "plan, approve, sample .. purge_database: blobs unlinked, rows tombstoned, keys shredded, "
            "dataset versions derived",
        )
        row(
            f"erase --source, end to end ({label})",
            r["total_s"],
            f"+ verify: {r['scope']} scan, {r['needles']:,} needles over {r['scan_mb']:,.0f} MB in "
            f"{r['scan_s']:,.1f} s: {r['hits']} hits, {status}; + certificate; purges {purge:,.1f} s",
        )
    done = base["files"]
    if base.get("skipped"):
        return table
    table.add_row(
        "baseline: overwrite, fsync, unlink",
        f"{base['seconds']:,.1f}" + ("" if done == n else f" for {done:,} files"),
        f"{done / base['seconds']:,.0f}",
        "each blob file zeroed in place, fsync'd, unlinked"
        + ("" if done == n else f" (stopped after {base['seconds']:,.0f} s: rate over the files done)"),
    )
    return table


def render_b_phases(b: dict[str, Any]) -> Table:
    table = Table(
        title="B. erase --source: seconds per phase (↳: part of a step above)", title_justify="left"
    )
    table.add_column("phase")
    table.add_column("as shipped (VACUUM: 1,000 photos or more)", justify="right")
    names: list[str] = ["plan+record", "approve (re-plan, journal)"] + [f"step:{s}" for s in b["steps"]]
    extra = sorted(set(b["shipped"]["phases"]) - set(names))
    for name in names + extra:
        table.add_row(_phase_label(name), f"{b['shipped']['phases'].get(name, 0.0):,.2f}")
    table.add_row("total", f"{b['shipped']['total_s']:,.2f}")
    return table


# -- main ----------------------------------------------------------------------------------
def headline(results: dict[str, Any]) -> dict[str, float]:
    """What ``--baseline-src`` compares, in seconds: per subject of part A (as shipped) the dry
    run and the erasure end to end, and their sum; part B end to end; part C's scans."""
    out: dict[str, float] = {}
    rows = results.get("a", {}).get("shipped", {}).get("rows", [])
    for r in rows:
        out[f"A. {r['subject']} ({r['photos']} photos): dry run"] = r["dry_run_s"]
        out[f"A. {r['subject']} ({r['photos']} photos): erase, end to end"] = r["total_s"]
    if rows:
        out[f"A. all {len(rows)} subjects: dry runs + erasures"] = sum(
            r["dry_run_s"] + r["total_s"] for r in rows
        )
        if all("cpu_s" in r for r in rows):  # steadier than wall time on a shared machine
            out[f"A. all {len(rows)} subjects: erasures, CPU (with the scan's process)"] = sum(
                r["cpu_s"] for r in rows
            )
    if "b" in results:
        out["B. erase --source, end to end"] = results["b"]["shipped"]["total_s"]
        if "cpu_s" in results["b"]["shipped"]:
            out["B. erase --source, CPU (with the scan's process)"] = results["b"]["shipped"]["cpu_s"]
    for r in results.get("c", []):
        out[f"C. scan_tree, {r['needles']:,} needles (best of 3)"] = r["scan_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--assets", type=int, default=1_000_000, help="assets in all (default 1000000)")
    parser.add_argument(
        "--source-assets", type=int, default=100_000, help="photos of the erased source (default 100000)"
    )
    parser.add_argument("--subjects", type=int, default=100_000, help="subjects outside the source (100000)")
    parser.add_argument("--datasets", type=int, default=10, help="dataset versions (default 10)")
    parser.add_argument("--models", type=int, default=30, help="external models (default 30)")
    parser.add_argument("--exports", type=int, default=5, help="exports of models (default 5)")
    parser.add_argument("--erase-subjects", type=int, default=3, help="typical subjects erased (default 3)")
    parser.add_argument("--blob-kb", type=int, default=20, help="mean photo size in KB (default 20)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--baseline-mb", type=int, default=128, help="MB of catalog and blobs the scan baselines read (128)"
    )
    parser.add_argument(
        "--baseline-s", type=float, default=30.0, help="seconds after which bytes.find stops (default 30)"
    )
    parser.add_argument(
        "--source-scan",
        choices=("full", "catalog"),
        default="full",
        help="the verifier's scan in part B: the whole tree (as shipped) or the catalog files only",
    )
    parser.add_argument(
        "--overwrite-s", type=float, default=120.0, help="seconds the overwrite baseline runs at most (120)"
    )
    parser.add_argument(
        "--a-variants",
        default="shipped,always-vacuum",
        help="purges part A runs, comma-separated: shipped (VACUUM only if the scan finds a stale "
        "copy), always-vacuum (the previous release)",
    )
    parser.add_argument(
        "--a-order",
        default="",
        help="part A erases these subjects in this order: comma-separated positions, 1 to "
        "--erase-subjects for the typical ones, then the one with the most photos (default: all in order)",
    )
    parser.add_argument("--skip-subject", action="store_true", help="skip part A")
    parser.add_argument(
        "--verify-parts", action="store_true", help="part V: time verify()'s parts besides the scan (~1 min)"
    )
    parser.add_argument("--skip-source", action="store_true", help="skip part B")
    parser.add_argument("--skip-scan", action="store_true", help="skip part C")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "disgorge-bench-erasure",
        help="folder of the cached workspace and the working copies",
    )
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached workspace")
    parser.add_argument(
        "--build-only", action="store_true", help="build (or check) the cached workspace, then stop"
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="public API only (Workspace.erasure_plan, Workspace.erase), nothing inside them timed "
        "apart, the verifier's scan as shipped: part A as shipped, part B without the overwrite "
        "baseline; no C, no V (what --baseline-src runs, on both versions)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.source_assets < args.assets:
        parser.error("--source-assets must be positive and below --assets")
    if args.baseline_src:
        return before_after(__file__, args, argv, headline, child_args=["--plain"])
    if args.plain:
        args.a_variants, args.skip_scan, args.verify_parts = "shipped", True, False
        args.overwrite_s = 0.0  # no overwrite baseline in part B
    setup = Setup(
        args.assets,
        args.source_assets,
        args.subjects,
        args.datasets,
        args.models,
        args.exports,
        args.erase_subjects,
        args.blob_kb,
        args.seed,
    )
    info = machine()
    console.print(describe(info))
    pristine, saved = ensure_workspace(args.cache, setup, args.fresh)
    shape = saved["shape"]
    db = pristine / ".disgorge" / "catalog.sqlite"
    files, total = tree_bytes(pristine / ".disgorge")
    console.print(
        f"workspace: {args.assets:,} assets ({args.source_assets:,} in {SOURCE_NAME}), "
        f"{args.subjects + max(1, args.source_assets // 10):,} subjects with real wrapped keys, "
        f"{shape['links'] + args.source_assets:,} asset-subject links, {shape['datasets']} dataset versions, "
        f"{shape['models']} external models ({shape['derived_models']} fine-tuned/distilled), "
        f"{shape['exports']} exports; {saved['blobs']:,} encrypted blobs "
        f"({saved['blob_bytes'] / 1e9:.2f} GB); "
        f"catalog {db.stat().st_size / 1e6:,.0f} MB; {files:,} files, {total / 1e9:.2f} GB in all. "
        f"part A erases {len(saved['subjects']) - 1} subjects with {saved['median_photos']} photos "
        "(the median) and the subject with the most photos"
    )
    if args.build_only:
        return 0
    results: dict[str, Any] = {"machine": info, "setup": asdict(setup), "plain": args.plain}
    run = args.cache / "run"
    tmp = args.cache / "tmp"
    tmp.mkdir(exist_ok=True)
    patches = Patches()
    if not args.plain:
        patches.install()
    try:
        if not args.skip_subject:
            variants = tuple(v for v in args.a_variants.split(",") if v)
            order = [int(x) for x in args.a_order.split(",") if x]
            a = part_a(pristine, run, saved, patches, args.assets, tmp, variants, order)
            results["a"] = a
            for table in render_a(a):
                show(console, table, args.markdown)
            if patches.installed:
                show(console, render_phases(a), args.markdown)
        if args.verify_parts:
            results["v"] = part_v(pristine, run, list(saved["subjects"]))
            show(console, render_v(results["v"]), args.markdown)
        if not args.skip_scan:
            ws = Workspace.open(run, actor="bench")
            try:
                c = part_c(ws, run / ".disgorge", args.baseline_mb, args.baseline_s, [20, 1000, 10000], tmp)
            finally:
                ws.close()
            results["c"] = c
            show(console, render_c(c), args.markdown)
        if not args.skip_source:
            b = part_b(pristine, run, patches, args.source_scan, tmp, args.overwrite_s)
            results["b"] = b
            show(console, render_b(b), args.markdown)
            if patches.installed:
                show(console, render_b_phases(b), args.markdown)
    finally:
        patches.uninstall()
        shutil.rmtree(tmp, ignore_errors=True)
    console.print(finish(info))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
