"""Has a model forgotten? Membership inference and the retrain-from-scratch proof.

Two independent checks of one claim. LiRA (membership inference over the SISA shards)
asks whether the model still behaves as if it saw the photos; retraining the shards that
held them from scratch, without them, and comparing weights digests proves that the
unlearned model is the model that never saw them, which an attack alone cannot.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from typing_extensions import TypedDict

from ...catalog.models import AssetSubject
from ...context import Context
from ...subjects import find_subject
from ..forgetting import lira_audit, retrain_check
from ..registry import (
    TrainingData,
    audit_candidates,
    ever_trained,
    find_model,
    load_model,
    load_training_data,
)
from ..sisa import SISAClassifier
from .store import checkpoints, embedding_loader

__all__ = ["ModelAudit", "membership_audit", "model_audit"]


class ModelAudit(TypedDict):
    """What :func:`model_audit` found for a set of subjects."""

    model: str
    forgotten_subjects: int
    photos: int
    ever_trained_on: int
    still_trained_on_them: int
    membership_inference: dict[str, Any]
    retrained_from_scratch: dict[str, Any]
    #: None when there was nothing to check
    forgotten_exactly: bool | None


def membership_audit(
    model: SISAClassifier,
    members: TrainingData,
    candidates: TrainingData,
    photo_shard: dict[str, int],
    subject_shard: dict[str, int],
) -> dict[str, Any]:
    """LiRA on ``members`` (photos some version trained on) against the shards that
    trained them, with ``candidates`` as non-members where they fit."""
    return lira_audit(
        model,
        members_X=members.X,
        member_shards=[photo_shard[a] for a in members.asset_ids],
        member_subjects=members.labels.tolist(),
        others_X=candidates.X,
        other_subjects=candidates.labels.tolist(),
        subject_shard=subject_shard,
        member_ids=members.asset_ids,
    )


def model_audit(ctx: Context, ref: str, *, forgotten: list[str]) -> ModelAudit:
    """Has this model version forgotten these subjects? Membership inference (LiRA over
    the SISA shards) on their photos, and the proof: the shards that held them,
    retrained from scratch without them, have the same weights digest as this model."""
    with ctx.reader() as session:
        artifact = find_model(session, ref)
        model = load_model(artifact, checkpoints(ctx, artifact.name))
        trained = {i for s in model.shards_ for i in s.ids}
        targets: set[str] = set()
        for subject_id in forgotten:
            subject = find_subject(session, ctx.vault, subject_id)
            targets.update(
                session.scalars(select(AssetSubject.asset_id).where(AssetSubject.subject_id == subject.id))
            )
        photo_shard, subject_shard = ever_trained(session, artifact)
        ever = sorted(targets & set(photo_shard))
        members = load_training_data(session, ctx.vault, ever)
        candidates = audit_candidates(session, ctx.vault, targets)
    label = f"model:{artifact.name}@{artifact.version}"
    if not ever:
        reason = "neither this version nor those it was unlearned from trained on any of their photos"
        mia: dict[str, Any] = {"ran": False, "reason": reason, "members": 0, "non_members": 0}
        check: dict[str, Any] = {"ran": False, "reason": reason}
    else:
        mia = membership_audit(model, members, candidates, photo_shard, subject_shard)
        if not len(members.asset_ids):
            mia["reason"] = (
                "no member photos left to attack with: their photos have no face embedding any more "
                "(erased); the audit made when the model forgot them is in its forgetting_audit"
            )
        shards = sorted({photo_shard[a] for a in ever})
        check = retrain_check(model, shards, embedding_loader(ctx), without=targets)
    still = len(targets & trained)
    return {
        "model": label,
        "forgotten_subjects": len(forgotten),
        "photos": len(targets),
        "ever_trained_on": len(ever),
        "still_trained_on_them": still,
        "membership_inference": mia,
        "retrained_from_scratch": check,
        "forgotten_exactly": bool(check.get("identical")) and still == 0 if check["ran"] else None,
    }
