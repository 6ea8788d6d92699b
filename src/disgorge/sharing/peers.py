"""The organisations a workspace deals with: recipients (we send to) and senders (we accept from).

A peer is a name and an Ed25519 public key. Documents are checked against the key
registered here, never against a key a document brings along: a bundle or an erasure
request signed by an unknown key is refused, whatever it claims to be.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from ..catalog.models import Peer
from ..context import Context, when
from ..errors import InvalidInput, NotFound
from ..signing import load_public_key

__all__ = ["ROLES", "PeerView", "add_peer", "find_peer", "list_peers", "peer_by_key", "peer_view"]

ROLES = ("recipient", "sender")


class PeerView(TypedDict):
    """A registered recipient or sender (``disgorge recipient list``)."""

    name: str
    role: str
    public_key: str
    endpoint: str | None
    agreement: str | None
    created_at: str


def add_peer(
    ctx: Context,
    role: str,
    name: str,
    *,
    public_key: bytes,
    endpoint: str = "",
    agreement: str = "",
    at: str | datetime | None = None,
) -> PeerView:
    """Register a recipient (we send photos to) or a sender (we accept them from)."""
    instant = when(at)
    with ctx.sessions.begin() as session:
        peer = _insert_peer(
            session, role, name, public_key=public_key, endpoint=endpoint, agreement=agreement, at=instant
        )
        audit.append(session, f"{role}.added", {"name": peer.name}, actor=ctx.actor, at=instant)
        return peer_view(peer)


def list_peers(ctx: Context, role: str) -> list[PeerView]:
    """The recipients or the senders, by name."""
    with ctx.reader() as session:
        return [
            peer_view(p) for p in session.scalars(select(Peer).where(Peer.role == role).order_by(Peer.name))
        ]


def _insert_peer(
    session: Session,
    role: str,
    name: str,
    *,
    public_key: bytes,
    endpoint: str,
    agreement: str,
    at: datetime,
) -> Peer:
    """The new row of a recipient or a sender (``public_key``: PEM or hex of the raw key)."""
    if role not in ROLES:
        raise InvalidInput(f"peer role {role!r}: expected recipient or sender")
    name = name.strip()
    if not name or "/" in name:
        raise InvalidInput(f"{role} name {name!r}: must be non-empty and contain no '/'")
    raw = load_public_key(public_key).public_bytes_raw()
    if endpoint:
        url = urlparse(endpoint)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise InvalidInput(
                f"endpoint {endpoint!r}: expected an http(s) URL such as http://127.0.0.1:8765"
            )
    if session.scalar(select(Peer).where(Peer.role == role, Peer.name == name)) is not None:
        raise InvalidInput(f"{role} {name!r} already exists")
    peer = Peer(
        role=role,
        name=name,
        public_key=raw,
        endpoint=endpoint.rstrip("/"),
        agreement=agreement,
        created_at=at,
    )
    session.add(peer)
    session.flush()
    return peer


def find_peer(session: Session, role: str, name: str) -> Peer:
    peer = session.scalar(select(Peer).where(Peer.role == role, Peer.name == name))
    if peer is None:
        hint = "disgorge recipient add" if role == "recipient" else "disgorge sender add"
        raise NotFound(f"no {role} named {name!r}; register it with `{hint}`")
    return peer


def peer_by_key(session: Session, role: str, key_hex: str) -> Peer | None:
    try:
        raw = bytes.fromhex(key_hex)
    except ValueError:
        return None
    return session.scalar(select(Peer).where(Peer.role == role, Peer.public_key == raw))


def peer_view(peer: Peer) -> PeerView:
    return {
        "name": peer.name,
        "role": peer.role,
        "public_key": peer.public_key.hex(),
        "endpoint": peer.endpoint or None,
        "agreement": peer.agreement or None,
        "created_at": peer.created_at.isoformat(),
    }
