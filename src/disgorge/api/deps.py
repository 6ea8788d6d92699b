"""What a route handler is given: the context acting for its principal, pages, the state.

``Ctx`` is the workspace's :class:`~disgorge.context.Context` acting for the authenticated
principal (:meth:`~disgorge.context.Context.acting_as`): every write a handler makes is
audited with that principal's name, and the erasure service applies the two-person rule
to it.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from ..access.roles import Principal
from ..context import Context

__all__ = ["Ctx", "Limit", "Offset", "Page", "Who", "page", "page_of", "start_job"]

T = TypeVar("T")


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def _context(request: Request) -> Context:
    principal = _principal(request)
    ctx: Context = request.app.state.disgorge.ctx
    return ctx.acting_as(principal.name, principal)


Ctx = Annotated[Context, Depends(_context)]
Who = Annotated[Principal, Depends(_principal)]
Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]
#: bounded so that a database pages with it (SQLite's integers are 64-bit)
Offset = Annotated[int, Query(ge=0, le=2**53 - 1, description="items to skip")]


class Page(BaseModel, Generic[T]):
    """One page of a list: every list endpoint answers this shape."""

    items: list[T]
    #: how many items match in all
    total: int
    limit: int
    offset: int
    #: the ``offset`` of the next page, or null on the last one
    next_offset: int | None


def page(items: Sequence[Any], limit: int, offset: int) -> dict[str, Any]:
    """Slice ``items`` into a :class:`Page`."""
    return page_of(list(items[offset : offset + limit]), len(items), limit, offset)


def page_of(chunk: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    """A :class:`Page` of one chunk a service already cut (in SQL), ``total`` matching in all."""
    after = offset + len(chunk)
    return {
        "items": chunk,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": after if after < total else None,
    }


def start_job(request: Request, ctx: Context, kind: str, params: dict[str, Any]) -> Any:
    """Queue a job for the server's runner (:mod:`.jobs`) and wake it; its view."""
    from .. import jobs

    job = jobs.submit(ctx, kind, params)
    runner = request.app.state.disgorge.jobs
    if runner is not None:
        runner.wake()
    return job


def zip_download(ctx: Context, write: Callable[[Path], object]) -> FileResponse:
    """Answer with a zip that ``write(path)`` makes: written to a private temporary file
    outside the workspace (it holds photos in clear; :mod:`disgorge.uploads`), streamed,
    then overwritten and unlinked; discarded at once if ``write`` fails."""
    from .. import uploads

    file_id, path = uploads.new_file(ctx)
    try:
        write(path)
    except BaseException:
        uploads.discard(ctx, file_id)
        raise
    return FileResponse(
        path,
        media_type="application/zip",
        filename="subject-export.zip",
        background=BackgroundTask(uploads.discard, ctx, file_id),
    )
