"""Retention schedules: the rules, what they have expired, and the run that erases it.

A rule keeps a source's or a dataset's photos so many days after their ingest
(:mod:`disgorge.dsr.retention`). Setting or clearing one needs ``settings:write`` (an
administrator's decision: the runs it causes are approved by the workspace, not by the
two-person rule); reading them, ``erasure:read``; starting a run, ``erasure:approve``.
A run answers at once (202) with the erasure it queued for the server's job runner, one
erasure and one certificate for everything expired; a scheduler may call it daily.
"""

from typing import Literal

from fastapi import Request
from pydantic import BaseModel, Field

from ...dsr import retention as service
from ...dsr.retention import MAX_DAYS, RetentionDue, RetentionRun, RuleView
from ..deps import Ctx, Limit, Offset, Page, page, start_job
from ..table import Resource

__all__ = ["resource"]

resource = Resource("retention", "Retention schedules: how long photos are kept, and erasing what expired.")

Kind = Literal["source", "dataset"]


class NewRule(BaseModel):
    #: days the photos are kept after their ingest
    days: int = Field(ge=1, le=MAX_DAYS)


class RunRequest(BaseModel):
    #: plan only: what has expired and the erasure's plan; nothing changes
    dry_run: bool = False


@resource.get(
    "/v1/retention",
    scope="erasure:read",
    summary="Retention rules, sources first, by name",
    response_model=Page[RuleView],
)
def list_rules(ctx: Ctx, limit: Limit = 100, offset: Offset = 0) -> dict[str, object]:
    return page(service.list_retention(ctx), limit, offset)


@resource.get(
    "/v1/retention/due",
    scope="erasure:read",
    summary="What the rules have expired now, per rule (changes nothing)",
    response_model=RetentionDue,
)
def due(ctx: Ctx) -> RetentionDue:
    return service.retention_due(ctx)


@resource.put(
    "/v1/retention/{kind}/{name}",
    scope="settings:write",
    summary="Keep a source's or a dataset's photos so many days after their ingest (audited)",
    response_model=RuleView,
)
def set_rule(ctx: Ctx, kind: Kind, name: str, body: NewRule) -> RuleView:
    return service.set_retention(ctx, kind, name, days=body.days)


@resource.delete(
    "/v1/retention/{kind}/{name}",
    scope="settings:write",
    summary="Remove a retention rule (audited); answers with the rule removed",
    response_model=RuleView,
)
def clear_rule(ctx: Ctx, kind: Kind, name: str) -> RuleView:
    return service.clear_retention(ctx, kind, name)


@resource.post(
    "/v1/retention/run",
    scope="erasure:approve",
    summary="Erase what the rules have expired: one erasure, queued (or a dry run's plan)",
    status_code=202,
    response_model=RetentionRun,
)
def run(request: Request, ctx: Ctx, body: RunRequest) -> RetentionRun:
    result = service.run_retention(ctx, dry_run=body.dry_run, run=False)
    if result["erasure"] is not None:
        start_job(request, ctx, "erasure", {"request": result["erasure"]["id"]})
    return result
