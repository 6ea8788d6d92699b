"""Long-running jobs (analysis, training, unlearning, erasures) and their progress.

A ``202`` answers with a job; poll ``GET /v1/jobs/{id}`` until its ``state`` is
``succeeded`` (its ``result``) or ``failed`` (its ``error``). ``done`` of ``total`` is its
progress (``total`` is null until known). What happens to a job a server's stop cut off
depends on its kind: see :mod:`disgorge.api.jobs`.
"""

from typing import Annotated, Literal

from fastapi import Path, Query

from ... import jobs
from ...jobs import JobView
from ..deps import Ctx, Limit, Offset, Page, page
from ..table import Resource

__all__ = ["resource"]

resource = Resource("jobs", "Long-running work started over the API, and its progress.")

JobState = Literal["queued", "running", "succeeded", "failed"]


@resource.get("/v1/jobs", scope="job:read", summary="Jobs, newest first", response_model=Page[JobView])
def list_jobs(
    ctx: Ctx,
    state: JobState | None = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    rows = [j for j in jobs.list_jobs(ctx, state=state) if kind is None or j["kind"] == kind]
    return page(rows, limit, offset)


@resource.get(
    "/v1/jobs/{job_id}",
    scope="job:read",
    summary="One job: its state, progress, and result or error",
    response_model=JobView,
)
def show(ctx: Ctx, job_id: Annotated[str, Path(max_length=64)]) -> JobView:
    return jobs.show(ctx, job_id)
