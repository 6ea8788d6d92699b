"""Forensic scan: does any byte sequence we promised to remove still exist on disk?

Reads every file under a folder (database, WAL, blobs, temp files, logs) as raw bytes
and looks for each needle, so a value found in a free page or an unflushed WAL frame
counts as found. The erasure verifier builds on this; tests and the demo use it to show
that nothing personal is stored in clear.

Searching each needle in turn costs one pass per needle; an erasure has hundreds (a whole
source, hundreds of thousands). So the scan is one pass for all of them, and it does not
even look at every position. Needles are grouped by length; in a group whose shortest
needle has ``m`` bytes, every occurrence of a needle covers ``m - q + 1`` consecutive
positions at which a ``q``-byte gram of it starts, so sampling the file every
``step = m - q + 1`` bytes is enough, provided every gram of every needle at offsets
``0 .. step - 1`` is indexed. numpy reads the sampled grams of a chunk as one strided
view, a hashed bit set drops nearly all of them, a sorted array of the indexed grams
(``searchsorted``) keeps the exact matches, the candidate needle's first and last ``q``
bytes are compared in bulk, and only what survives that is compared in full in Python.
``q`` is 8 bytes for needles of 16 bytes or more (hex text is common in a database: 4
hex characters would match far too often), 4 for those of 8 to 15 bytes; needles shorter
than 8 bytes are searched one by one with ``bytes.find`` (none of the verifier's samples
are that short; an external id may be).

Small files (blobs: a workspace holds one per photo) are read whole, many into one buffer,
and scanned together, an occurrence counting only inside one file; larger files are read
in chunks that overlap by the longest needle. Each hit is the first occurrence of a needle
in a file, as ``bytes.find`` would report it.

The scan runs in a child process of its own (:func:`scan_tree`). It reads the catalog's
database, WAL and ``-shm`` files as raw bytes, and closing any descriptor of a database file
drops every POSIX lock the *calling* process holds on it (SQLite's "How To Corrupt An SQLite
Database File", 2.2): a server that scanned in-process looked, to every other process, as if
it had no connection, and the next one to close its own deleted the WAL under it. A child
that opens no connection has no locks to lose. :func:`scan_tree_in_process` is the scan
itself, for processes that hold no connection to a database under the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Hit", "ScanFailed", "TreeStats", "scan_tree", "scan_tree_in_process"]

_CHUNK = 8 * 1024 * 1024
_MAX_STEP = 64  # grams indexed per needle: memory against positions looked at
_FIND_BELOW = 8  # shorter needles: bytes.find, one by one
#: needles shorter than this turn up by chance in a large workspace (a 4-byte needle about
#: once per 4 GB of random bytes, far more often in text); callers leave them out
MIN_NEEDLE_BYTES = 8
_MUL = {4: np.uint32(0x9E3779B1), 8: np.uint64(0x9E3779B97F4A7C15)}  # Fibonacci hashing
_MUL2 = {4: np.uint32(0x85EBCA6B), 8: np.uint64(0xC2B2AE3D27D4EB4F)}  # a second, independent one
_PAIRS = 1 << 20  # candidate (position, needle) pairs checked in bulk at once
_ENTRY_BITS = np.uint64(24)  # grams indexed per group: at most 2**24, their number in a sort key
_ENTRY_MASK = np.uint64((1 << 24) - 1)
#: grams indexed per group; beyond, fewer per needle (a smaller step). Building the index
#: costs in proportion to the grams, scanning to the positions sampled: with a source's
#: 620,000 needles over a 1.1 GB catalog, 2**23 (step 13) took 4.4 s, 2**24 (step 27) 6.5-8.2
_MAX_ENTRIES = 1 << 23
_PREFIX_BITS = 40  # of each gram, above its entry number in the key


@dataclass(frozen=True)
class Hit:
    label: str
    file: str
    offset: int


@dataclass
class TreeStats:
    """What a scan read: regular files and their bytes (filled in by :func:`scan_tree`)."""

    files: int = 0
    bytes: int = 0


def _grams(data: bytes | bytearray, dtype: np.dtype, count: int, step: int) -> np.ndarray:
    """The ``count`` little-endian grams of ``data`` at positions 0, step, 2*step, ... (a view)."""
    return np.ndarray((count,), dtype=dtype, buffer=data, offset=0, strides=(step,))


def _bitset(slots: np.ndarray, bits: int) -> np.ndarray:
    """A table of ``2**bits`` bits with those at ``slots`` set; one bit position at a time
    (``np.bitwise_or.at`` is several times slower)."""
    slots = slots.astype(np.int64)
    table = np.zeros(1 << (bits - 3), dtype=np.uint8)
    which = (slots & 7).astype(np.uint8)
    slots >>= 3
    seen = np.zeros(len(table), dtype=bool)
    for bit in range(8):
        seen[slots[which == bit]] = True
        np.left_shift(seen.view(np.uint8), np.uint8(bit), out=seen.view(np.uint8))
        table |= seen.view(np.uint8)
        seen[:] = False
    return table


def _test(table: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Which of ``slots`` are set in ``table`` (a boolean mask)."""
    slots = slots.astype(np.int64)
    mask: np.ndarray = ((table[slots >> 3] >> (slots & 7).astype(np.uint8)) & 1).view(bool)
    return mask


