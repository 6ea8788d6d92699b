"""Erasure requests: plan (dry run), create, approve, deny, resume, cancel, show; certificates.

An erasure runs in the background (the job runner, :mod:`..jobs`): creating or approving
answers ``202`` with the request, whose ``steps`` show its progress. The two-person rule
(:mod:`disgorge.erasure.approvals`) decides whether the requester's own approval is
enough; ``approvals`` and ``approvals_required`` say who decided and how many more are
needed. A subject is named by its external id in the body, never in a URL.
"""

from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from ...erasure import service
from ...erasure.service import ErasureListed, ErasureView, PlanSummary, Reverification
from ...signing import verify_certificate
from ..deps import Ctx, Limit, Offset, Page, page, start_job
from ..table import Resource

__all__ = ["resource"]

resource = Resource("erasures", "This workspace's erasure requests, their approvals and certificates.")

ScopeKind = Literal["subject", "photo", "source", "model", "transfer"]


class Scope(BaseModel):
    kind: ScopeKind
    #: a subject's external id or sub_ ref, a photo's sha256, a source's name, a model's
    #: name or id, a transfer's id
    id: str = Field(min_length=1, max_length=512)


class NewErasure(Scope):
    reason: str = Field(min_length=3, max_length=2000)
    #: days a recipient has to answer the request sent to it
    deadline_days: float = Field(default=30.0, gt=0, le=365)


class Decision(BaseModel):
    reason: str = Field(default="", max_length=2000)


class Denial(BaseModel):
    reason: str = Field(min_length=3, max_length=2000)


class CertificateToCheck(BaseModel):
    certificate: dict[str, Any]
    #: PEM or hex of the key to check with; this workspace's when absent
    public_key: str | None = Field(default=None, max_length=4000)


class CertificateCheckView(TypedDict):
    ok: bool
    reason: str
    where: str | None


_KIND = {"photo": "asset"}  # the services' name for a photo scope


def _submit_if_approved(request: Request, ctx: Ctx, view: ErasureView) -> ErasureView:
    if view["state"] == "approved":
        start_job(request, ctx, "erasure", {"request": view["id"]})
    return view


@resource.post(
    "/v1/erasures/plan",
    scope="erasure:create",
    summary="Dry run: what erasing a scope would touch",
    response_model=PlanSummary,
    errors={409: "An erasure of this scope is already planned or running"},
)
def plan(ctx: Ctx, body: Scope) -> PlanSummary:
    return service.plan(ctx, _KIND.get(body.kind, body.kind), body.id)


@resource.post(
    "/v1/erasures",
    scope="erasure:create",
    summary="Request an erasure (runs once approved; the two-person rule may need others)",
    status_code=202,
    response_model=ErasureView,
    errors={409: "An erasure of this scope is already planned or running"},
)
def create(request: Request, ctx: Ctx, body: NewErasure) -> ErasureView:
    view = service.erase(
        ctx,
        _KIND.get(body.kind, body.kind),
        body.id,
        reason=body.reason,
        execute=False,
        deadline_days=body.deadline_days,
    )
    if view["approvals_required"] == 0 and ctx.principal is not None and ctx.principal.may("erasure:approve"):
        view = service.approve(ctx, view["id"], reason="requested", run=False)
    return _submit_if_approved(request, ctx, view)


@resource.get(
    "/v1/erasures",
    scope="erasure:read",
    summary="Erasure requests, oldest first",
    response_model=Page[ErasureListed],
)
def list_erasures(
    ctx: Ctx, state: str | None = None, kind: str | None = None, limit: Limit = 100, offset: Offset = 0
) -> dict[str, object]:
    rows = [
        r
        for r in service.list_requests(ctx)
        if (state is None or r["state"] == state)
        and (kind is None or r["scope"]["kind"] == _KIND.get(kind, kind))
    ]
    return page(rows, limit, offset)


@resource.get(
    "/v1/erasures/{request_id}",
    scope="erasure:read",
    summary="One request: plan, approvals, steps, verification, recipients",
    response_model=ErasureView,
)
def show(ctx: Ctx, request_id: str) -> ErasureView:
    return service.show(ctx, request_id)


@resource.post(
    "/v1/erasures/{request_id}/approve",
    scope="erasure:approve",
    summary="Approve a planned request (it runs once the approvals it needs are in)",
    status_code=202,
    response_model=ErasureView,
    errors={409: "The request is not planned"},
)
def approve(request: Request, ctx: Ctx, request_id: str, body: Decision) -> ErasureView:
    return _submit_if_approved(request, ctx, service.approve(ctx, request_id, reason=body.reason, run=False))


@resource.post(
    "/v1/erasures/{request_id}/deny",
    scope="erasure:approve",
    summary="Deny a planned request (it ends)",
    response_model=ErasureView,
    errors={409: "The request is not planned"},
)
def deny(ctx: Ctx, request_id: str, body: Denial) -> ErasureView:
    return service.deny(ctx, request_id, reason=body.reason)


@resource.post(
    "/v1/erasures/{request_id}/resume",
    scope="erasure:approve",
    summary="Run an interrupted or waiting erasure again (in the background)",
    status_code=202,
    response_model=ErasureView,
    errors={409: "The request is not approved, interrupted or awaiting recipients"},
)
def resume(request: Request, ctx: Ctx, request_id: str) -> ErasureView:
    view = service.show(ctx, request_id)
    if view["state"] in ("planned", "cancelled", "denied", "completed"):
        from ...errors import ErasureBlocked

        raise ErasureBlocked(f"erasure {view['id']} is {view['state']}: nothing to resume")
    start_job(request, ctx, "erasure", {"request": view["id"]})
    return view


@resource.post(
    "/v1/erasures/{request_id}/cancel",
    scope="erasure:approve",
    summary="Cancel a request that has not started running",
    response_model=ErasureView,
    errors={409: "The request already runs"},
)
def cancel(ctx: Ctx, request_id: str, body: Denial) -> ErasureView:
    return service.cancel(ctx, request_id, reason=body.reason)


@resource.get(
    "/v1/erasures/{request_id}/certificate",
    scope="certificate:read",
    summary="The signed certificate of a completed erasure",
    response_model=dict[str, Any],
)
def certificate(ctx: Ctx, request_id: str) -> dict[str, Any]:
    return service.certificate(ctx, request_id)


@resource.post(
    "/v1/erasures/{request_id}/verify",
    scope="certificate:read",
    summary="Check a completed erasure again (tombstones, shredded keys, models)",
    response_model=Reverification,
    errors={422: "The request is not completed"},
)
def reverify(ctx: Ctx, request_id: str) -> Reverification:
    return service.reverify(ctx, request_id)


@resource.post(
    "/v1/certificates/verify",
    scope="certificate:read",
    summary="Verify a certificate's signature and Merkle root (this workspace's key by default)",
    response_model=CertificateCheckView,
)
def verify(ctx: Ctx, body: CertificateToCheck) -> CertificateCheckView:
    key = body.public_key.encode() if body.public_key else ctx.public_key_pem()
    check = verify_certificate(body.certificate, key)
    return {"ok": check.ok, "reason": check.reason, "where": check.where}
