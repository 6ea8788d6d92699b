"""What the erasure shows: one request, the list of them, the interrupted ones.

The views read from a reader session (a snapshot that never waits for a running erasure)
and show no personal data: scopes by their pseudonymous refs, the plan without internal
ids (:func:`disgorge.erasure.plan.summarize`), look-alike candidates by catalog id with the
sha256 of each candidate's photo looked up now (None once that photo was erased too: a
request must not keep the hash of a photo erased later).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .._time import iso
from ..catalog.models import Asset, ErasureRequest
from ..context import Context
from ..errors import NotFound
from ..signing import SignedDocument
from . import approvals
from .approvals import ApprovalView
from .journal import StepView, find_request, step_views
from .plan import PlanSummary, summarize
from .recipients import RecipientState, recipient_states

__all__ = ["ErasureListed", "ErasureView", "Scope", "certificate", "interrupted", "list_requests", "show"]

#: states of a request that a run was interrupted in: ``approved`` is never a resting state
#: (approving runs it), so one left there was interrupted between its approval and its
#: first step
INTERRUPTED_STATES = ("approved", "executing", "verifying")


class Scope(TypedDict):
    kind: str
    ref: str


class ErasureView(TypedDict):
    """One request as ``disgorge erasure show`` gives it."""

    id: str
    scope: Scope
    reason: str
    state: str
    created_at: str | None
    updated_at: str | None
    plan: PlanSummary
    steps: list[StepView]
    #: the verification with each look-alike candidate's sha256 (None before the verify step)
    verification: dict[str, Any] | None
    #: whether a signed certificate is stored (``erasure_certificate`` gives it)
    certificate: bool
    error: str | None
    recipients: list[RecipientState]
    #: each principal's decision (the two-person rule; empty for the shell's own requests)
    approvals: list[ApprovalView]
    #: approvals by privacy officers other than the requester this request needs
    approvals_required: int


class ErasureListed(TypedDict):
    """One request in ``disgorge erasure list``."""

    id: str
    scope: Scope
    state: str
    created_at: str | None
    reason: str


def show(ctx: Context, request_id: str) -> ErasureView:
    """The request with this id (or unambiguous prefix), its steps, verification and recipients."""
    with ctx.reader() as session:
        req = find_request(session, request_id)
        steps = step_views(session, req.id)
        return {
            "id": req.id,
            "scope": {"kind": req.scope_kind, "ref": req.scope_ref},
            "reason": req.reason,
            "state": req.state,
            "created_at": iso(req.created_at),
            "updated_at": iso(req.updated_at),
            "plan": summarize(req.plan),
            "steps": steps,
            "verification": _with_sha256(session, req.verification),
            "certificate": bool(req.certificate),
            "error": req.error,
            "recipients": recipient_states(ctx, req.id),
            "approvals": approvals.views(session, req.id),
            "approvals_required": approvals.required_approvals(ctx, req) if req.principal_id else 0,
        }


def list_requests(ctx: Context) -> list[ErasureListed]:
    """Every request, oldest first."""
    with ctx.reader() as session:  # no JSON column: a damaged journal still lists
        rows = session.execute(
            select(
                ErasureRequest.id,
                ErasureRequest.scope_kind,
                ErasureRequest.scope_ref,
                ErasureRequest.state,
                ErasureRequest.created_at,
                ErasureRequest.reason,
            ).order_by(ErasureRequest.created_at)
        ).all()
        return [
            {
                "id": r.id,
                "scope": {"kind": r.scope_kind, "ref": r.scope_ref},
                "state": r.state,
                "created_at": iso(r.created_at),
                "reason": r.reason,
            }
            for r in rows
        ]


def interrupted(ctx: Context) -> list[str]:
    """Ids of the requests a run was interrupted in (to resume before anything else)."""
    with ctx.reader() as session:
        return list(
            session.scalars(select(ErasureRequest.id).where(ErasureRequest.state.in_(INTERRUPTED_STATES)))
        )


def certificate(ctx: Context, request_id: str) -> SignedDocument:
    """The request's signed certificate; NotFound before it is completed."""
    with ctx.reader() as session:
        req = find_request(session, request_id)
        if not req.certificate:
            raise NotFound(f"erasure {req.id} has no certificate yet (state {req.state})")
        return dict(req.certificate)


def _with_sha256(session: Session, verification: dict[str, Any] | None) -> dict[str, Any] | None:
    """The verification as shown: each review candidate with its photo's sha256 now
    (None once that photo was erased too)."""
    if not verification:
        return None
    kinds = ("copy_candidates", "face_candidates")
    ids = [c["asset"] for k in kinds for c in verification.get(k) or [] if "asset" in c]
    rows = dict(
        session.execute(
            select(Asset.id, Asset.sha256).where(Asset.id.in_(ids), Asset.state == "active")
        ).all()
    )
    shown = dict(verification)
    for k in kinds:
        shown[k] = [
            {"sha256": rows.get(c["asset"]), **c} if "asset" in c else c for c in verification.get(k) or []
        ]
    return shown
