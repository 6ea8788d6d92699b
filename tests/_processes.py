"""The driver of the tests that run many real ``disgorge`` processes on one workspace, and
SIGKILL some of them at exact points (tests/test_dsr_processes.py,
test_holds_restore_processes.py, test_holds_restore_recovery.py,
test_retention_processes.py), and the bounded wait the other multi-process tests share.

Why a driver: the console script spends two seconds importing and the tests run on two
cores, so each CLI process is a child forked from one small process that imported
disgorge once (this file, run as a script). Each child still runs the real CLI
(``disgorge.cli:main``'s click command) with its own stdout and stderr. A kill is a real
``SIGKILL`` a child sends itself at an exact point, armed from outside the code under test:
the erasure's fault-injection hook (``disgorge.erasure.steps.inject``), or SQLAlchemy's
public events around the commit of the transaction that writes a given table. A pause is
the same hook with a fault that waits for the test to let it go. Nothing is mocked.

A participant is ``{"cmds": [{"argv": [...], "kill"?: {...}}, ...], "loop"?: true}``: its
commands one after another, each its own process; with ``loop``, again and again until the
other participants of its wave are done. A wave's participants start at once (after every
one of them is forked); the next wave starts when the last is done. A kill is
``{"step", "point"}`` (an erasure step's fault point) or ``{"table", "at": "before_commit" |
"after_commit", "value"?}`` (the commit of a transaction that inserted or updated a row of
``table``, whose parameters carry ``value``); either with ``"pause": FLAG`` waits instead of
dying: it creates ``FLAG.here`` and waits (at most 100 s) for ``FLAG.go``.

Every wait is bounded (``DEADLINE_S``); past it the driver's whole process group is
SIGKILLed, so nothing a test started outlives it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEADLINE_S = 120  # bound on every wait; a healthy run of a whole test file takes well under a minute
LOCKED = "database is locked"  # what SQLite says when a writer gave up waiting: never acceptable

Result = dict[str, Any]  # one command run: {"argv", "rc", "out", "err"}; rc -9 when SIGKILLed
Job = dict[str, Any]  # a participant, as above
Wave = list[list[Result]]  # per participant, per command run


# -- the test's side ------------------------------------------------------------------------
class Driven:
    """Waves of participants (see the module's docstring), started now in the background;
    with the first wave, the installed console script once per argv of ``others`` (for
    what only a whole ``disgorge`` process shows). :meth:`results` waits for them."""

    def __init__(self, tmp: Path, *waves: Sequence[Job], others: Sequence[list[str]] = ()) -> None:
        from conftest import DISGORGE, cli_env  # not at the top: the driver script needs neither

        folder = tmp / f"drive-{time.monotonic_ns()}"
        folder.mkdir()
        argv = [sys.executable, __file__, json.dumps(waves), str(folder), str(DEADLINE_S)]
        self.driver = _popen(argv, cli_env())
        self.others = [(list(a), _popen([DISGORGE, *a], cli_env())) for a in others]

    def all_results(self) -> tuple[list[Wave], list[Result]]:
        """Per wave, per participant, per command run; and one per console-script run."""
        try:
            consoles = []
            for argv, proc in self.others:
                out, err = proc.communicate(timeout=DEADLINE_S)
                consoles.append({"argv": argv, "rc": proc.returncode, "out": out, "err": err})
            out, err = self.driver.communicate(timeout=DEADLINE_S)
        finally:  # past the deadline: nothing is left running
            for proc in [self.driver, *(p for _, p in self.others)]:
                stop_group(proc)
        assert self.driver.returncode == 0, err[-3000:]
        waves: list[Wave] = json.loads(out)
        return waves, consoles

    def results(self) -> Wave:
        """The one wave's results: per participant, per command run."""
        [wave], _ = self.all_results()
        return wave


def _popen(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    # its own process group: the process and every one it forks, killed together
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )


def stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc``'s process group if ``proc`` still runs (a test gave up waiting)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def drive_waves(
    tmp: Path, *waves: Sequence[Job], others: Sequence[list[str]] | None = None
) -> tuple[list[Wave], list[Result]]:
    """Run the waves, and ``others`` beside the first (see :class:`Driven`), and wait."""
    return Driven(tmp, *waves, others=others or ()).all_results()


def drive(tmp: Path, *jobs: Job) -> Wave:
    """Run the participants at once, one wave, and wait for them."""
    return Driven(tmp, jobs).results()


def one(tmp: Path, argv: list[str], kill: dict[str, Any] | None = None) -> Result:
    """One CLI process, alone (killed or paused as ``kill`` says)."""
    [[result]] = drive(tmp, {"cmds": [{"argv": argv, **({"kill": kill} if kill else {})}]})
    return result


def wait_until(
    what: str,
    condition: Callable[[], object],
    *,
    within: float = DEADLINE_S,
    every: float = 0.02,
    check: Callable[[], None] | None = None,
) -> None:
    """Poll ``condition`` every ``every`` s until it is true; fail once ``within`` s have
    passed. ``check`` runs between polls, to fail early (the process being waited for
    exited first, say). Every wait of a multi-process test is bounded: a hang fails the
    test instead of holding the suite."""
    give_up = time.monotonic() + within
    while not condition():
        if check is not None:
            check()
        assert time.monotonic() < give_up, f"gave up waiting {within:g} s for {what}"
        time.sleep(every)


