"""Unlearning: a model forgets photos exactly, and the old version's traces go.

Only the SISA shards that held the photos are retrained, from their last checkpoint that
saw none of them; the new version is trained on a new dataset version without them, and
the old version is retired. Order matters for a crash: the old checkpoints stay until
the new version is recorded, so a crash before that leaves the old version active and
whole; a crash after it is finished by the next unlearning call
(:func:`finish_unlearning`).
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from typing import Any, NotRequired

from sqlalchemy import select
from typing_extensions import TypedDict

from ... import audit
from ...assets import find_asset
from ...catalog.models import Artifact, Asset, AssetSubject, DatasetVersion
from ...cluster import connect
from ...consent import ConsentGate, ItemRef, Purpose
from ...context import Context, when
from ...datasets import derive_without
from ...errors import NotFound
from ...runs import running
from ...subjects import find_subject
from ..forgetting import retrain_check
from ..registry import audit_candidates, ever_trained, find_model, load_model, load_training_data
from ..sisa import ShardRunner
from .store import checkpoints, embedding_loader
from .verify import membership_audit

__all__ = ["Unlearned", "finish_unlearning", "unlearn_model"]


#: what :func:`unlearn_model` did; with nothing to forget, only ``model``, ``forgotten``
#: (0) and ``message``. ``from`` (the version it was unlearned from) is a keyword, hence
#: the functional syntax.
Unlearned = TypedDict(
    "Unlearned",
    {
        "model": str,
        "from": NotRequired[str],
        "dataset": NotRequired[str],
        "requested": NotRequired[int],
        "forgotten": int,
        "lapsed_consent": NotRequired[int],
        "shards_retrained": NotRequired[list[int]],
        "slices_retrained": NotRequired[int],
        "checkpoints_destroyed": NotRequired[int],
        "classes_removed": NotRequired[int],
        "forgetting_audit": NotRequired[dict[str, Any]],
        "message": str,
    },
)


def _checkpoint_keys(art: Artifact) -> set[str]:
    shards = (art.extra or {}).get("manifest", {}).get("shards", [])
    return {k for s in shards for k in s["checkpoints"] if k}


def finish_unlearning(ctx: Context, name: str, at: datetime) -> None:
    """Complete an unlearning cut short after its new version was recorded: retire the
    version it was unlearned from and destroy the checkpoints only that one held."""
    with ctx.sessions.begin() as session:
        try:
            latest = find_model(session, name)
            source = (latest.extra or {}).get("unlearned_from")
            old = find_model(session, f"{name}@{source}") if source else None
        except NotFound:
            return
        if old is None or latest.state != "active":
            return
        stale = _checkpoint_keys(old) - _checkpoint_keys(latest)
        if old.state == "active":
            old.state = "retired"
            audit.append(
                session,
                "model.unlearned",
                {
                    "model": f"model:{old.name}@{old.version}",
                    "new_version": f"model:{latest.name}@{latest.version}",
                    "resumed": True,
                    "checkpoints_destroyed": len(stale),
                },
                actor=ctx.actor,
                at=at,
            )
    store = checkpoints(ctx, name)
    for key in stale:
        store.destroy(key)  # a no-op for those already gone


def unlearn_model(
    ctx: Context,
    name: str,
    *,
    subjects: list[str] | None = None,
    shas: list[str] | None = None,
    asset_ids: list[str] | None = None,
    reason: str = "unlearning request",
    at: str | datetime | None = None,
    cluster: str | None = None,
) -> Unlearned:
    """Make model ``name`` forget photos (or every photo of subjects), exactly.

    Retrains only the affected SISA shards from their last clean checkpoint, destroys
    every checkpoint that saw the photos, and registers a new model version trained
    on a new dataset version without them; the old version is retired. Photos whose
    consent no longer covers training are forgotten too (and reported).

    ``cluster`` (``tcp://HOST:PORT``) retrains the affected shards as tasks on a Dask
    cluster, with the same result (see :mod:`disgorge.cluster`); it is connected to
    before anything is written. The retrain-from-scratch check runs here.
    """
    with connect(cluster) if cluster else nullcontext() as dask:
        return _unlearn(ctx, name, subjects, shas, asset_ids, reason, at, dask.map if dask else None)


def _unlearn(
    ctx: Context,
    name: str,
    subjects: list[str] | None,
    shas: list[str] | None,
    asset_ids: list[str] | None,
    reason: str,
    at: str | datetime | None,
    runner: ShardRunner | None,
) -> Unlearned:
    instant = when(at)
    finish_unlearning(ctx, name.partition("@")[0], instant)
    with ctx.reader() as session:
        artifact = find_model(session, name)
        model = load_model(artifact, checkpoints(ctx, artifact.name))
        trained = {i for s in model.shards_ for i in s.ids}
        forget: set[str] = set()
        for subject_id in subjects or []:
            subject = find_subject(session, ctx.vault, subject_id)
            forget.update(
                session.scalars(select(AssetSubject.asset_id).where(AssetSubject.subject_id == subject.id))
            )
        for sha in shas or []:
            forget.add(find_asset(session, sha).id)
        forget.update(asset_ids or [])
        requested = len(forget)
        items = [
            ItemRef(r.id, r.source_id, r.owner_id)
            for r in session.execute(
                select(Asset.id, Asset.source_id, Asset.owner_id).where(Asset.id.in_(trained))
            )
        ]
        lapsed: set[str] = set()
        for purpose in (Purpose.AI_TRAINING, Purpose.BIOMETRIC_PROCESSING):  # a face model is both
            check = ConsentGate(session, purpose, instant).evaluate(items)
            lapsed |= {a for a, v in check.items() if not v.allowed}
        lapsed -= forget
        forget |= lapsed
        # the new dataset version drops them all, photos without a face (never trained
        # on) included: a model must not keep an erased photo upstream in its lineage
        drop = set(forget)
        forget &= trained
        if not forget:
            return {
                "model": f"model:{artifact.name}@{artifact.version}",
                "forgotten": 0,
                "message": f"none of the {requested} photo(s) were in the model's training set: "
                "nothing to forget",
            }
        ds = session.get(DatasetVersion, artifact.extra["dataset_id"])
        assert ds is not None  # a model trained here names the version it was trained on
        ds_ref = f"{ds.name}@{ds.version}"
        # the forgetting audit's members (the photos to forget) and candidate non-members
        forgotten_data = load_training_data(session, ctx.vault, sorted(forget))
        candidates = audit_candidates(session, ctx.vault, forget)
        photo_shard, subject_shard = ever_trained(session, artifact)

    loader = embedding_loader(ctx)
    before = membership_audit(model, forgotten_data, candidates, photo_shard, subject_shard)
    model.runner = runner
    # the old checkpoints stay until the new version is recorded: a crash before that
    # leaves the old version active and whole
    report = model.unlearn(sorted(forget), loader, destroy=False)
    after = membership_audit(model, forgotten_data, candidates, photo_shard, subject_shard)
    forgetting_audit = {
        "before": before,
        "after": after,
        "retrained_from_scratch": retrain_check(model, report.shards_retrained, loader),
    }
    with ctx.sessions.begin() as session:
        new_ds = derive_without(session, ds_ref, drop, at=instant, actor=ctx.actor, reason=reason)
        new_ref = f"{new_ds.name}@{new_ds.version}"
    extra = dict(artifact.extra)
    extra.update(
        manifest=model.manifest(),
        dataset_id=new_ds.artifact_id,
        unlearned_from=artifact.version,
        forgetting_audit=forgetting_audit,
    )
    with running(
        ctx,
        f"unlearn:{artifact.name}",
        purpose="ai_training",
        inputs=[f"dataset:{new_ref}"],
        parameters={"from": artifact.version, "forgotten": report.forgotten, "reason": reason},
        at=at,
    ) as run:
        label = run.add_output("model", name=artifact.name, extra=extra)
    with ctx.sessions.begin() as session:
        old = session.get(Artifact, artifact.id)
        assert old is not None  # read above; models are retired, never deleted
        old.state = "retired"
        audit.append(
            session,
            "model.unlearned",
            {
                "model": f"model:{artifact.name}@{artifact.version}",
                "new_version": label,
                "forgotten": report.forgotten,
                "shards_retrained": report.shards_retrained,
                "checkpoints_destroyed": report.checkpoints_destroyed,
                "reason": reason,
            },
            actor=ctx.actor,
            at=instant,
        )
    store = checkpoints(ctx, artifact.name)
    for key in report.stale_checkpoints:
        store.destroy(key)
    result: Unlearned = {
        "model": label,
        "from": f"model:{artifact.name}@{artifact.version}",
        "dataset": new_ref,
        "requested": requested,
        "forgotten": report.forgotten,
        "lapsed_consent": len(lapsed & trained),
        "shards_retrained": report.shards_retrained,
        "slices_retrained": report.slices_retrained,
        "checkpoints_destroyed": report.checkpoints_destroyed,
        "classes_removed": len(report.classes_removed),
        "forgetting_audit": forgetting_audit,
        "message": report.message.replace("left for the caller to destroy", "destroyed"),
    }
    return result
