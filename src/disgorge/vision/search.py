"""``disgorge find``: copies of a photo (PDQ) and photos of the same person (embeddings).

What a subject-access request and the erasure verifier call: given an image, which
stored photos are copies of it, and which show the same person? Both return assets with
their distances and the thresholds used, nearest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..catalog.models import Asset, AssetDerivative, Subject
from ..vault import Vault
from .faces import analyze
from .image import rgb_array, unframed
from .index import SAME_PERSON_DISTANCE, FaceIndex
from .phash import DEFAULT_MAX_DISTANCE, HashMatrix, pdq_dihedral, phash_context

__all__ = ["Match", "find_copies", "find_faces", "load_hash_matrix"]


@dataclass(frozen=True)
class Match:
    sha256: str
    owner: str
    distance: float
    state: str

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "owner": self.owner, "distance": self.distance, "state": self.state}


def load_hash_matrix(reader: sessionmaker[Session], vault: Vault) -> HashMatrix:
    """Decrypt every active PDQ hash into the scan matrix (rows keyed by asset id)."""
    items: list[tuple[str, bytes]] = []
    with reader() as session:
        owners: dict[int, Subject] = {}
        rows = session.execute(
            select(
                AssetDerivative.asset_id,
                AssetDerivative.face_index,
                AssetDerivative.value_enc,
                Asset.owner_id,
            )
            .join(Asset, Asset.id == AssetDerivative.asset_id)
            .where(
                AssetDerivative.kind == "phash", AssetDerivative.state == "active", Asset.state == "active"
            )
        )
        for asset_id, index, sealed, owner_id in rows:
            owner = owners.get(owner_id) or owners.setdefault(owner_id, session.get(Subject, owner_id))
            if owner.dek_wrapped is None:
                continue
            items.append((asset_id, vault.open(owner, sealed, phash_context(asset_id, index))))
    return HashMatrix.from_hashes(items)


def _describe(reader: sessionmaker[Session], hits: dict[str, float]) -> list[Match]:
    if not hits:
        return []
    with reader() as session:
        rows = session.execute(
            select(Asset.id, Asset.sha256, Subject.ref, Asset.state)
            .join(Subject, Subject.id == Asset.owner_id)
            .where(Asset.id.in_(list(hits)))
        ).all()
    matches = [Match(sha, ref, round(hits[aid], 4), state) for aid, sha, ref, state in rows]
    return sorted(matches, key=lambda m: (m.distance, m.sha256))


def find_copies(
    reader: sessionmaker[Session],
    vault: Vault,
    data: bytes,
    *,
    max_distance: int = DEFAULT_MAX_DISTANCE,
    matrix: HashMatrix | None = None,
) -> list[Match]:
    """Stored photos within ``max_distance`` PDQ bits of the image or a mirror/rotation of it
    (also with a plain border around it removed, see :func:`~.image.unframed`)."""
    rgb = rgb_array(data)
    queries = [h for view in (rgb, *unframed(rgb)) for h in pdq_dihedral(view)]
    matrix = matrix if matrix is not None else load_hash_matrix(reader, vault)
    best: dict[str, float] = {}
    for aid, d in matrix.search(queries, max_distance):  # nearest first: keep each photo's best
        best.setdefault(aid, float(d))
    return _describe(reader, best)


def find_faces(
    reader: sessionmaker[Session],
    index: FaceIndex,
    data: bytes,
    *,
    max_distance: float = SAME_PERSON_DISTANCE,
    embedder: str = "dlib",
) -> tuple[int, list[Match]]:
    """(faces found in the query, stored photos showing any of them within ``max_distance``);
    ``embedder`` must be the one that made the stored embeddings."""
    query = analyze(data, embed=True, phash=False, embedder=embedder)
    best: dict[int, float] = {}
    for face in query.faces:
        assert face.embedding is not None
        for emb_id, dist in index.search(face.embedding, max_distance=max_distance):
            best[emb_id] = min(dist, best.get(emb_id, dist))
    if not best:
        return len(query.faces), []
    with reader() as session:
        owners = dict(
            session.execute(
                select(AssetDerivative.id, AssetDerivative.asset_id).where(AssetDerivative.id.in_(list(best)))
            ).all()
        )
    per_asset: dict[str, float] = {}
    for emb_id, dist in best.items():
        asset_id = owners.get(emb_id)
        if asset_id is not None:
            per_asset[asset_id] = min(dist, per_asset.get(asset_id, dist))
    return len(query.faces), _describe(reader, per_asset)
