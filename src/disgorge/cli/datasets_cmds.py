"""dataset build/show/diff/export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._common import AtOpt, JsonOpt, WorkspaceOpt, console, fail, open_workspace, print_json, shown
from .retention_cmds import ClearOpt, DaysOpt, set_rule

dataset_app = typer.Typer(help="Dataset versions built through the consent gate.", no_args_is_help=True)


def _read_subject_file(path: Path) -> list[str]:
    if not path.is_file():
        raise fail(f"{shown(path)}: no such file")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    ids = [i for i in ids if i and not i.startswith("#")]
    if not ids:
        raise fail(f"{shown(path.name)}: lists no subjects (one external id or sub_ ref per line)")
    return ids


@dataset_app.command("build")
def dataset_build(
    name: Annotated[str, typer.Argument(help="Dataset name (versions are numbered automatically).")],
    purpose: Annotated[str, typer.Option(help="The use the dataset is built for, e.g. ai_training.")],
    source: Annotated[str | None, typer.Option(help="Only photos from this source.")] = None,
    subject_file: Annotated[
        Path | None, typer.Option(help="Only photos of the subjects listed in this file (one id per line).")
    ] = None,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Build a new immutable version: every photo is checked against consent at that time.

    Photos not covered are excluded and listed with their reasons. Dropping photos
    relative to the previous version is a MAJOR version bump; identical members build
    nothing new.
    """
    subjects = _read_subject_file(subject_file) if subject_file else None
    with open_workspace(workspace) as ws:
        build = ws.build_dataset(name, purpose=purpose, source=source, subjects=subjects, at=at)
    if json_out:
        print_json(build.to_dict())
        return
    verb = "built" if build.created else "unchanged:"
    console.print(
        f"{verb} {shown(build.name)}@{build.version} for {build.purpose}: {build.members} photo(s), "
        f"{build.excluded} excluded",
        markup=False,
    )
    for rule, n in build.excluded_by_rule.items():
        console.print(f"  excluded {n:>6}  {rule}")
    for item in build.excluded_items[:20]:
        console.print(f"    {item['sha256'][:16]}  {item['reason']}", markup=False)
    if len(build.excluded_items) > 20:
        console.print(f"    ... and {len(build.excluded_items) - 20} more (--json lists all)")
    console.print(f"  merkle root {build.merkle_root}")


@dataset_app.command("show")
def dataset_show(
    ref: Annotated[str, typer.Argument(help="NAME (latest version) or NAME@VERSION.")],
    members: Annotated[bool, typer.Option("--members", help="List member and excluded sha256s.")] = False,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a dataset version: purpose, members, exclusions by rule, Merkle root."""
    with open_workspace(workspace) as ws:
        info = ws.dataset(ref, members=members)
    if json_out:
        print_json(info)
        return
    table = Table(show_header=False, box=None)
    for key in (
        "name",
        "version",
        "purpose",
        "built_at",
        "members",
        "excluded",
        "merkle_root",
        "state",
        "run",
    ):
        table.add_row(key, shown(info[key]))
    table.add_row("versions", shown(", ".join(info["versions"])))
    for rule, n in info["excluded_by_rule"].items():
        table.add_row(f"excluded: {rule}", str(n))
    console.print(table)
    if members:
        for sha in info["member_sha256"]:
            console.print(f"  member   {sha}")
        for item in info["excluded_items"]:
            console.print(f"  excluded {item['sha256']}  {item['reason']}", markup=False)


@dataset_app.command("diff")
def dataset_diff_cmd(
    a: Annotated[str, typer.Argument(help="NAME@VERSION to compare from.")],
    b: Annotated[str, typer.Argument(help="NAME@VERSION to compare to.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Photos added and removed between two dataset versions."""
    with open_workspace(workspace) as ws:
        diff = ws.dataset_diff(a, b)
    if json_out:
        print_json(diff)
        return
    console.print(
        f"{shown(diff['from'])} -> {shown(diff['to'])}: +{len(diff['added'])} -{len(diff['removed'])} "
        f"({diff['unchanged']} unchanged)",
        markup=False,
    )
    for sha in diff["added"]:
        console.print(f"  + {sha}")
    for sha in diff["removed"]:
        console.print(f"  - {sha}")


@dataset_app.command("retention")
def dataset_retention(
    name: Annotated[str, typer.Argument(help="Dataset name (the rule covers every version's photos).")],
    days: DaysOpt = None,
    clear: ClearOpt = False,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Keep the photos of a dataset (any version) N days after their ingest; `disgorge
    retention run` erases them once expired, whatever their source's rule says."""
    set_rule("dataset", name, days=days, clear=clear, workspace=workspace, at=at, json_out=json_out)


@dataset_app.command("export")
def dataset_export(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (or NAME for its latest version).")],
    croissant: Annotated[
        Path,
        typer.Option(
            "--croissant", help="Write the version as Croissant 1.1 JSON-LD (with consent coverage) here."
        ),
    ],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a dataset version's description (Croissant 1.1 JSON-LD) for ML tools.

    Members are listed by sha256, media type, size and source, never by subject; the
    disgorge:consentCoverage extension carries the purpose, build time, member and
    exclusion counts and the Merkle root. See docs/standards.md.
    """
    with open_workspace(workspace) as ws:
        doc = ws.export_croissant(ref, croissant)
    coverage = doc["disgorge:consentCoverage"]
    summary = {
        "dataset": f"{doc['name']}@{doc['version']}",
        "file": str(croissant),
        "format": doc["conformsTo"],
        "purpose": coverage["disgorge:purpose"],
        "members": coverage["disgorge:members"],
        "excluded": coverage["disgorge:excluded"],
        "merkle_root": coverage["disgorge:merkle_root"],
    }
    if json_out:
        print_json(summary)
        return
    console.print(
        f"exported {shown(summary['dataset'])} ({summary['members']} photo(s), for {summary['purpose']}) "
        f"as Croissant 1.1 to {shown(croissant)}",
        markup=False,
    )
