"""Assets: finding a stored photo by (a prefix of) its sha256, its catalog view, its bytes.

Users name a photo by the sha256 they can compute themselves, often shortened; every
command that takes a photo (``asset show``, ``erase photo``, ``models unlearn --sha``,
``analyze --sha``) resolves it here, so a prefix too short or ambiguous is refused the
same way everywhere.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from ._time import iso
from .catalog.models import Asset, AssetSubject, Subject
from .context import Context
from .errors import IntegrityError, InvalidInput, NotFound

__all__ = ["MIN_PREFIX", "AssetView", "asset_view", "find_asset", "read_asset"]

#: the fewest hex digits of a sha256 that name a photo (fewer would match too many)
MIN_PREFIX = 8


class AssetView(TypedDict):
    """An asset's catalog entry: hashes, type, size, source and subject refs (no personal data)."""

    id: str
    sha256: str
    size: int
    media_type: str
    width: int
    height: int
    source: str
    owner: str
    depicted: list[str]
    captured_at: str | None
    ingested_at: str | None
    state: str
    blob: str | None


def find_asset(session: Session, sha256: str) -> Asset:
    """The asset whose sha256 starts with ``sha256`` (at least :data:`MIN_PREFIX` digits)."""
    key = sha256.strip().lower()
    if len(key) < MIN_PREFIX:
        raise InvalidInput("give at least 8 hex digits of the asset's sha256")
    rows = session.scalars(select(Asset).where(Asset.sha256.startswith(key)).limit(2)).all()
    if not rows:
        raise NotFound(f"no asset with sha256 {key}")
    if len(rows) > 1:
        raise InvalidInput(f"sha256 prefix {key} is ambiguous; give more digits")
    return rows[0]


def asset_view(ctx: Context, sha256: str) -> AssetView:
    """An asset's catalog entry (hashes, type, size, source, subject refs)."""
    with ctx.reader() as session:
        asset = find_asset(session, sha256)
        subjects = session.execute(
            select(Subject.ref, AssetSubject.role)
            .join(AssetSubject, AssetSubject.subject_id == Subject.id)
            .where(AssetSubject.asset_id == asset.id)
            .order_by(AssetSubject.role.desc(), Subject.ref)
        ).all()
        return {
            "id": asset.id,
            "sha256": asset.sha256,
            "size": asset.size,
            "media_type": asset.media_type,
            "width": asset.width,
            "height": asset.height,
            "source": asset.source.name,
            "owner": asset.owner.ref,
            "depicted": [ref for ref, role in subjects if role == "depicted"],
            "captured_at": iso(asset.captured_at),
            "ingested_at": iso(asset.ingested_at),
            "state": asset.state,
            "blob": asset.blob_key,
        }


def read_asset(ctx: Context, sha256: str) -> bytes:
    """Decrypt and return the photo's original bytes, checked against its sha256: a blob
    swapped or damaged in the store is refused, never handed out as the photo."""
    with ctx.reader() as session:
        asset = find_asset(session, sha256)
        if asset.blob_key is None:
            raise NotFound(f"asset {asset.sha256[:12]} has no stored blob (state {asset.state})")
        data = ctx.vault.get_blob(asset.owner, asset.id, asset.blob_key)
    if hashlib.sha256(data).hexdigest() != asset.sha256:
        raise IntegrityError(f"asset {asset.sha256[:12]}: decrypted bytes do not match its sha256")
    return data
