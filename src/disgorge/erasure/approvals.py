"""The two-person rule: who may approve an erasure requested over the API, and when enough have.

Erasing a whole source, a model or a transfer, or more subjects than the workspace's
``approval_subject_threshold``, cannot be undone and may reach thousands of people, so it
needs ``approvals_required`` approvals by privacy officers *other than the requester*; any
one deny ends the request. Smaller requests need one approval, which may be the
requester's own (asking is then approving). Each decision is a row (who, when, why) and an
audit event, and the approvals are named by principal id in the signed certificate.

The rule binds API principals. The workspace's owner at the shell (a context without a
principal) holds the key-encryption key and could read or destroy everything anyway: the
CLI's decision is final and recorded with its OS user (docs/api.md says so).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._time import iso
from ..access.settings import get_settings
from ..catalog.models import ErasureApproval, ErasureRequest
from ..context import Context
from ..errors import Forbidden, InvalidInput

__all__ = ["APPROVER_ROLE", "ApprovalView", "decide", "for_certificate", "required_approvals", "views"]

#: the role whose members may give the approvals the two-person rule asks for
APPROVER_ROLE = "privacy_officer"
#: scopes whose erasure always needs the two-person rule
LARGE_SCOPES = frozenset({"source", "model", "transfer"})


class ApprovalView(TypedDict):
    principal: str
    name: str
    #: approve or deny
    decision: str
    reason: str
    at: str


def required_approvals(ctx: Context, req: ErasureRequest) -> int:
    """How many approvals by others than the requester this request needs (0: one
    approval, the requester's included, is enough)."""
    settings = get_settings(ctx)
    subjects = int((req.plan.get("counts") or {}).get("subjects_shredded", 0))
    if req.scope_kind in LARGE_SCOPES or subjects > settings["approval_subject_threshold"]:
        return settings["approvals_required"]
    return 0


def views(session: Session, request_id: str) -> list[ApprovalView]:
    rows = session.execute(
        select(ErasureApproval).where(ErasureApproval.request_id == request_id).order_by(ErasureApproval.at)
    ).scalars()
    return [
        {
            "principal": r.principal_id,
            "name": r.principal_name,
            "decision": r.decision,
            "reason": r.reason,
            "at": iso(r.at),
        }
        for r in rows
    ]


def for_certificate(session: Session, request_id: str) -> list[dict[str, str]]:
    """The approvals as the certificate names them: principal id, when, why."""
    return [
        {"principal": v["principal"], "at": v["at"], "reason": v["reason"]}
        for v in views(session, request_id)
        if v["decision"] == "approve"
    ]


def decide(
    session: Session, ctx: Context, req: ErasureRequest, decision: str, reason: str, at: datetime
) -> bool:
    """Record ``ctx``'s decision (``approve`` or ``deny``) on a planned request, in the
    caller's transaction; True when the request may now run. Raises :class:`Forbidden` when
    the rule says this principal may not decide."""
    principal = ctx.principal
    if principal is None:  # the owner at the shell: final (see the module's docstring)
        return decision == "approve"
    if not principal.may("erasure:approve"):
        raise Forbidden(f"role {principal.role} may not approve or deny erasures")
    needed = required_approvals(ctx, req)
    if needed and decision == "approve":
        if principal.id == req.principal_id:
            raise Forbidden(
                f"erasure {req.id} needs {needed} approval(s) by a privacy officer other than its requester"
            )
        if principal.role != APPROVER_ROLE:
            raise Forbidden(f"erasure {req.id} needs approval by a {APPROVER_ROLE}, not a {principal.role}")
    if session.get(ErasureApproval, (req.id, principal.id)) is not None:
        raise InvalidInput(f"{principal.name} already decided on erasure {req.id}")
    session.add(
        ErasureApproval(
            request_id=req.id,
            principal_id=principal.id,
            principal_name=principal.name,
            decision=decision,
            reason=reason.strip(),
            at=at,
        )
    )
    session.flush()
    audit.append(
        session,
        "erasure.decision",
        {"request": req.id, "principal": principal.id, "decision": decision},
        actor=ctx.actor,
        at=at,
    )
    if decision != "approve":
        return False
    if not needed:
        return True
    others = session.execute(
        select(ErasureApproval.principal_id).where(
            ErasureApproval.request_id == req.id,
            ErasureApproval.decision == "approve",
            ErasureApproval.principal_id != (req.principal_id or ""),
        )
    ).all()
    return len(others) >= needed
