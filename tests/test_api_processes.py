"""The API's writes with other processes at work on the same workspace, and a SIGKILL.

``disgorge serve`` runs as its own process. While principals call it (erasure requests,
tokens, reads), CLI processes ingest and read the same workspace. Then the server is
SIGKILLed with erasures accepted (``202``) and running, and started again: every
accepted erasure ends ``completed``, nothing answered 5xx, the audit chain holds, and the
token made while all this went on still works.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from _processes import wait_until
from conftest import PEOPLE, add_role_tokens, cli, cli_env, free_port, smoke_workspace, tiny_photos

pytest.importorskip("uvicorn")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL and /proc: Linux only")


@contextmanager
def serve(root: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """``disgorge serve`` on 127.0.0.1:port, started as its own process; waits for /healthz."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("disgorge")), "serve", "--port", str(port), "-w", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def alive() -> None:
        assert proc.poll() is None, proc.communicate()[1]

    wait_until("disgorge serve answering /healthz", healthy, within=60, every=0.1, check=alive)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)  # and closes its pipe


def test_api_writes_beside_cli_processes_survive_a_sigkill_of_the_server(tmp_path: Path) -> None:
    smoke_workspace(tmp_path).close()
    root = tmp_path / "ws"
    tokens = add_role_tokens(root)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    statuses: list[tuple[str, int]] = []
    stop = threading.Event()

    def call(who: str, method: str, path: str, **kw: Any) -> httpx.Response:
        response = httpx.request(
            method, url + path, headers={"Authorization": f"Bearer {tokens[who]}"}, timeout=120, **kw
        )
        statuses.append((path, response.status_code))
        return response

    def readers() -> None:  # a dashboard polling the API all along
        while not stop.is_set():
            for path in ("/v1/status", "/v1/erasures", "/v1/audit/events?limit=5"):
                with contextlib.suppress(httpx.TransportError):  # down between the kill and the restart
                    call("auditor", "GET", path)

    accepted: list[str] = []
    with serve(root, port) as server:
        reader = threading.Thread(target=readers, daemon=True)
        reader.start()
        # CLI processes ingest and read the same workspace while the API writes
        more = tiny_photos(tmp_path / "more", ["late_arrival"], 3)
        cli_procs = [
            subprocess.Popen(
                [str(Path(sys.executable).with_name("disgorge")), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=cli_env(),
            )
            for args in (
                ["ingest", str(more), "--source", "lfw", "--subject-from", "dirname", "-w", str(root)],
                ["status", "-w", str(root)],
                ["erasure", "list", "-w", str(root)],
            )
        ]
        made = call("admin", "POST", "/v1/principals/officer-2/tokens", json={"expires": "1d"})
        assert made.status_code == 201, made.text
        late_token = made.json()["token"]
        for person in PEOPLE[:2]:
            answer = call(
                "privacy_officer",
                "POST",
                "/v1/erasures",
                json={"kind": "subject", "id": person, "reason": "GDPR Art. 17 request"},
            )
            assert answer.status_code == 202, answer.text
            accepted.append(answer.json()["id"])
        for proc in cli_procs:
            _out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
        # killed with the erasures accepted, some maybe half-way
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    with serve(root, port):
        give_up = time.monotonic() + 240
        states: dict[str, str] = {}
        while time.monotonic() < give_up:
            states = {rid: call("auditor", "GET", f"/v1/erasures/{rid}").json()["state"] for rid in accepted}
            if set(states.values()) == {"completed"}:
                break
            time.sleep(0.3)
        stop.set()
        assert set(states.values()) == {"completed"}, states
        assert call("auditor", "GET", "/v1/audit/verify").json()["ok"]
        assert (
            httpx.get(url + "/v1/me", headers={"Authorization": f"Bearer {late_token}"}).json()["name"]
            == "officer-2"
        )
        status = call("auditor", "GET", "/v1/status").json()
    assert not [s for s in statuses if s[1] >= 500], [s for s in statuses if s[1] >= 500][:5]
    # the CLI's ingest landed beside the API's erasures
    assert cli("status", "--json", "-w", root).returncode == 0
    assert status["subjects_erased"] == 2
