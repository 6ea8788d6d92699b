"""Crash safety and concurrency, with real processes, real SQLite and real files.

Every ingest here is the real ``disgorge`` console script started with
:class:`subprocess.Popen`; kills are real ``SIGKILL``s; the checks afterwards open the
workspace with the public :class:`Workspace` API and look at the files on disk.

Each test tags the processes it starts with an environment variable, which the decoder
pool's processes inherit: that is how a test finds, through ``/proc`` alone, any process
of its ingest still running after the ingest was killed (and ends it, by pid, at teardown).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from _processes import wait_until
from conftest import DISGORGE
from disgorge import Workspace
from disgorge.catalog.models import Asset, Subject
from disgorge.samples import synthetic_photo

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses SIGKILL and /proc (Linux only)"
)

PEOPLE = [f"Person_{p:02d}" for p in range(10)]
BIG = 600  # photos in the folder the kill tests ingest (60 per person)
SMALL = 300  # photos in the folder the two racing ingests share (30 per person)
WORKERS = "2"
TAG_VAR = "DISGORGE_CRASH_TEST_TAG"
BUSY_TIMEOUT_S = 60  # catalog/db.py: connect timeout and PRAGMA busy_timeout
DEADLINE_S = 120  # generous bound for polling loops; a healthy run takes a few seconds


# -- data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Folder:
    path: Path
    photos: dict[str, bytes]  # sha256 -> original bytes
    per_person: dict[str, int]


def _make_folder(root: Path, count: int) -> Folder:
    photos: dict[str, bytes] = {}
    per_person: Counter[str] = Counter()
    for i in range(count):
        p = i % len(PEOPLE)
        name = PEOPLE[p]
        (root / name).mkdir(parents=True, exist_ok=True)
        data = synthetic_photo(p, i, size=128)
        (root / name / f"{name}_{i:04d}.jpg").write_bytes(data)
        photos[hashlib.sha256(data).hexdigest()] = data
        per_person[name] += 1
    assert len(photos) == count, "synthetic photos must all differ"
    return Folder(root, photos, dict(per_person))


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    return _make_folder(tmp_path_factory.mktemp("big") / "photos", BIG)


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    return _make_folder(tmp_path_factory.mktemp("small") / "photos", SMALL)


def _new_workspace(path: Path) -> Path:
    with Workspace.init(path, actor="crash-test") as ws:
        ws.add_source("app")
    return path


# -- what a workspace holds -------------------------------------------------------------------
@dataclass(frozen=True)
class State:
    shas: frozenset[str]
    subjects: int
    per_person: dict[str, int]  # external id -> photos owned


def _rows(ws: Workspace) -> list[tuple[str, str, str | None]]:
    """(asset id, sha256, blob key) of every asset row."""
    with ws.sessions() as session:
        return [tuple(r) for r in session.execute(select(Asset.id, Asset.sha256, Asset.blob_key))]


def _state(ws: Workspace) -> State:
    with ws.sessions() as session:
        shas = list(session.scalars(select(Asset.sha256)))
        owners = Counter(session.scalars(select(Subject.ref).join(Asset, Asset.owner_id == Subject.id)))
        subjects = len(list(session.scalars(select(Subject.id))))
    assert len(shas) == len(set(shas)), "duplicate sha256 rows"
    per_person = {name: owners.get(ws.subject_ref(name), 0) for name in PEOPLE}
    return State(frozenset(shas), subjects, per_person)


def _blob_keys_on_disk(ws: Workspace) -> set[str]:
    return {key for key, _ in ws.store.entries()}


def _temporaries_on_disk(ws: Workspace) -> int:
    return sum(1 for _ in ws.store.temporaries())


def _check_every_row_reads(ws: Workspace, originals: dict[str, bytes]) -> None:
    for _asset_id, sha, blob_key in _rows(ws):
        assert blob_key is not None and ws.store.exists(blob_key), f"asset {sha[:12]} lost its blob"
        data = ws.read_asset(sha)  # raises on a missing blob or a failed decryption
        assert hashlib.sha256(data).hexdigest() == sha
        assert data == originals[sha]


@dataclass(frozen=True)
class Reference:
    state: State
    seconds: float  # wall time of the whole `disgorge ingest` command


@pytest.fixture(scope="module")
def reference(big_folder: Folder, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The state a clean, uninterrupted single ingest of the big folder leaves."""
    root = _new_workspace(tmp_path_factory.mktemp("reference") / "ws")
    began = time.monotonic()
    done = _run_cli("ingest", *_ingest_args(big_folder.path, root), tag=uuid.uuid4().hex)
    seconds = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    with Workspace.open(root) as ws:
        state = _state(ws)
    assert state.shas == frozenset(big_folder.photos)
    assert state.per_person == big_folder.per_person
    assert state.subjects == len(PEOPLE)
    return Reference(state, seconds)


