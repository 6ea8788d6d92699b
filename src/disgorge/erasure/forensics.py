"""Forensic scan: does any byte sequence we promised to remove still exist on disk?

Reads every file under a folder (database, WAL, blobs, temp files, logs) as raw bytes
and looks for each needle, so a value found in a free page or an unflushed WAL frame
counts as found. The erasure verifier builds on this; tests and the demo use it to show
that nothing personal is stored in clear.

Searching each needle in turn costs one pass per needle; an erasure has hundreds. So
the scan is one pass for all of them: a 65,536-entry table marks every needle's first
two bytes, numpy looks every position of the chunk up in it at once, and only the few
positions that pass (about needles/65,536 of them in random data) are compared in full.
Needles shorter than 4 bytes are searched one by one (they would pass the filter too
often to be worth it; none of the verifier's are that short).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Hit", "scan_tree"]

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Hit:
    label: str
    file: str
    offset: int


class _Matcher:
    def __init__(self, needles: Mapping[str, bytes]) -> None:
        self.short = {k: v for k, v in needles.items() if len(v) < 4}
        self.by_prefix: dict[int, list[tuple[str, bytes]]] = {}
        self.table = np.zeros(65536, dtype=bool)
        for label, needle in needles.items():
            if len(needle) >= 4:
                key = needle[0] | (needle[1] << 8)  # little-endian uint16 of the first two bytes
                self.table[key] = True
                self.by_prefix.setdefault(key, []).append((label, needle))

    def find(self, window: bytes, found: dict[str, int], base: int) -> None:
        for label, needle in self.short.items():
            if label not in found and (pos := window.find(needle)) >= 0:
                found[label] = base + pos
        if not self.by_prefix or len(window) < 2:
            return
        # two zero-copy uint16 views: even and odd positions
        for start in (0, 1):
            keys = np.frombuffer(window, dtype="<u2", count=(len(window) - start) // 2, offset=start)
            for k in np.flatnonzero(self.table[keys]).tolist():
                pos = start + 2 * k
                for label, needle in self.by_prefix[int(keys[k])]:
                    if label not in found and window.startswith(needle, pos):
                        found[label] = base + pos


def scan_tree(root: Path, needles: Mapping[str, bytes]) -> list[Hit]:
    """Every (needle label, file, offset) of each needle's first occurrence in each file under ``root``."""
    live = {label: n for label, n in needles.items() if n}
    if not live:
        return []
    matcher = _Matcher(live)
    overlap = max(len(n) for n in live.values()) - 1
    hits: list[Hit] = []
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            hits.extend(_scan_file(path, root, matcher, overlap))
    return hits


def _scan_file(path: Path, root: Path, matcher: _Matcher, overlap: int) -> list[Hit]:
    found: dict[str, int] = {}
    base = 0
    tail = b""
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            window = tail + chunk
            matcher.find(window, found, base - len(tail))
            tail = window[-overlap:] if overlap else b""
            base += len(chunk)
    rel = str(path.relative_to(root))
    return [Hit(label, rel, offset) for label, offset in found.items()]
