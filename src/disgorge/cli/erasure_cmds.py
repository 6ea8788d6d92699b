"""erase, erasure list/show/approve/resume/cancel, verify, certificate verify/export."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from ..erasure.certificate import check_reason
from ..errors import InvalidInput
from ._common import AtOpt, JsonOpt, WorkspaceOpt, console, err, fail, open_workspace, print_json, shown
from .remote import ServerOpt, TokenOpt, open_target

RequestArg = Annotated[str, typer.Argument(help="Erasure request id (a unique prefix will do).")]
WaitOpt = Annotated[
    float, typer.Option(help="Seconds to keep delivering to and polling recipients before resting.")
]

erasure_app = typer.Typer(
    help="Erasure requests: list, show, approve, deny, resume, cancel.", no_args_is_help=True
)
certificate_app = typer.Typer(help="Erasure certificates: export and verify offline.", no_args_is_help=True)


def _print_plan(plan: Mapping[str, Any]) -> None:
    scope = plan["scope"]
    console.print(f"erasure of {scope['kind']} {scope['ref']}:", markup=False)
    for kind, n in plan["by_kind"].items():
        console.print(f"  {n:>8}  {kind.replace('_', ' ')}", markup=False)
    for d in plan["datasets"]:
        console.print(
            f"  dataset {d['dataset']}: {d['items']} photo(s) -> new MAJOR version without them", markup=False
        )
    for m in plan["models_unlearn"]:
        console.print(f"  unlearn {m} (SISA: retrain the affected shards only)", markup=False)
    for m in plan["models_retire"]:
        console.print(f"  retire  {m['model']} ({m['why']})", markup=False)
    for a in plan["artifacts_retire"]:
        console.print(f"  retire  {a}", markup=False)
    for r in plan.get("recipients", []):
        how = "legacy transfer, named by sha256" if r["backfilled"] else "named by fingerprint"
        console.print(
            f"  recipient {r['recipient']}: {r['items']} photo(s) of transfer {r['transfer'][:12]} ({how})",
            markup=False,
        )
    withheld = plan.get("withheld")
    if withheld:
        kept = ", ".join([f"{withheld['photos']} photo(s)", *withheld["models"]])
        console.print(f"  withheld {kept}: kept by legal hold(s)", markup=False)
        for h in withheld["holds"]:
            console.print(f"    hold {h['hold'][:12]} on {h['target']}: {h['reason']}", markup=False)
    for note in plan["notes"]:
        console.print(f"  note: {note}", markup=False)


def erase(
    subject: Annotated[
        str | None, typer.Option(help="External id or sub_ ref of the person to erase.")
    ] = None,
    asset: Annotated[str | None, typer.Option(help="sha256 of one photo to erase.")] = None,
    source: Annotated[
        str | None, typer.Option(help="Name of a whole source to erase (disgorgement).")
    ] = None,
    transfer: Annotated[
        str | None, typer.Option(help="A transfer id: the recipient erases every photo it received.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="A model NAME[@V] to retire with everything derived.")
    ] = None,
    reason: Annotated[
        str,
        typer.Option(
            help="Why (goes on the certificate; at least 3 characters, checked with --dry-run too), "
            "e.g. 'GDPR Art. 17 request 123'."
        ),
    ] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    wait: WaitOpt = 30.0,
    deadline_days: Annotated[
        float, typer.Option(help="Days recipients are given to answer before they count as overdue.")
    ] = 30.0,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Erase a person, a photo, a source, a model or a transfer, and everything derived, with proof.

    Shows the plan, asks for confirmation (unless --yes), executes the journaled steps,
    verifies with a forensic scan and signs a certificate. Exit code 0 when verified,
    1 when verification found something (the request says what). With --server, the
    server makes the request (--yes needed) and runs it once approved.
    """
    scopes = {
        k: v
        for k, v in {
            "subject": subject,
            "asset": asset,
            "source": source,
            "transfer": transfer,
            "model": model,
        }.items()
        if v
    }
    if len(scopes) != 1:
        raise fail("name exactly one of --subject, --asset, --source, --transfer, --model", code=2)
    [(kind, ident)] = scopes.items()
    # the reason is checked first, by the same rule the erasure itself applies: a plan
    # (--dry-run) must not accept what the erasure then refuses
    if reason or not dry_run:
        try:
            check_reason(reason)
        except InvalidInput as exc:
            raise fail(str(exc), code=2) from None
    with open_target(workspace, server, token) as ws:
        plan = ws.erasure_plan(kind, ident)
        if dry_run:
            print_json(plan) if json_out else _print_plan(plan)
            return
        if not json_out:
            _print_plan(plan)
        if not yes:
            if not console.is_terminal:
                request = ws.erase(kind, ident, reason=reason, execute=False, at=at)
                err.print(
                    f"planned erasure {request['id']}; run `disgorge erasure approve {request['id']}` "
                    "(or pass --yes)",
                    markup=False,
                )
                if json_out:
                    print_json(request)
                return
            typer.confirm("Erase all of this? This cannot be undone", abort=True)
        result = ws.erase(kind, ident, reason=reason, at=at, wait=wait, deadline_days=deadline_days)
    _print_result(result, json_out)


