"""lineage, run record."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ._common import AtOpt, JsonOpt, WorkspaceOpt, console, fail, open_workspace, print_json, shown
from .remote import ServerOpt, TokenOpt, open_target

run_app = typer.Typer(help="Runs: jobs with their inputs, purpose and outputs.", no_args_is_help=True)


def lineage(
    node: Annotated[
        str,
        typer.Argument(
            help="subject:ID, source:NAME, asset:SHA256, dataset:NAME@V, model:NAME@V, artifact:ID or run:ID."
        ),
    ],
    downstream: Annotated[
        bool, typer.Option("--downstream", help="What was derived from NODE (default).")
    ] = False,
    upstream: Annotated[bool, typer.Option("--upstream", help="What NODE was derived from.")] = False,
    max_depth: Annotated[int, typer.Option(help="Stop after this many steps.")] = 50,
    dot: Annotated[bool, typer.Option("--dot", help="Print Graphviz DOT.")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Everything downstream or upstream of a node in the lineage."""
    if downstream and upstream:
        raise fail("choose one of --downstream and --upstream", code=2)
    direction = "upstream" if upstream else "downstream"
    with open_target(workspace, server, token) as ws:
        graph = ws.lineage(node, direction=direction, max_depth=max_depth)
    if json_out:
        print_json(graph.to_dict())
        return
    if dot:
        print(shown(graph.to_dot(), keep="\n\t"), end="")
        return
    console.print(f"{direction} of {graph.node}:", markup=False)
    if graph.assets.get("count"):
        console.print(f"  photos: {graph.assets['count']}")
    if graph.subjects:
        console.print(f"  subjects: {graph.subjects['count']}")
    if graph.sources:
        console.print(f"  sources: {', '.join(graph.sources)}", markup=False)
    for n in graph.nodes:
        if n["depth"] == 0 and n["kind"] in ("subject", "source", "asset"):
            continue
        state = "" if n["state"] in ("active", "completed") else f"  [{n['state']}]"
        console.print(
            f"  {'  ' * min(n['depth'], 8)}{n['id']}  {n['label'] if n['kind'] == 'run' else ''}{state}",
            markup=False,
        )
    if not graph.nodes or all(n["depth"] == 0 for n in graph.nodes):
        console.print("  (nothing derived)" if direction == "downstream" else "  (no recorded derivation)")


def _parse_output(spec: str) -> dict[str, str]:
    """KIND:NAME[@VERSION][=PATH] -> add_output keyword arguments."""
    spec, _, path = spec.partition("=")
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise fail(
            f"--output {spec!r}: expected KIND:NAME[@VERSION][=PATH], e.g. model:face-id@3=model.pkl", code=2
        )
    name, _, version = rest.partition("@")
    out = {"kind": kind, "name": name, "version": version}
    if path:
        out["path"] = path
    return out


@run_app.command("record")
def run_record(
    job: Annotated[str, typer.Argument(help="Job name, e.g. train-face-id.")],
    purpose: Annotated[str, typer.Option(help="Declared purpose, e.g. ai_training.")],
    input_: Annotated[
        list[str],
        typer.Option("--input", help="NAME@V / dataset:NAME@V / model:NAME@V / asset:SHA256 (repeat)."),
    ],
    output: Annotated[list[str], typer.Option(help="KIND:NAME[@VERSION][=PATH] (repeat).")],
    code_version: Annotated[str, typer.Option(help="Commit or version of the code that ran.")] = "",
    param: Annotated[list[str] | None, typer.Option(help="KEY=VALUE parameters (repeat).")] = None,
    override_role: Annotated[
        str | None, typer.Option(help="privacy_officer, dpo or legal: record despite uncovered items.")
    ] = None,
    justification: Annotated[
        str | None, typer.Option(help="Why the override is justified (recorded).")
    ] = None,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record a run done outside disgorge (e.g. a model trained elsewhere) with its lineage.

    Refused when photos behind the inputs were not covered for PURPOSE at that time,
    unless --override-role and --justification are given (both are recorded).
    """
    if (override_role is None) != (justification is None):
        raise fail("an override needs both --override-role and --justification", code=2)
    params: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise fail(f"--param {item!r}: expected KEY=VALUE", code=2)
        params[key] = value
    outputs = [_parse_output(o) for o in output]
    override = (override_role, justification) if override_role and justification else None
    with open_workspace(workspace) as ws:
        result = ws.record_run(
            job,
            purpose=purpose,
            inputs=list(input_),
            outputs=outputs,
            parameters=params,
            code_version=code_version,
            at=at,
            override=override,
        )
    if json_out:
        print_json(result)
        return
    console.print(f"recorded run {result['run']} ({job}, {result['purpose']})", markup=False)
    console.print(f"  inputs:  {', '.join(result['inputs'])}", markup=False)
    console.print(f"  outputs: {', '.join(result['outputs'])}", markup=False)
    consent = result["consent"]
    console.print(f"  consent: {consent['covered']} of {consent['checked']} photos covered", markup=False)
    if result["override"]:
        console.print(f"  override: {json.dumps(consent['by_rule'])} not covered, recorded as a violation")
