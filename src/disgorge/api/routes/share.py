"""Sending and receiving photos between organisations over the API.

``POST /v1/transfers`` shares a dataset version with a registered recipient through the
consent gate: as a signed bundle (downloaded once from ``GET /v1/files/{id}``, then wiped)
or, for a transfer that happened before disgorge, as a backfilled record (no bundle,
``at`` in the past, an ``override`` where the gate would have refused). ``POST
/v1/bundles`` receives a bundle a sender signed (uploaded first to ``POST /v1/uploads``);
``POST /v1/transfers/legacy`` records that a source's photos came from a sender.
"""

from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from ... import uploads
from ...sharing import receive, share
from ...sharing.receive import BundleReceived, LegacyTransfer
from ...sharing.share import ShareReport
from ..deps import Ctx
from ..table import Resource

__all__ = ["resource"]

resource = Resource("send-receive", "Sending a dataset to a recipient, and receiving what a sender sent.")


class Override(BaseModel):
    #: the legal basis (e.g. ``legal``, ``contract``)
    basis: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=3, max_length=2000)


class ShareRequest(BaseModel):
    #: a dataset version, ``name@version`` or ``name`` (its latest)
    dataset: str = Field(min_length=1, max_length=200)
    to: str = Field(min_length=1, max_length=200)
    purposes: list[str] = Field(min_length=1, max_length=20)
    #: write a signed bundle to download (false: record a transfer that already happened)
    bundle: bool = True
    at: str | None = Field(default=None, max_length=64)
    override: Override | None = None
    keep_metadata: bool = False


class Shared(ShareReport):
    #: the bundle to download once from GET /v1/files/{id} (null without a bundle)
    download: str | None


class BundleUpload(BaseModel):
    upload: str = Field(min_length=1, max_length=64)
    at: str | None = Field(default=None, max_length=64)


class LegacyRequest(BaseModel):
    sender: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=200)
    at: str | None = Field(default=None, max_length=64)


@resource.post(
    "/v1/transfers",
    scope="sharing:write",
    summary="Share a dataset version with a recipient, through the consent gate",
    status_code=201,
    response_model=Shared,
    errors={403: "Consent does not cover the purposes (and no override), or the role lacks sharing:write"},
)
def create_transfer(ctx: Ctx, body: ShareRequest) -> Shared:
    download, out = uploads.new_file(ctx) if body.bundle else (None, None)
    override = (body.override.basis, body.override.reason) if body.override else None
    try:
        report = share.share(
            ctx,
            body.dataset,
            to=body.to,
            purposes=body.purposes,
            out=out,
            at=body.at,
            override=override,
            keep_metadata=body.keep_metadata,
        )
    except BaseException:
        if download is not None:
            uploads.discard(ctx, download)
        raise
    return {**report, "bundle": None, "download": download}


@resource.get(
    "/v1/files/{file_id}",
    scope="sharing:write",
    summary="Download a file the server wrote for you (a bundle), once: it is wiped after",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}},
)
def download(ctx: Ctx, file_id: str) -> FileResponse:
    path = uploads.path_of(ctx, file_id)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{file_id}.zip",
        background=BackgroundTask(uploads.discard, ctx, file_id),
    )


@resource.post(
    "/v1/bundles",
    scope="sharing:write",
    summary="Receive a bundle a registered sender signed (uploaded to POST /v1/uploads first)",
    status_code=201,
    response_model=BundleReceived,
)
def receive_bundle(ctx: Ctx, body: BundleUpload) -> BundleReceived:
    path = uploads.path_of(ctx, body.upload)
    try:
        return receive.receive_bundle(ctx, path, at=body.at)
    finally:
        uploads.discard(ctx, body.upload)


@resource.post(
    "/v1/transfers/legacy",
    scope="sharing:write",
    summary="Record that a source's photos came from a sender before bundles (a legacy transfer)",
    status_code=201,
    response_model=LegacyTransfer,
)
def receive_legacy(ctx: Ctx, body: LegacyRequest) -> LegacyTransfer:
    return receive.receive_legacy(ctx, body.sender, source=body.source, at=body.at)
