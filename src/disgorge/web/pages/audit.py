"""The audit log (``/ui/audit``): events, newest page last, filtered by action and actor.

Needs ``audit:read``, as ``GET /v1/audit/events``. ``/ui/audit/verify`` checks the whole
hash chain (as ``GET /v1/audit/verify``): a page of its own, or, asked by htmx from the
overview, the one paragraph that says whether the chain verifies.
"""

from __future__ import annotations

import json

from fastapi import Query, Request, Response

from ...audit import service
from .. import UI_PREFIX
from ..checks import check_of
from ..framework import context, needs, page_router, render

__all__ = ["PAGE", "router"]

router = page_router()

PAGE = 100


@router.get("/audit", **needs("audit:read"))
def audit(
    request: Request,
    action: str = Query("", max_length=64),
    actor: str = Query("", max_length=128),
    offset: int = Query(-1, ge=-1, le=2**53 - 1),
) -> Response:
    ctx = context(request)
    total = service.find_events(ctx, action=action or None, actor=actor or None, limit=1)["total"]
    if offset < 0:  # the latest page
        offset = max(total - PAGE, 0)
    found = service.find_events(ctx, action=action or None, actor=actor or None, limit=PAGE, offset=offset)
    events = [{**e, "payload_json": json.dumps(e["payload"], sort_keys=True)} for e in found["items"]]
    return render(
        request,
        "audit.html",
        events=events,
        total=found["total"],
        offset=offset,
        page=PAGE,
        action=action,
        actor=actor,
    )


@router.get("/audit/verify", **needs("audit:read"))
def verify(request: Request) -> Response:
    """The overview's part (htmx: the server's last check while the log has no new event,
    :mod:`..checks`), or a page of its own that checks the chain again."""
    ctx = context(request)
    part = bool(request.headers.get("hx-request"))
    events = service.find_events(ctx, limit=1)["total"]
    answer = check_of(request, "audit-chain").answer(
        events, lambda: service.verify_chain(ctx).to_dict(), wait=not part, reuse=part
    )
    if answer is None:
        return render(request, "_checking.html", url=f"{UI_PREFIX}/audit/verify", what="the audit log")
    template = "_audit_state.html" if part else "audit_verify.html"
    return render(request, template, chain=answer.result, age_s=int(answer.age_s))