# -- processes --------------------------------------------------------------------------------
def _env(tag: str) -> dict[str, str]:
    return {**os.environ, TAG_VAR: tag}


def _ingest_args(folder: Path, ws: Path) -> list[str]:
    return [
        str(folder),
        "--source",
        "app",
        "--subject-from",
        "dirname",
        "--workers",
        WORKERS,
        "--workspace",
        str(ws),
        "--json",
    ]


_STARTED: list[Started] = []


@dataclass
class Started:
    """A CLI process started in the background, its output going to files.

    Files, not pipes: after a SIGKILL, any surviving child would hold a pipe open and
    keep the reader waiting.
    """

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def finish(self, timeout: float = DEADLINE_S) -> tuple[int, str, str]:
        self.proc.wait(timeout)
        return self.proc.returncode, self.out.read_text(), self.err.read_text()


def _start(*args: str, tag: str, logs: Path) -> Started:
    logs.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex[:8]
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([DISGORGE, *args], env=_env(tag), stdout=stdout, stderr=stderr)
    run = Started(proc, out, err)
    _STARTED.append(run)
    return run


def _run_cli(*args: str, tag: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DISGORGE, *args], env=_env(tag), capture_output=True, text=True, timeout=timeout)


def _tagged_processes(tag: str) -> dict[int, str]:
    """Live (non-zombie) processes whose environment carries ``tag``: pid -> command line."""
    marker = f"{TAG_VAR}={tag}".encode()
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if marker not in Path(entry.path, "environ").read_bytes().split(b"\0"):
                continue
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state not in ("Z", "X"):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:160]
    return found


