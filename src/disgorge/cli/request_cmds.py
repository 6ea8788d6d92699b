"""request open/extend/verify/list/show/close/erase: data-subject requests as cases."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import AtOpt, JsonOpt, WorkspaceOpt, console, open_workspace, print_json

request_app = typer.Typer(
    help="Data-subject requests as cases: open, verify identity, extend, act, close; deadlines.",
    no_args_is_help=True,
)

CaseArg = Annotated[str, typer.Argument(help="Case id (a unique prefix of 6+ characters will do).")]


def _when(case: Mapping[str, Any]) -> str:
    days = case["days_left"]
    if days is None:
        return case["status"]
    if case["overdue"]:
        return f"OVERDUE by {max(-days, 0)} day(s)" if days < 0 else "OVERDUE (today)"
    return f"{days} day(s) left"


def _print_case(case: Mapping[str, Any]) -> None:
    ident = case["identity"]
    lines = [
        f"case {case['id']}: {case['kind']} request of {case['subject']} ({case['jurisdiction']})",
        f"  status      {case['status']}" + (f": {case['outcome']}" if case["outcome"] else ""),
        f"  received    {case['received_at']} by {case['channel']}",
        f"  due         {case['due_at']} ({_when(case)})",
    ]
    if case["purpose"]:
        lines.append(f"  purpose     {case['purpose']} (objected to: denied from receipt)")
    if case["extended_at"]:
        lines.append(f"  extended    {case['extended_at']}: {case['extension_reason']}")
    identity = ident["state"]
    if ident["by"]:
        identity += f" by {ident['by']} at {ident['at']} ({ident['method']})"
    lines.append(f"  identity    {identity}")
    if case["erasure_id"]:
        lines.append(f"  erasure     {case['erasure_id']}")
    if case["note"]:
        lines.append(f"  note        {case['note']}")
    for use in case.get("used", []):
        lines.append(f"  used for {case['purpose']}: {use['use']} ({use['at']})")
    console.print("\n".join(lines), markup=False)


def _out(case: Mapping[str, Any], json_out: bool) -> None:
    print_json(case) if json_out else _print_case(case)


@request_app.command("open")
def request_open(
    kind: Annotated[str, typer.Option(help="access, erasure or objection.")],
    subject: Annotated[
        str, typer.Option(help="External id or sub_ ref of the person (kept only as the sub_ ref).")
    ],
    received_at: Annotated[str, typer.Option(help="When the request was received (ISO 8601).")],
    channel: Annotated[str, typer.Option(help="email, portal, regulator, post or phone.")],
    purpose: Annotated[
        str | None, typer.Option(help="For an objection: the purpose objected to (denied from receipt).")
    ] = None,
    jurisdiction: Annotated[
        str, typer.Option(help="gdpr (one month, +2 once) or ccpa (45 days, +45 once).")
    ] = "gdpr",
    note: Annotated[str, typer.Option(help="A note for the privacy office (no personal data).")] = "",
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Open a case for a request received at --received-at; prints its due date."""
    with open_workspace(workspace) as ws:
        case = ws.open_case(
            kind,
            subject,
            received_at=received_at,
            channel=channel,
            purpose=purpose,
            jurisdiction=jurisdiction,
            note=note,
            at=at,
        )
    _out(case, json_out)


