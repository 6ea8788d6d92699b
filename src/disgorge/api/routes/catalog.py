"""Sources and their policy versions, consent, subjects and assets (photos).

A subject is looked up by external id in a POST body (``/v1/subjects/lookup``) and shown
by its ``sub_`` ref; an external id never appears in a URL, a log line or an error
message. A photo's bytes are their own scope (``asset:bytes``), and every read of them is
an ``asset.read`` audit event naming the principal.
"""

import asyncio
import base64
import binascii
import os
from typing import Annotated, Literal, get_args

from fastapi import Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from typing_extensions import TypedDict

from ... import assets, sources, uploads
from ...assets import AssetView
from ...consent import Purpose
from ...consent import service as consent_service
from ...consent.service import ConsentCheckResult, SubjectView
from ...errors import InvalidInput
from ...sharing.limits import Refused
from ...sources import SOURCE_KINDS, SourceView
from ..deps import Ctx, Limit, Offset, Page, page, page_of
from ..table import Resource

__all__ = ["resource"]

resource = Resource(
    "catalog", "Sources and policy versions, consent, subjects (by sub_ ref) and assets (photos)."
)

SourceKind = Literal["app", "scrape", "transfer", "partner", "other"]
assert set(get_args(SourceKind)) == set(SOURCE_KINDS)

Sha256 = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{8,64}$", description="a sha256, or 8+ hex digits of it")]
SubjectRef = Annotated[str, Path(pattern=r"^sub_[0-9a-f]{32}$", description="a subject's sub_ ref")]

#: the media types a consent history may be sent as, and the file type each is read as
CONSENT_TYPES: dict[str, Literal["csv", "jsonl"]] = {
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
}


class NewSource(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^/\s][^/]*$")
    kind: SourceKind = "app"
    description: str = Field(default="", max_length=2000)


class NewPolicy(BaseModel):
    """A privacy-policy version; only its text's sha256 is kept. Give the text as UTF-8
    (``text``) or, for a PDF or other bytes, as base64 (``text_base64``)."""

    version: str = Field(min_length=1, max_length=64)
    text: str | None = Field(default=None, max_length=10_000_000)
    text_base64: str | None = Field(default=None, max_length=14_000_000)
    #: ISO 8601: in force from
    effective_from: str = Field(min_length=4, max_length=64)
    #: ISO 8601: in force until (open-ended when absent)
    effective_to: str | None = Field(default=None, max_length=64)
    allows: list[Purpose] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _one_text(self) -> "NewPolicy":
        if (self.text is None) == (self.text_base64 is None):
            raise ValueError("give the policy's text in exactly one of text and text_base64")
        return self

    def text_bytes(self) -> bytes:
        if self.text is not None:
            return self.text.encode()
        try:
            return base64.b64decode(self.text_base64 or "", validate=True)
        except binascii.Error:
            raise InvalidInput("text_base64 is not base64") from None


class ConsentUpload(BaseModel):
    """A consent history (docs/formats.md) as text; all-or-nothing."""

    text: str = Field(min_length=1)
    format: Literal["csv", "jsonl"] = "csv"


class ConsentImported(TypedDict):
    """What an import added: rows read, records imported, already present, subjects created,
    conflicts (same subject, purpose and instant with different decisions)."""

    file: str
    rows: int
    imported: int
    already_present: int
    subjects_created: int
    conflicts: int


class ConsentQuestion(BaseModel):
    #: a subject's external id or sub_ ref
    subject: str = Field(min_length=1, max_length=512)
    purpose: Purpose
    #: ISO 8601; now when absent
    at: str | None = Field(default=None, max_length=64)


class SubjectLookup(BaseModel):
    #: the subject's external id (a sub_ ref works too)
    external_id: str = Field(min_length=1, max_length=512)


# -- sources ---------------------------------------------------------------------------------
@resource.get("/v1/sources", scope="source:read", summary="Sources, by name", response_model=Page[SourceView])
def list_sources(
    ctx: Ctx, kind: SourceKind | None = None, limit: Limit = 100, offset: Offset = 0
) -> dict[str, object]:
    rows = [s for s in sources.list_sources(ctx) if kind is None or s["kind"] == kind]
    return page(rows, limit, offset)


@resource.post(
    "/v1/sources",
    scope="source:write",
    summary="Register a source (photos are ingested from a named source)",
    status_code=201,
    response_model=SourceView,
)
def add_source(ctx: Ctx, body: NewSource) -> SourceView:
    return sources.add_source(ctx, body.name, kind=body.kind, description=body.description)


@resource.get(
    "/v1/sources/{name}",
    scope="source:read",
    summary="One source: its photo count and policy versions",
    response_model=SourceView,
)
def show_source(ctx: Ctx, name: str) -> SourceView:
    return sources.source_view(ctx, name)


@resource.post(
    "/v1/sources/{name}/policies",
    scope="source:write",
    summary="Add a privacy-policy version to a source (its text's sha256, dates, purposes)",
    status_code=201,
    response_model=SourceView,
)
def add_policy(ctx: Ctx, name: str, body: NewPolicy) -> SourceView:
    return sources.add_policy(
        ctx,
        name,
        body.version,
        text=body.text_bytes(),
        effective_from=body.effective_from,
        effective_to=body.effective_to,
        allows=[p.value for p in body.allows],
    )


