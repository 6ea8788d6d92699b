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

__all__ = ["TransferView", "list_transfers"]


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


def list_transfers(ctx: Context) -> list[TransferView]:
    """Every transfer, oldest first."""
    with ctx.reader() as session:
        rows = session.execute(
            select(Transfer, Peer.name).join(Peer, Peer.id == Transfer.peer_id).order_by(Transfer.at)
        ).all()
        return [
            {
                "id": t.id,
                "direction": t.direction,
                "peer": name,
                "dataset": t.dataset or None,
                "purposes": t.purposes,
                "at": iso(t.at),
                "items": t.items,
                "backfilled": bool(t.backfilled),
                "bundle_sha256": t.bundle_sha256 or None,
            }
            for t, name in rows
        ]
