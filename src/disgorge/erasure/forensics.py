"""Forensic scan: does any byte sequence we promised to remove still exist on disk?

Reads every file under a folder (database, WAL, blobs, temp files, logs) as raw bytes
and looks for each needle, so a value found in a free page or an unflushed WAL frame
counts as found. The erasure verifier builds on this; tests and the demo use it to show
that nothing personal is stored in clear.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Hit", "scan_tree"]

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Hit:
    label: str
    file: str
    offset: int


def scan_tree(root: Path, needles: Mapping[str, bytes]) -> list[Hit]:
    """Every (needle label, file, offset) where a needle occurs under ``root``."""
    live = {label: n for label, n in needles.items() if n}
    if not live:
        return []
    overlap = max(len(n) for n in live.values()) - 1
    hits: list[Hit] = []
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            hits.extend(_scan_file(path, root, live, overlap))
    return hits


def _scan_file(path: Path, root: Path, needles: Mapping[str, bytes], overlap: int) -> list[Hit]:
    found: dict[str, int] = {}
    base = 0
    tail = b""
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            window = tail + chunk
            for label, needle in needles.items():
                if label in found:
                    continue
                pos = window.find(needle)
                if pos >= 0:
                    found[label] = base - len(tail) + pos
            tail = window[-overlap:] if overlap else b""
            base += len(chunk)
    rel = str(path.relative_to(root))
    return [Hit(label, rel, offset) for label, offset in found.items()]
