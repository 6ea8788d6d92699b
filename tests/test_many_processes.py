"""Many processes, one workspace (DESIGN.md invariants 9 and 11), with and without SIGKILLs.

A vendor workspace received photos from two senders and holds photos of its own. For a
bounded time, all at once and against that one workspace:

* its ``disgorge serve`` (a real process, real uvicorn on 127.0.0.1) answers both
  senders' erasure requests, which the senders' own processes send over HTTP;
* ``disgorge ingest`` processes add new photos;
* ``disgorge erase`` processes erase the vendor's own subjects;
* ``disgorge status``, ``erasure list`` and ``gc`` run in a loop;
* Python API readers (``Workspace.open(...).status()``) poll and write down every erasure
  they saw completed.

Then the invariants: no answer was a 500, every request the server accepted completed,
every erasure anyone saw completed is still completed, the audit log verifies and extends
a checkpoint taken before, the photo counts add up exactly, every photo is whole or gone,
and a forensic scan of the workspace finds none of the erased photos' bytes.

The second test SIGKILLs three participants chosen at random (senders, ingests, erasures,
readers) at random moments, and the server with an accepted request in flight; then does
what an operator would (restart the server, run any command, ask again for what never
started) and asks the same. It prints its seed: ``DISGORGE_KILL_SEED=N`` replays a run.
Participants are real ``python`` and ``disgorge`` processes; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from _processes import wait_until
from conftest import DISGORGE, free_port, sha
from disgorge import Workspace
from disgorge.catalog.models import IncomingRequest
from disgorge.erasure.forensics import scan_tree
from disgorge.samples import synthetic_photo

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL (Linux only)")

PER_PERSON = 2
SENDERS = {"app-a": 0, "app-b": 10}  # sender -> first synthetic person index (distinct photos)
SENDER_PEOPLE = 3
STOCK_PEOPLE = 4  # the vendor's own subjects, Stock_00 .. Stock_03
NEW_FOLDERS = 3  # ingested while everything else runs, 4 photos each
DEADLINE_S = 240  # bound on every wait: a healthy run takes well under a minute
PURPOSES = ("third_party_sharing", "ai_training", "biometric_processing")
REASON = "GDPR Art. 17 request (many-process test)"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DISGORGE_WORKSPACE"}
    env["COLUMNS"] = "200"
    return env


# -- the participants, as one small driver script run by real processes ------------------------
DRIVER = textwrap.dedent(
    '''
    """Participants of tests/test_many_processes.py: each appends JSON lines to its out file."""
    import json, subprocess, sys, time
    from pathlib import Path
    from disgorge import Workspace

    def log(out, **row):
        with open(out, "a") as fh:
            fh.write(json.dumps(row) + "\\n")

    def sender_erase(root, subjects, out):
        for subject in json.loads(subjects):
            with Workspace.open(root, actor="sender-dpo") as ws:
                try:
                    view = ws.erase("subject", subject, reason="GDPR Art. 17", wait=90)
                except Exception as exc:
                    log(out, subject=subject, error=f"{type(exc).__name__}: {exc}")
                    continue
                log(out, subject=subject, id=view["id"], state=view["state"],
                    recipients=[[n["state"], n.get("last_error")] for n in view["recipients"]])

    def api_reader(root, stop, out):
        while not Path(stop).exists():
            try:
                with Workspace.open(root, actor="api-reader") as ws:
                    ws.status()
                    done = [e["id"] for e in ws.erasures() if e["state"] == "completed"]
                log(out, completed=done)
            except Exception as exc:
                log(out, error=f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)

    def cli_reader(disgorge, root, stop, out):
        commands = (["status", "--json"], ["erasure", "list", "--json"], ["gc", "--json"])
        i = 0
        while not Path(stop).exists():
            argv = [disgorge, *commands[i % len(commands)], "-w", root]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            row = {"argv": argv[1:-2], "rc": done.returncode}
            if done.returncode:
                row["stderr"] = done.stderr[-2000:]
            log(out, **row)
            i += 1

    if __name__ == "__main__":
        globals()[sys.argv[1].replace("-", "_")](*sys.argv[2:])
    '''
)


# -- the world, built once ---------------------------------------------------------------------
@dataclass
class World:
    root: Path
    photos: dict[str, bytes]  # sha256 -> bytes, of everything the vendor holds or will ingest
    sender_subjects: dict[str, list[str]]  # sender -> external ids at the sender
    sender_photos: dict[str, dict[str, list[str]]]  # sender -> subject -> sha256s
    stock_photos: dict[str, list[str]]  # Stock_NN -> sha256s
    new_folders: list[dict[str, list[str]]]  # per folder: person -> sha256s


def _write_people(folder: Path, people: dict[str, int], photos: dict[str, bytes]) -> dict[str, list[str]]:
    """Photos of each person (a folder per person, LFW style); person -> sha256s."""
    shas: dict[str, list[str]] = {}
    for name, index in people.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(PER_PERSON if not name.startswith("New") else 4):
            data = synthetic_photo(index, i, size=96)
            (folder / name / f"{name}_{i:04d}.jpg").write_bytes(data)
            photos[sha(data)] = data
            shas.setdefault(name, []).append(sha(data))
    return shas


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("many-processes")
    photos: dict[str, bytes] = {}
    vendor = Workspace.init(root / "vendor", actor="vendor-dpo", at="2020-01-01")
    vendor.add_source("stock", at="2020-01-01")
    stock = _write_people(root / "stock", {f"Stock_{p:02d}": 20 + p for p in range(STOCK_PEOPLE)}, photos)
    vendor.ingest(root / "stock", source="stock", subject_from="dirname", at="2020-01-02")
    sender_subjects: dict[str, list[str]] = {}
    sender_photos: dict[str, dict[str, list[str]]] = {}
    for name, first in SENDERS.items():
        people = {f"{name}-user-{p}@x.example": first + p for p in range(SENDER_PEOPLE)}
        folder = root / f"{name}-photos"
        by_person = _write_people(folder, people, photos)
        sender_photos[name] = by_person
        sender_subjects[name] = list(people)
        (root / f"{name}-consent.csv").write_text(
            "subject,purpose,decision,at\n"
            + "".join(f"{s},{pp},granted,2020-01-01\n" for s in people for pp in PURPOSES)
        )
        with Workspace.init(root / name, actor=f"{name}-dpo", at="2020-01-01") as app:
            app.add_source("app", at="2020-01-01")
            app.add_policy("app", "1", text=b"policy", effective_from="2020-01-01", allows=[*PURPOSES])
            app.import_consent(root / f"{name}-consent.csv", at="2020-01-01")
            app.ingest(folder, source="app", subject_from="dirname", at="2020-02-01")
            app.build_dataset("faces", purpose="ai_training", at="2020-03-01")
            # the endpoint is fixed per test copy (see _copy_world): a placeholder here
            app.add_peer(
                "recipient", "vendor", public_key=vendor.public_key_pem(), endpoint="http://127.0.0.1:9"
            )
            vendor.add_peer("sender", name, public_key=app.public_key_pem())
            app.share(
                "faces@1.0.0",
                to="vendor",
                purposes=["ai_training"],
                out=root / f"{name}.zip",
                at="2020-04-01",
            )
        vendor.receive_bundle(root / f"{name}.zip")
    new_folders = [
        _write_people(root / f"new-{k}", {f"New_{k}_{p}": 40 + 3 * k + p for p in range(2)}, photos)
        for k in range(NEW_FOLDERS)
    ]
    vendor.close()
    (root / "driver.py").write_text(DRIVER)
    return World(root, photos, sender_subjects, sender_photos, stock, new_folders)


# -- one run -----------------------------------------------------------------------------------
@dataclass
class Run:
    root: Path
    world: World
    port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    server: subprocess.Popen[bytes] | None = None
    server_logs: list[Path] = field(default_factory=list)

    @property
    def vendor(self) -> Path:
        return self.root / "vendor"

    def out(self, name: str) -> Path:
        return self.root / f"{name}.jsonl"

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The participant's rows; a last line cut short by its SIGKILL is left out."""
        path = self.out(name)
        text = path.read_text() if path.exists() else ""
        lines = text.split("\n")
        return [json.loads(line) for line in lines[:-1]]  # every whole line ends with a newline

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=self.root)
        log.close()
        self.procs[name] = proc
        return proc

    def driver(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self.start(name, [sys.executable, str(self.root / "driver.py"), *args])

    def cli(self, *args: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DISGORGE, *args, "-w", str(self.vendor)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=timeout,
        )

    def start_server(self) -> None:
        log = self.root / f"server-{len(self.server_logs)}.log"
        self.server_logs.append(log)
        with open(log, "wb") as fh:
            self.server = subprocess.Popen(
                [DISGORGE, "serve", "--port", str(self.port), "-w", str(self.vendor)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=_env(),
            )
        server = self.server

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        def alive() -> None:
            assert server.poll() is None, log.read_text()

        wait_until("the server listening", listening, within=60, every=0.1, check=alive)

    def stop_server(self, sig: int = signal.SIGTERM) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(sig)
            self.server.wait(timeout=120)
        self.server = None

    def wait_all(self) -> None:
        give_up = time.monotonic() + DEADLINE_S
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(1.0, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                raise AssertionError(f"participant {name} did not finish within {DEADLINE_S} s") from None

    def kill_everything(self) -> None:
        for proc in [*self.procs.values(), self.server]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture
def run(world: World, tmp_path: Path) -> Iterator[Run]:
    port = free_port()
    for name in ("vendor", *SENDERS):
        shutil.copytree(world.root / name, tmp_path / name)
    shutil.copy(world.root / "driver.py", tmp_path / "driver.py")
    for name in SENDERS:  # point each sender at this run's server
        with Workspace.open(tmp_path / name) as app:
            from disgorge.catalog.models import Peer

            with app.transaction() as session:
                peer = session.scalar(select(Peer).where(Peer.name == "vendor"))
                peer.endpoint = f"http://127.0.0.1:{port}"
    r = Run(tmp_path, world, port)
    try:
        yield r
    finally:
        r.kill_everything()


def _launch(run: Run) -> None:
    """Every participant at once; returns when they are all started."""
    stop = str(run.root / "stop")
    for name in SENDERS:
        run.driver(
            f"sender-{name}",
            "sender-erase",
            str(run.root / name),
            json.dumps(run.world.sender_subjects[name]),
            str(run.out(f"sender-{name}")),
        )
    run.driver("api-reader", "api-reader", str(run.vendor), stop, str(run.out("api-reader")))
    run.driver("cli-reader", "cli-reader", DISGORGE, str(run.vendor), stop, str(run.out("cli-reader")))
    for k in range(NEW_FOLDERS):
        run.start(
            f"ingest-{k}",
            [
                DISGORGE,
                "ingest",
                str(run.world.root / f"new-{k}"),
                "--source",
                "stock",
                "--subject-from",
                "dirname",
                "--json",
                "-w",
                str(run.vendor),
            ],
        )
    for p in (0, 1):
        run.start(
            f"erase-stock-{p}",
            [
                DISGORGE,
                "erase",
                "--subject",
                f"Stock_{p:02d}",
                "--reason",
                REASON,
                "--yes",
                "--json",
                "-w",
                str(run.vendor),
            ],
        )


def _finish(run: Run) -> None:
    """Stop the readers, resume what a crash left (as an operator would), stop the server."""
    senders = [p for n, p in run.procs.items() if n.startswith("sender-")]
    give_up = time.monotonic() + DEADLINE_S
    for proc in senders:
        proc.wait(timeout=max(1.0, give_up - time.monotonic()))
    (run.root / "stop").touch()
    run.wait_all()


def _check_invariants(run: Run, *, killed: frozenset[str] = frozenset()) -> None:
    """The invariants after a run; ``killed`` names the participants that were SIGKILLed."""
    world = run.world
    # no 500 from the server, ever
    for log in run.server_logs:
        text = log.read_text(errors="replace")
        assert '" 500' not in text and "Traceback" not in text, text[-4000:]
    # every sender's erasure completed, at the sender and at the vendor
    for name in SENDERS:
        if f"sender-{name}" not in killed:
            rows = run.rows(f"sender-{name}")
            assert [r.get("error") for r in rows] == [None] * SENDER_PEOPLE, rows
            if not killed:
                assert [r["state"] for r in rows] == ["completed"] * SENDER_PEOPLE, rows
                assert all(state == "completed" for r in rows for state, _ in r["recipients"]), rows
        with Workspace.open(run.root / name, actor="checker") as app:
            by_ref = {e["scope"]["ref"]: e for e in app.erasures()}
            for subject in world.sender_subjects[name]:
                erasure = by_ref[app.subject_ref(subject)]
                assert erasure["state"] == "completed", erasure
                assert {n["state"] for n in app.erasure(erasure["id"])["recipients"]} == {"completed"}
    with Workspace.open(run.vendor, actor="checker") as ws:
        with ws.reader() as session:
            incoming = list(session.execute(select(IncomingRequest.nonce, IncomingRequest.state)))
        assert len(incoming) == len(SENDERS) * SENDER_PEOPLE
        assert {state for _, state in incoming} == {"completed"}, incoming
        erasures = {e["id"]: e["state"] for e in ws.erasures()}
        # every erasure anyone saw completed is still completed
        seen: set[str] = set()
        for row in run.rows("api-reader"):
            assert "error" not in row, row
            seen.update(row["completed"])
        assert seen or "api-reader" in killed, "the API reader never saw an erasure completed"
        assert all(erasures.get(rid) == "completed" for rid in seen), (seen, erasures)
        assert set(erasures.values()) == {"completed"}, erasures
        # the readers never failed
        cli_rows = run.rows("cli-reader")
        assert cli_rows or "cli-reader" in killed
        assert all(r["rc"] == 0 for r in cli_rows), [r for r in cli_rows if r["rc"]][:3]
        # exact counts: what was erased is gone, everything else is whole
        erased = {s for name in SENDERS for shas in world.sender_photos[name].values() for s in shas}
        erased |= {s for p in (0, 1) for s in world.stock_photos[f"Stock_{p:02d}"]}
        kept = {s for p in range(2, STOCK_PEOPLE) for s in world.stock_photos[f"Stock_{p:02d}"]}
        ingested = {s for folder in world.new_folders for shas in folder.values() for s in shas}
        whole = {  # the folders of ingests that were not killed are in, every photo
            s
            for k, folder in enumerate(world.new_folders)
            if f"ingest-{k}" not in killed
            for shas in folder.values()
            for s in shas
        }
        present: set[str] = set()
        for digest in [*erased, *kept, *ingested]:
            try:
                data = ws.read_asset(digest)
            except Exception:  # noqa: BLE001 - not held (erased, or never ingested)
                continue
            assert data == world.photos[digest], "a stored photo is not whole"
            present.add(digest)
        assert not present & erased, "an erased photo is still readable"
        assert kept <= present
        assert whole <= present
        assert ws.status()["assets"] == len(present)
        assert ws.verify_audit().ok
    # the audit log extends the checkpoint taken before the run
    since = run.cli("audit", "verify", "--since", str(run.root / "head.json"), "--json")
    assert since.returncode == 0, since.stdout + since.stderr
    # nothing of the erased photos remains anywhere in the workspace
    needles: dict[str, bytes] = {}
    for digest in erased:
        data = world.photos[digest]
        needles[f"sha256:{digest[:8]}"] = bytes.fromhex(digest)
        needles[f"sha256-hex:{digest[:8]}"] = digest.encode()
        for f in (0.3, 0.5, 0.7):
            needles[f"photo:{digest[:8]}@{f}"] = data[int(len(data) * f) : int(len(data) * f) + 32]
    assert scan_tree(run.vendor / ".disgorge", needles) == []


def _checkpoint(run: Run) -> None:
    head = run.cli("audit", "checkpoint", "-o", str(run.root / "head.json"))
    assert head.returncode == 0, head.stdout + head.stderr


@pytest.mark.slow
def test_many_processes_on_one_workspace_lose_nothing(run: Run) -> None:
    _checkpoint(run)
    run.start_server()
    _launch(run)
    _finish(run)
    for name, proc in run.procs.items():
        assert proc.returncode == 0, (name, (run.root / f"{name}.log").read_text(errors="replace")[-3000:])
    run.stop_server()
    _check_invariants(run)


KILLABLE = (
    *(f"sender-{name}" for name in SENDERS),
    *(f"ingest-{k}" for k in range(NEW_FOLDERS)),
    "erase-stock-0",
    "erase-stock-1",
    "api-reader",
    "cli-reader",
)


def _recover(run: Run) -> None:
    """What an operator does after crashes: any command finishes interrupted erasures; an
    erasure killed before it was recorded is asked for again; a sender resumes its own."""
    resumed = run.cli("erasure", "list", "--json")
    assert resumed.returncode == 0, resumed.stderr
    for p in (0, 1):
        with Workspace.open(run.vendor, actor="checker") as ws:
            ref = ws.subject_ref(f"Stock_{p:02d}")
            done = any(e["scope"]["ref"] == ref and e["state"] == "completed" for e in ws.erasures())
        if not done:
            again = run.cli("erase", "--subject", f"Stock_{p:02d}", "--reason", REASON, "--yes", "--json")
            assert again.returncode == 0, again.stdout + again.stderr
    for name in SENDERS:
        with Workspace.open(run.root / name, actor=f"{name}-dpo") as app:
            for e in app.erasures():
                if e["state"] == "planned":  # killed between planning and approving
                    app.erasure_approve(e["id"], wait=120)
                elif e["state"] not in ("completed", "cancelled"):
                    app.erasure_resume(e["id"], wait=120)
            by_ref = {e["scope"]["ref"]: e["state"] for e in app.erasures()}
            for subject in run.world.sender_subjects[name]:
                if by_ref.get(app.subject_ref(subject)) != "completed":
                    app.erase("subject", subject, reason=REASON, wait=120)
    give_up = time.monotonic() + DEADLINE_S
    while True:  # the restarted server finishes what it accepted
        with Workspace.open(run.vendor, actor="checker") as ws, ws.reader() as session:
            states = set(session.scalars(select(IncomingRequest.state)))
        if states <= {"completed"} or time.monotonic() > give_up:
            return
        time.sleep(0.5)


@pytest.mark.slow
def test_many_processes_with_sigkills_lose_nothing(run: Run) -> None:
    """Three participants chosen at random are SIGKILLed at random moments, and the server
    once it has accepted a request (so that one is in flight when it dies). The seed is
    printed: ``DISGORGE_KILL_SEED=N`` replays the same choice."""
    seed = int(os.environ.get("DISGORGE_KILL_SEED") or time.time_ns() % 2**32)
    print(f"DISGORGE_KILL_SEED={seed}")
    rng = random.Random(seed)
    senders = {f"sender-{name}" for name in SENDERS}
    victims = sorted(rng.sample(KILLABLE, 3))
    while senders <= set(victims):  # a sender must live to send the request the server dies with
        victims = sorted(rng.sample(KILLABLE, 3))
    when = {name: rng.uniform(0.3, 5.0) for name in victims}
    print(f"killed: {victims} at {when}")
    _checkpoint(run)
    run.start_server()
    _launch(run)
    started = time.monotonic()
    pending = sorted(victims, key=when.__getitem__)
    server_killed = False
    while pending or not server_killed:
        assert time.monotonic() - started < DEADLINE_S, "the kills did not happen in time"
        if pending and time.monotonic() - started >= when[pending[0]]:
            run.procs[pending.pop(0)].kill()
        if not server_killed and '" 202' in run.server_logs[-1].read_text(errors="replace"):
            run.stop_server(signal.SIGKILL)
            time.sleep(1.0)
            run.start_server()  # an operator restarts the server: accepted requests resume
            server_killed = True
        time.sleep(0.05)
    _finish(run)
    _recover(run)
    for name, proc in run.procs.items():
        if name not in victims:
            assert proc.returncode == 0, (
                name,
                (run.root / f"{name}.log").read_text(errors="replace")[-3000:],
            )
    run.stop_server()
    _check_invariants(run, killed=frozenset(victims))
