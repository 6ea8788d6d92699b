"""Training a face model through the gate, using it, listing it, retiring it.

Training a face model is both ``ai_training`` and ``biometric_processing``: every photo
of the dataset version must be covered for both when it is trained, or nothing is. The
training is a run (:func:`disgorge.runs.running`), so the model is in the lineage of
every photo it learned from, and an erasure of one of them finds it.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import select
from typing_extensions import TypedDict

from ...catalog.models import Artifact
from ...cluster import connect
from ...context import Context, when
from ...datasets import find_dataset
from ...errors import ConsentDenied, InvalidInput
from ...runs import running
from ...vision.search import embedder_of
from ..face_id import FaceIdClassifier
from ..registry import (
    MODEL_TYPES,
    dataset_members,
    find_model,
    load_model,
    load_training_data,
    model_view,
    retire_cascade,
)
from ..sisa import SISAClassifier
from .store import biometric_gaps, checkpoints

__all__ = [
    "FaceGuess",
    "ModelVersionState",
    "ModelView",
    "Prediction",
    "RetiredModel",
    "TrainedModel",
    "model",
    "models",
    "predict",
    "retire_model",
    "train_model",
]


class TrainedModel(TypedDict):
    model: str
    dataset: str
    samples: int
    subjects: int
    skipped: dict[str, int]
    shards: int
    slices: int
    run: str


class ModelVersionState(TypedDict):
    version: str
    state: str


class ModelView(TypedDict):
    """A model version as the registry shows it (external models have no manifest)."""

    name: str
    version: str
    id: str
    state: str
    type: str
    trained_at: str | None
    run: str
    job: str | None
    code_version: str | None
    dataset: str | None
    shards: int | None
    slices: int | None
    samples: int
    classes: int
    unlearned_from: str | None
    forgetting_audit: dict[str, Any] | None
    versions: list[ModelVersionState]


class FaceGuess(TypedDict):
    box: list[int]
    #: the subject ref, or None when the best score is below ``min_score``
    subject: str | None
    score: float


class Prediction(TypedDict):
    model: str
    faces: list[FaceGuess]
    min_score: float


class RetiredModel(TypedDict):
    retired: list[str]
    reason: str


def train_model(
    ctx: Context,
    name: str,
    *,
    dataset: str,
    model: str = "face-id",
    shards: int = 8,
    slices: int = 4,
    aggregation: str = "max_score",
    seed: int = 0,
    code_version: str = "",
    at: str | datetime | None = None,
    cluster: str | None = None,
) -> TrainedModel:
    """Train a SISA face-identification model on a dataset version, through the gate.

    ``cluster`` (``tcp://HOST:PORT``) trains the shards as tasks on a Dask cluster: the
    same checkpoints, byte for byte, sealed and written here (see :mod:`disgorge.cluster`).
    It is connected to before anything is written."""
    if model not in MODEL_TYPES:
        raise InvalidInput(f"model type {model!r}: expected one of {', '.join(MODEL_TYPES)}")
    if not name.strip() or "@" in name:
        raise InvalidInput(f"model name {name!r}: must be non-empty and contain no '@'")
    instant = when(at)
    with ctx.reader() as session:
        ds = find_dataset(session, dataset)
        members = dataset_members(session, ds.artifact_id)
        gaps = biometric_gaps(session, members, instant)
        if gaps:
            rules = ", ".join(f"{rule}: {n}" for rule, n in gaps.items())
            raise ConsentDenied(
                f"training face model {name!r} is biometric processing: {sum(gaps.values())} of "
                f"{len(members)} photos in {ds.name}@{ds.version} are not covered for it ({rules})"
            )
        data = load_training_data(session, ctx.vault, members)
        embedder = embedder_of(session, members)
    if not len(data.asset_ids):
        raise InvalidInput(
            f"no photo of {ds.name}@{ds.version} has a face embedding; run `disgorge analyze` first"
        )
    estimator = FaceIdClassifier(random_state=seed)
    with (
        connect(cluster) if cluster else nullcontext() as dask,
        running(
            ctx,
            f"train:{name}",
            purpose="ai_training",
            inputs=[f"dataset:{ds.name}@{ds.version}"],
            parameters={
                "model": model,
                "shards": shards,
                "slices": slices,
                "aggregation": aggregation,
                "seed": seed,
            },
            code_version=code_version,
            at=at,
        ) as run,
    ):
        sisa = SISAClassifier(
            estimator,
            n_shards=shards,
            n_slices=slices,
            aggregation=aggregation,
            random_state=seed,
            partition="balanced",  # even shards: accuracy holds at S = 8 (docs/benchmarks.md)
            checkpoints=checkpoints(ctx, name),
            runner=dask.map if dask else None,
        ).fit(data.X, data.labels, sample_ids=data.asset_ids, groups=list(data.labels))
        label = run.add_output(
            "model",
            name=name,
            extra={
                "type": model,
                # predict must embed a query as the training photos were
                "embedder": embedder,
                "estimator": estimator.get_params(),
                "manifest": sisa.manifest(),
                "dataset_id": ds.artifact_id,
                "skipped": data.skipped,
            },
        )
    return {
        "model": label,
        "dataset": f"{ds.name}@{ds.version}",
        "samples": len(data.asset_ids),
        "subjects": len(set(data.labels.tolist())),
        "skipped": data.skipped,
        "shards": shards,
        "slices": slices,
        "run": run.id,
    }


def models(ctx: Context) -> list[ModelView]:
    """Every model version, trained here or recorded from elsewhere, by name."""
    with ctx.reader() as session:
        rows = session.scalars(select(Artifact).where(Artifact.kind == "model").order_by(Artifact.name)).all()
        return [cast(ModelView, model_view(session, a)) for a in rows]


def model(ctx: Context, ref: str) -> ModelView:
    """One model version: ``NAME`` (the latest) or ``NAME@VERSION``."""
    with ctx.reader() as session:
        return cast(ModelView, model_view(session, find_model(session, ref)))


def predict(ctx: Context, name: str, image: str | Path | bytes, *, min_score: float = 0.5) -> Prediction:
    """Who is in this photo, according to face model ``name``? Faces below ``min_score`` are unknown."""
    from ...vision.faces import analyze

    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    with ctx.reader() as session:
        artifact = find_model(session, name)
        sisa = load_model(artifact, checkpoints(ctx, artifact.name))
        label = f"model:{artifact.name}@{artifact.version}"
    query = analyze(data, embed=True, phash=False, embedder=artifact.extra.get("embedder", "dlib"))
    faces: list[FaceGuess] = []
    for face in query.faces:
        assert face.embedding is not None
        scores = sisa.predict_proba(np.frombuffer(face.embedding, dtype="<f4").reshape(1, -1).astype(float))[
            0
        ]
        best = int(np.argmax(scores))
        score = float(scores[best])
        faces.append(
            {
                "box": list(face.box),
                "subject": str(sisa.classes_[best]) if score >= min_score else None,
                "score": round(score, 4),
            }
        )
    return {"model": label, "faces": faces, "min_score": min_score}


def retire_model(ctx: Context, ref: str, *, reason: str, at: str | datetime | None = None) -> RetiredModel:
    """Retire a model version and everything derived from it (works for external models)."""
    if len(reason.strip()) < 3:
        raise InvalidInput("give a reason for retiring the model")
    instant = when(at)
    with ctx.sessions.begin() as session:
        artifact = find_model(session, ref)
        if artifact.state != "active":
            raise InvalidInput(f"model:{artifact.name}@{artifact.version} is already {artifact.state}")
        retired = retire_cascade(session, artifact, reason=reason, actor=ctx.actor, at=instant)
    return {"retired": retired, "reason": reason}
