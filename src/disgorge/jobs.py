"""Long-running operations started over the API: a row per job, with its progress.

The catalog is the queue (as for the inbox's requests): a job is a committed ``jobs`` row
before the API answers ``202``, a runner claims it (``queued`` -> ``running``) in one
writer transaction, reports progress as it goes, and records its result or its error.
A job is claimed by the process running it (:mod:`disgorge.claims`); one left
``running`` by a process that no longer runs was cut off by a crash, and any runner (the
next server, or another one on the same workspace) deals with it: by its kind, it is
marked ``failed`` with a message saying so (training: running it twice would make two
versions) or queued again (an erasure resumes from its journal; an analysis or an
unlearning is idempotent), see :mod:`disgorge.api.jobs`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from typing_extensions import TypedDict

from . import audit
from ._time import iso, utcnow
from .catalog.api_models import Job
from .claims import claimant_alive
from .context import Context
from .errors import NotFound

__all__ = ["JobView", "claim_next", "finish", "list_jobs", "recover", "report", "show", "submit"]


class JobView(TypedDict):
    id: str
    kind: str
    #: queued, running, succeeded or failed
    state: str
    params: dict[str, Any]
    done: int
    total: int | None
    result: dict[str, Any] | None
    error: str | None
    created_at: str
    updated_at: str


def _view(row: Job) -> JobView:
    return {
        "id": row.id,
        "kind": row.kind,
        "state": row.state,
        "params": dict(row.params or {}),
        "done": row.done,
        "total": row.total,
        "result": row.result,
        "error": row.error,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def submit(ctx: Context, kind: str, params: dict[str, Any]) -> JobView:
    """Queue a job for the runner (audited with the actor)."""
    now = utcnow()
    with ctx.sessions.begin() as session:
        row = Job(
            id=uuid.uuid4().hex,
            kind=kind,
            state="queued",
            params=params,
            done=0,
            principal_id=ctx.principal.id if ctx.principal is not None else None,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        audit.append(session, "job.submitted", {"job": row.id, "kind": kind}, actor=ctx.actor, at=now)
        return _view(row)


def show(ctx: Context, job_id: str) -> JobView:
    with ctx.reader() as session:
        row = session.get(Job, job_id)
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        return _view(row)


def list_jobs(ctx: Context, *, state: str | None = None) -> list[JobView]:
    """Jobs, newest first (optionally in one state)."""
    with ctx.reader() as session:
        query = select(Job).order_by(Job.created_at.desc(), Job.id)
        if state is not None:
            query = query.where(Job.state == state)
        return [_view(row) for row in session.execute(query).scalars()]


def claim_next(ctx: Context, claim_id: str) -> tuple[JobView, str | None] | None:
    """Take the oldest queued job (``running``, claimed by ``claim_id``, see
    :mod:`disgorge.claims`); with the id of the principal who asked."""
    with ctx.sessions.begin() as session:
        row = session.execute(
            select(Job).where(Job.state == "queued").order_by(Job.created_at, Job.id).limit(1)
        ).scalar_one_or_none()
        if row is None:
            return None
        row.state, row.claimed_by, row.updated_at = "running", claim_id, utcnow()
        return _view(row), row.principal_id


def report(ctx: Context, job_id: str, done: int, total: int | None) -> None:
    """Record progress (``done`` of ``total``)."""
    with ctx.sessions.begin() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(done=done, total=total, updated_at=utcnow())
        )


def finish(
    ctx: Context, job_id: str, *, result: dict[str, Any] | None = None, error: str | None = None
) -> None:
    """Record the end of a job: its result, or its error (a message without personal data)."""
    now = utcnow()
    state = "failed" if error is not None else "succeeded"
    with ctx.sessions.begin() as session:
        row = session.get(Job, job_id)
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        row.state, row.result, row.error, row.updated_at = state, result, error, now
        row.claimed_by = None
        if state == "succeeded" and row.total is not None:
            row.done = row.total  # finished is all done, whatever the last report said
        audit.append(session, f"job.{state}", {"job": job_id}, actor=ctx.actor, at=now)


def recover(ctx: Context, not_resumable: set[str]) -> list[tuple[JobView, bool]]:
    """Jobs left ``running`` by a process that no longer runs (a crash, a SIGKILL): those of
    a kind in ``not_resumable`` are marked failed, the others go back to the queue. A job
    another live server is running is left alone. Returns each with whether it was
    queued again."""
    now = utcnow()
    found: list[tuple[JobView, bool]] = []
    with ctx.sessions.begin() as session:
        rows = session.execute(select(Job).where(Job.state == "running")).scalars().all()
        for row in rows:
            if row.claimed_by and claimant_alive(row.claimed_by, row.updated_at, now):
                continue
            again = row.kind not in not_resumable
            if again:
                row.state = "queued"
            else:
                row.state, row.error = "failed", "the server stopped while this job ran; start it again"
            row.claimed_by, row.updated_at = None, now
            found.append((_view(row), again))
    return found
