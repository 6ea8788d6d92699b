"""A data subject's page (``/ui/subjects``): look one up, see their consent and photos.

The lookup form sends an external id (or a ``sub_`` ref) in a POST body and answers
``303`` to ``/ui/subjects/{ref}``: the external id never reaches a URL, a page, a log line
or an audit event, and an unknown subject gets a page that does not repeat what was typed.

The subject's page needs ``subject:read`` and shows what ``GET /v1/subjects/{ref}`` shows
(:func:`disgorge.consent.service.subject_view`): the consent history as a timeline, the
photos by short sha256 and state, and the lineage graph downstream of the subject. Each
view is an audit event (``ui.subject_view``, the ref only): who looked at whom is something
a privacy office must be able to answer.

Photo bytes are their own scope (``asset:bytes``), as in the API: only a role holding it
gets thumbnails, each fetched through :func:`disgorge.assets.read_asset_audited` (an
``asset.read`` event per fetch, as ``GET /v1/assets/{sha256}/bytes``), blurred until the
user asks to see them. Any other role's page holds no image and no URL of one.
"""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import Form, Path, Query, Request, Response

from ... import assets
from ...audit import log as audit
from ...consent import service as consent_service
from ...consent.service import SubjectView
from ...context import Context
from ...errors import InvalidInput, NotFound
from .. import UI_PREFIX
from ..framework import SECURITY_HEADERS, context, login_of, needs, page_router, redirect, render
from . import lineage

__all__ = ["GRAPH_HOPS", "THUMB_PX", "router"]

router = page_router()

#: a thumbnail's long side, in pixels: enough to recognise a photo, not to study a face
THUMB_PX = 160
SubjectRef = Annotated[str, Path(pattern=r"^sub_[0-9a-f]{32}$")]
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{8,64}$")]
#: how far the subject's page follows their lineage (the lineage page goes further)
GRAPH_HOPS = 3
#: what an unknown subject gets: never what was typed (an external id is personal data)
UNKNOWN = "no subject with that id or ref in this workspace"

#: consent decisions in words (``revoked`` is what the subject did: withdrew it)
DECISION_WORDS = {
    "granted": "granted",
    "denied": "denied",
    "revoked": "withdrawn",
    "constrained": "constrained (counts as not allowed)",
}
#: a photo's state in words
PHOTO_WORDS = {
    "active": "active",
    "erased": "erased",
    "withheld": "withheld (a legal hold keeps it out of every use)",
}


@router.get("/subjects", **needs("subject:read"))
def lookup_form(request: Request) -> Response:
    return render(request, "subjects.html", problem=None)


@router.post("/subjects", **needs("subject:read"))
def lookup(request: Request, subject: Annotated[str, Form(max_length=512)] = "") -> Response:
    """The ref of what was typed, as a redirect: the typed text stays in this POST body."""
    if not subject.strip():
        return render(request, "subjects.html", 422, problem="type a subject's external id or sub_ ref")
    try:
        view = consent_service.subject_view(context(request), subject)
    except NotFound:
        return render(request, "subjects.html", 404, problem=UNKNOWN)
    return redirect(f"{UI_PREFIX}/subjects/{view['ref']}")


@router.get("/subjects/{ref}", **needs("subject:read"))
def subject_page(request: Request, ref: SubjectRef, reveal: str = Query("", max_length=8)) -> Response:
    ctx = context(request)
    try:
        view = consent_service.subject_view(ctx, ref)
    except NotFound:
        return render(request, "subjects.html", 404, problem=UNKNOWN)
    _record_view(ctx, view["ref"])
    return render(
        request,
        "subject.html",
        subject=view,
        timeline=_timeline(view),
        photos=[
            {**a, "short": a["sha256"][:12], "words": PHOTO_WORDS.get(a["state"], a["state"])}
            for a in view["assets"]
        ],
        revealed=reveal in ("1", "true", "yes", "on"),
        decision_words=DECISION_WORDS,
        graph=_graph(request, view["ref"]),
        graph_hops=GRAPH_HOPS,
    )


@router.get("/assets/{sha256}/thumb", **needs("asset:bytes"))
def thumbnail(request: Request, sha256: Sha256) -> Response:
    """A photo's thumbnail, from the bytes the API's ``asset:bytes`` route hands out, read
    the same audited way (erased, damaged, unknown: the API's status, as a page)."""
    data, _media_type = assets.read_asset_audited(context(request), sha256)
    return Response(content=_thumbnail(data), media_type="image/jpeg", headers=SECURITY_HEADERS)


def _graph(request: Request, ref: str) -> dict[str, Any] | None:
    """The lineage downstream of the subject, as the lineage page's graph shows it (its
    table reads without JavaScript); None for a role without ``lineage:read``."""
    if not login_of(request).principal.may("lineage:read"):
        return None
    return lineage.table_view(
        lineage.graph_view(request, lineage.question("subject", ref, "downstream", GRAPH_HOPS))
    )


def _record_view(ctx: Context, ref: str) -> None:
    """The audit event of one look at a subject's page: the ref, never anything personal."""
    with ctx.sessions.begin() as session:
        audit.append(session, "ui.subject_view", {"subject": ref}, actor=ctx.actor)


def _timeline(view: SubjectView) -> list[dict[str, Any]]:
    """The consent history, oldest first (the service's order), with decisions in words."""
    return [
        {
            **record,
            "date": (record["at"] or "")[:10],
            "purpose_words": record["purpose"].replace("_", " "),
            "words": DECISION_WORDS.get(record["decision"], record["decision"]),
        }
        for record in sorted(view["consent"], key=lambda r: r["at"] or "")
    ]


def _thumbnail(data: bytes) -> bytes:
    """A JPEG at most :data:`THUMB_PX` on its long side, upright, without the original's
    metadata (EXIF may hold where and when the photo was taken)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))  # a JPEG decodes at a reduced scale
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidInput("the photo cannot be decoded into a thumbnail") from exc
    image.thumbnail((THUMB_PX, THUMB_PX))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()
