"""hold add/list/release: legal holds that keep data despite erasures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from ._common import AtOpt, JsonOpt, WorkspaceOpt, console, fail, open_workspace, print_json

hold_app = typer.Typer(
    help="Legal holds: keep a subject's, source's, dataset's or model's data despite erasures.",
    no_args_is_help=True,
)

ReasonOpt = Annotated[
    str,
    typer.Option(help="Why (goes on erasure certificates: name the matter, never a person; 10+ characters)."),
]


def _print_hold(hold: Mapping[str, Any]) -> None:
    state = "active" if hold["active"] else f"released {hold['released_at']} by {hold['released_by']}"
    console.print(
        f"hold {hold['id']} on {hold['target']} ({state})\n"
        f"  placed   {hold['created_at']} by {hold['created_by']}\n"
        f"  reason   {hold['reason']}"
        + (f"\n  released because: {hold['release_reason']}" if hold["release_reason"] else ""),
        markup=False,
    )


@hold_app.command("add")
def hold_add(
    reason: ReasonOpt,
    subject: Annotated[str | None, typer.Option(help="External id or sub_ ref of a person.")] = None,
    source: Annotated[str | None, typer.Option(help="Name of a source (all its photos).")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Name of a dataset (every version, and its photos).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Name of a model (every version).")] = None,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Place a legal hold: erasures approved from now on leave what it keeps withheld."""
    given = {"subject": subject, "source": source, "dataset": dataset, "model": model}
    named = {k: v for k, v in given.items() if v}
    if len(named) != 1:
        raise fail("name exactly one of --subject, --source, --dataset, --model", code=2)
    [(kind, name)] = named.items()
    with open_workspace(workspace) as ws:
        hold = ws.add_hold(kind, name, reason=reason, at=at)
    print_json(hold) if json_out else _print_hold(hold)


@hold_app.command("list")
def hold_list(
    active: Annotated[bool, typer.Option("--active", help="Only holds not released.")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Every legal hold, oldest first."""
    with open_workspace(workspace) as ws:
        holds = ws.holds(active_only=active)
    if json_out:
        print_json(holds)
        return
    if not holds:
        console.print("no legal holds", markup=False)
    for hold in holds:
        _print_hold(hold)


@hold_app.command("release")
def hold_release(
    hold_id: Annotated[str, typer.Argument(help="Hold id (a unique prefix will do).")],
    reason: ReasonOpt,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Release a legal hold, then finish every erasure it held back (one follow-up erasure
    each, with its own certificate)."""
    with open_workspace(workspace) as ws:
        result = ws.release_hold(hold_id, reason=reason, at=at)
    if json_out:
        print_json(result)
        return
    _print_hold(result["hold"])
    for erasure in result["erasures"]:
        console.print(f"  finished: erasure {erasure['id']} ({erasure['state']})", markup=False)
    if not result["erasures"]:
        console.print("  no erasure was waiting on this hold alone", markup=False)
