"""Where SISA checkpoints live, and how they are destroyed.

A checkpoint is the bytes of an estimator after a slice. Destroying one means the bytes,
not a catalog row: :class:`DirectoryCheckpoints` overwrites the file with zeros, fsyncs
and unlinks it. The workspace wraps a store so checkpoints are also sealed at rest
(they were computed from personal data).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from ..errors import NotFound

__all__ = ["CheckpointStore", "DirectoryCheckpoints", "MemoryCheckpoints"]


class CheckpointStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def destroy(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


class MemoryCheckpoints:
    """For tests and throw-away models."""

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> None:
        self.items[key] = data

    def get(self, key: str) -> bytes:
        try:
            return self.items[key]
        except KeyError:
            raise NotFound(f"checkpoint {key[:16]} is gone") from None

    def destroy(self, key: str) -> None:
        self.items.pop(key, None)

    def exists(self, key: str) -> bool:
        return key in self.items


class DirectoryCheckpoints:
    """One file per checkpoint, named by its key (content-addressed by what it saw)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.ckpt"

    def put(self, key: str, data: bytes) -> None:
        tmp = self.root / f".{key}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path(key))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"checkpoint {key[:16]} is gone") from None

    def destroy(self, key: str) -> None:
        path = self._path(key)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        with open(path, "r+b") as fh:
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())
        path.unlink()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()
