"""Legal holds (``/ui/holds``): the list, placing one, releasing one.

As ``/v1/holds`` (:mod:`disgorge.api.routes.holds`): reading needs ``erasure:read``,
placing and releasing ``erasure:approve``; a release's follow-up erasures are queued for
the server's job runner. A subject is named in the form's body; the list shows its ref.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Path, Request, Response

from ...api.deps import start_job
from ...dsr import holds as service
from ...errors import InvalidInput
from .. import UI_PREFIX
from ..framework import context, needs, page_router, redirect, render

__all__ = ["KINDS", "router"]

router = page_router()

KINDS = ("subject", "source", "dataset", "model")
#: a hold's reason goes on certificates: long enough to name the matter
MIN_REASON = 10


def _reason(text: str) -> str:
    text = text.strip()
    if not MIN_REASON <= len(text) <= 2000:
        raise InvalidInput(
            f"a hold's reason has {MIN_REASON} to 2000 characters (name the matter, never a person)"
        )
    return text


@router.get("/holds", **needs("erasure:read"))
def holds(request: Request, active: str = "") -> Response:
    only = active in ("1", "true", "on", "yes")
    rows = service.list_holds(context(request), active_only=only)
    return render(request, "holds.html", holds=rows, kinds=KINDS, active=only)


@router.post("/holds", **needs("erasure:approve"))
def add_hold(
    request: Request,
    kind: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    if kind not in KINDS:
        raise InvalidInput(f"a hold keeps one of: {', '.join(KINDS)}")
    if not name.strip() or len(name) > 512:
        raise InvalidInput("name what the hold keeps (1 to 512 characters)")
    service.add_hold(context(request), kind, name.strip(), reason=_reason(reason))
    return redirect(f"{UI_PREFIX}/holds")


@router.post("/holds/{hold_id}/release", **needs("erasure:approve"))
def release(
    request: Request,
    hold_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    reason: Annotated[str, Form()] = "",
) -> Response:
    ctx = context(request)
    result = service.release_hold(ctx, hold_id, reason=_reason(reason), run=False)
    for erasure in result["erasures"]:
        start_job(request, ctx, "erasure", {"request": erasure["id"]})
    return redirect(f"{UI_PREFIX}/holds")
