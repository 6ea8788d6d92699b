"""What every command shares: the workspace option, JSON output, errors, consoles."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..errors import DisgorgeError
from ..workspace import Workspace

__all__ = [
    "AtOpt",
    "JsonOpt",
    "WorkspaceOpt",
    "console",
    "err",
    "fail",
    "open_workspace",
    "print_json",
]

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace directory (default: $DISGORGE_WORKSPACE, else the current directory or a parent).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]
AtOpt = Annotated[
    str | None,
    typer.Option(
        "--at",
        help="Backfill: record the event as happening at this ISO 8601 time instead of now.",
        show_default=False,
    ),
]


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def open_workspace(path: Path | None, *, resume: bool = True) -> Iterator[Workspace]:
    """Open the workspace for one command; DisgorgeError becomes a one-line error, exit 1.

    An erasure interrupted by a crash is finished first (its steps are idempotent), so no
    command ever works on a half-erased catalog.
    """
    try:
        ws = Workspace.open(path)
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    try:
        if resume:
            for request_id in ws.interrupted_erasures():
                err.print(f"resuming interrupted erasure {request_id} ...", markup=False)
                try:
                    ws.erasure_resume(request_id)
                except DisgorgeError as exc:
                    err.print(f"could not resume erasure {request_id}: {exc}", markup=False)
        yield ws
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    finally:
        ws.close()
