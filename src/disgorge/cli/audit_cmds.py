"""audit verify/checkpoint/prove/check, audit log, audit violations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ._common import JsonOpt, WorkspaceOpt, console, err, fail, open_workspace, print_json
from .remote import ServerOpt, TokenOpt, open_target

audit_app = typer.Typer(
    help="The audit log: hash-chained, with signed tree heads and proofs (docs/audit.md).",
    no_args_is_help=True,
)


def _read_json(path: Path, what: str) -> Any:
    """A JSON file the user named; a one-line error (exit 2) if it is missing or not JSON."""
    if not path.is_file():
        raise fail(f"{what} {path}: no such file", code=2)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise fail(f"{what} {path}: not JSON ({str(exc).splitlines()[0][:120]})", code=2) from None


def _check_out(out: Path | None) -> None:
    if out is not None and not out.parent.is_dir():
        raise fail(f"--out {out}: the folder {out.parent} does not exist", code=2)
    if out is not None and out.is_dir():
        raise fail(f"--out {out}: is a folder; name a file", code=2)


def _write_json(out: Path, doc: Any) -> None:
    try:
        out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise fail(f"--out {out}: cannot write ({exc.strerror})") from None


@audit_app.command("verify")
def audit_verify(
    since: Annotated[
        Path | None,
        typer.Option(
            help="A signed tree head kept from before (`audit checkpoint`, a certificate's "
            "audit_tree_head): also prove the log extends it; fail on truncation, rollback or rewrite."
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Check the hash chain (and with --since, that the log extends a signed head); exit 1 if not."""
    head = _read_json(since, "--since") if since is not None else None
    if isinstance(head, dict) and isinstance(head.get("audit_tree_head"), dict):
        head = head["audit_tree_head"]  # a certificate body or an answer body: its witness
    with open_target(workspace, server, token) as ws:
        report = ws.verify_audit(since=head) if since is not None else ws.verify_audit()
    anchor = report.anchor
    if json_out:
        print_json(report.to_dict())
    elif report.ok:
        console.print(f"audit chain intact: {report.events} event(s), head {report.head[:16]}")
        if anchor is not None:
            then = anchor["since"]
            console.print(
                f"extends the signed head of {then['tree_size']} event(s) from {then['timestamp']} "
                f"(consistency proof of {len(anchor['consistency'])} hash(es) checked; "
                f"root now {anchor['root_hash'][:16]})",
                markup=False,
            )
    else:
        chain_broken = anchor is None or anchor["ok"] or report.reason != anchor["reason"]
        if chain_broken:
            err.print(
                f"[bold red]audit chain broken[/] at event {report.first_bad_seq}: {report.reason} "
                f"({report.events} event(s) before it are intact)"
            )
        if anchor is not None and not anchor["ok"]:
            err.print(f"[bold red]audit log does not extend the signed head:[/] {escape(anchor['reason'])}")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the signed tree head here (keep it elsewhere).")
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a signed tree head of the audit log: keep it outside the workspace, then
    `audit verify --since FILE` proves the log still extends it."""
    _check_out(out)
    with open_workspace(workspace) as ws:
        head = ws.audit_checkpoint()
    if out is not None:
        _write_json(out, head)
    if json_out:
        print_json(head)
        return
    body = head["body"]
    where = f"wrote {out}: " if out is not None else ""
    console.print(
        f"{where}signed tree head of {body['tree_size']} event(s), "
        f"root {body['root_hash']}, at {body['timestamp']}",
        markup=False,
    )


@audit_app.command("prove")
def audit_prove(
    from_: Annotated[
        Path | None,
        typer.Option(
            "--from", help="A signed tree head kept from before: add the consistency proof from it."
        ),
    ] = None,
    event: Annotated[
        int | None, typer.Option(help="Add the inclusion proof of this event (its seq) in today's tree.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the proof document here.")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Print a signed tree head of today's log with the proofs a third party checks
    offline (`audit check`, or by hand: docs/audit.md), as JSON."""
    _check_out(out)
    head = _read_json(from_, "--from") if from_ is not None else None
    if isinstance(head, dict) and isinstance(head.get("audit_tree_head"), dict):
        head = head["audit_tree_head"]
    with open_workspace(workspace) as ws:
        doc = ws.audit_prove(since=head, event=event)
    if out is not None:
        _write_json(out, doc)
    print_json(doc)


@audit_app.command("check")
def audit_check(
    old_head: Annotated[Path, typer.Argument(help="The signed tree head you kept (JSON).")],
    proof: Annotated[Path, typer.Argument(help="The proof document from `audit prove --from` (JSON).")],
    public_key: Annotated[
        Path, typer.Option(help="The workspace's public key you trust (PEM, or 64 hex digits).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Check offline, without the workspace, that a log extends a head you kept. Exit 1 if not."""
    from ..audit.transparency import leaf_hash, verify_inclusion, verify_proof
    from ..erasure.certificate import load_public_key
    from ..errors import InvalidInput

    old, doc = _read_json(old_head, "head"), _read_json(proof, "proof")
    if not public_key.is_file():
        raise fail(f"--public-key {public_key}: no such file", code=2)
    try:
        key_hex = load_public_key(public_key.read_bytes()).public_bytes_raw().hex()
    except InvalidInput as exc:
        raise fail(str(exc), code=2) from None
    if isinstance(old, dict) and isinstance(old.get("audit_tree_head"), dict):
        old = old["audit_tree_head"]
    try:
        new = verify_proof(old, doc, key_hex)
        included = doc.get("inclusion")
        if included is not None:
            ok = verify_inclusion(
                int(included["leaf_index"]),
                new.tree_size,
                leaf_hash(included["event_hash"]),
                [bytes.fromhex(p) for p in included["path"]],
                new.root,
            )
            if not ok:
                raise ValueError(
                    f"the inclusion proof of event {included['seq']} does not lead to the new root"
                )
    except (ValueError, KeyError, TypeError) as exc:
        if json_out:
            print_json({"ok": False, "reason": str(exc)})
        else:
            err.print(f"[bold red]does not verify:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    result = {"ok": True, "tree_size": new.tree_size, "root_hash": new.root.hex(), "timestamp": new.timestamp}
    if json_out:
        print_json(result)
    else:
        console.print(
            f"verified: the log of {new.tree_size} event(s) at {new.timestamp} extends the head you kept",
            markup=False,
        )


@audit_app.command("log")
def audit_log(
    limit: Annotated[int, typer.Option(help="How many of the latest events.")] = 50,
    action: Annotated[
        str | None, typer.Option(help="Only events of this action, e.g. asset.ingested.")
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show the latest audit events."""
    with open_target(workspace, server, token) as ws:
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