class _Group:
    """Needles of similar length, searched through ``q``-byte grams sampled every ``step`` bytes."""

    def __init__(self, items: list[tuple[str, bytes]], q: int) -> None:
        self.items = items
        self.q = q
        self.dtype = np.dtype(f"<u{q}")
        self.mul = _MUL[q]
        self.step = max(
            1, min(min(len(n) for _, n in items) - q + 1, _MAX_STEP, (_MAX_ENTRIES - 1) // len(items))
        )
        cat = b"".join(n for _, n in items)
        self.lens = np.fromiter((len(n) for _, n in items), dtype=np.int64, count=len(items))
        starts = np.zeros(len(items), dtype=np.int64)
        np.cumsum(self.lens[:-1], out=starts[1:])
        every = _grams(cat, self.dtype, len(cat) - q + 1, 1)
        offsets = np.arange(self.step, dtype=np.int64)
        grams = every[(starts[:, None] + offsets).ravel()]
        # entry e of the unsorted grams is needle e // step at offset e % step. Sorted as one
        # uint64 key, the gram's prefix above the entry number: a plain sort, not an argsort
        # (twice as fast on the millions of grams of a source-sized erasure); a prefix match
        # is then checked against the needle's first and last grams, then in full
        self.shift = np.uint64(max(0, 8 * q - _PREFIX_BITS))
        keys = (grams.astype(np.uint64, copy=False) >> self.shift) << _ENTRY_BITS
        keys |= np.arange(len(grams), dtype=np.uint64)
        keys.sort()
        self.order = (keys & _ENTRY_MASK).astype(np.int64)
        self.grams = keys >> _ENTRY_BITS
        self.head = every[starts]
        self.tail = every[starts + self.lens - q]
        # two bit sets of the grams' hashes under two multipliers (64 bits per gram each, at
        # most 2**29 bits, 64 MiB): a sampled gram must pass both before the binary search
        # (one alone lets through ~3 % of positions with a source's 600,000 needles)
        bits = int(min(29, max(20, int(np.ceil(np.log2(len(grams)))) + 6)))
        self.down = self.dtype.type(8 * q - bits)
        self.table = _bitset((grams * self.mul) >> self.down, bits)
        self.table2 = _bitset((grams * _MUL2[q]) >> self.down, bits)

    def occurrences(
        self, buf: bytearray, n: int, seg_starts: np.ndarray, seg_ends: np.ndarray
    ) -> list[tuple[str, int, int]]:
        """(label, position, segment) of every occurrence in ``buf[:n]`` lying inside one segment."""
        q, step = self.q, self.step
        if n < q:
            return []
        sampled = _grams(buf, self.dtype, (n - q) // step + 1, step)
        cand = np.flatnonzero(_test(self.table, (sampled * self.mul) >> self.down))
        if not cand.size:
            return []
        picked = sampled[cand]
        second = _test(self.table2, (picked * _MUL2[q]) >> self.down)
        cand, picked = cand[second], picked[second]
        if not cand.size:
            return []
        values = picked.astype(np.uint64, copy=False) >> self.shift
        lo = np.searchsorted(self.grams, values, "left")
        keep = (
            self.grams[np.minimum(lo, len(self.grams) - 1)] == values
        )  # most are the table's false positives
        if not keep.any():
            return []
        cand, lo, values = cand[keep], lo[keep], values[keep]
        count = np.searchsorted(self.grams, values, "right") - lo
        every = _grams(buf, self.dtype, n - q + 1, 1)
        out: list[tuple[str, int, int]] = []
        for i in range(0, len(cand), _PAIRS):  # bounded memory even on degenerate data
            part = slice(i, i + _PAIRS)
            out += self._check(buf, every, cand[part], lo[part], count[part], seg_starts, seg_ends)
        return out

    def _check(
        self,
        buf: bytearray,
        every: np.ndarray,
        cand: np.ndarray,
        lo: np.ndarray,
        count: np.ndarray,
        seg_starts: np.ndarray,
        seg_ends: np.ndarray,
    ) -> list[tuple[str, int, int]]:
        total = int(count.sum())
        entry = self.order[np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(total)]
        who, shift = np.divmod(entry, self.step)
        start = np.repeat(cand * self.step, count) - shift
        length = self.lens[who]
        seg = np.searchsorted(seg_starts, start, "right") - 1
        fits = (seg >= 0) & (start + length <= seg_ends[np.maximum(seg, 0)])
        who, start, length, seg = who[fits], start[fits], length[fits], seg[fits]
        same = (every[start] == self.head[who]) & (every[start + length - self.q] == self.tail[who])
        out = []
        for w, s, g in zip(who[same].tolist(), start[same].tolist(), seg[same].tolist(), strict=True):
            label, needle = self.items[w]
            if buf.startswith(needle, s):
                out.append((label, s, g))
        return out


class _Matcher:
    def __init__(self, needles: Mapping[str, bytes]) -> None:
        self.short = [(k, v) for k, v in needles.items() if len(v) < _FIND_BELOW]
        buckets: dict[tuple[int, int], list[tuple[str, bytes]]] = {}
        for label, needle in needles.items():
            size = len(needle)
            if size >= _FIND_BELOW:
                bucket = (4, 0) if size < 16 else (8, 0) if size < 32 else (8, 1)
                buckets.setdefault(bucket, []).append((label, needle))
        self.groups = [_Group(items, q) for (q, _), items in sorted(buckets.items())]

    def occurrences(
        self, buf: bytearray, n: int, segments: list[tuple[int, int]]
    ) -> list[tuple[str, int, int]]:
        """(label, position, segment index) of occurrences in ``buf[:n]`` that lie inside one of
        the ``segments`` (start, end); among them, the first of each needle in each segment."""
        out: list[tuple[str, int, int]] = []
        for label, needle in self.short:
            for g, (s, e) in enumerate(segments):
                pos = buf.find(needle, s, e)
                if pos >= 0:
                    out.append((label, pos, g))
        if self.groups:
            seg_starts = np.fromiter((s for s, _ in segments), dtype=np.int64, count=len(segments))
            seg_ends = np.fromiter((e for _, e in segments), dtype=np.int64, count=len(segments))
            for group in self.groups:
                out += group.occurrences(buf, n, seg_starts, seg_ends)
        return out


class ScanFailed(RuntimeError):
    """The scanning child process did not finish (killed, out of memory, or a bug)."""


def scan_tree(root: Path, needles: Mapping[str, bytes], *, stats: TreeStats | None = None) -> list[Hit]:
    """Every (needle label, file, offset) of each needle's first occurrence in each file under
    ``root``, found by :func:`scan_tree_in_process` in a child process that holds no database
    connection (see the module's docstring for why). The needles travel through a pipe, never
    a file."""
    # pickle, not JSON: a source's 600,000 needles cost 2.5 s more as hex in JSON. The child is
    # this file, fed by this process alone, so nothing untrusted is unpickled
    request = pickle.dumps(
        (os.fspath(root), {label: bytes(n) for label, n in needles.items()}), protocol=pickle.HIGHEST_PROTOCOL
    )
    # run as a plain script: it imports only numpy, not the package (a child that imported
    # all of disgorge took seconds to start on a loaded machine)
    proc = subprocess.run(
        [sys.executable, "-I", os.path.abspath(__file__)], input=request, capture_output=True, check=False
    )
    if proc.returncode != 0:
        last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise ScanFailed(f"the forensic scan's process ended with status {proc.returncode}: {last[0]}")
    answer = json.loads(proc.stdout)
    if stats is not None:
        stats.files += answer["files"]
        stats.bytes += answer["bytes"]
    return [Hit(label, file, offset) for label, file, offset in answer["hits"]]


def scan_tree_in_process(
    root: Path, needles: Mapping[str, bytes], *, stats: TreeStats | None = None
) -> list[Hit]:
    """The scan itself, in this process: only for a process that holds no connection to a
    SQLite database under ``root`` (:func:`scan_tree` is the safe entry point).

    Small files (blobs) are read whole, many to one buffer, and scanned together: an
    occurrence counts only inside one file. Large ones are read in chunks. ``stats``, if
    given, counts the files and bytes under ``root`` (so that a caller need not walk the
    tree a second time to report what was scanned)."""
    live = {label: bytes(n) for label, n in needles.items() if n}
    if not live:
        if stats is not None:
            for dirpath, _dirs, files in os.walk(root):
                for name in files:
                    with contextlib.suppress(FileNotFoundError):
                        info = os.lstat(os.path.join(dirpath, name))
                        if stat.S_ISREG(info.st_mode):
                            stats.files += 1
                            stats.bytes += info.st_size
        return []
    matcher = _Matcher(live)
    overlap = max(len(n) for n in live.values()) - 1
    chunk = _CHUNK
    stream = bytearray(overlap + chunk)
    batch = _Batch(bytearray(chunk), matcher)
    small = chunk // 4
    hits: list[Hit] = []
    top = os.path.normpath(os.fspath(root))
    for dirpath, _dirs, files in os.walk(top):
        # the folder relative to the root, by slicing (os.path.relpath per folder costs a
        # second on a blob store's 65,536 folders)
        prefix = dirpath[len(top) + 1 :] + os.sep if len(dirpath) > len(top) else ""
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if stats is not None:
                stats.files += 1
                stats.bytes += info.st_size
            rel = prefix + name
            if info.st_size < small:
                if not batch.fits(info.st_size):
                    hits += batch.flush()
                if batch.add(path, rel, info.st_size):
                    continue
            hits += _scan_file(path, rel, matcher, overlap, stream)
    hits += batch.flush()
    return hits


class _Batch:
    """Small files read whole into one buffer, one after the other, and scanned together."""

    def __init__(self, buf: bytearray, matcher: _Matcher) -> None:
        self.buf, self.view, self.matcher = buf, memoryview(buf), matcher
        self.files: list[tuple[str, int, int]] = []  # (relative path, start, end)
        self.fill = 0

    def fits(self, size: int) -> bool:
        return self.fill + size + 1 <= len(self.buf)

    def add(self, path: str, rel: str, size: int) -> bool:
        """Read the file in; False if it is not the size it was (it is then read in chunks)."""
        try:
            with open(path, "rb", buffering=0) as fh:
                got = _read_full(fh, self.view[self.fill : self.fill + size + 1])
        except FileNotFoundError:
            return True
        if got > size:  # grew since it was listed
            return False
        self.files.append((rel, self.fill, self.fill + got))
        self.fill += got
        return True

    def flush(self) -> list[Hit]:
        if not self.files:
            return []
        found: dict[tuple[int, str], int] = {}
        segments = [(s, e) for _, s, e in self.files]
        for label, pos, seg in self.matcher.occurrences(self.buf, self.fill, segments):
            offset = pos - segments[seg][0]
            key = (seg, label)
            if key not in found or offset < found[key]:
                found[key] = offset
        hits = [Hit(label, self.files[seg][0], offset) for (seg, label), offset in found.items()]
        self.files.clear()
        self.fill = 0
        return hits


def _read_full(fh: Any, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _scan_file(path: str, rel: str, matcher: _Matcher, overlap: int, buf: bytearray) -> list[Hit]:
    """Reads the file in chunks into ``buf``, each after the last ``overlap`` bytes of the one
    before, so a needle that straddles two chunks is seen whole."""
    found: dict[str, int] = {}
    base = 0  # file offset of buf[0]
    have = 0  # bytes carried over from the previous chunk
    view = memoryview(buf)
    chunk = len(buf) - overlap
    try:
        with open(path, "rb", buffering=0) as fh:
            while True:
                got = fh.readinto(view[have : have + chunk])
                if not got:
                    break
                n = have + got
                for label, pos, _ in matcher.occurrences(buf, n, [(0, n)]):
                    if label not in found or base + pos < found[label]:
                        found[label] = base + pos
                have = min(overlap, n)
                buf[:have] = buf[n - have : n]
                base += n - have
    except FileNotFoundError:
        return []
    finally:
        view.release()
    return [Hit(label, rel, offset) for label, offset in found.items()]


def _child_main() -> None:
    """The scanning child: ``(root, {label: needle})`` pickled on stdin (by :func:`scan_tree`),
    the answer ``{"hits": [[label, file, offset], ...], "files": N, "bytes": N}`` on stdout."""
    root, needles = pickle.loads(sys.stdin.buffer.read())
    stats = TreeStats()
    hits = scan_tree_in_process(Path(root), needles, stats=stats)
    answer = {"hits": [[h.label, h.file, h.offset] for h in hits], "files": stats.files, "bytes": stats.bytes}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    _child_main()
