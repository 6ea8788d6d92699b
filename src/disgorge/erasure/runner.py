"""The runner: claims a request and runs its journal's steps in order, to the end.

States: planned -> approved -> executing -> verifying -> completed (or failed, cancelled;
``awaiting_recipients`` while a recipient has not answered). Each step is idempotent and
is marked done in its own transaction, so a crash (SIGKILL) at any point, between steps or
inside one, resumes to the same end state by running the first step not marked done
(``disgorge erasure resume``; the CLI also resumes an interrupted erasure before any other
command).

A request is claimed while it runs, so two processes never run it at once. The claim
names the process and host: a claim left on this host by a process that no longer runs
is taken over at once (the kernel says so); one from another host expires when its runner
has not marked a step for :data:`CLAIM_TTL`.
"""

from __future__ import annotations

from sqlalchemy import select

from .. import audit
from .._time import utcnow
from ..catalog.models import ErasureRequest, ErasureStep
from ..claims import CLAIM_TTL, claimant_alive, new_claim_id
from ..errors import ErasureBlocked
from ._step import AwaitingRecipients, Execution, fire
from .journal import check_steps, find_request, mark_done
from .removal import refuse_locked_store
from .steps import REGISTRY, STEPS

__all__ = ["CLAIM_TTL", "RUNNABLE_STATES", "claim", "claimant_alive", "new_claim_id", "run"]

#: states a request can be run (or resumed) from
RUNNABLE_STATES = ("approved", "executing", "verifying", "failed", "awaiting_recipients")


def claim(execution: Execution, request_id: str, claim_id: str) -> ErasureRequest:
    """Take the request for this run (a completed or cancelled one is returned as it is)."""
    now = utcnow()
    with execution.ctx.sessions.begin() as session:
        req = find_request(session, request_id)
        if req.state in ("completed", "cancelled"):
            return req
        if req.state not in RUNNABLE_STATES:
            raise ErasureBlocked(f"erasure {req.id} is {req.state}; approve it first")
        check_steps(session, req, STEPS)
        if req.claimed_by not in (None, claim_id) and claimant_alive(req.claimed_by, req.claimed_at, now):
            raise ErasureBlocked(f"erasure {req.id} is being run by another process right now")
        req.claimed_by, req.claimed_at = claim_id, now
        if req.state in ("approved", "failed"):
            req.state = "executing"
            req.error = None
        elif req.state == "awaiting_recipients":
            req.state = "verifying"
        return req


def _refuse_locked_store(execution: Execution, request_id: str) -> None:
    """Before claiming anything: refuse to run a request whose blobs are still to delete
    from a store that cannot delete them (an S3 bucket with Object Lock enabled since the
    request was planned)."""
    with execution.ctx.reader() as session:
        pending = find_request(session, request_id)
        blobs_left = session.scalar(
            select(ErasureStep.seq).where(
                ErasureStep.request_id == pending.id,
                ErasureStep.name == "delete_blobs",
                ErasureStep.done_at.is_(None),
            )
        )
        assets = list(pending.plan["assets"]) if blobs_left is not None else []
    refuse_locked_store(execution.ctx, assets)


def run(execution: Execution, request_id: str) -> str:
    """Run the request's remaining steps; returns its full id.

    It ends ``completed``; or rests in ``awaiting_recipients`` (a recipient has not
    answered yet); or, when a step raises, ``failed`` with the step named, and the error
    goes on to the caller (a run resumed later starts again at that step).
    """
    ctx = execution.ctx
    if not ctx.store.is_local:
        _refuse_locked_store(execution, request_id)
    req = claim(execution, request_id, new_claim_id())
    rid = req.id
    if req.state in ("completed", "cancelled"):
        return rid
    while True:
        with ctx.reader() as session:
            row = session.scalar(
                select(ErasureStep)
                .where(ErasureStep.request_id == rid, ErasureStep.done_at.is_(None))
                .order_by(ErasureStep.seq)
                .limit(1)
            )
            req = find_request(session, rid)
        if row is None:
            break
        name = row.name
        try:
            fire(name, "before")
            summary = REGISTRY[name].run(execution, req)
            fire(name, "after")
        except AwaitingRecipients:
            with ctx.sessions.begin() as session:
                r = find_request(session, rid)
                r.state = "awaiting_recipients"
                r.claimed_by = None
                r.updated_at = utcnow()
            return rid
        except BaseException as exc:
            if isinstance(exc, Exception):
                with ctx.sessions.begin() as session:
                    r = find_request(session, rid)
                    r.state = "failed"
                    r.error = f"step {name}: {exc}"
                    r.claimed_by = None
                    audit.append(session, "erasure.failed", {"request": rid, "step": name}, actor=ctx.actor)
            raise
        with ctx.sessions.begin() as session:
            mark_done(session, rid, name, summary)
        fire(name, "marked")
    with ctx.sessions.begin() as session:
        r = find_request(session, rid)
        r.state = "completed"
        r.claimed_by = None
        r.updated_at = utcnow()
        audit.append(session, "erasure.completed", {"request": rid}, actor=ctx.actor)
    return rid
