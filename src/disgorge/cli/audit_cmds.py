"""audit verify, audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonOpt, WorkspaceOpt, console, err, open_workspace, print_json

audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Check the hash chain; exit 1 and name the first broken link if it is broken."""
    with open_workspace(workspace) as ws:
        report = ws.verify_audit()
    if json_out:
        print_json(report.to_dict())
    elif report.ok:
        console.print(f"audit chain intact: {report.events} event(s), head {report.head[:16]}")
    else:
        err.print(
            f"[bold red]audit chain broken[/] at event {report.first_bad_seq}: {report.reason} "
            f"({report.events} event(s) before it are intact)"
        )
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("log")
def audit_log(
    limit: Annotated[int, typer.Option(help="How many of the latest events.")] = 50,
    action: Annotated[
        str | None, typer.Option(help="Only events of this action, e.g. asset.ingested.")
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the latest audit events."""
    with open_workspace(workspace) as ws:
        events = ws.audit_events(limit=limit, action=action)
    if json_out:
        print_json(events)
        return
    for e in events:
        payload = json.dumps(e["payload"], separators=(",", ":"))
        console.print(f"{e['seq']:>6}  {e['at']}  {e['action']:<22} {e['actor']:<12} {payload}", markup=False)


@audit_app.command("violations")
def audit_violations(
    as_of: Annotated[
        str | None, typer.Option(help="Judge with the consent records known at this time (default: now).")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Also write an HTML report to this file.")] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Every run and dataset version that used photos their consent or policy did not cover.

    Exit code 0 when none is found, 1 when there are violations.
    """
    from ..audit.violations import violations_html

    with open_workspace(workspace) as ws:
        report = ws.violations(as_of=as_of)
    if html is not None:
        html.write_text(violations_html(report), encoding="utf-8")
    if json_out:
        print_json(report)
    else:
        console.print(
            f"{report['uses_with_violations']} of {report['uses_checked']} uses touched "
            f"{report['items']} photo(s) not covered at the time of use",
            markup=False,
        )
        for v in report["violations"]:
            console.print(
                f"  {v['use']}  {v.get('job', '')}  {v['purpose']} at {v['at']}: "
                f"{v['items']} of {v['checked']} photos, {v['subjects']} subject(s)",
                markup=False,
            )
            console.print(
                f"    by source: {json.dumps(v['by_source'])}  by rule: {json.dumps(v['by_rule'])}",
                markup=False,
            )
            carried = v["downstream"] + v.get("outputs", [])
            if carried:
                console.print(f"    carried on by: {', '.join(sorted(set(carried)))}", markup=False)
            if v.get("override"):
                console.print(f"    override: {v['override']}", markup=False)
    if report["violations"]:
        raise typer.Exit(1)
