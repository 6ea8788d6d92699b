"""source, subject and asset commands."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ._common import AtOpt, JsonOpt, WorkspaceOpt, console, fail, open_workspace, print_json, shown
from .remote import ServerOpt, TokenOpt, open_target
from .retention_cmds import ClearOpt, DaysOpt, set_rule

source_app = typer.Typer(help="Sources of data and their privacy-policy versions.", no_args_is_help=True)
subject_app = typer.Typer(help="Data subjects (by external id or pseudonymous ref).", no_args_is_help=True)
asset_app = typer.Typer(help="Stored photos.", no_args_is_help=True)


def _print_source(info: Mapping[str, Any]) -> None:
    console.print(
        f"[bold]{escape(shown(info['name']))}[/] ({escape(shown(info['kind']))}) - {info['assets']} asset(s)"
    )
    if info["description"]:
        console.print(f"  {shown(info['description'])}", markup=False)
    for p in info["policies"]:
        until = p["effective_to"] or "now"
        allows = ", ".join(p["allows"]) or "nothing"
        console.print(
            f"  policy {shown(p['version'])}: {p['effective_from']} .. {until}; allows {allows}", markup=False
        )


@source_app.command("add")
def source_add(
    name: Annotated[str, typer.Argument(help="Name for the new source (unique in the workspace).")],
    kind: Annotated[str, typer.Option(help="app, scrape, transfer, partner or other.")] = "app",
    description: Annotated[str, typer.Option(help="Free text (no personal data).")] = "",
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a source of data."""
    with open_workspace(workspace) as ws:
        info = ws.add_source(name, kind=kind, description=description, at=at)
    print_json(info) if json_out else _print_source(info)


@source_app.command("policy")
def source_policy(
    name: Annotated[str, typer.Argument(help="Name of a registered source.")],
    version: Annotated[str, typer.Option(help="Version label of the privacy policy.")],
    text: Annotated[Path, typer.Option(help="File with the policy text (only its sha256 is kept).")],
    effective_from: Annotated[str, typer.Option("--from", help="In force from (ISO 8601).")],
    allows: Annotated[
        str, typer.Option(help="Comma-separated purposes the policy allows (may be empty).")
    ] = "",
    effective_to: Annotated[str | None, typer.Option("--to", help="In force until (ISO 8601).")] = None,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a privacy-policy version to a source."""
    if not text.is_file():
        raise fail(f"{shown(text)}: no such file")
    purposes = [p for p in (x.strip() for x in allows.split(",")) if p]
    with open_workspace(workspace) as ws:
        info = ws.add_policy(
            name,
            version,
            text=text.read_bytes(),
            effective_from=effective_from,
            effective_to=effective_to,
            allows=purposes,
            at=at,
        )
    print_json(info) if json_out else _print_source(info)


@source_app.command("list")
def source_list(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """List sources."""
    with open_workspace(workspace) as ws:
        infos = ws.sources()
    if json_out:
        print_json(infos)
        return
    for info in infos:
        _print_source(info)


@source_app.command("show")
def source_show(
    name: Annotated[str, typer.Argument(help="Name of a registered source.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one source and its policy versions."""
    with open_workspace(workspace) as ws:
        info = ws.source(name)
    print_json(info) if json_out else _print_source(info)


@source_app.command("retention")
def source_retention(
    name: Annotated[str, typer.Argument(help="Name of a registered source.")],
    days: DaysOpt = None,
    clear: ClearOpt = False,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Keep a source's photos N days after their ingest (replacing any rule on it); `disgorge
    retention run` erases them once expired."""
    set_rule("source", name, days=days, clear=clear, workspace=workspace, at=at, json_out=json_out)


@subject_app.command("show")
def subject_show(
    subject: Annotated[str, typer.Argument(help="External id (hashed before lookup) or a sub_... ref.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show a subject: ref, key state, photos, consent history."""
    with open_target(workspace, server, token) as ws:
        info = ws.subject(subject)
    if json_out:
        print_json(info)
        return
    console.print(f"[bold]{info['ref']}[/]  state {info['state']}, data key {info['key']}")
    console.print(f"  {len(info['assets'])} photo(s)")
    for a in info["assets"]:
        console.print(f"    {a['sha256'][:16]}  {a['role']:<8} {a['state']}")
    table = Table("purpose", "now", title="consent", title_justify="left", box=None)
    for purpose, decision in info["consent_now"].items():
        table.add_row(purpose, decision)
    console.print(table)
    for c in info["consent"]:
        console.print(
            f"    {c['at']}  {c['purpose']:<24} {c['decision']:<11} "
            f"policy {shown(c['policy_version'] or '-')}",
            markup=False,
        )


@asset_app.command("show")
def asset_show(
    sha256: Annotated[str, typer.Argument(help="The photo's sha256 (a unique prefix of 8+ digits will do).")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one stored photo's catalog entry."""
    with open_workspace(workspace) as ws:
        info = ws.asset(sha256)
    if json_out:
        print_json(info)
        return
    table = Table(show_header=False, box=None)
    for key, value in info.items():
        table.add_row(key, shown(", ".join(value) if isinstance(value, list) else value))
    console.print(table)


@asset_app.command("get")
def asset_get(
    sha256: Annotated[str, typer.Argument(help="The photo's sha256 (a unique prefix of 8+ digits will do).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the decrypted photo here.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Decrypt a stored photo to a file (checked against its sha256; the read is audited)."""
    if not out.parent.is_dir() or out.is_dir():
        raise fail(f"{shown(out)}: not a file in an existing folder")
    with open_workspace(workspace) as ws:
        data, _media_type = ws.read_asset_audited(sha256)
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise fail(f"cannot write {shown(out)}: {exc.strerror or exc}") from None
    console.print(f"wrote {len(data)} bytes to {shown(out)}", markup=False)


@subject_app.command("export")
def subject_export(
    subject: Annotated[str, typer.Argument(help="External id (hashed before lookup) or a sub_... ref.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Write the zip here (a new file outside the workspace).")
    ],
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Everything held about a person, as a zip for them (their right of access, GDPR
    article 15): a page to read offline (index.html), the same signed (export.json), their
    photos. Audited."""
    with open_workspace(workspace) as ws:
        info = ws.export_subject(subject, out, at=at)
    if json_out:
        print_json(info)
        return
    console.print(
        f"wrote {shown(info['path'])} for {info['subject']}: {info['photos']} photo(s) "
        f"({info['photo_files']} copied), {info['datasets']} dataset version(s), {info['models']} model(s), "
        f"{info['runs']} run(s), {info['recipients']} recipient(s), {info['erasures']} erasure(s); "
        f"sha256 {info['sha256']}",
        markup=False,
    )
