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
:data:`MIN_ROWS`, where the scan is as fast as the probes' fixed cost).

Why not faiss. faiss-cpu (1.15 here) ships the same scheme as ``IndexBinaryMultiHash``
(exact for a range search when its ``nhash`` tables of ``b`` bits cover all 256 bits and
``nflip >= floor(r / nhash)``), but neither it nor ``IndexBinaryHash`` implements
``remove_ids`` (both raise): deleting an erased photo would mean rebuilding the whole
index, and a copy of the index could not be shown to hold nothing of it. The scheme here
is a page of numpy, exact for every radius it accepts, and deletes in place.

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
#: below this many rows the scan is about as fast: one search with 8 hashes breaks even
#: near 20,000 rows, and the build (10 ms and 8 MB of offsets at 100,000) must be repaid
#: (measured by benchmarks/copy_index.py, docs/benchmarks.md)
MIN_ROWS = 50_000
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
        # one reference to each array for the whole search; counts clamped at 0, so a
        # search racing HashMatrix.wipe (zeroing these in place) reads zeros, never fails
        offsets, table_rows, words = self.offsets, self.rows, self.words
        starts = offsets[table, keys].ravel()
        counts = np.maximum(offsets[table, keys + 1].ravel() - starts, 0)
        total = int(counts.sum())
        if not total:
            return empty
        # positions of every candidate in the flattened tables, without a Python loop
        base = starts + np.broadcast_to(table * len(words), keys.shape).ravel()
        ends = np.cumsum(counts)
        pos = np.arange(total, dtype=np.int64) + np.repeat(base - (ends - counts), counts)
        rows = table_rows.ravel()[pos]  # grouped by query, in query order
        cols = [words[:, k] for k in range(4)]  # contiguous columns: np.take is fastest
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        first = 0
        for qi, last in enumerate(np.cumsum(counts.reshape(len(queries), -1).sum(axis=1)).tolist()):
            cand, q = rows[first:last], queries[qi]
            first = last
            # the first two words bound the distance from below (<= 128: uint8); the rest
            # only for the few that pass, as in the linear scan
            x = np.take(cols[0], cand)
            x ^= q[0]
            near = np.bitwise_count(x)
            x = np.take(cols[1], cand)
            x ^= q[1]
            near += np.bitwise_count(x)
            keep = near <= max_distance
            cand, dist = cand[keep], near[keep].astype(np.int32)
            dist += np.bitwise_count(np.take(cols[2], cand) ^ q[2])
            dist += np.bitwise_count(np.take(cols[3], cand) ^ q[3])
            keep = dist <= max_distance
            # a row within the radius is found through every substring within 1 bit: once
            cand, at = np.unique(cand[keep], return_index=True)
            found.append((np.full(len(cand), qi, dtype=np.intp), cand.astype(np.intp), dist[keep][at]))
        return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))  # type: ignore[return-value]

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
