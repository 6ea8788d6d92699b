"""The sender's side of erasure propagation: one signed request per recipient, carried
over HTTP (with retries and backoff) or as a file, until each recipient has answered.

States of a notice: ``pending`` (not yet delivered, or the recipient could not be
reached), ``acknowledged`` (the recipient accepted it and is erasing), ``completed``
(its signed certificate came back and verifies), ``not_found`` (it signed that it holds
none of the items), ``exception`` (it signed that it could not comply, or its answer did
not verify), ``overdue`` (past the deadline, still not answered), ``closed`` (a person
closed it with a recorded reason). The erasure completes when every notice is
``completed``, ``not_found`` or ``closed``.

The request names photos (by the keyed fingerprint the bundle carried, or by sha256
for a legacy transfer that agreed on nothing else), so it is stored only sealed, and
dropped when the recipient has answered for good.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._time import iso, utcnow
from ..catalog.db import in_chunks
from ..catalog.models import Asset, ErasureRequest, Peer, RecipientNotice, Transfer, TransferItem
from ..context import Context
from ..errors import InvalidInput, NotFound
from ..signing import verify_certificate
from ..vault import new_key, open_sealed, seal
from .documents import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    SignatureError,
    document_sha256,
    sign_document,
    verify_document,
)
from .query import authorization

__all__ = [
    "DONE_STATES",
    "NoticeClosed",
    "NoticeView",
    "RecipientEntry",
    "RecipientState",
    "ResponseImported",
    "await_recipients",
    "close_notice",
    "create_notices",
    "find_notice",
    "import_response",
    "notices_view",
    "recipients_of",
    "request_document",
]

DONE_STATES = ("completed", "not_found", "closed")
_AAD = b"disgorge:recipient-notice"
#: seconds between HTTP attempts: 0.25, 0.5, 1, 2 ... capped
_BACKOFF_START, _BACKOFF_CAP = 0.25, 8.0
_HTTP_TIMEOUT = 10.0


class RecipientEntry(TypedDict):
    """One outgoing transfer an erasure reaches (kept in the request's plan)."""

    recipient: str
    transfer: str
    items: int
    asset_ids: list[str]
    backfilled: bool
    id_kind: str


class RecipientState(TypedDict):
    """Where the request to one recipient stands, without its certificate (``disgorge
    erasure show``)."""

    recipient: str
    public_key: str
    delivery: str
    transfers: list[str]
    items: int
    nonce: str
    state: str
    deadline: str
    attempts: int
    last_error: str | None
    closed_reason: str | None
    answered_at: str | None


class NoticeView(RecipientState):
    """A recipient's state with its signed certificate, once it answered ``completed``."""

    certificate: dict[str, Any] | None


class ResponseImported(TypedDict):
    request: str
    nonce: str
    state: str


class NoticeClosed(TypedDict):
    request: str
    recipient: str
    state: str


def recipients_of(
    session: Session, asset_ids: list[str], transfer_id: str | None = None
) -> list[RecipientEntry]:
    """The outgoing transfers that carried any of ``asset_ids`` (or all of one transfer)."""
    query = (
        select(Transfer.id, Peer.name, Transfer.backfilled, Transfer.id_kind, TransferItem.asset_id)
        .join(Peer, Peer.id == Transfer.peer_id)
        .join(TransferItem, TransferItem.transfer_id == Transfer.id)
        .where(Transfer.direction == "out")
        .order_by(Transfer.at, Transfer.id, TransferItem.asset_id)
    )
    if transfer_id is not None:
        chunks = [query.where(Transfer.id == transfer_id)]
    else:
        chunks = [query.where(TransferItem.asset_id.in_(part)) for part in in_chunks(asset_ids)]
    found: dict[str, RecipientEntry] = {}
    for chunk in chunks:
        for tid, name, backfilled, id_kind, asset_id in session.execute(chunk):
            entry = found.setdefault(
                tid,
                {
                    "recipient": name,
                    "transfer": tid,
                    "items": 0,
                    "asset_ids": [],
                    "backfilled": bool(backfilled),
                    "id_kind": id_kind,
                },
            )
            entry["asset_ids"].append(asset_id)
    order = dict(session.execute(select(Transfer.id, Transfer.at).where(Transfer.id.in_(list(found)))).all())
    for entry in found.values():
        entry["asset_ids"].sort()
        entry["items"] = len(entry["asset_ids"])
    return sorted(found.values(), key=lambda e: (order[e["transfer"]], e["transfer"]))


def create_notices(ctx: Context, req: ErasureRequest, *, deadline: datetime) -> int:
    """Sign and store (sealed) one request per recipient; idempotent for a request."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in req.plan.get("recipients", []):
        groups.setdefault(entry["recipient"], []).append(entry)
    if not groups:
        return 0
    with ctx.sessions.begin() as session:
        if session.scalar(select(RecipientNotice.id).where(RecipientNotice.request_id == req.id)):
            return len(groups)
        now = utcnow()
        for name, entries in sorted(groups.items()):
            peer = session.scalar(select(Peer).where(Peer.role == "recipient", Peer.name == name))
            if peer is None:
                raise NotFound(f"recipient {name!r} of this erasure is no longer registered")
            items = []
            for entry in entries:
                if entry["id_kind"] == "sha256":
                    values = sorted(
                        session.scalars(select(Asset.sha256).where(Asset.id.in_(entry["asset_ids"])))
                    )
                else:
                    values = sorted(
                        session.scalars(
                            select(TransferItem.fingerprint).where(
                                TransferItem.transfer_id == entry["transfer"],
                                TransferItem.asset_id.in_(entry["asset_ids"]),
                            )
                        )
                    )
                items.append({"transfer": entry["transfer"], "id_kind": entry["id_kind"], "values": values})
            nonce = secrets.token_hex(16)
            doc = sign_document(
                ctx,
                {
                    "type": REQUEST_TYPE,
                    "nonce": nonce,
                    "request": req.id,
                    "sender_workspace": ctx.workspace_id,
                    "recipient": name,
                    "recipient_key": peer.public_key.hex(),
                    "issued_at": iso(now),
                    "deadline": iso(deadline),
                    "scope": req.plan["scope"],
                    "reason": req.reason,
                    "items": items,
                },
            )
            key = new_key()
            session.add(
                RecipientNotice(
                    request_id=req.id,
                    peer_id=peer.id,
                    nonce=nonce,
                    transfers=sorted(e["transfer"] for e in entries),
                    items=sum(e["items"] for e in entries),
                    state="pending",
                    deadline=deadline,
                    updated_at=now,
                    doc_key=ctx.kek.wrap(key, _AAD),
                    doc_enc=seal(key, json.dumps(doc).encode(), _AAD),
                    doc_sha256=document_sha256(doc),
                    response={},
                )
            )
        audit.append(
            session,
            "erasure.recipients_notified",
            {"request": req.id, "recipients": sorted(groups)},
            actor=ctx.actor,
        )
    return len(groups)


def request_document(ctx: Context, notice: RecipientNotice) -> dict[str, Any]:
    """The signed request of a notice (for delivery by hand, or to send again)."""
    if notice.doc_enc is None or notice.doc_key is None:
        raise InvalidInput(
            f"the request to this recipient was answered ({notice.state}); its document was discarded"
        )
    key = ctx.kek.unwrap(notice.doc_key, _AAD)
    doc: dict[str, Any] = json.loads(
        open_sealed(key, notice.doc_enc, _AAD, what="erasure request to a recipient")
    )
    return doc


def _http(
    method: str, url: str, doc: dict[str, Any] | None = None, *, authorization: str | None = None
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(doc).encode() if doc is not None else None
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read() or b"{}")
        except ValueError:
            payload = {}
        return exc.code, payload


def _apply(ctx: Context, notice_id: int, doc: dict[str, Any]) -> str:
    """Check a recipient's signed answer and record it; returns the notice's new state."""
    with ctx.sessions.begin() as session:
        notice = session.get_one(RecipientNotice, notice_id)
        peer = session.get_one(Peer, notice.peer_id)
        if notice.state in DONE_STATES:
            return notice.state
        try:
            body = verify_document(doc, RESPONSE_TYPE)
        except SignatureError as exc:
            return _set(session, notice, "exception", f"the answer does not verify: {exc}")
        if body["public_key"] != peer.public_key.hex():
            return _set(
                session, notice, "exception", "the answer is signed by a key that is not this recipient's"
            )
        if body.get("nonce") != notice.nonce:
            return _set(session, notice, "exception", "the answer is for another request (nonce differs)")
        state = body.get("state")
        if state == "completed":
            check = verify_certificate(body.get("certificate") or {}, peer.public_key.hex().encode())
            if not check.ok:
                return _set(
                    session,
                    notice,
                    "exception",
                    f"the recipient's certificate does not verify: {check.reason}",
                )
        if state not in ("acknowledged", "completed", "not_found", "exception"):
            return _set(session, notice, "exception", f"the answer has an unknown state {state!r}")
        notice.response = doc
        return _set(session, notice, state, body.get("error"))


def _set(session: Session, notice: RecipientNotice, state: str, error: str | None) -> str:
    notice.state = state
    notice.last_error = error
    notice.updated_at = utcnow()
    if state in DONE_STATES:
        notice.doc_enc = None  # answered for good: the request naming the photos goes
        notice.doc_key = None
    audit.append(
        session,
        "erasure.recipient_state",
        {"request": notice.request_id, "nonce": notice.nonce, "state": state},
        actor="disgorge",
    )
    return state


def await_recipients(ctx: Context, request_id: str, *, wait: float) -> dict[str, str]:
    """Deliver and poll every open notice with an endpoint, with backoff, for up to
    ``wait`` seconds; mark the ones past their deadline overdue. Returns name -> state."""
    give_up = time.monotonic() + max(0.0, wait)
    delay = _BACKOFF_START
    first = True
    while True:
        for notice, peer in _open(ctx, request_id):
            # a refusal (exception) is tried again once per resume, not in a loop
            if peer.endpoint and (first or notice.state != "exception"):
                _attempt(ctx, notice, peer)
        first = False
        reachable = [n for n, p in _open(ctx, request_id) if p.endpoint and n.state != "exception"]
        if not reachable or time.monotonic() + delay > give_up:
            break
        time.sleep(delay)
        delay = min(delay * 2, _BACKOFF_CAP)
    now = utcnow()
    with ctx.sessions.begin() as session:
        for notice in session.scalars(
            select(RecipientNotice).where(RecipientNotice.request_id == request_id)
        ):
            if notice.state in ("pending", "acknowledged") and notice.deadline < now:
                _set(session, notice, "overdue", notice.last_error)
    return {n["recipient"]: n["state"] for n in notices_view(ctx, request_id)}


def _open(ctx: Context, request_id: str) -> list[tuple[RecipientNotice, Peer]]:
    with ctx.reader() as session:
        rows = session.execute(
            select(RecipientNotice, Peer)
            .join(Peer, Peer.id == RecipientNotice.peer_id)
            .where(RecipientNotice.request_id == request_id, RecipientNotice.state.not_in(DONE_STATES))
        )
        return [(notice, peer) for notice, peer in rows]


def _attempt(ctx: Context, notice: RecipientNotice, peer: Peer) -> None:
    """One delivery (POST) or, once acknowledged, one status poll (GET)."""
    with ctx.sessions.begin() as session:
        n = session.get_one(RecipientNotice, notice.id)
        n.attempts += 1
    try:
        if notice.state == "acknowledged" or (notice.state == "overdue" and notice.response):
            # only the sender may read the state: the poll is signed with our key (.query)
            signed = authorization(ctx, notice.nonce, peer.public_key)
            code, doc = _http(
                "GET", f"{peer.endpoint}/v1/erasure-requests/{notice.nonce}", authorization=signed
            )
        else:
            code, doc = _http("POST", f"{peer.endpoint}/v1/erasure-requests", request_document(ctx, notice))
    except (OSError, ValueError) as exc:  # refused, timed out, not JSON: try again later
        with ctx.sessions.begin() as session:
            n = session.get_one(RecipientNotice, notice.id)
            n.last_error = f"{peer.endpoint} unreachable: {exc.__class__.__name__}"
            n.updated_at = utcnow()
        return
    if code >= 400 and "body" not in doc:
        with ctx.sessions.begin() as session:
            n = session.get_one(RecipientNotice, notice.id)
            detail = doc.get("detail") or doc.get("error") or ""
            if code in (408, 429):  # busy or slow: like a 503, try again later
                n.last_error = f"HTTP {code}: {detail}"[:500]
            elif 400 <= code < 500:  # the recipient refused the request itself: a person must look
                _set(session, n, "exception", f"HTTP {code}: {detail}"[:500])
            else:
                n.last_error = f"HTTP {code}: {detail}"[:500]
        return
    _apply(ctx, notice.id, doc)


def import_response(ctx: Context, doc: dict[str, Any]) -> ResponseImported:
    """Record a recipient's answer delivered by hand (``disgorge erasure ack FILE``)."""
    body = doc.get("body") if isinstance(doc, dict) else None
    nonce = body.get("nonce") if isinstance(body, dict) else None
    with ctx.reader() as session:
        notice = session.scalar(select(RecipientNotice).where(RecipientNotice.nonce == str(nonce)))
        if notice is None:
            raise NotFound("this answer is for no erasure request sent from this workspace (unknown nonce)")
    state = _apply(ctx, notice.id, doc)
    return {"request": notice.request_id, "nonce": notice.nonce, "state": state}


def find_notice(session: Session, request_id: str, recipient: str) -> RecipientNotice:
    notice = session.scalar(
        select(RecipientNotice)
        .join(Peer, Peer.id == RecipientNotice.peer_id)
        .where(RecipientNotice.request_id == request_id, Peer.name == recipient)
    )
    if notice is None:
        raise NotFound(f"erasure {request_id} sent nothing to a recipient named {recipient!r}")
    return notice


def close_notice(ctx: Context, request_id: str, recipient: str, reason: str) -> NoticeClosed:
    if len(reason.strip()) < 3:
        raise InvalidInput("closing a recipient by hand needs a reason (it goes on the certificate)")
    with ctx.sessions.begin() as session:
        notice = find_notice(session, request_id, recipient)
        if notice.state in DONE_STATES:
            raise InvalidInput(f"the request to {recipient!r} is already {notice.state}")
        notice.closed_reason = reason
        _set(session, notice, "closed", notice.last_error)
        audit.append(
            session,
            "erasure.recipient_closed",
            {"request": request_id, "recipient": recipient},
            actor=ctx.actor,
        )
    return {"request": request_id, "recipient": recipient, "state": "closed"}


def notices_view(ctx: Context, request_id: str) -> list[NoticeView]:
    with ctx.reader() as session:
        rows = session.execute(
            select(RecipientNotice, Peer.name, Peer.public_key, Peer.endpoint)
            .join(Peer, Peer.id == RecipientNotice.peer_id)
            .where(RecipientNotice.request_id == request_id)
            .order_by(Peer.name)
        ).all()
    out: list[NoticeView] = []
    for notice, name, key, endpoint in rows:
        body = (notice.response or {}).get("body") or {}
        out.append(
            {
                "recipient": name,
                "public_key": key.hex(),
                "delivery": "http" if endpoint else "file",
                "transfers": notice.transfers,
                "items": notice.items,
                "nonce": notice.nonce,
                "state": notice.state,
                "deadline": iso(notice.deadline) or "",  # never None: the column is NOT NULL
                "attempts": notice.attempts,
                "last_error": notice.last_error,
                "closed_reason": notice.closed_reason,
                "answered_at": body.get("answered_at"),
                "certificate": body.get("certificate") if notice.state == "completed" else None,
            }
        )
    return out


def default_deadline(days: float) -> datetime:
    return utcnow() + timedelta(days=days)
