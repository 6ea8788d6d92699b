"""The recipient's side: erasure requests from senders, answered with signed documents.

``receive`` checks a request (a registered sender's signature, addressed to this
workspace, a nonce not used for another document) and matches the photos it names
against what this workspace received from that sender (by the fingerprints of the
bundle) or, for a legacy transfer, by sha256. ``process`` runs this workspace's own
erasure of the matched photos — its blobs, embeddings, datasets and models, with its
own forensic scan — and ``answer`` signs the state, with this workspace's certificate
once completed. The same request sent twice (a sender retrying) is one request; a
different document under a used nonce is a replay and is refused.

Every function returns ``(http_status, signed_or_error_document)`` so the HTTP server
and the file route (``disgorge erasure receive``, :func:`receive_file`) answer alike.

The erasure itself is this workspace's own (:mod:`disgorge.erasure.service`): a
received request is one more scope (``request``) of the same engine.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._time import iso, parse_instant, utcnow
from ..audit.service import TreeHead, checkpoint
from ..catalog.db import in_chunks
from ..catalog.models import Asset, ErasureRequest, IncomingRequest, Peer, Transfer, TransferItem
from ..context import Context
from ..erasure.service import approve, erase, resume
from ..errors import DisgorgeError, InvalidInput
from ..signing import SignedDocument
from .documents import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    SignatureError,
    document_sha256,
    sign_document,
    verify_document,
)
from .peers import peer_by_key

__all__ = ["Answer", "ErasureResponse", "ErasureResponseBody", "answer", "process", "receive", "receive_file"]

_MAX_ITEMS = 1_000_000

#: an HTTP status and the document that goes with it: signed, or ``{"error": ...}``
Answer = tuple[int, dict[str, Any]]


class ErasureResponseBody(TypedDict):
    """What a recipient answers to a request (``disgorge.erasure-response/1``, docs/sharing.md)."""

    type: str
    nonce: str
    #: acknowledged, completed, not_found or exception
    state: str
    #: how many photos the request named, and how many of them this workspace holds
    named: int
    matched: int
    answered_at: str
    #: this workspace's own signed certificate, once its erasure completed
    certificate: SignedDocument | None
    error: str | None
    #: a witness of this workspace's audit log, for the sender to keep (docs/audit.md)
    audit_tree_head: TreeHead
    #: the signer's key (hex), added when signed
    public_key: str


class ErasureResponse(TypedDict):
    """The signed answer: a signed document whose body is an :class:`ErasureResponseBody`."""

    body: ErasureResponseBody
    signature: str
    algorithm: str


def _error(status: int, message: str) -> Answer:
    return status, {"error": message}


def receive(ctx: Context, doc: Any) -> Answer:
    """Check and record a request; 202 with ``acknowledged`` when there is work to do."""
    try:
        body = verify_document(doc, REQUEST_TYPE)
    except SignatureError as exc:
        return _error(400, str(exc))
    nonce = body.get("nonce")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        return _error(400, "the request has no valid nonce")
    ours = ctx.public_key().public_bytes_raw().hex()  # before any session: one at a time
    if body.get("recipient_key") != ours:
        return _error(403, "the request is addressed to another workspace")
    items = body.get("items")
    if (
        not isinstance(items, list)
        or not all(isinstance(i, dict) and isinstance(i.get("values", []), list) for i in items)
        or sum(len(i.get("values", [])) for i in items) > _MAX_ITEMS
    ):
        return _error(400, "the request's items are missing or too many")
    digest = document_sha256(doc)
    # the checks and the matching read a snapshot (no write lock, so they never queue behind
    # an erasure); the write lock is taken only to record, and the nonce checked again there
    with ctx.reader() as session:
        sender = peer_by_key(session, "sender", body["public_key"])
        if sender is None:
            return _error(403, "the request is signed by a key no registered sender holds")
        sender_id, sender_name = sender.id, sender.name
        matched: tuple[list[str], int] | None = None
        if session.get(IncomingRequest, nonce) is None:
            matched = _match(session, sender, items)
    with ctx.sessions.begin() as session:
        earlier = session.get(IncomingRequest, nonce)
        if earlier is not None:
            if earlier.doc_sha256 != digest or earlier.peer_id != sender_id:
                audit.append(
                    session,
                    "erasure.request_replayed",
                    {"nonce": nonce, "sender": sender_name},
                    actor="disgorge",
                )
                return _error(409, "this nonce was already used for another request (a replay); refused")
        else:
            asset_ids, named = matched or _match(session, sender, items)  # gone meanwhile: match here
            try:
                deadline = parse_instant(body.get("deadline", ""), what="deadline")
            except DisgorgeError:
                deadline = None
            session.add(
                IncomingRequest(
                    nonce=nonce,
                    peer_id=sender_id,
                    doc_sha256=digest,
                    received_at=utcnow(),
                    deadline=deadline,
                    asset_ids=asset_ids,
                    named=named,
                    state="received" if asset_ids else "not_found",
                )
            )
            audit.append(
                session,
                "erasure.request_received",
                {"nonce": nonce, "sender": sender_name, "named": named, "matched": len(asset_ids)},
                actor="disgorge",
            )
    return answer(ctx, nonce)


def _match(session: Session, sender: Peer, items: list[Any]) -> tuple[list[str], int]:
    """Active photos the request names, among what THIS sender sent us (its incoming
    transfer items): by the sender's fingerprints, or by sha256 (legacy transfers).

    A photo another sender sent, or one this workspace holds from a source of its own, is
    out of a sender's reach: it is simply not matched (``not_found``), exactly as if it were
    not held at all, so the answer reveals nothing about what else is held here."""
    found: set[str] = set()
    named = 0
    for group in items:
        values = [v for v in group.get("values", []) if isinstance(v, str)]
        named += len(values)
        for chunk in in_chunks(values):
            by = (
                Asset.sha256.in_(chunk)
                if group.get("id_kind") == "sha256"
                else TransferItem.fingerprint.in_(chunk)
            )
            query = (
                select(TransferItem.asset_id)
                .join(Transfer, Transfer.id == TransferItem.transfer_id)
                .join(Asset, Asset.id == TransferItem.asset_id)
                .where(Transfer.direction == "in", Transfer.peer_id == sender.id, by)
            )
            found.update(session.scalars(query))
    active = sorted(session.scalars(select(Asset.id).where(Asset.id.in_(found), Asset.state == "active")))
    return active, named


def process(ctx: Context, nonce: str, *, wait: float = 30.0) -> Answer:
    """Run this workspace's erasure for a received request (resuming one under way)."""
    with ctx.reader() as session:
        incoming = session.get(IncomingRequest, nonce)
        if incoming is None:
            return _error(404, "no such request")
        state, erasure_id = incoming.state, incoming.erasure_id
        if erasure_id is None:  # a crash may have come between planning and recording it here
            sender = session.get_one(Peer, incoming.peer_id)
            erasure_id = session.scalar(
                select(ErasureRequest.id).where(
                    ErasureRequest.scope_kind == "request",
                    ErasureRequest.scope_ref == f"request:{sender.name}:{nonce[:16]}",
                    ErasureRequest.state != "cancelled",
                )
            )
        erasure = session.get(ErasureRequest, erasure_id) if erasure_id is not None else None
        erasure_state = erasure.state if erasure is not None else None
    if state in ("completed", "not_found"):
        return answer(ctx, nonce)
    try:
        if erasure_id is None:
            reason = f"erasure request {nonce[:12]} from a sender"
            view = erase(ctx, "request", nonce, reason=reason, execute=False)
            erasure_id, erasure_state = view["id"], view["state"]
        if state != "executing" or incoming.erasure_id != erasure_id:
            with ctx.sessions.begin() as session:
                row = session.get_one(IncomingRequest, nonce)
                row.erasure_id, row.state = erasure_id, "executing"
        if erasure_state == "planned":  # also when a crash came before the approval
            view = approve(ctx, erasure_id, wait=wait)
        else:
            view = resume(ctx, erasure_id, wait=wait)
        final = "completed" if view["state"] == "completed" else "executing"
        error = None
    except DisgorgeError as exc:
        final, error = "exception", str(exc)
    with ctx.sessions.begin() as session:
        row = session.get_one(IncomingRequest, nonce)
        row.state, row.error = final, error
    return answer(ctx, nonce)


