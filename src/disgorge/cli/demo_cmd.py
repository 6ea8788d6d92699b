"""disgorge demo (and ``--serve``: the demo's two workspaces left serving the web UI)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from ..demo import APP, VENDOR, run_demo
from ..errors import DisgorgeError
from ..workspace import Workspace
from ._common import JsonOpt, console, fail, print_json

#: who may log in to each served demo workspace: two privacy officers (so the two-person
#: rule can be tried) and an admin
DEMO_USERS = (("officer", "privacy_officer"), ("officer-2", "privacy_officer"), ("admin", "admin"))


def _add_logins(root: Path) -> list[dict[str, str]]:
    """A user per :data:`DEMO_USERS` in the workspace at ``root``, each with a fresh random
    password (set through the service ``disgorge user password`` uses)."""
    logins = []
    with Workspace.open(root, actor="disgorge-demo") as ws:
        for name, role in DEMO_USERS:
            ws.add_principal(name, role=role)
            password = secrets.token_urlsafe(15)  # 20 characters, at least 12 as every password
            ws.set_password(name, password)
            logins.append({"user": name, "password": password, "role": role})
    return logins


def _wait_for_a_signal() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM; the previous handlers are restored after."""
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _check_free(port: int) -> None:
    """Refuse, before the story runs, a port of the two that something listens on."""
    for taken in (port, port + 1):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", taken))
            except OSError:
                raise fail(
                    f"port {taken} on 127.0.0.1 is in use; give --port with another (it takes that "
                    "port and the next), or --port 0 for free ones",
                    2,
                ) from None


def _serve(summary: dict[str, Any], port: int, *, json_out: bool, kept: bool) -> None:
    """Serve both workspaces' UI and API on loopback (the app on ``port``, 0: a free one;
    the vendor where the story served it, the endpoint the app knows it by) in this
    process, print their URLs and logins, and block until a signal."""
    from ..api import running_server

    vendor_port = int(urlsplit(summary["vendor_url"]).port or 0)
    workspaces = [
        (APP, "the dating app", Path(summary["app"]), port),
        (VENDOR, "the vision vendor", Path(summary["vendor"]), vendor_port),
    ]
    with contextlib.ExitStack() as servers:
        served: list[dict[str, Any]] = []
        for name, title, root, at in workspaces:
            logins = _add_logins(root)
            url = servers.enter_context(running_server(root, port=at, actor="disgorge-demo-server"))
            served.append(
                {"name": name, "title": title, "workspace": str(root), "url": f"{url}/ui/", "logins": logins}
            )
        if json_out:
            print_json({"ok": summary["ok"], "checks": summary["checks"], "served": served})
        else:
            for ws in served:
                console.print(
                    f"{ws['title'].capitalize()}'s web UI: {ws['url']}", markup=False, soft_wrap=True
                )
                for login in ws["logins"]:
                    console.print(
                        f"  log in as {login['user']} with password {login['password']} ({login['role']})",
                        markup=False,
                        soft_wrap=True,
                    )
            console.print(
                "Serving on 127.0.0.1 until Ctrl-C (or SIGTERM); the passwords are shown only now. "
                + (
                    "The workspaces are kept."
                    if kept
                    else "The temporary workspaces are removed then (--keep DIR keeps them)."
                ),
                markup=False,
                soft_wrap=True,
            )
        sys.stdout.flush()
        _wait_for_a_signal()


def demo(
    photos: Annotated[
        Path | None,
        typer.Option(
            help="Real face photos in the LFW layout (one folder per person) instead of drawn ones."
        ),
    ] = None,
    keep: Annotated[
        Path | None,
        typer.Option(help="Run in this (new or empty) folder and keep it, instead of a temp folder."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Also write the story's HTML report to this file.")
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="After the story, serve both workspaces' web UI and API on 127.0.0.1, print their URLs "
            "and logins (random passwords), and stop on Ctrl-C.",
        ),
    ] = False,
    port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65534,
            help="With --serve: the dating app's port (the vendor's is the next one); 0 takes free ports.",
        ),
    ] = 8765,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole story in two fresh workspaces (an app and a vendor, HTTP on loopback).

    Nothing to install beyond disgorge, nothing downloaded. Exit code 0 only if every
    check of the story passed. With --serve, both workspaces then stay up with the web UI
    (docs/ui.md) until Ctrl-C.
    """
    if serve and port:
        _check_free(port)
    if keep is not None:
        if keep.exists() and any(keep.iterdir()):
            raise fail(f"{keep} is not empty; give a new or empty folder")
        keep.mkdir(parents=True, exist_ok=True)
        folder = keep
    else:
        folder = Path(tempfile.mkdtemp(prefix="disgorge-demo-"))

    def say(line: str) -> None:
        if not json_out:
            console.print(line, markup=False, soft_wrap=True)

    try:
        summary = run_demo(folder, say, photos=photos, vendor_port=port + 1 if serve and port else 0)
        if report is not None:
            shutil.copyfile(summary["report"], report)
            summary["report"] = str(report)
        if serve:
            _serve(summary, port, json_out=json_out, kept=keep is not None)
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    if serve:
        pass  # the URLs and logins were printed before serving
    elif json_out:
        print_json(summary)
    elif keep is not None:
        console.print(
            f"The workspaces are kept in {folder} (try: disgorge status -w {folder / 'dating-app'}).",
            markup=False,
        )
    elif report is None:
        console.print("(The temporary workspaces are gone; --keep DIR or --report FILE keeps them.)")
    if not summary["ok"]:
        raise typer.Exit(1)
