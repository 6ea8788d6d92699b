"""Data-subject requests as cases: open, list (overdue, due soon), show, extend, verify the
requester's identity, close, and start an erasure case's erasure.

A subject is named by its external id in the body of ``POST /v1/cases``, never in a URL;
every answer shows it by its ``sub_`` ref. Reading cases needs ``subject:read``, changing
them ``erasure:create``. Starting an erasure answers ``202``: it runs in the background
once approved (the two-person rule of :mod:`.erasures` applies).
"""

from typing import Annotated, Literal

from fastapi import Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ...dsr import cases as service
from ...dsr.cases import CaseDetail, CaseErasure, CaseView
from ...erasure import service as erasure_service
from ..deps import Ctx, Limit, Offset, Page, page, start_job, zip_download
from ..table import Resource

__all__ = ["resource"]

resource = Resource(
    "cases", "Data-subject requests as cases: due dates, identity checks, what they produced."
)


class NewCase(BaseModel):
    kind: Literal["access", "erasure", "objection"]
    #: the person's external id (or sub_ ref); only its ref is kept
    subject: str = Field(min_length=1, max_length=512)
    #: when the request was received (ISO 8601)
    received_at: str = Field(min_length=4, max_length=64)
    channel: Literal["email", "portal", "regulator", "post", "phone"]
    #: for an objection: the purpose objected to
    purpose: str | None = Field(default=None, max_length=64)
    jurisdiction: Literal["gdpr", "ccpa"] = "gdpr"
    note: str = Field(default="", max_length=2000)


class Extension(BaseModel):
    #: e.g. "2m" or "45d"
    by: str = Field(min_length=2, max_length=16)
    reason: str = Field(min_length=3, max_length=2000)


class Verification(BaseModel):
    method: str = Field(min_length=3, max_length=200)
    failed: bool = False


class Closing(BaseModel):
    outcome: str = Field(min_length=3, max_length=2000)
    refused: bool = False


class CaseErasureRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=2000)


@resource.post(
    "/v1/cases",
    scope="erasure:create",
    summary="Open a case for a request received at received_at (an objection denies its purpose)",
    status_code=201,
    response_model=CaseDetail,
)
def open_case(ctx: Ctx, body: NewCase) -> CaseDetail:
    return service.open_case(
        ctx,
        body.kind,
        body.subject,
        received_at=body.received_at,
        channel=body.channel,
        purpose=body.purpose,
        jurisdiction=body.jurisdiction,
        note=body.note,
    )


@resource.get(
    "/v1/cases",
    scope="subject:read",
    summary="Cases, soonest due first",
    response_model=Page[CaseView],
)
def list_cases(
    ctx: Ctx,
    status: Literal["open", "completed", "refused"] | None = None,
    kind: Literal["access", "erasure", "objection"] | None = None,
    overdue: bool = False,
    due_within_days: Annotated[int | None, Query(ge=0, le=3650)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    rows = service.list_cases(ctx, status=status, kind=kind, overdue=overdue, due_within=due_within_days)
    return page(rows, limit, offset)


@resource.get(
    "/v1/cases/{case_id}",
    scope="subject:read",
    summary="One case: due date, days left, identity, what it produced",
    response_model=CaseDetail,
)
def show_case(ctx: Ctx, case_id: str) -> CaseDetail:
    return service.show_case(ctx, case_id)


@resource.post(
    "/v1/cases/{case_id}/extend",
    scope="erasure:create",
    summary="Extend the due date once, with a reason",
    response_model=CaseView,
)
def extend(ctx: Ctx, case_id: str, body: Extension) -> CaseView:
    return service.extend_case(ctx, case_id, by=body.by, reason=body.reason)


@resource.post(
    "/v1/cases/{case_id}/verify",
    scope="erasure:create",
    summary="Record the requester's identity verification (or its failure)",
    response_model=CaseView,
)
def verify(ctx: Ctx, case_id: str, body: Verification) -> CaseView:
    return service.verify_identity(ctx, case_id, how=body.method, failed=body.failed)


@resource.post(
    "/v1/cases/{case_id}/close",
    scope="erasure:create",
    summary="Close a case as completed or refused",
    response_model=CaseView,
)
def close(ctx: Ctx, case_id: str, body: Closing) -> CaseView:
    return service.close_case(ctx, case_id, outcome=body.outcome, refused=body.refused)


@resource.post(
    "/v1/cases/{case_id}/erase",
    scope="erasure:create",
    summary="Start an erasure case's erasure (identity verified first); it runs once approved",
    status_code=202,
    response_model=CaseErasure,
    errors={409: "The requester's identity is not verified, or the case already started one"},
)
def erase(request: Request, ctx: Ctx, case_id: str, body: CaseErasureRequest) -> CaseErasure:
    result = service.erase_case(ctx, case_id, reason=body.reason, execute=False)
    view = result["erasure"]
    if view["approvals_required"] == 0 and ctx.principal is not None and ctx.principal.may("erasure:approve"):
        view = erasure_service.approve(ctx, view["id"], reason="requested", run=False)
    if view["state"] == "approved":
        start_job(request, ctx, "erasure", {"request": view["id"]})
    return {"case": result["case"], "erasure": view}


@resource.post(
    "/v1/cases/{case_id}/export",
    scope="asset:bytes",
    summary="Answer an access case (identity verified first): its subject's export as a zip; "
    "the case keeps its sha256",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}},
    errors={409: "The requester's identity is not verified", 422: "The case is not an open access request"},
)
def export(ctx: Ctx, case_id: str) -> FileResponse:
    return zip_download(ctx, lambda path: service.export_case(ctx, case_id, path))
