"""The erasure service: what the CLI, the HTTP API, the web UI and the Python API call.

Each function takes the workspace's :class:`~disgorge.context.Context` first and the same
parameters as the :class:`~disgorge.Workspace` method of the same job (``erase``,
``erasure_approve``, ``erasure_resume``...), which is a one-line call into it. The work is
done by the modules below, one job each:

- :mod:`.requests`: a request's lifecycle before it runs (create, approve, cancel);
- :mod:`.runner` and :mod:`.journal`: claiming a request and running its steps in order,
  resumable after a crash at any point;
- :mod:`.steps`: the steps, in order, and the fault-injection hook;
- :mod:`.samples`, :mod:`.verifier`, :mod:`.certify`: what the verifier looks for, the
  verification, the signed certificate;
- :mod:`.views`: what a request shows.

Sharing's inbox erases through here too, for a sender's request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from typing_extensions import TypedDict

from .. import audit
from .._time import utcnow
from ..context import Context, when
from ..errors import InvalidInput
from ..sharing import outbox
from ..signing import SignedDocument
from . import requests, runner, verifier, views
from ._step import Execution
from .forensics import MIN_NEEDLE_BYTES
from .journal import find_request
from .plan import PlanSummary, summarize
from .verifier import Reverification
from .views import ErasureListed, ErasureView

__all__ = [
    "AckResult",
    "ErasureListed",
    "ErasureView",
    "PlanSummary",
    "Reverification",
    "ack",
    "approve",
    "cancel",
    "certificate",
    "close_recipient",
    "deny",
    "erase",
    "erase_set",
    "interrupted",
    "list_requests",
    "plan",
    "request_document",
    "resume",
    "reverify",
    "show",
]


class AckResult(TypedDict):
    """A recipient's answer imported by hand, and where its erasure stands after it."""

    request: str
    nonce: str
    state: str
    erasure: ErasureView


def plan(ctx: Context, kind: str, ident: str) -> PlanSummary:
    """The dry run: what erasing this scope would touch, with counts per kind."""
    return summarize(requests.plan(ctx, kind, ident))


def erase(
    ctx: Context,
    kind: str,
    ident: str,
    *,
    reason: str,
    execute: bool = True,
    at: str | datetime | None = None,
    wait: float = 30.0,
    deadline_days: float = 30.0,
) -> ErasureView:
    """Erase a subject, a photo (sha256), a source, a model or a transfer, and everything derived.

    Plans, approves and (with ``execute``) runs the erasure to its certificate. Without
    ``execute`` the request stays ``planned`` until :func:`approve`. Photos that went to
    recipients are erased there too: each gets a signed request (deadline in
    ``deadline_days``); the request waits up to ``wait`` seconds for their certificates,
    then rests in ``awaiting_recipients`` until :func:`resume` or an :func:`ack`.
    """
    instant = when(at)
    # an external id is a needle only when long enough not to turn up by chance in
    # megabytes of ciphertext and SQLite pages ("ann" would); the catalog never holds it
    # anyway, only its keyed ref
    needles = (
        {"external-id": ident.encode()}
        if kind == "subject" and not ident.startswith("sub_") and len(ident.encode()) >= MIN_NEEDLE_BYTES
        else {}
    )
    request_id = requests.create(ctx, kind, ident, reason=reason, at=instant, needles=needles)
    if not execute or requests.approve(ctx, request_id, at=instant) is None:
        return views.show(ctx, request_id)  # planned: waits for approval (the two-person rule)
    return _run(Execution(ctx, wait=wait, deadline_days=deadline_days), request_id)


def erase_set(
    ctx: Context,
    ref: str,
    members: dict[str, Any],
    *,
    reason: str,
    at: str | datetime | None = None,
    run: bool = True,
    wait: float = 30.0,
) -> ErasureView:
    """Erase a set of photos (and subjects, models) whose erasure was decided elsewhere: a
    retention rule, the erasure a released legal hold held back, a restored backup's replay.

    ``ref`` names the set (``retention:…``, ``release:…``, ``restore:…``); ``members`` holds
    ``assets``, ``subjects`` and ``models`` (catalog ids) and ``why``. It is approved by the
    workspace at once, not by the two-person rule: the decision was made where the set came
    from (the rule an administrator set, the erasure approved before, the erasure the ledger
    records). Without ``run`` it waits, approved, for the API's job runner.
    """
    instant = when(at)
    owner = ctx.acting_as(ctx.actor)  # no principal: the workspace's own decision
    request_id = requests.create(owner, "set", ref, reason=reason, at=instant, needles={}, members=members)
    requests.approve(owner, request_id, at=instant)
    if not run:
        return views.show(ctx, request_id)
    return _run(Execution(owner, wait=wait), request_id)


