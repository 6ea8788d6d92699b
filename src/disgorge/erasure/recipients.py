"""The steps that reach recipients, and how their answers are shown.

Photos that left in transfers are erased at their recipients too: ``notify_recipients``
signs one request per recipient while the photos can still be named, ``await_recipients``
(after this workspace's own verification) waits for their signed answers. The delivery,
the retries and the answers' checks are :mod:`disgorge.sharing.outbox`'s; this module only
calls it at the right moments and shapes its answers for ``erasure show`` and the
certificate.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict

from ..catalog.models import ErasureRequest
from ..context import Context
from ..sharing.outbox import (
    DONE_STATES,
    RecipientState,
    await_recipients,
    create_notices,
    default_deadline,
    notices_view,
)
from ._step import AwaitingRecipients, Execution, step

__all__ = [
    "CertifiedRecipient",
    "RecipientState",
    "await_recipients_step",
    "notify_recipients",
    "recipient_states",
    "recipients_for_certificate",
]


class CertifiedRecipient(TypedDict):
    """A recipient's answer as this workspace's certificate lists it."""

    recipient: str
    public_key: str
    transfers: list[str]
    items: int
    nonce: str
    state: str
    answered_at: str | None
    closed_reason: str | None
    #: the recipient's own signed certificate, once it completed
    certificate: dict[str, Any] | None


@step("notify_recipients")
def notify_recipients(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """Sign one request per recipient while the photos can still be named (before their
    sha256 leaves the catalog), and try to deliver each once."""
    ctx = execution.ctx
    count = create_notices(ctx, req, deadline=default_deadline(execution.deadline_days))
    if count:
        await_recipients(ctx, req.id, wait=0)
    return {"recipients": count}


@step("await_recipients")
def await_recipients_step(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """Deliver to and poll the recipients for up to the run's ``wait``; while any has not
    answered, the request rests in ``awaiting_recipients`` (resumed later, or by an ack)."""
    ctx = execution.ctx
    states = await_recipients(ctx, req.id, wait=execution.wait) if req.plan.get("recipients") else {}
    waiting = sorted(name for name, state in states.items() if state not in DONE_STATES)
    if waiting:
        raise AwaitingRecipients(", ".join(f"{n}: {states[n]}" for n in waiting))
    return {"recipients": dict(sorted(states.items()))}


def recipient_states(ctx: Context, request_id: str) -> list[RecipientState]:
    """Each recipient's state, without its certificate (``erasure show``)."""
    return [
        {
            "recipient": n["recipient"],
            "public_key": n["public_key"],
            "delivery": n["delivery"],
            "transfers": n["transfers"],
            "items": n["items"],
            "nonce": n["nonce"],
            "state": n["state"],
            "deadline": n["deadline"],
            "attempts": n["attempts"],
            "last_error": n["last_error"],
            "closed_reason": n["closed_reason"],
            "answered_at": n["answered_at"],
        }
        for n in notices_view(ctx, request_id)
    ]


def recipients_for_certificate(ctx: Context, request_id: str) -> list[CertifiedRecipient]:
    """Each recipient's answer; a completed one with its own signed certificate."""
    return [
        {
            "recipient": n["recipient"],
            "public_key": n["public_key"],
            "transfers": n["transfers"],
            "items": n["items"],
            "nonce": n["nonce"],
            "state": n["state"],
            "answered_at": n["answered_at"],
            "closed_reason": n["closed_reason"],
            "certificate": n["certificate"],
        }
        for n in notices_view(ctx, request_id)
    ]
