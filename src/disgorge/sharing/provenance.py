"""Provenances of a photo, and what a sender's erasure request removes (design note 19).

The same bytes can be held through several provenances: the source this workspace
ingested them from itself (and any other source of its own whose ingest met the same
bytes later: ``asset_sources``), and each incoming transfer that carried them (a bundle,
or a recorded legacy transfer). A source that only holds what incoming transfers carried is not
a provenance of its own: its photos are held through their transfer items.

A sender's request reaches only that sender's provenance. A photo also held through
another one (a second sender's transfer, or a source of this workspace's own) is not
erased: the sender's transfer items, the per-photo terms that came with them and the
subject links its bundle brought are removed, the bytes stay, and the photo is listed for
review by catalog id. Only photos held through nothing else are erased.
"""

from __future__ import annotations

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from ..catalog.db import in_chunks
from ..catalog.models import Asset, AssetSource, AssetSubject, ConsentRecord, Transfer, TransferItem

__all__ = ["release_provenance", "split_by_provenance"]


def _sender_transfers(session: Session, sender_id: int) -> list[str]:
    return list(
        session.scalars(select(Transfer.id).where(Transfer.direction == "in", Transfer.peer_id == sender_id))
    )


def split_by_provenance(
    session: Session, sender_id: int, asset_ids: list[str]
) -> tuple[list[str], list[str]]:
    """(photos to erase: held only through this sender, photos held through another provenance too)."""
    transfer_sources = set(
        session.scalars(
            select(Transfer.source_id).where(Transfer.direction == "in", Transfer.source_id.is_not(None))
        )
    )
    elsewhere: set[str] = set()
    for chunk in in_chunks(asset_ids):
        for asset_id, source_id in session.execute(
            select(Asset.id, Asset.source_id).where(Asset.id.in_(chunk))
        ):
            if source_id not in transfer_sources:  # collected here, from a source of our own
                elsewhere.add(asset_id)
        # another source of our own met the same bytes later (ingest records it)
        elsewhere.update(session.scalars(select(AssetSource.asset_id).where(AssetSource.asset_id.in_(chunk))))
        elsewhere.update(
            session.scalars(
                select(TransferItem.asset_id)
                .join(Transfer, Transfer.id == TransferItem.transfer_id)
                .where(
                    TransferItem.asset_id.in_(chunk),
                    Transfer.direction == "in",
                    Transfer.peer_id != sender_id,
                )
            )
        )
    erase = sorted(a for a in asset_ids if a not in elsewhere)
    return erase, sorted(elsewhere & set(asset_ids))


def release_provenance(session: Session, sender_id: int, asset_ids: list[str]) -> int:
    """Remove the sender's provenance of photos that stay: its transfer items, the per-photo
    terms its transfers brought, and the subject links its bundle brought (depicted ones: the
    owner link stays, the photo is sealed under that subject's key). Idempotent."""
    transfers = _sender_transfers(session, sender_id)
    if not transfers or not asset_ids:
        return 0
    sources = set(session.scalars(select(Transfer.source_id).where(Transfer.id.in_(transfers))))
    removed = 0
    for chunk in in_chunks(asset_ids):
        deleted = session.execute(
            delete(TransferItem).where(
                TransferItem.asset_id.in_(chunk), TransferItem.transfer_id.in_(transfers)
            )
        )
        assert isinstance(deleted, CursorResult)  # a DELETE's result counts its rows
        removed += deleted.rowcount
        session.execute(
            delete(ConsentRecord).where(
                ConsentRecord.asset_id.in_(chunk), ConsentRecord.transfer_id.in_(transfers)
            )
        )
        came_with_sender = select(Asset.id).where(Asset.id.in_(chunk), Asset.source_id.in_(sources))
        session.execute(
            delete(AssetSubject).where(
                AssetSubject.asset_id.in_(came_with_sender), AssetSubject.role == "depicted"
            )
        )
    return removed
