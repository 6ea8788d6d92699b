"""disgorge demo."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ..demo import run_demo
from ..errors import DisgorgeError
from ._common import JsonOpt, console, fail, print_json


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
    json_out: JsonOpt = False,
) -> None:
    """Run the whole story in two fresh workspaces (an app and a vendor, HTTP on loopback).

    Nothing to install beyond disgorge, nothing downloaded. Exit code 0 only if every
    check of the story passed.
    """
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
        summary = run_demo(folder, say, photos=photos)
        if report is not None:
            shutil.copyfile(summary["report"], report)
            summary["report"] = str(report)
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    if json_out:
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
