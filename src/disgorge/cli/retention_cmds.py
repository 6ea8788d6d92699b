"""retention list/run, and the rule a source or a dataset keeps (``source retention``,
``dataset retention``): photos kept so many days after their ingest, then erased."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import AtOpt, JsonOpt, WorkspaceOpt, console, fail, open_workspace, print_json, shown
from .erasure_cmds import WaitOpt, _print_plan, _print_result

retention_app = typer.Typer(
    help="Retention schedules: erase photos kept longer than their source's or dataset's rule.",
    no_args_is_help=True,
)

DaysOpt = Annotated[
    int | None,
    typer.Option(
        "--days",
        help="Keep its photos this many days after their ingest (1 or more); "
        "`disgorge retention run` erases them after that.",
        show_default=False,
    ),
]
ClearOpt = Annotated[
    bool, typer.Option("--clear", help="Remove the rule: its photos are kept without limit again.")
]


def _print_rule(rule: Mapping[str, Any], expired: int | None = None) -> None:
    due = "" if expired is None else f"; {expired} photo(s) expired"
    console.print(
        f"{rule['kind']} {shown(rule['name'])}: photos kept {rule['days']} day(s) after ingest "
        f"(set {rule['set_at']} by {shown(rule['set_by'])}){due}",
        markup=False,
    )


def set_rule(
    kind: str,
    name: str,
    *,
    days: int | None,
    clear: bool,
    workspace: Path | None,
    at: str | None,
    json_out: bool,
) -> None:
    """What ``source retention`` and ``dataset retention`` do: set or clear the rule."""
    if (days is None) == (not clear):
        raise fail("give --days N (keep photos N days after their ingest) or --clear", code=2)
    with open_workspace(workspace) as ws:
        if clear:
            rule = ws.clear_retention(kind, name, at=at)
        else:
            assert days is not None
            rule = ws.set_retention(kind, name, days=days, at=at)
    if json_out:
        print_json(rule)
    elif clear:
        console.print(
            f"{kind} {shown(name)}: retention rule removed (was {rule['days']} day(s))", markup=False
        )
    else:
        _print_rule(rule)
        console.print("  `disgorge retention run --dry-run` shows what it expires now", markup=False)


@retention_app.command("list")
def retention_list(workspace: WorkspaceOpt = None, at: AtOpt = None, json_out: JsonOpt = False) -> None:
    """Every retention rule, and how many photos each has expired (now, or at --at)."""
    with open_workspace(workspace) as ws:
        rules = ws.retention_rules()
        due = ws.retention_due(at=at)
    if json_out:
        print_json({"rules": rules, "due": due})
        return
    if not rules:
        console.print("no retention rules (`disgorge source retention NAME --days N` sets one)", markup=False)
    expired = {(r["kind"], r["name"]): r["expired"] for r in due["rules"]}
    for rule in rules:
        _print_rule(rule, expired.get((rule["kind"], rule["name"]), 0))
    for request in due["pending"]:
        console.print(f"unfinished retention erasure {request} (`disgorge erasure show`)", markup=False)


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what has expired and the erasure's plan; change nothing.")
    ] = False,
    wait: WaitOpt = 30.0,
    workspace: WorkspaceOpt = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Run as of this ISO 8601 time instead of now (expiry and records).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Erase every photo its retention rules have expired: one erasure, one signed
    certificate; nothing when nothing has expired. Photos under a legal hold are withheld.

    Meant for cron (see docs/requests.md). Exit code 0 when nothing expired or the erasure
    verified, 1 when it failed or its verification found something."""
    with open_workspace(workspace) as ws:
        result = ws.run_retention(dry_run=dry_run, at=at, wait=wait)
    erasure = result["erasure"]
    if json_out:
        print_json(result)
    else:
        _print_run(result)
    if erasure is not None and (
        erasure["state"] == "failed" or not (erasure["verification"] or {}).get("ok", True)
    ):
        raise typer.Exit(1)


def _print_run(result: Mapping[str, Any]) -> None:
    dry_run = result["dry_run"]
    header = "dry run: " if dry_run else ""
    console.print(f"{header}retention at {result['at']}: {result['photos']} photo(s) expired", markup=False)
    for rule in result["rules"]:
        console.print(
            f"  {rule['kind']} {shown(rule['name'])} ({rule['days']} day(s), ingested by {rule['cutoff']}): "
            f"{rule['expired']} photo(s)",
            markup=False,
        )
    for request in result["pending"]:
        console.print(f"  left to unfinished retention erasure {request}", markup=False)
    if dry_run:
        if result["plan"] is not None:
            _print_plan(result["plan"])
        console.print("nothing changed (dry run)", markup=False)
    elif result["erasure"] is None:
        console.print("nothing to erase", markup=False)
    else:
        with contextlib.suppress(typer.Exit):  # the exit code is the run's (retention_run)
            _print_result(result["erasure"], json_out=False)
