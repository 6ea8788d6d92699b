"""disgorge demo."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ..demo import run_demo
from ._common import JsonOpt, console, fail, print_json


def demo(
    keep: Annotated[
        Path | None,
        typer.Option(help="Run in this (new or empty) folder and keep it, instead of a temp folder."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the story end to end in a fresh temporary workspace (no server, no downloads)."""
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
        summary = run_demo(folder, say)
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    if json_out:
        print_json(summary)
    elif keep is not None:
        kept = folder / "workspace"
        console.print(f"The workspace is kept in {kept} (try: disgorge status -w {kept}).")
    if not summary["audit_ok"] or summary["clear_text_hits"]:
        raise typer.Exit(1)
