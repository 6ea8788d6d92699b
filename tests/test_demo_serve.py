"""``disgorge demo --serve``: the story, then both workspaces serving the web UI on loopback.

The real console script in a subprocess: it prints each workspace's URL and logins (as
JSON, or as text lines), each login works in the UI and shows the demo's data, and
Ctrl-C (SIGINT) or SIGTERM ends it with exit code 0; a temporary folder is gone then,
a ``--keep`` folder stays.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import DISGORGE, cli_env, free_port, token_of
from disgorge import Workspace

pytest.importorskip("argon2")
pytest.importorskip("uvicorn")

#: the story takes seconds; a busy machine gets a few minutes before the test gives up
STARTUP_S = 300
STOP_S = 60
TEXT_URL = re.compile(r"^(The dating app|The vision vendor)'s web UI: (http://127\.0\.0\.1:\d+/ui/)$")
TEXT_LOGIN = re.compile(r"^  log in as (\S+) with password (\S+) \((\w+)\)$")


class Demo:
    """``disgorge demo --serve ...`` running, its stdout read line by line in a thread."""

    def __init__(self, *args: str, tmp: Path) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [DISGORGE, "demo", "--serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(TMPDIR=str(tmp)),
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, give_up: float) -> str:
        try:
            line = self.lines.get(timeout=max(give_up - time.monotonic(), 0.1))
        except queue.Empty:
            raise AssertionError(f"no output within {STARTUP_S} s; so far: {self.seen[-5:]}") from None
        if line is None:
            raise AssertionError(f"the demo ended ({self.proc.wait()}): {self.seen[-5:]} {self._stderr()}")
        self.seen.append(line)
        return line

    def _stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-2000:]

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=STOP_S)

    def close(self) -> None:
        """Kill it if it still runs; close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _served_json(demo: Demo) -> dict[str, Any]:
    """The JSON object ``--json`` prints (indented over several lines) before serving."""
    give_up = time.monotonic() + STARTUP_S
    text = ""
    while True:
        text += demo.next_line(give_up) + "\n"
        try:
            value: dict[str, Any] = json.loads(text)
            return value
        except json.JSONDecodeError:
            continue


def _served_text(demo: Demo) -> list[dict[str, Any]]:
    """Each workspace's URL and logins from the text output, up to the "Serving" line."""
    give_up = time.monotonic() + STARTUP_S
    served: list[dict[str, Any]] = []
    while not (line := demo.next_line(give_up)).startswith("Serving on 127.0.0.1"):
        if found := TEXT_URL.match(line):
            served.append({"title": found.group(1), "url": found.group(2), "logins": []})
        elif (found := TEXT_LOGIN.match(line)) and served:
            user, password, role = found.groups()
            served[-1]["logins"].append({"user": user, "password": password, "role": role})
    return served


def _login_and_see_the_overview(url: str, user: str, password: str) -> dict[str, int]:
    """Log in through the UI's form and read the overview's counts."""
    base = url.removesuffix("/ui/")
    with httpx.Client(base_url=base, follow_redirects=False, timeout=60) as client:
        form = client.get("/ui/login")
        assert form.status_code == 200
        answer = client.post(
            "/ui/login", data={"username": user, "password": password, "csrf_token": token_of(form)}
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/", answer.text
        page = client.get("/ui/")
        assert page.status_code == 200
        assert f'<span id="whoami" title="logged in as">{user} (' in page.text
        wrong = httpx.post(
            f"{base}/ui/login", data={"username": user, "password": "not the password", "csrf_token": "x"}
        )
        assert wrong.status_code != 303
        return {
            kind: int(re.search(rf'<dd id="count-{kind}">(\d+)</dd>', page.text).group(1))  # type: ignore[union-attr]
            for kind in ("photos", "subjects")
        }


def test_demo_serve_json_serves_both_workspaces_until_ctrl_c(tmp_path: Path) -> None:
    demo = Demo("--port", "0", "--json", tmp=tmp_path)
    try:
        shown = _served_json(demo)
        assert shown["ok"] is True and all(shown["checks"].values())
        assert [s["name"] for s in shown["served"]] == ["dating-app", "vision-vendor"]
        folders = {Path(s["workspace"]).parent for s in shown["served"]}
        [folder] = folders
        assert folder.parent == tmp_path and folder.is_dir()
        ports = set()
        for served in shown["served"]:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ui/", served["url"])
            ports.add(served["url"].split(":")[2].split("/")[0])
            roles = {login["user"]: login["role"] for login in served["logins"]}
            assert roles == {"officer": "privacy_officer", "officer-2": "privacy_officer", "admin": "admin"}
            assert len({login["password"] for login in served["logins"]}) == 3
            for login in served["logins"]:
                assert len(login["password"]) >= 12
                counts = _login_and_see_the_overview(served["url"], login["user"], login["password"])
                assert counts["photos"] > 0 and counts["subjects"] > 0, (served["name"], counts)
        assert len(ports) == 2
        # the vendor serves where the story served it: the app's erasures still reach it
        app, vendor = shown["served"]
        with Workspace.open(app["workspace"], actor="tester") as ws:
            [peer] = ws.peers("recipient")
        assert peer["name"] == "vision-vendor" and f"{peer['endpoint']}/ui/" == vendor["url"]
        assert demo.stop(signal.SIGINT) == 0
        assert not folder.exists(), "the temporary workspaces outlived the demo"
        assert not list(tmp_path.iterdir())
        for port in ports:  # nothing listens any more
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(2)
                s.connect(("127.0.0.1", int(port)))
    finally:
        demo.close()


def test_demo_serve_text_on_a_given_port_with_keep_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as s:  # the vendor's port, the next one, must be free too
        try:
            s.bind(("127.0.0.1", port + 1))
        except OSError:
            pytest.skip(f"port {port + 1} is taken")
    kept = tmp_path / "kept"
    demo = Demo("--port", str(port), "--keep", str(kept), tmp=tmp_path)
    try:
        served = _served_text(demo)
        assert [(s["title"], s["url"]) for s in served] == [
            ("The dating app", f"http://127.0.0.1:{port}/ui/"),
            ("The vision vendor", f"http://127.0.0.1:{port + 1}/ui/"),
        ]
        officer = next(login for login in served[1]["logins"] if login["user"] == "officer-2")
        counts = _login_and_see_the_overview(served[1]["url"], officer["user"], officer["password"])
        assert counts["photos"] > 0
        assert demo.stop(signal.SIGTERM) == 0
        assert (kept / "dating-app").is_dir() and (kept / "vision-vendor").is_dir()
        with Workspace.open(kept / "dating-app", actor="tester") as ws:
            assert [p["endpoint"] for p in ws.peers("recipient")] == [f"http://127.0.0.1:{port + 1}"]
    finally:
        demo.close()


def test_demo_serve_refuses_a_port_in_use_before_the_story(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [DISGORGE, "demo", "--serve", "--port", str(port)],
            capture_output=True,
            text=True,
            env=cli_env(TMPDIR=str(tmp_path)),
            timeout=120,
        )
    assert out.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in out.stderr and "--port 0" in out.stderr
    assert out.stdout == "" and not list(tmp_path.iterdir())