def answer(ctx: Context, nonce: str) -> Answer:
    """The signed state of a received request (with the certificate once completed)."""
    with ctx.reader() as session:
        incoming = session.get(IncomingRequest, nonce)
        if incoming is None:
            return _error(404, "no such request")
        certificate = None
        if incoming.erasure_id is not None:
            req = session.get_one(ErasureRequest, incoming.erasure_id)
            certificate = req.certificate or None if req.state == "completed" else None
        state = {"received": "acknowledged", "executing": "acknowledged"}.get(incoming.state, incoming.state)
        body = {
            "type": RESPONSE_TYPE,
            "nonce": nonce,
            "state": state,
            "named": incoming.named,
            "matched": len(incoming.asset_ids),
            "answered_at": iso(utcnow()),
            "certificate": certificate,
            "error": incoming.error,
        }
    # the sender keeps a witness of the audit log with every answer (docs/audit.md)
    body["audit_tree_head"] = checkpoint(ctx, save_cache=False)  # an answer never waits to write
    return (202 if state == "acknowledged" else 200), sign_document(ctx, body)


def receive_file(ctx: Context, document: dict[str, Any], *, wait: float = 30.0) -> ErasureResponse:
    """A request delivered as a file: check it, erase, and return the signed answer (with
    this workspace's certificate once completed); a refused one raises :class:`InvalidInput`."""
    status, signed = receive(ctx, document)
    if status >= 400:
        raise InvalidInput(f"erasure request refused: {signed['error']}")
    if status == 202:
        status, signed = process(ctx, signed["body"]["nonce"], wait=wait)
    # past a recorded request, every route ends in ``answer``'s signed response
    return cast(ErasureResponse, signed)