def _print_result(result: Mapping[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(result)
    else:
        console.print(f"erasure {result['id']}: {result['state']}", markup=False)
        for step in result["steps"]:
            console.print(f"  {step['step']:<20} {json.dumps(step['summary'])[:150]}", markup=False)
        ver = result.get("verification") or {}
        if ver:
            scan = ver["forensic_scan"]
            console.print(
                f"  forensic scan: {scan['files']} files, {scan['bytes'] / 1e6:.1f} MB, "
                f"{scan['needles']} samples, {len(scan['hits'])} found",
                markup=False,
            )
            for c in ver.get("copy_candidates", []):
                console.print(
                    f"  review: possible copy {(c['sha256'] or 'erased since')[:16]} "
                    f"(owner {c['owner']}, distance {c['distance']})",
                    markup=False,
                )
            for c in ver.get("face_candidates", []):
                console.print(
                    f"  review: same face? {(c['sha256'] or 'erased since')[:16]} "
                    f"(owner {c['owner']}, distance {c['distance']})",
                    markup=False,
                )
        for r in result.get("recipients", []):
            extra = f" ({r['last_error']})" if r.get("last_error") else ""
            console.print(
                f"  recipient {r['recipient']}: {r['state']} via {r['delivery']}, "
                f"{r['items']} photo(s){extra}",
                markup=False,
            )
            if r["state"] in ("pending", "overdue") and r["delivery"] == "file":
                console.print(
                    f"    deliver `disgorge erasure request {result['id'][:12]} --recipient {r['recipient']} "
                    "-o FILE` to them, then `disgorge erasure ack ANSWER`",
                    markup=False,
                )
    if result.get("verification") and not result["verification"]["ok"]:
        raise typer.Exit(1)


@erasure_app.command("list")
def erasure_list(
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Every erasure request with its state."""
    with open_target(workspace, server, token) as ws:
        rows = ws.erasures()
    if json_out:
        print_json(rows)
        return
    for r in rows:
        console.print(
            f"{r['id']}  {r['state']:<11} {r['scope']['kind']} {r['scope']['ref']}  {r['created_at']}",
            markup=False,
        )


@erasure_app.command("show")
def erasure_show(
    request: RequestArg,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """One request: plan, steps, verification."""
    with open_target(workspace, server, token) as ws:
        info = ws.erasure(request)
    if json_out:
        print_json(info)
        return
    _print_plan(info["plan"])
    _print_result(info, False)


@erasure_app.command("approve")
def erasure_approve(
    request: RequestArg,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Approve a planned erasure and execute it (with --server: once it has the approvals it needs)."""
    with open_target(workspace, server, token) as ws:
        result = ws.erasure_approve(request, at=at)
    _print_result(result, json_out)


@erasure_app.command("deny")
def erasure_deny(
    request: RequestArg,
    reason: Annotated[str, typer.Option(help="Why it is denied (at least 3 characters; recorded).")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Deny a planned erasure: it ends, nothing is erased."""
    with open_target(workspace, server, token) as ws:
        info = ws.erasure_deny(request, reason=reason)
    print_json(info) if json_out else console.print(f"erasure {info['id']}: {info['state']}", markup=False)


@erasure_app.command("resume")
def erasure_resume(
    request: RequestArg, wait: WaitOpt = 30.0, workspace: WorkspaceOpt = None, json_out: JsonOpt = False
) -> None:
    """Run an interrupted erasure to its end, or try its recipients again (safe to repeat)."""
    with open_workspace(workspace, resume=False) as ws:
        result = ws.erasure_resume(request, wait=wait)
    _print_result(result, json_out)


def _check_out(out: Path, *, new: bool = False) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    if new and out.exists():
        raise fail(f"{shown(out)} already exists")
    if out.is_dir():
        raise fail(f"{shown(out)} is a folder; name a file")
    if not out.parent.is_dir():
        raise fail(f"{shown(out.parent)}: no such folder")


def _write(out: Path, data: bytes) -> None:
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise fail(f"cannot write {shown(out)}: {exc.strerror or exc}") from None


def _read_document(file: Path) -> dict:
    if not file.is_file():
        raise fail(f"{shown(file)}: no such file")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise fail(f"{shown(file.name)}: not a JSON document ({exc})") from None
    if not isinstance(doc, dict):
        raise fail(f"{shown(file.name)}: not a signed disgorge document")
    return doc


@erasure_app.command("request")
def erasure_request(
    request: RequestArg,
    recipient: Annotated[str, typer.Option(help="The recipient (one without an endpoint).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the signed request.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Write the signed erasure request for a recipient, to deliver by hand."""
    _check_out(out, new=True)
    with open_workspace(workspace) as ws:
        doc = ws.erasure_request_document(request, recipient)
    _write(out, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
    console.print(
        f"wrote {shown(out)}: give it to {shown(recipient)}; import their answer with `disgorge erasure ack`",
        markup=False,
    )


@erasure_app.command("receive")
def erasure_receive(
    file: Annotated[Path, typer.Argument(help="A signed erasure request from a registered sender.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the signed answer.")],
    wait: WaitOpt = 30.0,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Carry out a sender's erasure request delivered as a file; write the signed answer."""
    _check_out(out, new=True)
    doc = _read_document(file)
    with open_workspace(workspace) as ws:
        answer = ws.receive_erasure_request(doc, wait=wait)
    _write(out, (json.dumps(answer, indent=1, sort_keys=True) + "\n").encode())
    body = answer["body"]
    if json_out:
        print_json(
            {"state": body["state"], "named": body["named"], "matched": body["matched"], "answer": str(out)}
        )
    else:
        console.print(
            f"{body['state']}: {body['matched']} of {body['named']} photo(s) found here; "
            f"answer written to {shown(out)}",
            markup=False,
        )


@erasure_app.command("ack")
def erasure_ack(
    file: Annotated[Path, typer.Argument(help="A recipient's signed answer to an erasure request.")],
    wait: WaitOpt = 0.0,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import a recipient's answer (delivered by hand) and go on with the erasure."""
    doc = _read_document(file)
    with open_workspace(workspace) as ws:
        result = ws.erasure_ack(doc, wait=wait)
    if json_out:
        print_json(result)
        return
    console.print(f"recipient answer: {result['state']}", markup=False)
    _print_result(result["erasure"], False)


@erasure_app.command("close")
def erasure_close(
    request: RequestArg,
    recipient: Annotated[str, typer.Option(help="The recipient whose part is closed by hand.")],
    reason: Annotated[str, typer.Option(help="Why (goes on the certificate).")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Close one recipient's part by hand, with a recorded reason; then resume the erasure."""
    with open_workspace(workspace) as ws:
        result = ws.erasure_close_recipient(request, recipient, reason=reason)
    print_json(result) if json_out else console.print(
        f"{result['recipient']}: closed; run `disgorge erasure resume {request}` to finish", markup=False
    )


@erasure_app.command("cancel")
def erasure_cancel(
    request: RequestArg,
    reason: Annotated[str, typer.Option(help="Why it is cancelled.")] = "cancelled",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cancel an erasure that has not started executing."""
    with open_workspace(workspace) as ws:
        info = ws.erasure_cancel(request, reason=reason)
    print_json(info) if json_out else console.print(f"erasure {info['id']}: {info['state']}", markup=False)


def verify(request: RequestArg, workspace: WorkspaceOpt = None, json_out: JsonOpt = False) -> None:
    """Check a completed erasure again: tombstones, destroyed keys, lineage (no forensic rescan:
    its samples were destroyed at completion; the result quotes the scan made then)."""
    with open_workspace(workspace) as ws:
        result = ws.verify_erasure(request)
    if json_out:
        print_json(result)
    else:
        c, scan = result["catalog"], result["forensic_scan"]
        first = scan["at_completion"]
        used = result["active_models_using_erased_items"]
        lines = [
            f"verification {'passed' if result['ok'] else 'FAILED'}",
            f"  catalog: {c['photos']} photo(s); not tombstoned {c['photos_not_tombstoned']}, "
            f"derived values left {c['derived_values_left']}, keys left {c['subjects_with_a_key_left']}, "
            f"re-ingestion fingerprints {c['reingestion_fingerprints']}",
            "  lineage: "
            + (
                "active models still use erased photos: " + ", ".join(used)
                if used
                else "no active model uses an erased photo"
            ),
            f"  forensic scan: not repeated ({scan['why']})",
            f"    at completion ({first['checked_at']}): {first['needles']} needle(s) over "
            f"{first['files']} file(s), {first['hits']} hit(s)",
        ]
        console.print("\n".join(lines), markup=False)
    if not result["ok"]:
        raise typer.Exit(1)


@certificate_app.command("export")
def certificate_export(
    request: RequestArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the certificate JSON.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Write an erasure's signed certificate (and the workspace public key next to it)."""
    pub = out.with_suffix(".pub.pem")
    _check_out(out)
    with open_workspace(workspace) as ws:
        cert = ws.erasure_certificate(request)
        pem = ws.public_key_pem()
    _write(out, (json.dumps(cert, indent=2, sort_keys=True) + "\n").encode())
    _write(pub, pem)
    console.print(f"wrote {shown(out)} and {shown(pub)}", markup=False)


@certificate_app.command("verify")
def certificate_verify(
    file: Annotated[Path, typer.Argument(help="The certificate JSON.")],
    public_key: Annotated[Path, typer.Option(help="The issuing workspace's public key (PEM).")],
    prove_item: Annotated[Path | None, typer.Option(help="A photo: is it one of the erased items?")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify a certificate offline with the public key alone. Exit 1 if it does not verify."""
    from ..erasure.certificate import prove_item as prove
    from ..erasure.certificate import verify_certificate

    for path in (file, public_key, prove_item):
        if path is not None and not path.is_file():
            raise fail(f"{shown(path)}: no such file")
    try:
        cert = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise fail(f"{shown(file.name)}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise fail(f"{shown(file.name)}: not a JSON document ({type(exc).__name__})") from None
    if not isinstance(cert, dict):
        raise fail(f"{shown(file.name)}: not a disgorge certificate")
    check = verify_certificate(cert, public_key.read_bytes())
    result = check.to_dict()
    if check.ok and prove_item is not None:
        result["item"] = prove(cert, prove_item.read_bytes())
    if json_out:
        print_json(result)
    else:
        console.print(
            f"{'valid' if check.ok else 'INVALID'}: {check.reason}"
            + (f" ({check.where})" if check.where else ""),
            markup=False,
        )
        if prove_item is not None and "item" in result:  # the item is proved only with the flag
            covered = "is" if result["item"]["covered"] else "is NOT"
            console.print(
                f"{shown(prove_item.name)} {covered} among the {result['item']['items']} erased item(s)",
                markup=False,
            )
    if not check.ok or ("item" in result and not result["item"]["covered"]):
        raise typer.Exit(1)