def wait_for(path: Path, what: str) -> None:
    """Wait until ``path`` exists (a paused process's ``FLAG.here``, say)."""
    wait_until(what, path.exists)


def no_lock_errors(*results: Result) -> None:
    """No command said "database is locked": concurrent writers wait their turn."""
    for r in results:
        assert LOCKED not in (r["out"] + r["err"]).lower(), r


def text(r: Result) -> str:
    """A result's stderr on one line (rich wraps long messages)."""
    return " ".join(r["err"].split())


def photo_workspace(root: Path, photos: dict[tuple[str, int], bytes]) -> Path:
    """``root``/ws: a workspace with one source, ``app``, that ingested ``photos`` ((person,
    i) -> JPEG bytes, a folder per person). The tests copy it (``shutil.copytree``)."""
    from disgorge import Workspace

    for (person, i), data in photos.items():
        (root / "photos" / person).mkdir(parents=True, exist_ok=True)
        (root / "photos" / person / f"{i}.jpg").write_bytes(data)
    with Workspace.init(root / "ws", actor="tester") as ws:
        ws.add_source("app")
        assert ws.ingest(root / "photos", source="app", subject_from="dirname").ingested == len(photos)
    return root / "ws"


# -- the driver's side: this file run as a script ------------------------------------------------
_ARMED: list[Any] = []  # armed fault injections, held: a collected generator would disarm them


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _pause(flag: str) -> Callable[[], None]:
    def fault() -> None:  # a fault that only waits: says it is here, then waits for the go
        open(flag + ".here", "w").close()
        give_up = time.monotonic() + 100
        while not os.path.exists(flag + ".go") and time.monotonic() < give_up:
            time.sleep(0.02)

    return fault


def _arm(spec: dict[str, Any] | None) -> None:
    """Arm a child's kill (or pause): see the module's docstring."""
    if not spec:
        return
    fault = _pause(spec["pause"]) if "pause" in spec else _die
    if "step" in spec:
        import disgorge.erasure.steps

        armed = disgorge.erasure.steps.inject(spec["step"], **{spec["point"]: fault})
        armed.__enter__()
        _ARMED.append(armed)
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    wrote: list[int] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        head = statement.lstrip().lower()
        table = head.split("(")[0].split(" set ")[0]  # "insert into t ", "update t"
        if (
            head.startswith(("insert", "update"))
            and spec["table"] in table
            and spec.get("value", "") in repr(params)
        ):
            wrote.append(1)

    event.listen(Engine, "before_cursor_execute", seen)
    if spec["at"] == "before_commit":
        event.listen(Engine, "commit", lambda conn: wrote and fault())
    else:
        event.listen(Session, "after_commit", lambda session: wrote and (wrote.clear() or fault()))


def _run(cli: Any, cmd: dict[str, Any], tag: str) -> Result:
    """One CLI process, forked; its stdout and stderr go to files (a pipe would be held
    open by anything a killed process left behind)."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            for fd, name in ((1, ".out"), (2, ".err")):
                os.dup2(os.open(tag + name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            _arm(cmd.get("kill"))
            cli.main(args=cmd["argv"], prog_name="disgorge")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:  # noqa: BLE001 - reported on its stderr, exit 70
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    out = {"argv": cmd["argv"], "rc": os.waitstatus_to_exitcode(status)}
    for name in ("out", "err"):
        with open(f"{tag}.{name}") as fh:
            out[name] = fh.read()
    return out


def _job(cli: Any, spec: Job, tag: str, start: str, stop: str, give_up: float) -> None:
    """A participant: waits for the others of its wave to be forked, then runs its commands."""
    while not os.path.exists(start) and time.monotonic() < give_up:
        time.sleep(0.005)
    results, turn = [], 0
    while True:
        for cmd in spec["cmds"]:
            results.append(_run(cli, cmd, f"{tag}-{turn}"))
            turn += 1
        if not spec.get("loop") or os.path.exists(stop) or time.monotonic() > give_up:
            break
    with open(f"{tag}.json", "w") as fh:
        json.dump(results, fh)


def _main(waves: list[list[Job]], folder: str, deadline_s: float) -> None:
    """Run the waves; print their results as JSON."""
    # imported once, before the forks: every child starts with them loaded
    import pydantic  # noqa: F401
    import typer.main

    import disgorge.cli
    import disgorge.erasure.steps
    import disgorge.vision.service

    cli = typer.main.get_command(disgorge.cli.app)  # what `disgorge` builds first, built once
    give_up = time.monotonic() + deadline_s
    results = []
    for w, jobs in enumerate(waves):
        start, stop = os.path.join(folder, f"start-{w}"), os.path.join(folder, f"stop-{w}")
        running = {}
        for index, spec in enumerate(jobs):
            pid = os.fork()
            if pid == 0:
                try:
                    _job(cli, spec, os.path.join(folder, f"{w}-{index}"), start, stop, give_up)
                finally:
                    os._exit(0)
            running[pid] = spec
        open(start, "w").close()  # every participant forked: off they go, at once
        while running:
            pid, _ = os.wait()
            running.pop(pid)
            if all(spec.get("loop") for spec in running.values()):
                open(stop, "w").close()  # only the loops are left: tell them to finish
        wave = []
        for index in range(len(jobs)):
            with open(os.path.join(folder, f"{w}-{index}.json")) as fh:
                wave.append(json.load(fh))
        results.append(wave)
    print(json.dumps(results))


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
