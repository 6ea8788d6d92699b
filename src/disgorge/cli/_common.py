"""What every command shares: the workspace option, JSON output, errors, consoles.

Names that come from users (file names, source and dataset names, paths) may hold
control characters, terminal escape sequences or bidirectional overrides (U+202E makes
``gpj.exe`` read as ``exe.jpg``); printed raw, they can rewrite the terminal or disguise
a name. ``shown`` escapes them, and the consoles and ``print_json`` apply the same rule to
everything they print, so no command can forget.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

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
    "shown",
]

#: characters never printed raw: C0/C1 controls, DEL, format characters (bidi overrides,
#: zero-width), line/paragraph separators, surrogates (undecodable bytes of a file name)
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
#: the same, for JSON text: json.dumps already escapes C0 controls inside strings, and
#: the newlines outside strings are the layout
_UNSAFE_JSON_RE = re.compile(
    "[\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]"
)


def _escape_char(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _unsafe(ch: str, keep: str) -> bool:
    return ch not in keep and unicodedata.category(ch) in _UNSAFE_CATEGORIES


def shown(value: object, *, keep: str = "") -> str:
    """``value`` as text safe to print: unsafe characters become ``\\xNN`` / ``\\uNNNN``.

    Use it for every user-supplied name a command prints. ``keep`` lists characters to
    leave alone (the consoles keep the newlines and tabs of the CLI's own messages).
    """
    text = str(value)
    if text.isprintable() and text.isascii():
        return text
    return "".join(_escape_char(ch) if _unsafe(ch, keep) else ch for ch in text)


class _SafeConsole(Console):
    """A console that escapes unsafe characters in every string it is asked to print."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(*(shown(o, keep="\n\t") if isinstance(o, str) else o for o in objects), **kwargs)


console = _SafeConsole(highlight=False)
err = _SafeConsole(stderr=True, highlight=False)

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
ClusterOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        envvar="DISGORGE_CLUSTER",
        help="Run the work as tasks on this Dask scheduler (tcp://HOST:8786; extra dask), with the "
        "same results as here. Workers get photos or embeddings in memory, never a key.",
        show_default=False,
    ),
]
AtOpt = Annotated[
    str | None,
    typer.Option(
        "--at",
        help="Backfill: record the event as happening at this ISO 8601 time instead of now.",
        show_default=False,
    ),
]


def print_json(value: Any) -> None:
    """Print ``value`` as JSON; unsafe characters in strings become ``\\uNNNN`` escapes."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write(_UNSAFE_JSON_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(shown(message, keep=chr(10)))}", markup=True, soft_wrap=True)
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
            # a hold release cut off before it finished what the hold held back
            for erasure in ws.finish_released():
                err.print(f"finished what a released hold held back: erasure {erasure['id']}", markup=False)
        yield ws
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    finally:
        ws.close()
