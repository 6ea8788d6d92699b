"""The audit log: its events, its verification, signed tree heads and proofs (docs/audit.md).

Events are listed oldest first, filtered and paged by the database, so an offset keeps
naming the same events as the log grows. A checkpoint is a signed tree head to keep
outside the workspace; ``POST /v1/audit/prove`` adds the proofs a third party checks
offline (``disgorge audit check``): that the log extends a head kept before, and that an
event is in it. Signing a checkpoint is itself audited, with the caller's name.
"""

from typing import Annotated, Any, NotRequired

from fastapi import Body, Query
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from ...audit import service
from ...audit.service import AuditEventView, ProofView, TreeHead
from ..deps import Ctx, Limit, Offset, Page, page_of
from ..table import Resource

__all__ = ["resource"]

resource = Resource("audit", "The hash-chained audit log, its signed tree heads and proofs.")

Instant = Annotated[
    str | None,
    Query(max_length=64, description="ISO 8601 date or date-time (UTC unless it names a zone)"),
]


class ChainView(TypedDict):
    """Whether the hash chain holds, and where it breaks if not."""

    ok: bool
    #: events checked (those before the first bad one, if any)
    events: int
    #: the hash of the last event checked
    head: str
    first_bad_seq: int | None
    reason: str | None
    anchor: NotRequired[dict[str, Any]]


class ProofRequest(BaseModel):
    """What to prove: that the log extends a head kept before (``from``), that an event is
    in it (``event``), or neither (a signed head of the log now)."""

    model_config = ConfigDict(populate_by_name=True)

    #: a signed tree head kept from before (a checkpoint, or a certificate's ``audit_tree_head``)
    since: dict[str, Any] | None = Field(default=None, alias="from")
    #: the ``seq`` of an event to prove the inclusion of
    event: int | None = Field(default=None, ge=1)


@resource.get(
    "/v1/audit/events",
    scope="audit:read",
    summary="Audit events, oldest first (filters: action, actor, since <= at < until)",
    response_model=Page[AuditEventView],
)
def list_events(
    ctx: Ctx,
    action: Annotated[str | None, Query(max_length=64, description="e.g. recipient.added")] = None,
    actor: Annotated[str | None, Query(max_length=128, description="the principal's name")] = None,
    since: Instant = None,
    until: Instant = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    found = service.find_events(
        ctx, action=action, actor=actor, since=since, until=until, limit=limit, offset=offset
    )
    return page_of(found["items"], found["total"], limit, offset)


@resource.get(
    "/v1/audit/verify",
    scope="audit:read",
    summary="Check the whole hash chain (ok false names the first bad event)",
    response_model=ChainView,
)
def verify(ctx: Ctx) -> dict[str, Any]:
    return service.verify_chain(ctx).to_dict()


@resource.post(
    "/v1/audit/checkpoints",
    scope="audit:write",
    summary="Sign a tree head of the log as it stands (keep it outside the workspace)",
    status_code=201,
    response_model=TreeHead,
)
def checkpoint(ctx: Ctx) -> TreeHead:
    return service.checkpoint(ctx, audited=True)


@resource.post(
    "/v1/audit/prove",
    scope="audit:read",
    summary="A signed head now, with the consistency proof from a kept head and/or an event's inclusion",
    response_model=ProofView,
    errors={409: "The log no longer extends the given head (events were removed)"},
)
def prove(ctx: Ctx, body: Annotated[ProofRequest, Body()] = ProofRequest()) -> ProofView:
    since = body.since
    if since is not None and isinstance(since.get("audit_tree_head"), dict):
        since = since["audit_tree_head"]  # a certificate's body or a whole answer: its witness
    return service.prove(ctx, since=since, event=body.event)
