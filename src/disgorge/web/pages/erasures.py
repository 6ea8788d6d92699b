"""Erasure requests: the list, a new request, one request's page (plan, approvals, steps,
verification, certificate), approving and denying it.

The same services and rules as ``/v1/erasures`` (:mod:`disgorge.api.routes.erasures`): a
new request is planned, approved at once by its requester when the two-person rule needs
no one else, and queued for the server's job runner once approved; an approval by a second
privacy officer is recorded by :func:`disgorge.erasure.service.approve` (``run=False``),
which says when enough are in. A subject is named in the form's body, never in a URL; every
page shows it by its ``sub_`` ref.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Form, Path, Request, Response

from ...api.deps import start_job
from ...context import Context
from ...erasure import service
from ...erasure.service import ErasureView
from ...erasure.steps import STEPS
from ...errors import InvalidInput
from ...signing import verify_certificate
from .. import UI_PREFIX
from ..framework import context, needs, page_router, redirect, render

__all__ = ["KINDS", "RUNNING", "router"]

router = page_router()

#: the scopes a request may name, as the form offers them (the API's ``ScopeKind``)
KINDS = {
    "subject": "a subject (external id or sub_ ref)",
    "photo": "a photo (sha256)",
    "source": "a source (name)",
    "model": "a model (name or id)",
    "transfer": "a transfer (id)",
}
_SERVICE_KIND = {"photo": "asset"}
#: states in which a request's steps are still moving (the page refreshes its progress)
RUNNING = ("approved", "executing", "verifying")
RequestId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-fA-F-]+$")]


def _queue_if_approved(request: Request, ctx: Context, view: ErasureView) -> ErasureView:
    if view["state"] == "approved":
        start_job(request, ctx, "erasure", {"request": view["id"]})
    return view


def _reason(text: str, at_least: int) -> str:
    text = text.strip()
    if len(text) < at_least or len(text) > 2000:
        raise InvalidInput(f"a reason has {at_least} to 2000 characters")
    return text


def _steps(view: ErasureView) -> list[dict[str, Any]]:
    """Every step in the order they run, done or pending."""
    done = {s["step"]: s["done_at"] for s in view["steps"]}
    names = list(STEPS) + [name for name in done if name not in STEPS]
    return [{"step": name, "done_at": done.get(name)} for name in names]


def _approvals_needed(view: ErasureView) -> int | None:
    """More approvals a planned request needs (None once it is not planned)."""
    if view["state"] != "planned":
        return None
    if not view["approvals_required"]:
        return 1  # any privacy officer's, the requester's included
    approved = sum(1 for a in view["approvals"] if a["decision"] == "approve")
    return max(view["approvals_required"] - approved, 0)


def _detail(request: Request, request_id: str, status: int = 200, /, **extra: Any) -> Response:
    ctx = context(request)
    view = service.show(ctx, request_id)
    return render(
        request,
        "erasure.html",
        status,
        e=view,
        steps=_steps(view),
        needed=_approvals_needed(view),
        running=view["state"] in RUNNING,
        verification=json.dumps(view["verification"], indent=2, sort_keys=True)
        if view["verification"]
        else None,
        **{"check": None, **extra},
    )


@router.get("/erasures", **needs("erasure:read"))
def erasures(request: Request, state: str = "", kind: str = "") -> Response:
    ctx = context(request)
    rows = [
        r
        for r in service.list_requests(ctx)
        if (not state or r["state"] == state)
        and (not kind or r["scope"]["kind"] == _SERVICE_KIND.get(kind, kind))
    ]
    rows.reverse()  # newest first
    return render(request, "erasures.html", erasures=rows, kinds=KINDS, state=state, kind=kind)


@router.post("/erasures/new", **needs("erasure:create"))
def new_erasure(
    request: Request,
    kind: Annotated[str, Form()] = "",
    scope_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    ctx = context(request)
    if kind not in KINDS:
        raise InvalidInput(f"choose what to erase: one of {', '.join(KINDS)}")
    ident = scope_id.strip()
    if not ident or len(ident) > 512:
        raise InvalidInput("name what to erase (1 to 512 characters)")
    view = service.erase(ctx, _SERVICE_KIND.get(kind, kind), ident, reason=_reason(reason, 3), execute=False)
    who = ctx.principal
    if view["approvals_required"] == 0 and who is not None and who.may("erasure:approve"):
        view = service.approve(ctx, view["id"], reason="requested", run=False)
    _queue_if_approved(request, ctx, view)
    return redirect(f"{UI_PREFIX}/erasures/{view['id']}")


@router.get("/erasures/{request_id}", **needs("erasure:read"))
def erasure(request: Request, request_id: RequestId) -> Response:
    return _detail(request, request_id)


@router.get("/erasures/{request_id}/progress", **needs("erasure:read"))
def progress(request: Request, request_id: RequestId) -> Response:
    """The state and steps (htmx polls this every 2 s while the request runs); once it
    stops running, htmx reloads the whole page (verification, certificate)."""
    ctx = context(request)
    view = service.show(ctx, request_id)
    running = view["state"] in RUNNING
    response = render(request, "erasure_progress.html", e=view, steps=_steps(view), running=running)
    if not running:
        response.headers["HX-Refresh"] = "true"
    return response


@router.post("/erasures/{request_id}/approve", **needs("erasure:approve"))
def approve(request: Request, request_id: RequestId, reason: Annotated[str, Form()] = "") -> Response:
    ctx = context(request)
    view = service.approve(ctx, request_id, reason=reason.strip()[:2000], run=False)
    _queue_if_approved(request, ctx, view)
    return redirect(f"{UI_PREFIX}/erasures/{view['id']}")


@router.post("/erasures/{request_id}/deny", **needs("erasure:approve"))
def deny(request: Request, request_id: RequestId, reason: Annotated[str, Form()] = "") -> Response:
    view = service.deny(context(request), request_id, reason=_reason(reason, 3))
    return redirect(f"{UI_PREFIX}/erasures/{view['id']}")


@router.get("/erasures/{request_id}/certificate", **needs("certificate:read"))
def certificate(request: Request, request_id: RequestId) -> Response:
    document = service.certificate(context(request), request_id)
    return Response(
        json.dumps(document, indent=2, sort_keys=True) + "\n",
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="erasure-{request_id[:8]}-certificate.json"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/erasures/{request_id}/verify-certificate", **needs("certificate:read"))
def verify(request: Request, request_id: RequestId) -> Response:
    """Check the stored certificate's signature and Merkle root with this workspace's key."""
    ctx = context(request)
    check = verify_certificate(service.certificate(ctx, request_id), ctx.public_key_pem())
    return _detail(request, request_id, check={"ok": check.ok, "reason": check.reason, "where": check.where})
