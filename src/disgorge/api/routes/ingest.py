"""Uploads and ingest: photos reach the workspace over the API.

A client uploads an archive (``.zip``/``.tar``/``.tar.gz``) or a manifest CSV as the raw
body of ``POST /v1/uploads`` (size-limited like every body), then names the uploads in
``POST /v1/ingest``, which queues an ``ingest`` job (``202``; progress in
``GET /v1/jobs/{id}``). The job runs the same ingest as the CLI (every safety check:
decoding limits, path traversal, bombs, sticky erasure) and discards the uploads when it
ends. Its result keeps counts and refusal reasons, never the archive's file names (they
may name people, and jobs are catalog rows).
"""

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ... import uploads
from ...context import Context
from ...ingest import service as ingest_service
from ...jobs import JobView
from ...sharing.limits import Refused
from ...uploads import UploadView
from ..deps import Ctx, start_job
from ..jobs import KINDS
from ..table import Resource

__all__ = ["resource"]

resource = Resource("ingest", "Uploads, and ingesting them as photos of a source.")


class IngestRequest(BaseModel):
    source: str = Field(min_length=1, max_length=200)
    #: the upload holding the photos (a .zip, .tar or .tar.gz)
    archive: str = Field(min_length=1, max_length=64)
    #: an upload holding a manifest CSV (path,subject[,depicted...]) for the archive's members
    manifest: str | None = Field(default=None, max_length=64)
    #: take each photo's subject from its folder name (``dirname``) when there is no manifest
    subject_from: str | None = Field(default=None, max_length=32)
    #: when the photos were collected (backfills); now when absent
    at: str | None = Field(default=None, max_length=64)


def _ingest_job(
    ctx: Context, params: dict[str, Any], progress: Callable[[int, int | None], None]
) -> dict[str, Any]:
    used = [params["archive"], *([params["manifest"]] if params.get("manifest") else [])]
    try:
        report = ingest_service.ingest(
            ctx,
            uploads.as_archive(ctx, params["archive"]),
            source=params["source"],
            manifest=uploads.path_of(ctx, params["manifest"]) if params.get("manifest") else None,
            subject_from=params.get("subject_from"),
            at=params.get("at"),
            workers=1,
            progress=lambda done, total: progress(done, total),
        )
    finally:
        for upload in used:
            uploads.discard(ctx, upload)
    return {
        "source": report.source,
        "files": report.files,
        "ingested": report.ingested,
        "duplicates": report.duplicates,
        "provenances_added": report.provenances_added,
        "subjects_created": report.subjects_created,
        "rejected": len(report.rejected),
        "rejected_by_reason": dict(Counter(r.reason for r in report.rejected)),
    }


KINDS["ingest"] = _ingest_job


@resource.post(
    "/v1/uploads",
    scope="source:write",
    summary="Upload an archive of photos or a manifest (the raw bytes as the body)",
    status_code=201,
    response_model=UploadView,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
    errors={408: "The body did not arrive in time", 411: "No Content-Length", 413: "The body is too large"},
)
async def upload(request: Request, ctx: Ctx) -> UploadView:
    limits = request.app.state.disgorge.limits
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise Refused(411, "an upload needs a Content-Length")
    if int(declared) > limits.max_body_bytes:
        raise Refused(413, f"the upload is larger than {limits.max_body_bytes} bytes (serve --max-body-mb)")
    writer = await run_in_threadpool(uploads.Writer, ctx, int(declared))
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                writer.write(chunk)
        return await run_in_threadpool(writer.close)
    except TimeoutError:
        writer.abort()
        raise Refused(408, f"the upload did not arrive within {limits.body_timeout_s:.0f} s") from None
    except ClientDisconnect:
        writer.abort()
        raise Refused(400, "the client went away before sending the whole upload") from None
    except BaseException:
        writer.abort()
        raise


@resource.post(
    "/v1/ingest",
    scope="source:write",
    summary="Ingest uploaded photos into a source (a job: 202, then GET /v1/jobs/{id})",
    status_code=202,
    response_model=JobView,
)
def ingest(request: Request, ctx: Ctx, body: IngestRequest) -> JobView:
    uploads.path_of(ctx, body.archive)  # 404 now rather than a failed job later
    if body.manifest:
        uploads.path_of(ctx, body.manifest)
    job: JobView = start_job(request, ctx, "ingest", body.model_dump())
    return job
