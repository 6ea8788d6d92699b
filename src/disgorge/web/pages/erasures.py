"""Erasure requests: the list, a new request, one request's page (plan, approvals, steps,
verification, certificate, the legal holds that withhold photos), approving and denying
it, and approving or denying many planned requests at once from the list.

The same services and rules as ``/v1/erasures`` (:mod:`disgorge.api.routes.erasures`): a
new request is planned, approved at once by its requester when the two-person rule needs
no one else, and queued for the server's job runner once approved; an approval by a second
privacy officer is recorded by :func:`disgorge.erasure.service.approve` (``run=False``),
which says when enough are in. A bulk decision calls the same services once per request,
each in its own transaction: one refused (the requester's own approval under the
two-person rule, a request no longer planned) is listed with its reason and stops none of
the others. A subject is named in the form's body, never in a URL; every page shows it by
its ``sub_`` ref.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import Form, Path, Request, Response

from ...api.deps import start_job
from ...context import Context
from ...erasure import service
from ...erasure.service import ErasureView
from ...erasure.steps import STEPS
from ...errors import DisgorgeError, InvalidInput
from ...signing import verify_certificate
from .. import UI_PREFIX
from ..framework import context, needs, page_router, redirect, render

__all__ = ["BULK_ACTIONS", "BULK_LIMIT", "KINDS", "RUNNING", "router"]

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
_REQUEST_ID = re.compile(r"[0-9a-fA-F-]{1,64}")
#: the most requests one bulk decision takes (each is its own transaction and audit event)
BULK_LIMIT = 100
BULK_ACTIONS = ("approve", "deny")


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


def _listing(request: Request, state: str = "", kind: str = "", status: int = 200, **extra: Any) -> Response:
    ctx = context(request)
    rows = [
        r
        for r in service.list_requests(ctx)
        if (not state or r["state"] == state)
        and (not kind or r["scope"]["kind"] == _SERVICE_KIND.get(kind, kind))
    ]
    rows.reverse()  # newest first
    return render(
        request,
        "erasures.html",
        status,
        erasures=rows,
        kinds=KINDS,
        state=state,
        kind=kind,
        bulk_limit=BULK_LIMIT,
        **{"bulk": None, **extra},
    )


@router.get("/erasures", **needs("erasure:read"))
def erasures(request: Request, state: str = "", kind: str = "") -> Response:
    return _listing(request, state, kind)


def _decide(request: Request, ctx: Context, request_id: str, action: str, reason: str) -> dict[str, Any]:
    """One request of a bulk decision, through the single approve's and deny's services:
    what became of it, in words (a refusal says why and stops nothing else)."""
    try:
        if action == "deny":
            view = service.deny(ctx, request_id, reason=reason)
            return {"id": view["id"], "scope": view["scope"], "outcome": "denied", "text": "denied"}
        view = _queue_if_approved(request, ctx, service.approve(ctx, request_id, reason=reason, run=False))
    except DisgorgeError as exc:
        return {"id": request_id, "scope": None, "outcome": "refused", "text": f"refused: {exc}"}
    needed = _approvals_needed(view)
    if view["state"] == "planned" and needed:
        text = f"approval recorded; still needs {needed} more approval(s) by other privacy officers"
        return {"id": view["id"], "scope": view["scope"], "outcome": "needs", "text": text}
    return {
        "id": view["id"],
        "scope": view["scope"],
        "outcome": "approved",
        "text": "approved; queued to run",
    }


@router.post("/erasures/bulk", **needs("erasure:approve"))
def bulk(
    request: Request,
    ids: Annotated[list[str] | None, Form()] = None,
    action: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Approve or deny each selected request, one at a time, as the single forms do (the
    two-person rule per request); the page lists what became of each one."""
    picked = list(dict.fromkeys(i.strip() for i in ids or ()))
    if action not in BULK_ACTIONS:
        raise InvalidInput(f"choose what to do with the selected requests: {' or '.join(BULK_ACTIONS)}")
    if not picked:
        raise InvalidInput("select at least one request")
    if len(picked) > BULK_LIMIT:
        raise InvalidInput(
            f"{len(picked)} requests selected: at most {BULK_LIMIT} at a time; nothing was changed"
        )
    if not all(_REQUEST_ID.fullmatch(i) for i in picked):
        raise InvalidInput("a selected request id is malformed; nothing was changed")
    text = _reason(reason, 3) if action == "deny" else reason.strip()[:2000]
    ctx = context(request)
    results = [_decide(request, ctx, request_id, action, text) for request_id in picked]
    return _listing(request, bulk={"action": action, "results": results})


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