def approve(
    ctx: Context,
    request_id: str,
    *,
    at: str | datetime | None = None,
    wait: float = 30.0,
    reason: str = "",
    run: bool = True,
) -> ErasureView:
    """Approve a planned request and (with ``run``) run it; over the API, a request that
    the two-person rule covers records this approval and is approved once enough others
    have. Without ``run`` the approved request waits for :func:`resume` (the API's job
    runner)."""
    approved = requests.approve(ctx, request_id, at=when(at), reason=reason)
    if approved is None or not run:
        return views.show(ctx, request_id)
    return _run(Execution(ctx, wait=wait), approved)


def deny(ctx: Context, request_id: str, *, reason: str, at: str | datetime | None = None) -> ErasureView:
    """Deny a planned request: it ends, whatever approvals it had."""
    return views.show(ctx, requests.deny(ctx, request_id, reason=reason, at=when(at)))


def resume(ctx: Context, request_id: str, *, wait: float = 30.0) -> ErasureView:
    """Run an interrupted erasure to its end (every step is idempotent); for one awaiting
    recipients, deliver and poll again for up to ``wait`` seconds."""
    return _run(Execution(ctx, wait=wait), request_id)


def _run(execution: Execution, request_id: str) -> ErasureView:
    return views.show(execution.ctx, runner.run(execution, request_id))


def ack(ctx: Context, document: dict[str, Any], *, wait: float = 0.0) -> AckResult:
    """Import a recipient's signed answer delivered by hand, then go on with its erasure."""
    result = outbox.import_response(ctx, document)
    view = views.show(ctx, result["request"])
    if view["state"] == "awaiting_recipients":
        view = resume(ctx, result["request"], wait=wait)
    return {"request": result["request"], "nonce": result["nonce"], "state": result["state"], "erasure": view}


def close_recipient(ctx: Context, request_id: str, recipient: str, *, reason: str) -> outbox.NoticeClosed:
    """Close a recipient's part by hand (it never answered, or answered on paper), with a reason."""
    with ctx.reader() as session:
        request_id = find_request(session, request_id).id
    return outbox.close_notice(ctx, request_id, recipient, reason)


def request_document(ctx: Context, request_id: str, recipient: str) -> SignedDocument:
    """The signed request to a recipient without an endpoint, to deliver by hand."""
    with ctx.reader() as session:
        notice = outbox.find_notice(session, find_request(session, request_id).id, recipient)
    return outbox.request_document(ctx, notice)


def cancel(ctx: Context, request_id: str, *, reason: str = "cancelled") -> ErasureView:
    """Cancel a request that has not started running."""
    return views.show(ctx, requests.cancel(ctx, request_id, reason=reason, at=utcnow()))


def list_requests(ctx: Context) -> list[ErasureListed]:
    """Every erasure request, oldest first."""
    return views.list_requests(ctx)


def show(ctx: Context, request_id: str) -> ErasureView:
    """One request: its plan, steps, verification and recipients."""
    return views.show(ctx, request_id)


def interrupted(ctx: Context) -> list[str]:
    """Ids of the requests a run was interrupted in."""
    return views.interrupted(ctx)


def certificate(ctx: Context, request_id: str) -> SignedDocument:
    """The signed certificate of a completed request."""
    return views.certificate(ctx, request_id)


def reverify(ctx: Context, request_id: str) -> Reverification:
    """Check a completed erasure again: its tombstones, shredded keys and re-ingestion
    fingerprints in the catalog, and that no active model uses its photos. The forensic
    scan is not repeated (its byte samples were destroyed at completion); the result says
    so and quotes the scan made then (:func:`disgorge.erasure.verifier.reverify`)."""
    with ctx.reader() as session:
        req = find_request(session, request_id)
        if req.state != "completed":
            raise InvalidInput(f"erasure {req.id} is {req.state}; verify runs on completed erasures")
    result = verifier.reverify(ctx, req)
    with ctx.sessions.begin() as session:
        audit.append(session, "erasure.reverified", {"request": req.id, "ok": result["ok"]}, actor=ctx.actor)
    return result
