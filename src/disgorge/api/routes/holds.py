"""Legal holds: place, list, release.

A hold keeps a subject's, a source's, a dataset's or a model's data despite erasures
(:mod:`disgorge.dsr.holds`). The subject is named by its external id in the body, never in
a URL; answers show it by its ``sub_`` ref. Reading holds needs ``erasure:read``; placing
and releasing one, ``erasure:approve`` (a privacy officer's decision). Releasing a hold
answers with the follow-up erasures it started, queued for the server's job runner.
"""

from typing import Literal

from fastapi import Request
from pydantic import BaseModel, Field

from ...dsr import holds as service
from ...dsr.holds import HoldReleased, HoldView
from ..deps import Ctx, Limit, Offset, Page, page, start_job
from ..table import Resource

__all__ = ["resource"]

resource = Resource("holds", "Legal holds: what erasures must leave withheld, and why.")


class NewHold(BaseModel):
    kind: Literal["subject", "source", "dataset", "model"]
    #: a person's external id (or sub_ ref), a source's, a dataset's or a model's name
    name: str = Field(min_length=1, max_length=512)
    #: goes on erasure certificates: name the matter, never a person
    reason: str = Field(min_length=10, max_length=2000)


class Release(BaseModel):
    reason: str = Field(min_length=10, max_length=2000)


@resource.post(
    "/v1/holds",
    scope="erasure:approve",
    summary="Place a legal hold: erasures approved from now on leave what it keeps withheld",
    status_code=201,
    response_model=HoldView,
)
def add_hold(ctx: Ctx, body: NewHold) -> HoldView:
    return service.add_hold(ctx, body.kind, body.name, reason=body.reason)


@resource.get(
    "/v1/holds",
    scope="erasure:read",
    summary="Legal holds, oldest first",
    response_model=Page[HoldView],
)
def list_holds(ctx: Ctx, active: bool = False, limit: Limit = 100, offset: Offset = 0) -> dict[str, object]:
    return page(service.list_holds(ctx, active_only=active), limit, offset)


@resource.post(
    "/v1/holds/{hold_id}/release",
    scope="erasure:approve",
    summary="Release a hold; the erasures it held back are finished in the background",
    response_model=HoldReleased,
    errors={400: "The hold was released already"},
)
def release(request: Request, ctx: Ctx, hold_id: str, body: Release) -> HoldReleased:
    result = service.release_hold(ctx, hold_id, reason=body.reason, run=False)
    for erasure in result["erasures"]:
        start_job(request, ctx, "erasure", {"request": erasure["id"]})
    return result
