"""A file sealed under its own key: the erasure's samples, the PDQ cache.

Layout: ``4-byte length | key wrapped by the KEK | sealed payload``. Every write uses a
fresh key and replaces the file atomically after writing zeros over the old one: the old
file's blocks would otherwise keep the previous payload, under a key the live KEK still
unwraps.
"""

from __future__ import annotations

import os
from pathlib import Path

from .blobstore import wipe_file
from .crypto import new_key, open_sealed, seal
from .kek import KekProvider

__all__ = ["read_sealed_file", "write_sealed_file"]


def write_sealed_file(path: Path, payload: bytes, kek: KekProvider, aad: bytes) -> None:
    """Replace ``path`` with ``payload`` sealed under a fresh key: a temporary beside it,
    fsync, zeros over the old file, rename. A crash leaves the old file, the new one, or
    zeros (which do not open)."""
    key = new_key()
    wrapped = kek.wrap(key, aad)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    wipe_file(tmp, unlink=True)  # a crash's leftover holds an older payload
    with open(tmp, "wb") as fh:
        fh.write(len(wrapped).to_bytes(4, "big") + wrapped)
        fh.write(seal(key, payload, aad))
        fh.flush()
        os.fsync(fh.fileno())
    wipe_file(path)
    os.replace(tmp, path)


def read_sealed_file(path: Path, kek: KekProvider, aad: bytes, *, what: str) -> bytes:
    """The payload of a file written by :func:`write_sealed_file`; FileNotFoundError if
    there is none, IntegrityError if it was altered or sealed for something else."""
    data = path.read_bytes()
    size = int.from_bytes(data[:4], "big")
    key = kek.unwrap(data[4 : 4 + size], aad)
    return open_sealed(key, data[4 + size :], aad, what=what)
