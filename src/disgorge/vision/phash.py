"""PDQ perceptual hashes and the in-memory matrix that scans them.

PDQ (Meta's photo hash, package ``pdqhash``) gives 256 bits that survive resizing and
re-encoding, but not crops or added borders (measured in docs/benchmarks.md); copies are
within a small Hamming distance (PDQ's own guidance: <= 31 of 256 is a match).
Mirrored copies are found by querying with the eight dihedral variants of the query hash.

For a scan, hashes are kept as an (N, 4) uint64 matrix, stored column-major so each
64-bit word column is contiguous. A scan walks the rows in blocks that stay in the CPU
cache and handles all queries (the 8 dihedral ones) in one vectorised pass per block:
the first two words give a lower bound on the distance (popcounts of 128 of the 256
bits; each is at most 64, so the sum fits a uint8), and only the rows whose bound is
within the threshold get their full distance. On random hashes the bound rejects all but
about one row in a billion, so a query costs two XORs and two popcounts per row and
query; the answer is exactly that of a full scan (the bound never exceeds the distance).

A matrix searched many times (a long-lived server's copy searches, an ingest run's
blocklist) can carry a multi-index-hashing index (:mod:`.hamming`, :meth:`HashMatrix.indexed`):
the same answers, sub-linear, within :data:`~.hamming.MAX_RADIUS` bits; beyond that radius,
or without an index, the scan answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import hamming
from .hamming import MAX_RADIUS, HammingIndex

__all__ = [
    "CENTRE_CROPS",
    "DEFAULT_MAX_DISTANCE",
    "HashMatrix",
    "centre_crop",
    "pdq",
    "pdq_dihedral",
    "phash_context",
]

#: PDQ's recommended match threshold (bits of 256)
DEFAULT_MAX_DISTANCE = 31
#: rows per block of a scan (two words of a block, XORed with 8 queries, fit in L2)
_BLOCK = 32768
#: the first two words hold 128 bits: a threshold below that can use them as a filter
_FILTER_BITS = 128


#: centre crops stored beside the whole-image hash: PDQ alone loses a copy cropped by a
#: few percent (a 2.5% cut per side moves ~44 of 256 bits), so each photo also gets the
#: hash of its centre 95% and 90%; a lightly cropped copy lands near one of them
CENTRE_CROPS = (0.95, 0.90)


def phash_context(asset_id: str, index: int) -> str:
    """Associated data a stored hash is sealed with (index 0: whole image, 1..: centre crops)."""
    return f"phash:{asset_id}" if index == 0 else f"phash:{asset_id}:{index}"


def centre_crop(rgb: np.ndarray, keep: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    dh, dw = round(h * (1 - keep) / 2), round(w * (1 - keep) / 2)
    return np.ascontiguousarray(rgb[dh : h - dh, dw : w - dw])


def _pack(bits: np.ndarray) -> bytes:
    return np.packbits(bits.astype(np.uint8)).tobytes()


def pdq(rgb: np.ndarray) -> tuple[bytes, int]:
    """(32-byte hash, quality 0-100) of an RGB array."""
    import pdqhash

    bits, quality = pdqhash.compute(rgb)
    return _pack(bits), int(quality)


def pdq_dihedral(rgb: np.ndarray) -> list[bytes]:
    """The hashes of the 8 rotations/mirrors of an image (first is the image itself)."""
    import pdqhash

    hashes, _quality = pdqhash.compute_dihedral(rgb)
    return [_pack(h) for h in hashes]


@dataclass
class HashMatrix:
    """Packed hashes with the asset id of each row."""

    words: np.ndarray  # (N, 4) uint64, column-major (Fortran order)
    ids: list[str]
    #: the multi-index-hashing index over ``words``, once :meth:`indexed` built it
    index: HammingIndex | None = field(default=None, repr=False, compare=False)
    #: set by :meth:`wipe`
    wiped: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # no copy when it is already column-major uint64
        self.words = np.asfortranarray(self.words, dtype=np.uint64)

    @classmethod
    def from_hashes(cls, items: list[tuple[str, bytes]]) -> HashMatrix:
        if not items:
            return cls(np.zeros((0, 4), dtype=np.uint64), [])
        buf = np.frombuffer(b"".join(h for _, h in items), dtype=np.uint64).reshape(-1, 4)
        return cls(buf, [i for i, _ in items])

    def __len__(self) -> int:
        return len(self.ids)

    def indexed(self, *, min_rows: int | None = None) -> HashMatrix:
        """Build the Hamming index (once) when the matrix holds ``min_rows`` or more
        (default :data:`~.hamming.MIN_ROWS`): below that the scan is as fast and building
        would cost more than it saves. Returns self."""
        least = hamming.MIN_ROWS if min_rows is None else min_rows
        if self.index is None and len(self) >= least and not self.wiped:
            self.index = HammingIndex(self.words)
        return self

    def remove(self, ids: set[str]) -> int:
        """Drop every row of these ids, from the matrix and its index (the old rows are
        overwritten with zeros, and the index is left as a fresh build without them);
        returns how many rows went."""
        gone = np.array([i for i, aid in enumerate(self.ids) if aid in ids], dtype=np.int64)
        if not len(gone):
            return 0
        if self.index is not None:
            self.words = self.index.remove(gone)
        else:
            keep = np.ones(len(self.ids), dtype=bool)
            keep[gone] = False
            old, self.words = self.words, np.asfortranarray(self.words[keep])
            if old.flags.writeable:  # else a view of immutable bytes, which cannot be zeroed
                old[gone] = 0
        self.ids = [aid for aid in self.ids if aid not in ids]
        return len(gone)

    def wipe(self) -> None:
        """Overwrite the hashes and the index with zeros, in place; from then on the
        matrix finds nothing. In place, so a search running in another thread meanwhile
        reads zeros or finds nothing, never fails."""
        self.wiped = True
        if self.words.flags.writeable:
            self.words.fill(0)
        if self.index is not None:
            self.index.rows.fill(0)
            self.index.offsets.fill(0)

    def distances(self, query: bytes) -> np.ndarray:
        q = np.frombuffer(query, dtype=np.uint64)
        return np.bitwise_count(self.words ^ q).sum(axis=1, dtype=np.int32)

    def search(self, queries: list[bytes], max_distance: int = DEFAULT_MAX_DISTANCE) -> list[tuple[str, int]]:
        """Rows within ``max_distance`` of any query, with their best distance, nearest first
        (ties in row order)."""
        n = self.words.shape[0]
        if not len(self) or not n or not queries or max_distance < 0 or self.wiped:
            return []
        if any(len(h) != 32 for h in queries):
            raise ValueError("a PDQ hash is 32 bytes")
        q = np.frombuffer(b"".join(queries), dtype=np.uint64).reshape(-1, 4)
        if self.index is not None and max_distance <= MAX_RADIUS:
            _, rows, dist = self.index.search(q, int(max_distance))
            return self._ranked(rows, dist)
        bufs = (
            np.empty((len(q), _BLOCK), dtype=np.uint64),
            np.empty((len(q), _BLOCK), dtype=np.uint8),
            np.empty((len(q), _BLOCK), dtype=np.uint8),
            np.empty((len(q), _BLOCK), dtype=bool),
        )
        found = [
            self._scan(q, start, min(start + _BLOCK, n), max_distance, bufs) for start in range(0, n, _BLOCK)
        ]
        return self._ranked(np.concatenate([r for r, _ in found]), np.concatenate([d for _, d in found]))

    def _ranked(self, rows: np.ndarray, dist: np.ndarray) -> list[tuple[str, int]]:
        """(id, best distance) of each row, nearest first (ties in row order)."""
        if not len(rows):
            return []
        # best distance per row: sort by (row, distance) and keep each row's first
        order = np.lexsort((dist, rows))
        rows, dist = rows[order], dist[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = rows[1:] != rows[:-1]
        rows, dist = rows[first], dist[first]
        order = np.lexsort((rows, dist))
        return [
            (self.ids[i], int(d)) for i, d in zip(rows[order].tolist(), dist[order].tolist(), strict=True)
        ]

    def _scan(
        self,
        q: np.ndarray,
        start: int,
        stop: int,
        max_distance: float,
        bufs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, distance) of every (query, row) pair of rows ``start:stop`` within the threshold."""
        block = self.words[start:stop]  # column-major: block[:, k] is contiguous
        if max_distance < _FILTER_BITS:
            size = stop - start
            x, low, high, near = (b[:, :size] for b in bufs)
            np.bitwise_xor(block[:, 0], q[:, :1], out=x)
            np.bitwise_count(x, out=low)
            np.bitwise_xor(block[:, 1], q[:, 1:2], out=x)
            np.bitwise_count(x, out=high)
            np.add(low, high, out=low)  # <= 128: no overflow
            np.less_equal(low, max_distance, out=near)
            if not near.any():  # the usual case: far cheaper than nonzero
                return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int32)
            qi, ri = np.nonzero(near)
            dist = np.bitwise_count(block[ri] ^ q[qi]).sum(axis=1, dtype=np.int32)
        else:
            full = np.bitwise_count(block[None, :, :] ^ q[:, None, :]).sum(axis=2, dtype=np.int32)
            qi, ri = np.nonzero(full <= max_distance)
            dist = full[qi, ri]
        keep = dist <= max_distance
        return ri[keep] + start, dist[keep]
