"""The overview (``/ui/``): counts, open cases by due date, erasures waiting, the latest
violations, the audit chain.

Each part needs the scope of the API route that shows the same data (``/v1/status``,
``/v1/cases``, ``/v1/erasures``, ``/v1/audit/verify``); a role without it sees the part
say so instead. The audit chain's check reads every event again (4 s at 100,000 events,
benchmarks/ui.py), so the page does not wait for it: htmx asks ``/ui/audit/verify`` once
the page is shown (:mod:`.audit`), and without JavaScript the page links there; the same
for the violation audit, which reads every use's items (``/ui/violations/latest``).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from ...datasets import service as dataset_service
from ...dsr import cases as case_service
from ...erasure import service as erasure_service
from ...maintenance import status as workspace_status
from ...training import lifecycle
from ..framework import context, needs, page_router, render

__all__ = ["WAITING_STATES", "router"]

router = page_router()

#: the erasures the overview lists as waiting for someone
WAITING_STATES = ("planned", "awaiting_recipients")


@router.get("/", **needs("status:read"))
def overview(request: Request) -> Response:
    ctx = context(request)
    who = ctx.principal
    assert who is not None
    values: dict[str, Any] = {"counts": None, "cases": None, "erasures": None}
    status = workspace_status(ctx)
    values["counts"] = {
        "photos": status["assets"],
        "subjects": status["subjects"],
        "datasets": len(dataset_service.list_datasets(ctx)) if who.may("dataset:read") else None,
        "models": len({m["name"] for m in lifecycle.models(ctx)}) if who.may("model:read") else None,
    }
    if who.may("subject:read"):
        values["cases"] = case_service.list_cases(ctx, status="open")
    if who.may("erasure:read"):
        values["erasures"] = [r for r in erasure_service.list_requests(ctx) if r["state"] in WAITING_STATES]
    return render(request, "overview.html", **values)
