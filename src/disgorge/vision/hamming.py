"""A sub-linear, exact Hamming index over 256-bit PDQ hashes (multi-index hashing).

Why this scheme. A copy search asks for every stored hash within ``r`` bits (31 by
default) of each of 8 query hashes. A linear scan costs ~15 ns per stored hash and query
set, so ~150 ms at 10 million hashes. Multi-index hashing (Norouzi, Punjani & Fleet,
"Fast search in Hamming space with multi-index hashing", CVPR 2012) answers the same
question exactly while touching a small part of the set:

- the 256 bits are cut into ``m = 16`` substrings of 16 bits, and each substring gets a
  table: the row numbers sorted by that substring's value, with an offset per value
  (a CSR layout: 65,537 offsets and N row numbers per table);
- by pigeonhole, if two hashes differ in at most ``r`` bits, at least one of the 16
  substrings differs in at most ``floor(r / 16)`` bits. So a query probes, in each table,
  every 16-bit value within ``floor(r / 16)`` bits of its own substring (1 + 16 = 17
  values for ``r <= 31``), and every row found is a candidate;
- every candidate's full distance is then computed (the first two words first, as in the
  linear scan), and only those within ``r`` are returned. No hash within ``r`` can be
  missed, and nothing beyond ``r`` is returned: the answer is the linear scan's, the
  same rows with the same distances (tests/test_hamming_index.py checks it).

On uniformly spread hashes a bucket holds N / 65,536 rows, so a query set of 8 hashes
verifies about 8 x 16 x 17 x N / 65,536 ~ 0.03 N candidates: ~330,000 at 10 million.
Real PDQ hashes are less uniform (some buckets fuller), which costs time, never recall.
Above ``floor(r / 16) = 1`` (``r >= 32``) the candidates grow ~8x per step and the
linear scan is the better tool: :data:`MAX_RADIUS` is the largest radius the index
answers, and :class:`~.phash.HashMatrix` scans linearly beyond it (and below
:data:`MIN_ROWS`, where the scan is faster than the probes' fixed cost).

Why not faiss. faiss-cpu ships ``IndexBinaryMultiHash`` and ``IndexBinaryHash``, but its
range search on them returns what its hash tables hold for the probed buckets with
``nflip`` bits flipped, and ``remove_ids`` is not implemented for either (faiss 1.15
raises): deleting an erased photo would mean rebuilding the whole index. The scheme here
is ~150 lines of numpy, provably exact for every radius it accepts, and deletes in place.

Deletion. :meth:`HammingIndex.remove` takes rows out of every table, renumbers the rows
after them and returns the compacted hashes; the tables it leaves are exactly the tables
a fresh build over the remaining hashes would make (tests check byte equality), so
nothing of a removed hash remains: not its bits, not its bucket, not a hole where it was.
The index lives in memory only and is never written to disk; what is persisted is the
sealed PDQ cache (:mod:`.hash_cache`), which an erasure rewrites without the photo.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_RADIUS", "MIN_ROWS", "SUBSTRINGS", "HammingIndex"]

#: substrings (tables) per hash: 16 of 16 bits
SUBSTRINGS = 16
_BITS = 16
_VALUES = 1 << _BITS
#: the largest radius the index answers (probing within 1 bit per substring)
MAX_RADIUS = 2 * SUBSTRINGS - 1
#: below this many rows the linear scan is as fast (measured: docs/benchmarks.md)
MIN_ROWS = 100_000
#: the 17 probe masks within one bit of a 16-bit value
_FLIPS = np.array([0] + [1 << b for b in range(_BITS)], dtype=np.int64)


def _substrings(words: np.ndarray) -> np.ndarray:
    """(N, 16) int64: the 16-bit substrings of (N, 4) uint64 hashes, 4 per word."""
    shifts = np.arange(0, 64, _BITS, dtype=np.uint64)
    parts = (words[:, :, None] >> shifts) & np.uint64(_VALUES - 1)
    return parts.reshape(len(words), SUBSTRINGS).astype(np.int64)


class HammingIndex:
    """Multi-index hashing over the rows of an (N, 4) uint64 hash matrix (see the module).

    The index keeps a reference to ``words`` (it does not copy it) and answers row numbers
    of that matrix; :meth:`remove` returns the matrix without the removed rows, which the
    owner must use from then on."""

    def __init__(self, words: np.ndarray) -> None:
        self.words = words
        n = len(words)
        if n >= 2**31:
            raise ValueError("more than 2**31 hashes: row numbers are int32")
        self.rows = np.empty((SUBSTRINGS, n), dtype=np.int32)
        self.offsets = np.empty((SUBSTRINGS, _VALUES + 1), dtype=np.int64)
        for j in range(SUBSTRINGS):
            word, shift = divmod(j, 64 // _BITS)
            key = ((words[:, word] >> np.uint64(shift * _BITS)) & np.uint64(_VALUES - 1)).astype(np.uint16)
            self.rows[j] = np.argsort(key, kind="stable")  # a radix sort for 16-bit keys
            self.offsets[j, 0] = 0
            np.cumsum(np.bincount(key, minlength=_VALUES), out=self.offsets[j, 1:])

    def __len__(self) -> int:
        return len(self.words)

    def search(self, queries: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, row, distance) of every pair within ``max_distance`` (0..MAX_RADIUS);
        ``queries`` is (Q, 4) uint64. Unordered, one entry per (query, row) pair."""
        if not 0 <= max_distance <= MAX_RADIUS:
            raise ValueError(f"the index answers radii 0 to {MAX_RADIUS}")
        empty = np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int32)
        if not len(self.words) or not len(queries):
            return empty
        flips = _FLIPS[: 1 + _BITS * (max_distance // SUBSTRINGS)]
        keys = _substrings(queries)[:, :, None] ^ flips  # (Q, 16, probes)
        table = np.arange(SUBSTRINGS)[None, :, None]
        starts = self.offsets[table, keys].ravel()
        counts = self.offsets[table, keys + 1].ravel() - starts
        total = int(counts.sum())
        if not total:
            return empty
        # positions of every candidate in the flattened tables, without a Python loop
        base = starts + np.broadcast_to(table * len(self.words), keys.shape).ravel()
        ends = np.cumsum(counts)
        pos = np.arange(total, dtype=np.int64) + np.repeat(base - (ends - counts), counts)
        rows = self.rows.ravel()[pos]
        qi = np.repeat(np.arange(len(queries)).repeat(keys.shape[1] * keys.shape[2]), counts)
        # the first two words bound the distance from below; the rest only for survivors
        near = np.bitwise_count(self.words[rows, 0] ^ queries[qi, 0]).astype(np.int32)
        near += np.bitwise_count(self.words[rows, 1] ^ queries[qi, 1])
        keep = near <= max_distance
        rows, qi, near = rows[keep], qi[keep], near[keep]
        near += np.bitwise_count(self.words[rows, 2] ^ queries[qi, 2])
        near += np.bitwise_count(self.words[rows, 3] ^ queries[qi, 3])
        keep = near <= max_distance
        rows, qi, near = rows[keep], qi[keep], near[keep]
        # a pair within the radius is found by every substring within 1 bit: keep it once
        pair = np.unique(qi.astype(np.int64) * len(self.words) + rows, return_index=True)[1]
        return qi[pair].astype(np.intp), rows[pair].astype(np.intp), near[pair]

    def remove(self, rows: np.ndarray) -> np.ndarray:
        """Take these row numbers out of every table and renumber the rows after them;
        returns the hash matrix without those rows (the index's new ``words``). The old
        matrix's removed rows are overwritten with zeros."""
        gone = np.unique(np.asarray(rows, dtype=np.int64))
        gone = gone[(gone >= 0) & (gone < len(self.words))]
        if not len(gone):
            return self.words
        keep = np.ones(len(self.words), dtype=bool)
        keep[gone] = False
        # new row number of each kept row: old minus the removed rows before it
        renumber = np.cumsum(keep, dtype=np.int64) - 1
        subs = _substrings(self.words[gone])
        new_rows = np.empty((SUBSTRINGS, int(keep.sum())), dtype=np.int32)
        for j in range(SUBSTRINGS):
            old = self.rows[j]
            new_rows[j] = renumber[old[keep[old]]]
            self.offsets[j, 1:] -= np.cumsum(np.bincount(subs[:, j], minlength=_VALUES))
        words = np.asfortranarray(self.words[keep])
        if self.words.flags.writeable:  # else a view of immutable bytes, which cannot be zeroed
            self.words[gone] = 0
        self.rows, self.words = new_rows, words
        return words
