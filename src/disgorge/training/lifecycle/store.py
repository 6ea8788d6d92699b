"""What every step of a model's life needs: its sealed checkpoints, the embeddings to
retrain from, and the biometric consent check.

Checkpoints are sealed with the workspace's model key, kept wrapped by the KEK in the
catalog; workspaces made before models existed get that key on first use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ...catalog.models import Asset, Meta
from ...consent import ConsentGate, ItemRef, Purpose
from ...context import Context
from ...errors import IntegrityError
from ...vault import new_key
from ..registry import SealedCheckpoints, load_training_data
from ..sisa import Loader

__all__ = ["MODEL_AAD", "biometric_gaps", "checkpoints", "embedding_loader"]

#: associated data of the wrapped model key in the catalog's ``meta`` table
MODEL_AAD = b"disgorge:model-key"


def checkpoints(ctx: Context, model_name: str) -> SealedCheckpoints:
    """The sealed checkpoint store of one model (its versions share checkpoints; two
    models never do, so unlearning one never destroys the other's files)."""
    with ctx.sessions.begin() as session:
        row = session.get(Meta, "model_key")
        if row is None:  # workspaces made before models existed get their key on first use
            row = Meta(key="model_key", value=ctx.kek.wrap(new_key(), MODEL_AAD))
            session.add(row)
        key = ctx.kek.unwrap(row.value, MODEL_AAD)
    folder = hashlib.sha256(model_name.encode()).hexdigest()[:16]  # a name may hold any character
    return SealedCheckpoints(ctx.home / "models" / folder / "checkpoints", key)


def embedding_loader(ctx: Context) -> Loader:
    """``loader(ids) -> (X, labels)`` for SISA retraining, read from the catalog; refuses
    when a photo lost its embedding, since the retrained shard would then not be exact."""

    def loader(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        with ctx.reader() as s:
            d = load_training_data(s, ctx.vault, list(ids))
        if len(d.asset_ids) != len(ids):
            raise IntegrityError(
                "some remaining training photos lost their embeddings; cannot retrain exactly"
            )
        return d.X, d.labels

    return loader


def biometric_gaps(session: Session, asset_ids: list[str], at: datetime) -> dict[str, int]:
    """How many of these photos are not covered for ``biometric_processing`` at ``at``,
    by the rule that refused them (empty: all covered)."""
    rows = session.execute(
        select(Asset.id, Asset.source_id, Asset.owner_id).where(Asset.id.in_(asset_ids))
    ).all()
    verdicts = ConsentGate(session, Purpose.BIOMETRIC_PROCESSING, at).evaluate(
        [ItemRef(r.id, r.source_id, r.owner_id) for r in rows]
    )
    gaps: dict[str, int] = {}
    for v in verdicts.values():
        if not v.allowed:
            gaps[v.rule] = gaps.get(v.rule, 0) + 1
    return gaps