# -- consent ---------------------------------------------------------------------------------
async def _read_body(request: Request) -> bytes:
    """The body, refused past the server's size limit (413) or its time limit (408)."""
    limits = request.app.state.disgorge.limits
    cap = limits.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise Refused(413, f"the request body is larger than {cap} bytes")
    data = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                data += chunk
                if len(data) > cap:
                    raise Refused(413, f"the request body is larger than {cap} bytes")
    except TimeoutError:
        raise Refused(408, f"the body did not arrive within {limits.body_timeout_s:.0f} s") from None
    except ClientDisconnect:
        raise Refused(400, "the client went away before sending the whole body") from None
    return bytes(data)


def _upload(raw: bytes, content_type: str) -> ConsentUpload:
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/json":
        try:
            return ConsentUpload.model_validate_json(raw)
        except ValidationError as exc:
            raise RequestValidationError(
                [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
            ) from None
    if media not in CONSENT_TYPES:
        raise Refused(415, f"send application/json or {', '.join(CONSENT_TYPES)}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the consent history is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise InvalidInput("the consent history is empty")
    return ConsentUpload(text=text, format=CONSENT_TYPES[media])


def _import_text(ctx: Ctx, upload: ConsentUpload) -> ConsentImported:
    """Import through the file service: the text goes to a private file outside the
    workspace (:mod:`disgorge.uploads`: it names people in clear) and is wiped at once,
    imported or not."""
    file_id, stem = uploads.new_file(ctx)
    try:
        stem.mkdir(mode=0o700)  # the file keeps the name its messages quote
        path = stem / f"consent.{upload.format}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(upload.text)
        report = consent_service.import_consent(ctx, path)
    finally:
        uploads.discard(ctx, file_id)
    return {
        "file": report.file,
        "rows": report.rows,
        "imported": report.imported,
        "already_present": report.already_present,
        "subjects_created": report.subjects_created,
        "conflicts": report.conflicts,
    }


@resource.post(
    "/v1/consent/import",
    scope="consent:write",
    summary="Import a consent history (CSV or JSON Lines, docs/formats.md); all-or-nothing",
    response_model=ConsentImported,
    errors={
        408: "The body did not arrive in time",
        413: "The body is too large",
        415: "Not application/json, text/csv or application/x-ndjson",
        422: "A bad row (every one is listed, by line) or a malformed body: nothing is imported",
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": ConsentUpload.model_json_schema()},
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_consent(request: Request, ctx: Ctx) -> ConsentImported:
    raw = await _read_body(request)
    upload = _upload(raw, request.headers.get("content-type", ""))
    del raw
    return await run_in_threadpool(_import_text, ctx, upload)


@resource.post(
    "/v1/consent/check",
    scope="consent:read",
    summary="May a subject's photos be used for a purpose? A verdict per photo, with reasons",
    response_model=ConsentCheckResult,
)
def consent_check(ctx: Ctx, body: ConsentQuestion) -> ConsentCheckResult:
    return consent_service.consent_check(ctx, body.subject, body.purpose.value, at=body.at)


# -- subjects --------------------------------------------------------------------------------
@resource.post(
    "/v1/subjects/lookup",
    scope="subject:read",
    summary="A subject by external id (in the body): ref, photos, consent history",
    response_model=SubjectView,
    errors={404: "No such subject (the answer names its ref, never the external id)"},
)
def lookup_subject(ctx: Ctx, body: SubjectLookup) -> SubjectView:
    return consent_service.subject_view(ctx, body.external_id)


@resource.get(
    "/v1/subjects/{ref}",
    scope="subject:read",
    summary="A subject by sub_ ref: photos and consent history (no personal data)",
    response_model=SubjectView,
)
def show_subject(ctx: Ctx, ref: SubjectRef) -> SubjectView:
    return consent_service.subject_view(ctx, ref)


# -- assets ----------------------------------------------------------------------------------
@resource.get(
    "/v1/assets",
    scope="asset:read",
    summary="Photos' catalog entries, oldest ingested first (never the bytes)",
    response_model=Page[AssetView],
    errors={404: "No source of that name"},
)
def list_assets(
    ctx: Ctx,
    source: str | None = None,
    state: Literal["active", "erased"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    found = assets.list_assets(ctx, source=source, state=state, limit=limit, offset=offset)
    return page_of(found["items"], found["total"], limit, offset)


@resource.get(
    "/v1/assets/{sha256}",
    scope="asset:read",
    summary="A photo's catalog entry: hashes, type, size, source, subject refs",
    response_model=AssetView,
)
def show_asset(ctx: Ctx, sha256: Sha256) -> AssetView:
    return assets.asset_view(ctx, sha256)


@resource.get(
    "/v1/assets/{sha256}/bytes",
    scope="asset:bytes",
    summary="A photo's decrypted bytes, checked against its sha256 (the read is audited)",
    response_class=Response,
    responses={
        200: {
            "description": "The photo, in its media type",
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    errors={
        409: "The stored bytes do not match the photo's sha256 (tampering or damage)",
        410: "The owner's key was destroyed (the photo is erased)",
    },
)
def asset_bytes(ctx: Ctx, sha256: Sha256) -> Response:
    data, media_type = assets.read_asset_audited(ctx, sha256)
    return Response(
        content=data,
        media_type=media_type,
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )
