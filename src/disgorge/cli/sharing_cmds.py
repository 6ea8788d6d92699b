"""recipient add/list, sender add/list, share, transfer list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import AtOpt, JsonOpt, WorkspaceOpt, console, fail, open_workspace, print_json

recipient_app = typer.Typer(help="Organisations photos are shared with.", no_args_is_help=True)
sender_app = typer.Typer(help="Organisations this workspace accepts photos from.", no_args_is_help=True)
transfer_app = typer.Typer(help="Transfers sent and received.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="A short name for the organisation (no '/').")]
KeyOpt = Annotated[Path, typer.Option(help="Its Ed25519 public key (PEM, e.g. its .disgorge/signing.pub).")]


def _add(
    role: str,
    name: str,
    public_key: Path,
    endpoint: str,
    agreement: str,
    workspace: Path | None,
    at: str | None,
    json_out: bool,
) -> None:
    if not public_key.is_file():
        raise fail(f"{public_key}: no such file")
    with open_workspace(workspace) as ws:
        peer = ws.add_peer(
            role, name, public_key=public_key.read_bytes(), endpoint=endpoint, agreement=agreement, at=at
        )
    if json_out:
        print_json(peer)
    else:
        where = f" at {peer['endpoint']}" if peer["endpoint"] else ""
        console.print(f"{role} {peer['name']} added{where} (key {peer['public_key'][:16]}...)", markup=False)


def _list(role: str, workspace: Path | None, json_out: bool) -> None:
    with open_workspace(workspace) as ws:
        rows = ws.peers(role)
    if json_out:
        print_json(rows)
        return
    for p in rows:
        console.print(
            f"{p['name']:<24} key {p['public_key'][:16]}...  {p['endpoint'] or '(no endpoint)'}"
            + (f"  agreement {p['agreement']}" if p["agreement"] else ""),
            markup=False,
        )


@recipient_app.command("add")
def recipient_add(
    name: NameArg,
    public_key: KeyOpt,
    endpoint: Annotated[
        str, typer.Option(help="Its disgorge server (`disgorge serve`), for erasure requests over HTTP.")
    ] = "",
    agreement: Annotated[str, typer.Option(help="Reference of the data-sharing agreement.")] = "",
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a recipient. Without --endpoint, erasure requests to it travel as signed files."""
    _add("recipient", name, public_key, endpoint, agreement, workspace, at, json_out)


@recipient_app.command("list")
def recipient_list(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Every registered recipient."""
    _list("recipient", workspace, json_out)


@sender_app.command("add")
def sender_add(
    name: NameArg,
    public_key: KeyOpt,
    agreement: Annotated[str, typer.Option(help="Reference of the data-sharing agreement.")] = "",
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a sender: its bundles and erasure requests are accepted, nobody else's."""
    _add("sender", name, public_key, "", agreement, workspace, at, json_out)


@sender_app.command("list")
def sender_list(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Every registered sender."""
    _list("sender", workspace, json_out)


@sender_app.command("legacy")
def sender_legacy(
    name: Annotated[str, typer.Argument(help="The registered sender the photos came from.")],
    source: Annotated[str, typer.Option(help="The source its photos were ingested into.")],
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record that a source's photos came from a sender outside disgorge (a legacy transfer).

    A sender's erasure requests reach only what it sent: without this record, its legacy
    requests (which name photos by sha256) reach nothing here.
    """
    with open_workspace(workspace) as ws:
        result = ws.receive_legacy(name, source=source, at=at)
    if json_out:
        print_json(result)
        return
    console.print(
        f"legacy transfer {result['transfer'][:12]} from {result['sender']}: {result['items']} photo(s) of "
        f"source {result['source']} ({result['added']} added)",
        markup=False,
    )


def share(
    dataset: Annotated[str, typer.Argument(help="The dataset version to share, NAME@VERSION.")],
    to: Annotated[str, typer.Option("--to", help="A registered recipient.")],
    purpose: Annotated[
        list[str], typer.Option(help="What the recipient may use the photos for (repeatable).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="The bundle to write (a .zip, outside the workspace).")
    ] = None,
    override_role: Annotated[
        str | None, typer.Option(help="With --at and no --out: the role recording a legacy transfer.")
    ] = None,
    justification: Annotated[
        str | None, typer.Option(help="Why a legacy transfer the gate would refuse is recorded anyway.")
    ] = None,
    keep_metadata: Annotated[
        bool,
        typer.Option(
            "--keep-metadata",
            help="Ship the photos' location metadata (EXIF GPS, XMP, IPTC); stripped by default.",
        ),
    ] = False,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Share a dataset version with a recipient, through the consent gate.

    Every photo must be covered for third_party_sharing and each --purpose; the others
    stay home (listed by rule). Writes a signed bundle for the recipient's `disgorge
    ingest`, its photos without location metadata unless --keep-metadata. With --at and
    no --out, records a legacy transfer as it happened instead.
    """
    if out is None and at is None:
        raise fail("give --out BUNDLE.zip (or --at to record a legacy transfer without a bundle)", code=2)
    override = None
    if override_role or justification:
        if not (override_role and justification):
            raise fail("--override-role and --justification go together", code=2)
        override = (override_role, justification)
    with open_workspace(workspace) as ws:
        result = ws.share(
            dataset, to=to, purposes=purpose, out=out, at=at, override=override, keep_metadata=keep_metadata
        )
    if json_out:
        print_json(result)
        return
    what = f"bundle {result['bundle']}" if result["bundle"] else "a legacy transfer (no bundle)"
    console.print(
        f"transfer {result['transfer'][:12]} to {result['recipient']}: {result['items']} photo(s) of "
        f"{result['dataset']} for {', '.join(result['purposes'])}; {what}",
        markup=False,
    )
    for rule, n in result["excluded_by_rule"].items():
        console.print(f"  kept home: {n} photo(s), {rule}", markup=False)
    if result.get("location_stripped"):
        console.print(
            f"  location metadata stripped from {result['location_stripped']} photo(s)", markup=False
        )
    if result["not_covered_at_the_time"]:
        console.print(
            f"  recorded under override: {result['not_covered_at_the_time']} photo(s) were not covered",
            markup=False,
        )


@transfer_app.command("list")
def transfer_list(workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Every transfer, sent (out) and received (in)."""
    with open_workspace(workspace) as ws:
        rows = ws.transfers()
    if json_out:
        print_json(rows)
        return
    for t in rows:
        console.print(
            f"{t['id'][:12]}  {t['direction']:<3} {t['peer']:<20} {t['items']:>6} photo(s)  "
            f"{(t['at'] or '')[:10]}  {', '.join(t['purposes'])}"
            f"{'  (backfilled)' if t['backfilled'] else ''}",
            markup=False,
        )
