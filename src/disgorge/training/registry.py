"""The model registry: SISA face-ID models trained through the gate, unlearned, retired.

A model version is an artifact of kind ``model`` whose ``extra`` holds the SISA manifest
(shards, slices, sample ids, classes, checkpoint keys). Samples are assets (one face per
photo, the largest) and classes are subject refs, so forgetting a photo or a person maps
straight onto the manifest. Checkpoints are sealed with the workspace's model key and
kept content-addressed, so versions share the checkpoints of shards they did not retrain.

Models trained elsewhere (``run record``) can only be retired; retiring cascades to
every artifact downstream of the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from .._time import iso
from ..catalog.lineage import NodeRef, downstream
from ..catalog.models import Artifact, Asset, AssetDerivative, DatasetMember, DatasetVersion, Run, Subject
from ..errors import InvalidInput, NotFound
from ..vault import Vault, open_sealed, seal
from .checkpoints import DirectoryCheckpoints
from .face_id import FaceIdClassifier
from .sisa import SISAClassifier

__all__ = [
    "AUDIT_NON_MEMBERS",
    "MODEL_TYPES",
    "SealedCheckpoints",
    "TrainingData",
    "audit_candidates",
    "ever_trained",
    "find_model",
    "load_model",
    "load_training_data",
    "model_view",
    "retire_cascade",
]

MODEL_TYPES = ("face-id",)
#: at most this many analysed photos are scored as non-members by the forgetting audit
AUDIT_NON_MEMBERS = 2000


class SealedCheckpoints(DirectoryCheckpoints):
    """Checkpoint files sealed (AES-GCM) with the workspace model key; tampering is detected."""

    def __init__(self, root: Path, key: bytes) -> None:
        super().__init__(root)
        self._key = key

    def put(self, key: str, data: bytes) -> None:
        super().put(key, seal(self._key, data, f"checkpoint:{key}".encode()))

    def get(self, key: str) -> bytes:
        return open_sealed(
            self._key, super().get(key), f"checkpoint:{key}".encode(), what=f"checkpoint {key[:16]}"
        )


@dataclass
class TrainingData:
    X: np.ndarray
    labels: np.ndarray  # subject refs
    asset_ids: list[str]
    skipped: dict[str, int]


def _largest_face_embeddings(session: Session, vault: Vault, asset_ids: list[str]) -> dict[str, bytes]:
    """asset id -> embedding of its largest face (photos without an embedding are absent)."""
    out: dict[str, bytes] = {}
    owners: dict[int, Subject] = {}
    for start in range(0, len(asset_ids), 500):
        chunk = asset_ids[start : start + 500]
        rows = session.execute(
            select(AssetDerivative, Asset.owner_id)
            .join(Asset, Asset.id == AssetDerivative.asset_id)
            .where(
                AssetDerivative.asset_id.in_(chunk),
                AssetDerivative.kind.in_(["face", "embedding"]),
                AssetDerivative.state == "active",
            )
        ).all()
        faces: dict[str, dict[int, float]] = {}
        embeddings: dict[tuple[str, int], bytes] = {}
        for row, owner_id in rows:
            owner = owners.get(owner_id)
            if owner is None:
                owner = owners[owner_id] = session.get_one(Subject, owner_id)
            # a destroyed key leaves nothing to read; faces and embeddings are always sealed
            # in the row (only crops live in blobs), so the second test only tells the type
            if owner.dek_wrapped is None or row.value_enc is None:
                continue
            if row.kind == "face":
                geometry = json.loads(
                    vault.open(owner, row.value_enc, f"face:{row.asset_id}:{row.face_index}")
                )
                left, top, right, bottom = geometry["box"]
                faces.setdefault(row.asset_id, {})[row.face_index] = (right - left) * (bottom - top)
            else:
                embeddings[(row.asset_id, row.face_index)] = vault.open(
                    owner, row.value_enc, f"embedding:{row.asset_id}:{row.id}"
                )
        for asset_id, areas in faces.items():
            best = max(areas, key=lambda i: (areas[i], -i))
            if (asset_id, best) in embeddings:
                out[asset_id] = embeddings[(asset_id, best)]
    return out


def load_training_data(session: Session, vault: Vault, asset_ids: list[str]) -> TrainingData:
    """Embeddings and owner refs of the given photos, in the given order."""
    rows = dict(
        session.execute(
            select(Asset.id, Subject.ref)
            .join(Subject, Subject.id == Asset.owner_id)
            .where(Asset.id.in_(asset_ids))
        ).all()
    )
    vectors = _largest_face_embeddings(session, vault, asset_ids)
    kept = [a for a in asset_ids if a in vectors and a in rows]
    skipped = {"no_embedding": sum(1 for a in asset_ids if a not in vectors)}
    X = np.stack([np.frombuffer(vectors[a], dtype="<f4") for a in kept]) if kept else np.zeros((0, 128))
    return TrainingData(X.astype(np.float64), np.asarray([rows[a] for a in kept]), kept, skipped)


def audit_candidates(
    session: Session, vault: Vault, exclude: set[str], *, limit: int = AUDIT_NON_MEMBERS
) -> TrainingData:
    """Analysed photos other than ``exclude``, the forgetting audit's candidate non-members:
    at most ``limit``, in the order of a hash of their ids (the same sample every time)."""
    ids = [
        a
        for a in session.scalars(
            select(AssetDerivative.asset_id)
            .where(AssetDerivative.kind == "embedding", AssetDerivative.state == "active")
            .distinct()
        )
        if a not in exclude
    ]
    ids.sort(key=lambda a: hashlib.sha256(a.encode()).digest())
    return load_training_data(session, vault, ids[:limit])


def ever_trained(session: Session, artifact: Artifact) -> tuple[dict[str, int], dict[str, int]]:
    """(photo -> shard, subject -> shard) over this version and the versions it was
    unlearned from: where the forgotten photos were, since their manifests stay in the
    catalog (the partition is fixed at first training, so a shard keeps its index)."""
    photos: dict[str, int] = {}
    subjects: dict[str, int] = {}
    seen: set[str] = set()
    current: Artifact | None = artifact
    while current is not None and current.id not in seen:
        seen.add(current.id)
        extra = current.extra or {}
        for k, shard in enumerate(extra.get("manifest", {}).get("shards", [])):
            for piece in shard["slices"]:
                for i in piece:
                    photos.setdefault(str(i), k)
            for c in shard["classes"]:
                subjects.setdefault(str(c), k)
        source = extra.get("unlearned_from")
        try:
            current = find_model(session, f"{current.name}@{source}") if source else None
        except NotFound:
            current = None
    return photos, subjects


def dataset_members(session: Session, dataset_artifact_id: str) -> list[str]:
    return sorted(
        session.scalars(select(DatasetMember.asset_id).where(DatasetMember.dataset_id == dataset_artifact_id))
    )


def find_model(session: Session, ref: str) -> Artifact:
    """``NAME`` (latest version) or ``NAME@VERSION`` among artifacts of kind model."""
    name, _, version = ref.partition("@")
    query = select(Artifact).where(Artifact.kind == "model", Artifact.name == name)
    rows = session.scalars(query).all()
    if not rows:
        raise NotFound(f"no model named {name!r}")
    if version:
        for row in rows:
            if row.version == version:
                return row
        raise NotFound(f"model {name!r} has no version {version} (versions: {', '.join(_versions(rows))})")
    return max(rows, key=lambda r: _version_key(r.version))


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def _versions(rows: Sequence[Artifact]) -> list[str]:
    return [r.version for r in sorted(rows, key=lambda r: _version_key(r.version))]


def load_model(artifact: Artifact, checkpoints: SealedCheckpoints) -> SISAClassifier:
    extra = artifact.extra or {}
    if extra.get("type") not in MODEL_TYPES:
        raise InvalidInput(
            f"model:{artifact.name}@{artifact.version} was trained outside disgorge: it can be retired, "
            "not used or unlearned here"
        )
    if artifact.state != "active":
        raise InvalidInput(f"model:{artifact.name}@{artifact.version} is {artifact.state}")
    estimator = FaceIdClassifier(**extra["estimator"])
    return SISAClassifier.from_manifest(extra["manifest"], estimator, checkpoints)


def model_view(session: Session, artifact: Artifact) -> dict[str, Any]:
    run = session.get(Run, artifact.run_id)
    dataset = None
    extra = artifact.extra or {}
    if extra.get("dataset_id"):
        ds = session.get(DatasetVersion, extra["dataset_id"])
        dataset = f"{ds.name}@{ds.version}" if ds else None
    versions = session.scalars(
        select(Artifact).where(Artifact.kind == "model", Artifact.name == artifact.name)
    ).all()
    return {
        "name": artifact.name,
        "version": artifact.version,
        "id": artifact.id,
        "state": artifact.state,
        "type": extra.get("type", "external"),
        "trained_at": iso(artifact.created_at),
        "run": artifact.run_id,
        "job": run.job if run else None,
        "code_version": run.code_version if run else None,
        "dataset": dataset,
        "shards": extra.get("manifest", {}).get("n_shards"),
        "slices": extra.get("manifest", {}).get("n_slices"),
        "samples": sum(len(sl) for s in extra.get("manifest", {}).get("shards", []) for sl in s["slices"]),
        "classes": len(extra.get("manifest", {}).get("classes", [])),
        "unlearned_from": extra.get("unlearned_from"),
        "forgetting_audit": extra.get("forgetting_audit"),
        "versions": [
            {"version": v.version, "state": v.state}
            for v in sorted(versions, key=lambda r: _version_key(r.version))
        ],
    }


def retire_cascade(
    session: Session, artifact: Artifact, *, reason: str, actor: str, at: datetime
) -> list[str]:
    """Retire a model and every artifact derived from it; returns their lineage ids."""
    graph = downstream(session, NodeRef("artifact", artifact.id, ""))
    ids = [artifact.id] + [n["artifact_id"] for n in graph.nodes if "artifact_id" in n]
    retired = []
    for art in session.scalars(select(Artifact).where(Artifact.id.in_(ids))):
        if art.state == "active":
            art.state = "retired"
            retired.append(f"{art.kind}:{art.name}@{art.version}" if art.name else f"{art.kind}:{art.id}")
    audit.append(
        session,
        "model.retired",
        {"model": f"model:{artifact.name}@{artifact.version}", "retired": retired, "reason": reason},
        actor=actor,
        at=at,
    )
    return retired
