"""Assets: finding a stored photo by (a prefix of) its sha256, its catalog view, its bytes.

Users name a photo by the sha256 they can compute themselves, often shortened; every
command that takes a photo (``asset show``, ``erase photo``, ``models unlearn --sha``,
``analyze --sha``) resolves it here, so a prefix too short or ambiguous is refused the
same way everywhere. Listing is :func:`list_assets` (a page, filtered in SQL); a person's
read of the bytes is :func:`read_asset_audited` (the API's), which records ``asset.read``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from . import audit
from ._time import iso
from .catalog.models import Asset, AssetSubject, Source, Subject
from .context import Context, when
from .errors import IntegrityError, InvalidInput, NotFound

__all__ = [
    "MIN_PREFIX",
    "AssetList",
    "AssetView",
    "asset_view",
    "find_asset",
    "list_assets",
    "read_asset",
    "read_asset_audited",
]

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


class AssetList(TypedDict):
    """One page of assets (:func:`list_assets`) and how many match in all."""

    total: int
    items: list[AssetView]


def _views(session: Session, assets: Sequence[Asset]) -> list[AssetView]:
    """The views of ``assets``, with three queries whatever their number."""
    ids = [a.id for a in assets]
    refs = dict(
        session.execute(
            select(Subject.id, Subject.ref).where(Subject.id.in_({a.owner_id for a in assets}))
        ).all()
    )
    sources = dict(
        session.execute(
            select(Source.id, Source.name).where(Source.id.in_({a.source_id for a in assets}))
        ).all()
    )
    depicted: dict[str, list[str]] = {}
    for asset_id, ref in session.execute(
        select(AssetSubject.asset_id, Subject.ref)
        .join(Subject, AssetSubject.subject_id == Subject.id)
        .where(AssetSubject.asset_id.in_(ids), AssetSubject.role == "depicted")
        .order_by(Subject.ref)
    ):
        depicted.setdefault(asset_id, []).append(ref)
    return [
        {
            "id": a.id,
            "sha256": a.sha256,
            "size": a.size,
            "media_type": a.media_type,
            "width": a.width,
            "height": a.height,
            "source": sources[a.source_id],
            "owner": refs[a.owner_id],
            "depicted": depicted.get(a.id, []),
            "captured_at": iso(a.captured_at),
            "ingested_at": iso(a.ingested_at),
            "state": a.state,
            "blob": a.blob_key,
        }
        for a in assets
    ]


def asset_view(ctx: Context, sha256: str) -> AssetView:
    """An asset's catalog entry (hashes, type, size, source, subject refs)."""
    with ctx.reader() as session:
        return _views(session, [find_asset(session, sha256)])[0]


def list_assets(
    ctx: Context, *, source: str | None = None, state: str | None = None, limit: int = 100, offset: int = 0
) -> AssetList:
    """The assets (of ``source``, in ``state``), oldest ingested first: ``limit`` of them
    from ``offset``, and how many match in all."""
    with ctx.reader() as session:
        where = []
        if source is not None:
            source_id = session.scalar(select(Source.id).where(Source.name == source))
            if source_id is None:
                raise NotFound(f"no source named {source!r}")
            where.append(Asset.source_id == source_id)
        if state is not None:
            where.append(Asset.state == state)
        total = session.scalar(select(func.count()).select_from(Asset).where(*where))
        rows = session.scalars(
            select(Asset).where(*where).order_by(Asset.ingested_at, Asset.sha256).limit(limit).offset(offset)
        ).all()
        return {"total": int(total or 0), "items": _views(session, rows)}


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


def read_asset_audited(ctx: Context, sha256: str, *, at: str | datetime | None = None) -> tuple[bytes, str]:
    """:func:`read_asset` for a person (the API's ``asset:bytes``): the bytes and their media
    type, handed out only once an ``asset.read`` event (the asset's id, the actor) is committed."""
    data = read_asset(ctx, sha256)
    with ctx.sessions.begin() as session:
        asset = find_asset(session, sha256)
        audit.append(session, "asset.read", {"asset": asset.id}, actor=ctx.actor, at=when(at))
        media_type = asset.media_type
    return data, media_type
