"""An erasure request's lifecycle before it runs: planned, approved, or cancelled.

A request is created ``planned`` with its plan (:mod:`disgorge.erasure.plan`) and a sealed
file of extra needles the verifier must not find afterwards. Approval plans again (photos
may have been ingested into the scope meanwhile), writes the journal's steps and hands the
request to the runner (:mod:`disgorge.erasure.runner`). It can be cancelled until it starts
running. Every change goes into the audit log with the request's id, never with personal
data: the scope is recorded by its pseudonymous ref.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import audit
from ..catalog.models import ErasureRequest, IncomingRequest, Peer, Source, Transfer
from ..context import Context
from ..errors import ErasureBlocked, InvalidInput, NotFound
from . import approvals
from .certificate import check_reason
from .journal import add_steps, find_request
from .plan import make_plan
from .samples import drop_samples, write_samples
from .steps import STEPS

__all__ = ["approve", "cancel", "create", "deny", "plan", "replan", "resolve_scope"]


def resolve_scope(ctx: Context, session: Session, kind: str, ident: str) -> tuple[str, str]:
    """(catalog key, pseudonymous scope ref) for what the user named."""
    from ..assets import find_asset
    from ..subjects import find_subject
    from ..training.registry import find_model

    if kind == "subject":
        subject = find_subject(session, ctx.vault, ident)
        return str(subject.id), subject.ref
    if kind == "asset":
        asset = find_asset(session, ident)
        return asset.id, ctx.vault.photo_fingerprint(asset.sha256)
    if kind == "source":
        src = session.scalar(select(Source).where(Source.name == ident))
        if src is None:
            raise NotFound(f"no source named {ident!r}")
        return str(src.id), f"source:{src.name}"
    if kind == "model":
        art = find_model(session, ident)
        return art.id, f"model:{art.name}@{art.version}"
    if kind == "transfer":
        ids = session.scalars(
            select(Transfer.id).where(Transfer.direction == "out", Transfer.id.startswith(ident)).limit(2)
        ).all()
        if len(ids) != 1:
            raise (
                NotFound(f"no transfer {ident!r} from this workspace")
                if not ids
                else InvalidInput(f"transfer id prefix {ident!r} is ambiguous")
            )
        return ids[0], f"transfer:{ids[0]}"
    if kind == "request":
        incoming = session.get(IncomingRequest, ident)
        if incoming is None:
            raise NotFound(f"no erasure request {ident!r} was received")
        sender = session.get(Peer, incoming.peer_id)
        assert sender is not None  # a received request's sender stays registered
        return ident, f"request:{sender.name}:{ident[:16]}"
    if kind == "set":  # named by its maker (retention, a hold's release, a restore): key and ref alike
        return ident, ident
    raise InvalidInput(f"scope {kind!r}: expected subject, asset, source, model or transfer")


def plan(ctx: Context, kind: str, ident: str) -> dict[str, Any]:
    """The full plan for a scope, recording nothing (the dry run shows its summary)."""
    with ctx.reader() as session:
        key, ref = resolve_scope(ctx, session, kind, ident)
        return make_plan(session, kind, key, ref)


def create(
    ctx: Context,
    kind: str,
    ident: str,
    *,
    reason: str,
    at: datetime,
    needles: dict[str, bytes],
    members: dict[str, Any] | None = None,
) -> str:
    """Plan and record a request (state ``planned``); returns its id. ``needles`` are extra
    byte strings the verifier must not find afterwards (e.g. the external id the request
    named); they are kept only sealed, and only until the scan. A ``set`` scope names its
    ``members`` (:func:`disgorge.erasure.plan.make_plan`)."""
    check_reason(reason)
    # a store that cannot delete its blobs (an S3 bucket with Object Lock) refuses the
    # request before anything is recorded; asked before the writer transaction (a network call)
    blocked = ctx.store.erasure_obstacle()
    with ctx.sessions.begin() as session:
        key, ref = resolve_scope(ctx, session, kind, ident)
        scope_plan = make_plan(session, kind, key, ref, members)
        scope_plan["key"] = key
        if blocked is not None and scope_plan["assets"]:
            raise ErasureBlocked(blocked)
        request = ErasureRequest(
            id=uuid.uuid4().hex,
            scope_kind=kind,
            scope_ref=ref,
            reason=reason,
            state="planned",
            created_at=at,
            updated_at=at,
            plan=scope_plan,
            actor=ctx.actor,
            principal_id=ctx.principal.id if ctx.principal is not None else None,
        )
        write_samples(ctx, request.id, {"needles": {k: v.hex() for k, v in needles.items()}})
        session.add(request)
        session.flush()
        audit.append(
            session,
            "erasure.planned",
            {"request": request.id, "scope": {"kind": kind, "ref": ref}, "counts": scope_plan["counts"]},
            actor=ctx.actor,
            at=at,
        )
        return request.id


def approve(ctx: Context, request_id: str, *, at: datetime, reason: str = "") -> str | None:
    """Approve a planned request: plan again, write its journal; returns its full id, or
    ``None`` when the decision is recorded but the two-person rule still waits for others
    (:mod:`.approvals`). The decision and the transition are one transaction, so two
    officers approving at once cannot both start it."""
    with ctx.sessions.begin() as session:
        req = find_request(session, request_id)
        if req.state != "planned":
            raise ErasureBlocked(f"erasure {req.id} is {req.state}; only a planned erasure can be approved")
        if not approvals.decide(session, ctx, req, "approve", reason, at):
            return None
        # the scope may have grown since planning (photos ingested meanwhile): plan again
        new_plan = replan(session, req)
        req.plan = new_plan
        req.state = "approved"
        req.updated_at = at
        add_steps(session, req, STEPS)
        if req.scope_kind == "source":
            session.execute(update(Source).where(Source.id == int(new_plan["key"])).values(state="erasing"))
        audit.append(session, "erasure.approved", {"request": req.id}, actor=ctx.actor, at=at)
        return req.id


def deny(ctx: Context, request_id: str, *, reason: str, at: datetime) -> str:
    """Deny a planned request: it ends (state ``denied``), whatever approvals it had."""
    text = check_reason(reason)
    with ctx.sessions.begin() as session:
        req = find_request(session, request_id)
        if req.state != "planned":
            raise ErasureBlocked(f"erasure {req.id} is {req.state}; only a planned erasure can be denied")
        approvals.decide(session, ctx, req, "deny", text, at)
        req.state = "denied"
        req.updated_at = at
        drop_samples(ctx, req.id)
        audit.append(session, "erasure.denied", {"request": req.id}, actor=ctx.actor, at=at)
        return req.id


def cancel(ctx: Context, request_id: str, *, reason: str, at: datetime) -> str:
    """Cancel a request that has not started running; returns its full id."""
    with ctx.sessions.begin() as session:
        req = find_request(session, request_id)
        if req.state not in ("planned", "approved"):
            raise ErasureBlocked(f"erasure {req.id} is {req.state}: it can no longer be cancelled")
        if req.scope_kind == "source" and req.state == "approved":
            session.execute(update(Source).where(Source.id == int(req.plan["key"])).values(state="active"))
        req.state = "cancelled"
        req.updated_at = at
        drop_samples(ctx, req.id)
        audit.append(
            session, "erasure.cancelled", {"request": req.id, "reason": reason}, actor=ctx.actor, at=at
        )
        return req.id


def replan(session: Session, req: ErasureRequest) -> dict[str, Any]:
    """Plan again at approval (the scope may have changed), keeping the request's key."""
    key = req.plan["key"]
    req_state, req.state = req.state, "draft"  # do not count this request as a running one
    session.flush()
    try:
        new_plan = make_plan(session, req.scope_kind, key, req.scope_ref, req.plan.get("set"))
    finally:
        req.state = req_state
    new_plan["key"] = key
    return new_plan
