"""PDQ perceptual hashes and the in-memory matrix that scans them.

PDQ (Meta's photo hash, package ``pdqhash``) gives 256 bits that survive resizing,
re-encoding and light crops; copies are within a small Hamming distance (PDQ's own
guidance: <= 31 of 256 is a match). Mirrored copies are found by querying with the eight
dihedral variants of the query hash.

For a scan, hashes are kept as an (N, 4) uint64 matrix: one XOR and one popcount per
word finds every distance at once (about 4 million popcounts for a million photos).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_MAX_DISTANCE", "HashMatrix", "pdq", "pdq_dihedral"]

#: PDQ's recommended match threshold (bits of 256)
DEFAULT_MAX_DISTANCE = 31


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

    words: np.ndarray  # (N, 4) uint64
    ids: list[str]

    @classmethod
    def from_hashes(cls, items: list[tuple[str, bytes]]) -> HashMatrix:
        if not items:
            return cls(np.zeros((0, 4), dtype=np.uint64), [])
        buf = np.frombuffer(b"".join(h for _, h in items), dtype=np.uint64).reshape(-1, 4)
        return cls(buf, [i for i, _ in items])

    def __len__(self) -> int:
        return len(self.ids)

    def distances(self, query: bytes) -> np.ndarray:
        q = np.frombuffer(query, dtype=np.uint64)
        return np.bitwise_count(self.words ^ q).sum(axis=1, dtype=np.int32)

    def search(self, queries: list[bytes], max_distance: int = DEFAULT_MAX_DISTANCE) -> list[tuple[str, int]]:
        """Rows within ``max_distance`` of any query, with their best distance, nearest first."""
        if not len(self):
            return []
        best = np.min(np.stack([self.distances(q) for q in queries]), axis=0)
        hits = np.nonzero(best <= max_distance)[0]
        order = hits[np.argsort(best[hits], kind="stable")]
        return [(self.ids[i], int(best[i])) for i in order]