@request_app.command("extend")
def request_extend(
    case_id: CaseArg,
    by: Annotated[str, typer.Option(help="How much longer, e.g. 2m or 45d (once; gdpr <= 2m, ccpa <= 45d).")],
    reason: Annotated[str, typer.Option(help="Why (recorded on the case; the requester must be told).")],
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Extend a case's due date, once, with a reason."""
    with open_workspace(workspace) as ws:
        case = ws.extend_case(case_id, by=by, reason=reason, at=at)
    _out(case, json_out)


@request_app.command("verify")
def request_verify(
    case_id: CaseArg,
    method: Annotated[
        str, typer.Option(help="How the identity was checked, e.g. 'reply from account e-mail'.")
    ],
    failed: Annotated[bool, typer.Option("--failed", help="The check failed.")] = False,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record the requester's identity verification (who: you, how: --method, when: now)."""
    with open_workspace(workspace) as ws:
        case = ws.verify_case_identity(case_id, how=method, failed=failed, at=at)
    _out(case, json_out)


@request_app.command("list")
def request_list(
    overdue: Annotated[bool, typer.Option("--overdue", help="Only open cases past their due date.")] = False,
    due_within: Annotated[
        str | None, typer.Option(help="Only open cases due within this period, e.g. 7d.")
    ] = None,
    status: Annotated[str | None, typer.Option(help="open, completed or refused.")] = None,
    kind: Annotated[str | None, typer.Option(help="access, erasure or objection.")] = None,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cases, soonest due first, with the days left (or overdue)."""
    with open_workspace(workspace) as ws:
        cases = ws.cases(status=status, kind=kind, overdue=overdue, due_within=due_within, at=at)
    if json_out:
        print_json(cases)
        return
    if not cases:
        console.print("no cases", markup=False)
    for c in cases:
        console.print(
            f"{c['id']}  {c['kind']:<9}  {c['status']:<9}  due {c['due_at'][:10]}  {_when(c):<20}  "
            f"{c['subject']}  identity {c['identity']['state']}",
            markup=False,
        )


@request_app.command("show")
def request_show(
    case_id: CaseArg,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One case: due date and days left, identity, what it produced (and, for an objection,
    what already used the subject's photos for that purpose)."""
    with open_workspace(workspace) as ws:
        case = ws.case(case_id, at=at)
    _out(case, json_out)


@request_app.command("close")
def request_close(
    case_id: CaseArg,
    outcome: Annotated[str, typer.Option(help="What was done (or, with --refused, why not).")],
    refused: Annotated[bool, typer.Option("--refused", help="Close it as refused.")] = False,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Close a case as completed (or --refused)."""
    with open_workspace(workspace) as ws:
        case = ws.close_case(case_id, outcome=outcome, refused=refused, at=at)
    _out(case, json_out)


@request_app.command("export")
def request_export(
    case_id: CaseArg,
    out: Annotated[Path, typer.Option("-o", "--out", help="The zip to write, outside the workspace.")],
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Answer an access case (identity verified first): write its subject's export and
    record its sha256 on the case."""
    with open_workspace(workspace) as ws:
        result = ws.export_case(case_id, out, at=at)
    if json_out:
        print_json(result)
        return
    export = result["export"]
    console.print(
        f"case {result['case']['id']}: wrote {export['path']} "
        f"({export['photos']} photo(s), {export['photo_files']} copied); sha256 {export['sha256']}",
        markup=False,
    )


@request_app.command("erase")
def request_erase(
    case_id: CaseArg,
    reason: Annotated[
        str, typer.Option(help="Why (goes on the certificate), e.g. 'GDPR Art. 17, case ...'.")
    ],
    wait: Annotated[
        float, typer.Option(help="Seconds to keep delivering to and polling recipients before resting.")
    ] = 30.0,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Erase an erasure case's subject (identity verified first) and link the erasure to the case."""
    with open_workspace(workspace) as ws:
        result = ws.erase_case(case_id, reason=reason, wait=wait, at=at)
    if json_out:
        print_json(result)
        return
    erasure = result["erasure"]
    console.print(
        f"case {result['case']['id']}: erasure {erasure['id']} is {erasure['state']}"
        + (" (certificate signed)" if erasure["certificate"] else ""),
        markup=False,
    )
    withheld = erasure["plan"].get("withheld")
    if withheld:  # the person must be told what is kept, and why
        kept = ", ".join([f"{withheld['photos']} photo(s)", *withheld["models"]])
        for hold in withheld["holds"]:
            console.print(
                f"  withheld {kept}: legal hold {hold['hold'][:12]} ({hold['reason']})", markup=False
            )
