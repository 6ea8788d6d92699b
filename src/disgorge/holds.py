"""Legal holds as the erasure planner sees them: which photos and models they keep.

A hold names a subject (every photo they own or appear in), a source (its photos), a
dataset (the photos of every version of it, and the versions themselves) or a model
(every version of it). An erasure that reaches held items erases the rest and leaves these
``withheld`` (:mod:`disgorge.erasure.plan` splits them off, the ``tombstone_assets`` and ``retire_models``
steps mark them); releasing the last hold on them finishes the erasure
(:func:`disgorge.dsr.holds.release`). Holds are read at planning and again at approval, so a
hold placed before an erasure is approved is honoured by it.

Withheld is not a place to keep using data: a withheld photo leaves every consent gate
refused (the gate passes active photos only) and a withheld model predicts nothing; it is
kept, untouched, for whoever ordered the hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .catalog import in_chunks
from .catalog.dsr_models import LegalHold
from .catalog.models import Artifact, Asset, AssetSubject, DatasetMember, DatasetVersion

__all__ = ["HOLD_KINDS", "active_holds", "held_artifacts", "held_assets", "holds_on"]

#: what a hold can name
HOLD_KINDS = ("subject", "source", "dataset", "model")


def active_holds(session: Session) -> list[LegalHold]:
    """The holds not released, oldest first."""
    return list(
        session.scalars(
            select(LegalHold)
            .where(LegalHold.released_at.is_(None))
            .order_by(LegalHold.created_at, LegalHold.id)
        )
    )


def _covered(hold: LegalHold) -> Any:
    """The condition on :class:`Asset` rows a hold keeps (None: it keeps no photos)."""
    if hold.target_kind == "subject":
        subject_id = int(hold.target_key)
        return or_(
            Asset.owner_id == subject_id,
            Asset.id.in_(select(AssetSubject.asset_id).where(AssetSubject.subject_id == subject_id)),
        )
    if hold.target_kind == "source":
        return Asset.source_id == int(hold.target_key)
    if hold.target_kind == "dataset":
        versions = select(DatasetVersion.artifact_id).where(DatasetVersion.name == hold.target_key)
        return Asset.id.in_(select(DatasetMember.asset_id).where(DatasetMember.dataset_id.in_(versions)))
    return None


def held_assets(session: Session, in_scope: Sequence[str] | Any) -> dict[str, list[str]]:
    """Photo id -> ids of the active holds that keep it, for the photos ``in_scope`` (a list
    of ids, or a ``select`` of them for a large scope)."""
    found: dict[str, list[str]] = {}
    for hold in active_holds(session):
        condition = _covered(hold)
        if condition is None:
            continue
        parts = [in_scope] if not isinstance(in_scope, Sequence) else list(in_chunks(list(in_scope)))
        for part in parts:
            for asset_id in session.scalars(select(Asset.id).where(Asset.id.in_(part), condition)):
                found.setdefault(asset_id, []).append(hold.id)
    return found


def held_artifacts(session: Session, artifact_ids: Sequence[str]) -> dict[str, list[str]]:
    """Artifact id -> ids of the active holds that keep it (models by name, dataset versions
    by their dataset's name), for these artifacts."""
    by_name: dict[tuple[str, str], list[str]] = {}
    for hold in active_holds(session):
        if hold.target_kind in ("model", "dataset"):
            kind = "model" if hold.target_kind == "model" else "dataset_version"
            by_name.setdefault((kind, hold.target_key), []).append(hold.id)
    if not by_name or not artifact_ids:
        return {}
    found: dict[str, list[str]] = {}
    for part in in_chunks(list(artifact_ids)):
        for art_id, kind, name in session.execute(
            select(Artifact.id, Artifact.kind, Artifact.name).where(Artifact.id.in_(part))
        ):
            holds = by_name.get((kind, name))
            if holds:
                found[art_id] = holds
    return found


def holds_on(session: Session, hold_ids: Sequence[str]) -> list[dict[str, str]]:
    """The holds named, as a plan and a certificate show them: id, what it keeps, why."""
    rows = session.scalars(select(LegalHold).where(LegalHold.id.in_(sorted(set(hold_ids))))).all()
    return [
        {"hold": h.id, "target": h.target_ref, "reason": h.reason} for h in sorted(rows, key=lambda h: h.id)
    ]
