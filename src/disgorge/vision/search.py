"""``disgorge find``: copies of a photo (PDQ) and photos of the same person (embeddings).

What a subject-access request and the erasure verifier call: given an image, which
stored photos are copies of it, and which show the same person? Both return assets with
their distances and the thresholds used, nearest first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typing_extensions import TypedDict

from ..catalog.db import in_chunks
from ..catalog.models import Asset, AssetDerivative, Subject
from ..context import Context
from ..errors import InvalidInput
from ..vault import Vault
from .analyze import embedders_in_use, reconcile_index
from .faces import analyze
from .hash_cache import ROW, HashCache, pack
from .image import rgb_array, unframed
from .index import SAME_PERSON_DISTANCE, FaceIndex
from .phash import DEFAULT_MAX_DISTANCE, HashMatrix, pdq_dihedral, phash_context

__all__ = [
    "FindResult",
    "Match",
    "MatchView",
    "embedder_of",
    "find",
    "find_copies",
    "find_faces",
    "load_hash_matrix",
]

_log = logging.getLogger("disgorge")


class MatchView(TypedDict):
    sha256: str
    #: the ref of the photo's owner
    owner: str
    distance: float
    state: str


class FindResult(TypedDict):
    """What :func:`find` found: the matches, nearest first, with the metric and threshold
    used (and, for a face search, how many faces the query image held)."""

    by: str
    metric: str
    threshold: float
    query_faces: NotRequired[int]
    matches: list[MatchView]


@dataclass(frozen=True)
class Match:
    sha256: str
    owner: str
    distance: float
    state: str

    def to_dict(self) -> MatchView:
        return {"sha256": self.sha256, "owner": self.owner, "distance": self.distance, "state": self.state}


def embedder_of(session: Session, asset_ids: Sequence[str] | None) -> str:
    """The embedder that made the embeddings of ``asset_ids`` (None: of the workspace).

    A face search or a model must embed a query the way the stored faces were embedded:
    distances between two embedders' vectors mean nothing, so a mix is refused.
    """
    wanted = set(asset_ids) if asset_ids is not None else None
    used = sorted(e for e, ids in embedders_in_use(session).items() if wanted is None or ids & wanted)
    if len(used) > 1:
        raise InvalidInput(
            f"embeddings of more than one embedder ({', '.join(used)}); analyse again with one"
        )
    return used[0] if used else "dlib"


def load_hash_matrix(
    reader: sessionmaker[Session], vault: Vault, *, cache: HashCache | None = None
) -> HashMatrix:
    """Every active PDQ hash in the scan matrix (rows keyed by asset id, by row id).

    With ``cache``, hashes come from it and only rows it lacks are decrypted; the cache is
    rewritten when it lacked a row or held one that is no longer active. Without, every
    row is decrypted.

    With ``cache``, the matrix is also held in this process (:meth:`HashCache.held`): when
    the next call finds the file and the catalog unchanged, it gets that matrix back with
    a Hamming index built over it (:mod:`.hamming`), so a long-lived server answers its
    copy searches sub-linearly; a one-shot command scans (building would cost more)."""
    if cache is None:
        with reader() as session:
            rows = session.execute(_ACTIVE.add_columns(AssetDerivative.value_enc)).all()
            hashes = _open(session, vault, rows, {r.id: r.value_enc for r in rows})
        return HashMatrix.from_hashes([(r.asset_id, h) for r, h in zip(rows, hashes, strict=True)])
    with cache.locked():  # across the catalog read and the write: see HashCache
        stamp = cache.stamp()
        stored = cache.read()
        with reader() as session:
            # Core rows, transposed in C: the ORM's per-row work would cost as much as the cache saves
            rows = session.connection().execute(_ACTIVE).all()
            ids, assets, faces, runs, _ = (list(c) for c in zip(*rows, strict=True)) if rows else ([],) * 5
            table = pack(ids, assets, faces, runs)
            if table is None:  # ids that do not fit the packed rows: this catalog is not cached
                return load_hash_matrix(reader, vault)
            held = stored if stored is not None else np.zeros(0, dtype=ROW)
            found, where = _match(table, held)
            missing = [rows[i] for i in np.flatnonzero(~found).tolist()]
            opened = _open(session, vault, missing, _sealed(session, [r.id for r in missing]))
        if not missing and stored is not None and int(found.sum()) == len(stored):
            # the file as it was: the matrix this process held from it has the same rows
            again = cache.held(stamp)
            if again is not None:
                return again.indexed()  # searched again: the index now pays for itself
        table["hash"][found] = held["hash"][where[found]]
        if missing:
            table["hash"][~found] = np.frombuffer(b"".join(opened), dtype=np.uint8).reshape(-1, 32)
        if missing or stored is None or int(found.sum()) < len(stored):
            try:
                cache.write(table)
                stamp = cache.stamp()
            except OSError as exc:  # a read-only workspace can still search
                _log.warning("could not rewrite the PDQ cache %s: %s", cache.path, exc)
                stamp = None
        matrix = HashMatrix(np.ascontiguousarray(table["hash"]).view(np.uint64), assets)
        cache.hold(stamp, matrix)
    return matrix


#: the active PDQ rows (the owner's key alive), without their sealed values, by row id
_ACTIVE = (
    select(
        AssetDerivative.id,
        AssetDerivative.asset_id,
        AssetDerivative.face_index,
        AssetDerivative.run_id,
        Asset.owner_id,
    )
    .join(Asset, Asset.id == AssetDerivative.asset_id)
    .join(Subject, Subject.id == Asset.owner_id)
    .where(
        AssetDerivative.kind == "phash",
        AssetDerivative.state == "active",
        Asset.state == "active",
        Subject.dek_wrapped.is_not(None),
    )
    .order_by(AssetDerivative.id)
)


def _match(table: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which catalog rows the cache holds under the same key, at which of its rows): both
    are by row id, so one binary search per row finds its candidate."""
    if not len(held):
        return np.zeros(len(table), dtype=bool), np.zeros(len(table), dtype=np.intp)
    where = np.minimum(np.searchsorted(held["id"], table["id"]), len(held) - 1)
    candidate = held[where]
    found = np.ones(len(table), dtype=bool)
    for field in ("id", "face", "asset", "run"):
        found &= candidate[field] == table[field]
    return found, where


