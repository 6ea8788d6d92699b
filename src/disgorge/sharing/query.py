"""Signed state queries: who may read the state of an erasure request.

The state of a request (``GET /v1/erasure-requests/{nonce}``) says whether a named set of
photos was held and erased, so only the sender that sent it may read it, not anyone who
learned the nonce (from a log, a proxy, a copy of the request). The sender proves who it
is by signing a short query document with its Ed25519 key, the key the recipient
registered with ``disgorge sender add``::

    Authorization: Disgorge <base64url of the signed disgorge.erasure-query/1 document>

The body names the ``nonce`` asked about, the ``recipient_key`` it is addressed to and
``issued_at``; the recipient accepts it for :data:`MAX_SKEW_S` seconds either side of its
own clock. A query is a header rather than a query string so that access logs, which
print paths, never hold it. Replaying a captured query within its few minutes tells the
replayer only the state the sender was told anyway (an eavesdropper saw that answer).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime

from sqlalchemy import select

from .._time import iso, parse_instant, utcnow
from ..catalog.models import IncomingRequest
from ..context import Context
from ..errors import DisgorgeError
from .documents import SignatureError, Signer, sign_document, verify_document
from .peers import peer_by_key

__all__ = ["MAX_SKEW_S", "QUERY_TYPE", "SCHEME", "authorization", "check_authorization"]

QUERY_TYPE = "disgorge.erasure-query/1"
SCHEME = "Disgorge"
#: how far ``issued_at`` may be from the recipient's clock, either way (seconds)
MAX_SKEW_S = 300.0
_MAX_HEADER = 4096


def authorization(signer: Signer, nonce: str, recipient_key: bytes, *, at: datetime | None = None) -> str:
    """The ``Authorization`` header value with which this workspace (the sender) asks a
    recipient (its raw public key) about the request ``nonce``."""
    body = {
        "type": QUERY_TYPE,
        "nonce": nonce,
        "recipient_key": recipient_key.hex(),
        "issued_at": iso(at or utcnow()),
    }
    raw = json.dumps(sign_document(signer, body), separators=(",", ":")).encode()
    return f"{SCHEME} {base64.urlsafe_b64encode(raw).decode().rstrip('=')}"


def check_authorization(
    ctx: Context, header: str | None, nonce: str, *, recipient_key: str, now: datetime | None = None
) -> tuple[int, str] | None:
    """``None`` when ``header`` is a fresh query about ``nonce`` signed by the registered
    sender that sent that request; else ``(status, message)``: 401 no or bad signature,
    403 a key no sender holds or a stale query, 404 no such request *of this sender*
    (another sender's nonce is not confirmed to exist)."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme != SCHEME or not token or len(token) > _MAX_HEADER:
        return 401, f"sign the query: an 'Authorization: {SCHEME} ...' header from the sender"
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        body = verify_document(doc, QUERY_TYPE)
    except (ValueError, SignatureError):
        return 401, "the query's signature does not verify"
    if body.get("nonce") != nonce or body.get("recipient_key") != recipient_key:
        return 401, "the signed query is about another request or another recipient"
    try:
        issued = parse_instant(str(body.get("issued_at", "")), what="issued_at")
    except DisgorgeError:
        return 401, "the signed query has no valid issued_at"
    if abs(((now or utcnow()) - issued).total_seconds()) > MAX_SKEW_S:
        return 403, f"the signed query is stale (more than {MAX_SKEW_S:.0f} s from this server's clock)"
    with ctx.reader() as session:
        sender = peer_by_key(session, "sender", str(body.get("public_key")))
        if sender is None:
            return 403, "the query is signed by a key no registered sender holds"
        owner = session.scalar(select(IncomingRequest.peer_id).where(IncomingRequest.nonce == nonce))
    if owner != sender.id:
        return 404, "no such request"
    return None
