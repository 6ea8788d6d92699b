"""The transfers a workspace made and received, as one list (``disgorge transfer list``).

A transfer is written by :mod:`.share` (outgoing) or :mod:`.receive` (incoming, from a
bundle or a recorded legacy transfer); this module only reads them, so the CLI and an API
list them alike.
"""

from __future__ import annotations

from sqlalchemy import select
from typing_extensions import TypedDict

from .._time import iso
from ..catalog.models import Peer, Transfer
from ..context import Context
from ..errors import InvalidInput, NotFound

__all__ = ["TransferView", "list_transfers", "show_transfer"]


class TransferView(TypedDict):
    """One transfer, either direction."""

    id: str
    direction: str
    peer: str
    dataset: str | None
    purposes: list[str]
    at: str | None
    items: int
    backfilled: bool
    bundle_sha256: str | None


def _view(t: Transfer, peer: str) -> TransferView:
    return {
        "id": t.id,
        "direction": t.direction,
        "peer": peer,
        "dataset": t.dataset or None,
        "purposes": t.purposes,
        "at": iso(t.at),
        "items": t.items,
        "backfilled": bool(t.backfilled),
        "bundle_sha256": t.bundle_sha256 or None,
    }


def list_transfers(
    ctx: Context, *, direction: str | None = None, peer: str | None = None
) -> list[TransferView]:
    """Every transfer (``out`` or ``in`` only, with one peer only, if given), oldest first."""
    query = (
        select(Transfer, Peer.name).join(Peer, Peer.id == Transfer.peer_id).order_by(Transfer.at, Transfer.id)
    )
    if direction is not None:
        query = query.where(Transfer.direction == direction)
    if peer is not None:
        query = query.where(Peer.name == peer)
    with ctx.reader() as session:
        return [_view(t, name) for t, name in session.execute(query).all()]


def show_transfer(ctx: Context, transfer_id: str) -> TransferView:
    """One transfer, by its id or a unique prefix of it (6 characters at least)."""
    ident = transfer_id.strip()
    with ctx.reader() as session:
        query = select(Transfer, Peer.name).join(Peer, Peer.id == Transfer.peer_id)
        rows = session.execute(query.where(Transfer.id == ident)).all()
        if not rows and len(ident) >= 6:
            rows = session.execute(query.where(Transfer.id.startswith(ident, autoescape=True)).limit(2)).all()
        if len(rows) > 1:
            raise InvalidInput(f"transfer {ident!r} is ambiguous: give more of its id")
        if not rows:
            raise NotFound(f"no transfer {ident!r}; see `disgorge transfer list`")
        t, name = rows[0]
        return _view(t, name)
