"""Sticky erasure for copies: the sealed PDQ hashes of erased photos, and the check against them.

An erasure keeps, for each photo it erases, the PDQ hashes of the photo's eight dihedral
variants (rotations and mirrors), never the photo: a perceptual hash cannot give the
photo back, but it recognises a resized, re-encoded or mirrored copy of it, the way a
hash blocklist (StopNCII) blocks re-uploads without holding the image. Ingest and
received bundles refuse a photo within the workspace's ``sticky_copy_distance`` of a kept
hash, naming the erasure request that erased the original (the request id only).

The hashes are personal data of a kind (they recognise the photo), so they are kept
sealed: one ``erased_hashes`` row per photo holds its 8 x 32 bytes, AES-256-GCM under the
workspace's blocklist key, bound to the request's id. The blocklist key is a random key
wrapped by the KEK in the catalog's ``meta`` table (``blocklist_key``), made on first use.
A workspace that turns ``sticky_copies`` off drops the rows and that key together
(:func:`disgorge.access.settings.set_setting`): nothing is left that can be opened.

The check decrypts the rows once per ingest run (:func:`load`) and scans them with the
PDQ matrix of :mod:`.phash` (XOR and popcount; a multi-index-hashing index, :mod:`.hamming`,
once the list is long enough to pay for it); the incoming photo needs one hash only,
since every orientation of the erased photo is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..catalog.dsr_models import ErasedHashes
from ..catalog.models import Meta
from ..vault import KekProvider, new_key, open_sealed, seal
from .image import rgb_array
from .phash import DEFAULT_MAX_DISTANCE, HashMatrix, pdq

__all__ = [
    "BLOCKLIST_AAD",
    "VARIANTS",
    "Blocklist",
    "erased_photo_hashes",
    "keep",
    "kept",
    "load",
    "query_hash",
]

#: associated data of the blocklist key, wrapped by the KEK in ``meta``
BLOCKLIST_AAD = b"disgorge:blocklist-key"
_META_KEY = "blocklist_key"
#: hashes kept per erased photo: its eight dihedral variants
VARIANTS = 8
_HASH_BYTES = 32
#: photos are shrunk to fit this square before hashing (PDQ's reference implementation
#: does the same: its hash works on a 64 x 64 reduction anyway), so a large photo costs
#: a fraction of its full decode
_HASH_SIDE = 512


def _row_aad(request_id: str) -> bytes:
    return b"disgorge:erased-hashes:" + request_id.encode()


def erased_photo_hashes(data: bytes) -> bytes | None:
    """The PDQ hashes of the photo's 8 rotations and mirrors, concatenated (256 bytes);
    None when the bytes are not an image this build decodes."""
    try:
        rgb = rgb_array(data, max_side=_HASH_SIDE)
    except Exception:  # noqa: BLE001 - an undecodable file has no perceptual hash to keep
        return None
    # the hashes of the 8 transformed images themselves: pdqhash's own dihedral variants
    # (vision.phash.pdq_dihedral, derived from one DCT) land 16-28 bits from the hash of
    # an actually mirrored or rotated copy, too near the threshold; these land within 0-2
    views = [np.rot90(rgb, k) for k in range(4)]
    views += [np.fliplr(v) for v in views]
    return b"".join(pdq(np.ascontiguousarray(v))[0] for v in views)


def query_hash(data: bytes) -> bytes | None:
    """The PDQ hash of an incoming photo as it is (None: not decodable)."""
    try:
        rgb = rgb_array(data, max_side=_HASH_SIDE)
    except Exception:  # noqa: BLE001 - the decoder refuses what it cannot read, with its reason
        return None
    return pdq(rgb)[0]


def _key(session: Session, kek: KekProvider, *, create: bool) -> bytes | None:
    """The blocklist key; made and wrapped on first use when ``create`` (in the caller's
    writer transaction), else None when there is none."""
    row = session.get(Meta, _META_KEY)
    if row is not None:
        return kek.unwrap(row.value, BLOCKLIST_AAD)
    if not create:
        return None
    key = new_key()
    session.add(Meta(key=_META_KEY, value=kek.wrap(key, BLOCKLIST_AAD)))
    session.flush()
    return key


def keep(session: Session, kek: KekProvider, request_id: str, photos: list[bytes], *, at: datetime) -> int:
    """Seal each photo's hashes (as :func:`erased_photo_hashes` gives them) into
    ``erased_hashes``, in the caller's writer transaction; the number of rows written."""
    if not photos:
        return 0
    if any(len(h) != VARIANTS * _HASH_BYTES for h in photos):
        raise ValueError("an erased photo's hashes are 8 x 32 bytes")
    key = _key(session, kek, create=True)
    assert key is not None
    aad = _row_aad(request_id)
    session.execute(
        insert(ErasedHashes),
        [{"request_id": request_id, "sealed": seal(key, h, aad), "erased_at": at} for h in photos],
    )
    return len(photos)


def kept(session: Session, request_id: str | None = None) -> int:
    """Erased photos whose hashes are kept (by one request, or in all)."""
    query = select(func.count()).select_from(ErasedHashes)
    if request_id is not None:
        query = query.where(ErasedHashes.request_id == request_id)
    return int(session.scalar(query) or 0)


@dataclass(frozen=True)
class Blocklist:
    """The kept hashes, opened: one matrix row per variant, keyed by the request id; an
    incoming photo within ``distance`` bits of one is a near-copy."""

    matrix: HashMatrix
    distance: int = DEFAULT_MAX_DISTANCE

    @property
    def photos(self) -> int:
        return len(self.matrix) // VARIANTS

    def hashes(self) -> list[bytes]:
        """Every kept hash (32 bytes each), in order."""
        rows = np.ascontiguousarray(self.matrix.words).view(np.uint8).reshape(-1, _HASH_BYTES)
        return [row.tobytes() for row in rows]

    def match(self, query: bytes) -> str | None:
        """The request that erased the photo nearest ``query`` within the distance, or None."""
        hits = self.matrix.search([query], self.distance)
        return hits[0][0] if hits else None

    def refusal(self, data: bytes) -> str | None:
        """Why an incoming photo is refused (it is a near-copy of an erased one), or None.
        Costs nothing while no hash is kept."""
        if not self.photos:
            return None
        query = query_hash(data)
        request = self.match(query) if query is not None else None
        return None if request is None else f"a near-copy of a photo erased by request {request}: refused"


def load(
    session: Session,
    kek: KekProvider,
    request_id: str | None = None,
    *,
    distance: int = DEFAULT_MAX_DISTANCE,
    enabled: bool = True,
) -> Blocklist:
    """Every kept hash (or one request's), decrypted once (an ingest run holds them in
    memory, never on disk); none when not ``enabled`` (the workspace's ``sticky_copies``)."""
    query = select(ErasedHashes.request_id, ErasedHashes.sealed).order_by(ErasedHashes.id)
    if request_id is not None:
        query = query.where(ErasedHashes.request_id == request_id)
    rows = session.execute(query).all() if enabled else []
    key = _key(session, kek, create=False) if rows else None
    items: list[tuple[str, bytes]] = []
    for rid, sealed in rows:
        assert key is not None  # the rows and their key are dropped together (set_setting)
        value = open_sealed(key, sealed, _row_aad(rid), what="erased photo hashes")
        items += [(rid, value[i : i + _HASH_BYTES]) for i in range(0, len(value), _HASH_BYTES)]
    # an ingest run checks every incoming photo: past MIN_ROWS kept hashes (6,250 erased
    # photos) the Hamming index answers them faster than a scan, with the same answers
    return Blocklist(HashMatrix.from_hashes(items).indexed(), distance)