def _sealed(session: Session, ids: list[int]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for part in in_chunks(ids):
        query = select(AssetDerivative.id, AssetDerivative.value_enc).where(AssetDerivative.id.in_(part))
        # an active hash is always sealed in its row: the test only tells the type checker
        out.update((row_id, value) for row_id, value in session.execute(query) if value is not None)
    return out


def _open(session: Session, vault: Vault, rows: Sequence[Any], sealed: dict[int, bytes]) -> list[bytes]:
    """Decrypt the rows' hashes (rows of ``_ACTIVE``: id, asset_id, face_index, run_id, owner_id)
    with their owners' data keys."""
    owners: dict[int, Subject] = {}
    out = []
    for r in rows:
        owner = owners.get(r.owner_id)
        if owner is None:
            owner = owners[r.owner_id] = session.get_one(Subject, r.owner_id)
        out.append(vault.open(owner, sealed[r.id], phash_context(r.asset_id, r.face_index)))
    return out


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


def find(
    ctx: Context, image: str | Path | bytes, *, by: str = "copy", max_distance: float | None = None
) -> FindResult:
    """Stored photos that are copies of ``image`` (``by="copy"``, PDQ) or show the same
    person (``by="face"``, embeddings), with distances and the threshold used.

    A copy search reads the PDQ hashes through the sealed cache (new hashes are added to
    it); a face search first makes the face index hold exactly the catalog's active
    embeddings, so an erased face is never found through a stale index.
    """
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    result: FindResult
    if by == "copy":
        threshold = int(max_distance) if max_distance is not None else DEFAULT_MAX_DISTANCE
        matrix = load_hash_matrix(ctx.reader, ctx.vault, cache=ctx.hash_cache)
        matches = find_copies(ctx.reader, ctx.vault, data, max_distance=threshold, matrix=matrix)
        result = {"by": "copy", "metric": "pdq_hamming_bits", "threshold": threshold, "matches": []}
    elif by == "face":
        threshold_f = max_distance if max_distance is not None else SAME_PERSON_DISTANCE
        index = FaceIndex(ctx.face_index_path, ctx.kek)
        reconcile_index(ctx.reader, ctx.vault, index)
        with ctx.reader() as session:
            embedder = embedder_of(session, None)
        faces, matches = find_faces(ctx.reader, index, data, max_distance=threshold_f, embedder=embedder)
        result = {
            "by": "face",
            "metric": "embedding_euclidean",
            "threshold": threshold_f,
            "query_faces": faces,
            "matches": [],
        }
    else:
        raise InvalidInput(f"--by {by!r}: expected copy or face")
    result["matches"] = [m.to_dict() for m in matches]
    return result
