"""Data-subject requests as cases (``/ui/cases``): soonest due first, with filters.

Reading cases needs ``subject:read``, as ``GET /v1/cases``; a case names its subject by
``sub_`` ref only. An overdue case says OVERDUE in words, not only in red.
"""

from __future__ import annotations

from fastapi import Request, Response

from ...dsr import cases as service
from ..framework import context, needs, page_router, render

__all__ = ["KINDS", "STATUSES", "router"]

router = page_router()

STATUSES = ("open", "completed", "refused")
KINDS = ("access", "erasure", "objection")


@router.get("/cases", **needs("subject:read"))
def cases(request: Request, status: str = "", kind: str = "", overdue: str = "") -> Response:
    status = status if status in STATUSES else ""
    kind = kind if kind in KINDS else ""
    late = overdue in ("1", "true", "on", "yes")
    rows = service.list_cases(context(request), status=status or None, kind=kind or None, overdue=late)
    return render(
        request,
        "cases.html",
        cases=rows,
        statuses=STATUSES,
        kinds=KINDS,
        status=status,
        kind=kind,
        overdue=late,
    )