def _wait_gone(tag: str, within: float = 10.0) -> dict[int, str]:
    """Poll until no process carries ``tag``; return what is left at the deadline."""
    deadline = time.monotonic() + within
    while (left := _tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def tag() -> Iterator[str]:
    """A per-test process tag; whatever still carries it at teardown is killed, by pid."""
    value = uuid.uuid4().hex
    yield value
    while _STARTED:
        run = _STARTED.pop()
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
    for pid in _tagged_processes(value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_for(what: str, condition: Callable[[], bool], run: Started | None = None) -> None:
    """Poll ``condition`` until true (every 2 ms: a kill moment must not be overshot); fail
    if ``run`` exits first or the deadline passes."""

    def still_running() -> None:
        if run is not None and run.proc.poll() is not None:
            code, _, err = run.finish()
            pytest.fail(f"ingest exited ({code}) before {what}: too fast for the test?\n{err}")

    wait_until(what, condition, within=DEADLINE_S, every=0.002, check=still_running)


def _blob_count(blobs: Path, at_least: int) -> bool:
    """True once ``blobs`` holds ``at_least`` complete blobs (stops counting there)."""
    with os.scandir(blobs) as entries:
        tops = [e.path for e in entries if e.name != ".tmp" and e.is_dir()]
    count = 0
    for top in tops:
        for _dir, _subdirs, files in os.walk(top):
            count += sum(1 for f in files if len(f) == 64)
            if count >= at_least:
                return True
    return False


# -- 1. two ingests of one folder at the same time ----------------------------------------------
@pytest.mark.slow
def test_two_ingests_of_one_folder_at_once_store_each_photo_once(
    small_folder: Folder, tmp_path: Path, tag: str
) -> None:
    root = _new_workspace(tmp_path / "ws")
    runs = [_start("ingest", *_ingest_args(small_folder.path, root), tag=tag, logs=tmp_path) for _ in "ab"]
    results = [run.finish() for run in runs]
    for code, _, err in results:
        assert code == 0, f"ingest exited {code}:\n{err}"
    reports = [json.loads(out) for _, out, _ in results]
    for r in reports:
        assert r["files"] == SMALL
        assert r["rejected"] == []
        assert r["ingested"] + r["duplicates"] == SMALL
    assert sum(r["ingested"] for r in reports) == SMALL, reports

    with Workspace.open(root) as ws:
        state = _state(ws)
        assert state.shas == frozenset(small_folder.photos)  # none lost, none extra
        assert len(_rows(ws)) == SMALL  # no duplicate rows
        assert state.subjects == len(PEOPLE)  # no subject created twice
        assert state.per_person == small_folder.per_person
        _check_every_row_reads(ws, small_folder.photos)
        assert ws.verify_audit().ok
        ingested_events = ws.audit_events(limit=10 * SMALL, action="asset.ingested")
        assert len(ingested_events) == SMALL  # the losers' rows were never logged
        # the losing process deleted the blobs of the photos it lost
        assert _blob_keys_on_disk(ws) == {key for _, _, key in _rows(ws)}
        gc = ws.gc(grace_seconds=0, dry_run=True)
        assert (gc.orphan_blobs, gc.temporaries) == (0, 0)
    assert _wait_gone(tag) == {}


# -- 2. SIGKILL during an ingest ----------------------------------------------------------------
def _first_blob(blobs: Path, run: Started, started: float, clean_seconds: float) -> None:
    _wait_for("the first blob", lambda: _blob_count(blobs, 1), run)


def _many_blobs(blobs: Path, run: Started, started: float, clean_seconds: float) -> None:
    # 200 blobs: the first batch is committed and the next one is half written
    _wait_for("200 blobs", lambda: _blob_count(blobs, 200), run)


def _after_delay(blobs: Path, run: Started, started: float, clean_seconds: float) -> None:
    # a fixed delay would land before the first write on a slow machine and after the
    # last on a fast one: take 40% of what the clean ingest took here (startup included)
    delay = 0.4 * clean_seconds
    _wait_for(f"{delay:.2f} s", lambda: time.monotonic() - started >= delay, run)


KILL_MOMENTS = {"first-blob": _first_blob, "200-blobs": _many_blobs, "40%-of-clean-time": _after_delay}


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(KILL_MOMENTS))
def test_sigkill_during_ingest_leaves_no_half_registered_asset(
    moment: str, big_folder: Folder, reference: Reference, tmp_path: Path, tag: str
) -> None:
    root = _new_workspace(tmp_path / "ws")
    with Workspace.open(root) as ws:
        blobs = Path(ws.store.root)

    started = time.monotonic()
    run = _start("ingest", *_ingest_args(big_folder.path, root), tag=tag, logs=tmp_path)
    KILL_MOMENTS[moment](blobs, run, started, reference.seconds)
    os.kill(run.proc.pid, signal.SIGKILL)
    assert run.finish()[0] == -signal.SIGKILL

    # the decoder pool (forkserver, workers, resource tracker) must not outlive its ingest
    left = _wait_gone(tag)
    assert left == {}, f"processes of the killed ingest still running: {left}"

    with Workspace.open(root) as ws:
        rows = _rows(ws)
        assert len(rows) < BIG, "the kill came after the ingest had finished"
        _check_every_row_reads(ws, big_folder.photos)
        assert ws.verify_audit().ok
        known = {key for _, _, key in rows}
        on_disk = _blob_keys_on_disk(ws)
        assert known <= on_disk
        temporaries = _temporaries_on_disk(ws)

        gc = ws.gc(grace_seconds=0)
        assert gc.orphan_blobs == len(on_disk - known)
        assert gc.temporaries == temporaries
        assert _blob_keys_on_disk(ws) == known  # only orphans went; every row kept its blob
        assert _temporaries_on_disk(ws) == 0
        assert sorted(_rows(ws)) == sorted(rows)
        assert ws.verify_audit().ok

    again = _run_cli("ingest", *_ingest_args(big_folder.path, root), tag=tag)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["ingested"], report["duplicates"]) == (BIG - len(rows), len(rows))

    with Workspace.open(root) as ws:
        assert _state(ws) == reference.state
        assert ws.verify_audit().ok
        assert _blob_keys_on_disk(ws) == {key for _, _, key in _rows(ws)}
        gc = ws.gc(grace_seconds=0, dry_run=True)
        assert (gc.orphan_blobs, gc.temporaries) == (0, 0)


# -- 3. a reader while an ingest runs -------------------------------------------------------------
@pytest.mark.slow
def test_status_during_ingest_answers_promptly(big_folder: Folder, tmp_path: Path, tag: str) -> None:
    root = _new_workspace(tmp_path / "ws")
    with Workspace.open(root) as ws:
        blobs = Path(ws.store.root)

    run = _start("ingest", *_ingest_args(big_folder.path, root), tag=tag, logs=tmp_path)
    _wait_for("the first blob", lambda: _blob_count(blobs, 1), run)
    counts: list[int] = []
    while not counts or (run.proc.poll() is None and len(counts) < 3):
        began = time.monotonic()
        # subprocess.run raises TimeoutExpired (failing the test) past the busy timeout
        status = _run_cli("status", "--workspace", str(root), "--json", tag=tag, timeout=BUSY_TIMEOUT_S)
        assert time.monotonic() - began < BUSY_TIMEOUT_S
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["workspace"] == str(root)
        assert 0 <= info["assets"] <= BIG
        counts.append(info["assets"])
    code, out, err = run.finish()
    assert code == 0, err
    assert json.loads(out)["ingested"] == BIG
    assert counts == sorted(counts)  # each reader saw a committed prefix, never a rollback
    with Workspace.open(root) as ws:
        assert ws.status()["assets"] == BIG
        assert ws.verify_audit().ok
