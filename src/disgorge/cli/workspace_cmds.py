"""init, status, migrate, gc, keygen."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import DisgorgeError
from ..vault import encode_key, new_key
from ..workspace import Workspace
from ._common import AtOpt, JsonOpt, WorkspaceOpt, console, fail, open_workspace, print_json, shown
from .remote import ServerOpt, TokenOpt, open_target


def init(
    directory: Annotated[
        Path, typer.Argument(help="Folder to hold the workspace (created if missing).")
    ] = Path("."),
    kek_env: Annotated[
        str | None,
        typer.Option(
            help="Read the key-encryption key from this environment variable instead of a key file."
        ),
    ] = None,
    catalog: Annotated[
        str | None,
        typer.Option(
            envvar="DISGORGE_CATALOG",
            help=(
                "Keep the catalog in this PostgreSQL database instead of the embedded SQLite file: "
                "postgresql+psycopg://USER@HOST:5432/DB (an empty database). Never put a password in "
                "the URL (it is kept in config.toml, and one is refused): libpq reads PGPASSWORD or "
                "~/.pgpass."
            ),
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            envvar="DISGORGE_STORE",
            help=(
                "Keep the sealed blobs in this S3-compatible bucket instead of the workspace folder: "
                "s3://BUCKET/PREFIX. Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE or ~/.aws, never from the URL (one carrying any is refused)."
            ),
        ),
    ] = None,
    store_endpoint: Annotated[
        str | None,
        typer.Option(
            envvar="DISGORGE_STORE_ENDPOINT",
            help="The S3 API's endpoint for --store (MinIO, another provider): http(s)://HOST[:PORT].",
        ),
    ] = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace: catalog, encrypted blob store, KEK and signing key."""
    try:
        ws = Workspace.init(
            directory, kek_env=kek_env, at=at, catalog=catalog, store=store, store_endpoint=store_endpoint
        )
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    with ws:
        info = ws.status()
    if json_out:
        print_json(info)
        return
    console.print(f"Created workspace [bold]{escape(shown(info['workspace']))}[/]")
    console.print(f"  catalog  {shown(info['catalog'])}", markup=False)
    console.print(f"  blobs    {shown(info['store'])}", markup=False)
    console.print(f"  KEK      {shown(info['kek'])}", markup=False)
    console.print(f"  signing  {shown(ws.config.home / 'signing.pub')}", markup=False)


def status(
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show what the workspace holds."""
    with open_target(workspace, server, token) as ws:
        info = ws.status()
    if json_out:
        print_json(info)
        return
    table = Table(show_header=False, box=None)
    for key, value in info.items():
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)


def migrate(workspace: WorkspaceOpt = None) -> None:
    """Upgrade the catalog schema to this version of disgorge."""
    from ..config import Config, find_workspace, make_private
    from ..vault import EnvKek, FileKek

    try:
        config = Config.load(find_workspace(workspace))
        make_private(config.home, config)
        kek = EnvKek(config.kek_env) if config.kek_source == "env" else FileKek(config.resolved_kek_path())
        with Workspace(config, kek) as ws:
            revision = ws.migrate()
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    console.print(f"catalog schema at {revision}")


def gc(
    workspace: WorkspaceOpt = None,
    grace: Annotated[
        float, typer.Option(help="Only remove files older than this many seconds (protects running ingests).")
    ] = 900,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, remove nothing.")] = False,
    vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum",
            help="Also rewrite the catalog (VACUUM): small erasures skip it unless their scan asks for it.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove what interrupted work left behind: orphan blobs, temporary files, erasure samples."""
    with open_workspace(workspace) as ws:
        report = ws.gc(grace_seconds=grace, dry_run=dry_run, vacuum=vacuum)
    if json_out:
        print_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"{verb} {report.orphan_blobs} orphan blob(s), {report.temporaries} temporary file(s) and "
        f"{report.orphan_samples} orphan erasure sample file(s)"
        + ("; catalog VACUUMed" if report.vacuumed else "")
    )


def keygen() -> None:
    """Print a new random key-encryption key (base64), for `init --kek-env`."""
    print(encode_key(new_key()))
