"""A sealed cache of the decrypted PDQ hashes, so a copy search does not open every row.

Each active PDQ row is sealed under its owner's data key; opening 100,000 of them costs
seconds (docs/benchmarks.md), and ``find --by copy`` and the erasure verifier would pay
that on every call. The cache keeps (derivative row id, asset id, face index, run id,
hash) of every active row in one file, ``<workspace>/index/pdq.sealed``::

    4-byte length | wrapped key | sealed payload (packed rows, see ``ROW``, by row id)

The payload is sealed under a fresh random key on every write, and that key is stored
wrapped by the workspace KEK (as the erasure samples are): the hashes are never on disk
in clear, and no two versions of the file share a key.

The cache is a copy, never the truth: a hash is used only when its (row id, asset id,
face index, run id) is an active row of the catalog (the run id because SQLite reuses the
ids of the last rows deleted: a re-analysed photo may get its old row ids back), and a
file that does not open or parse is treated as absent and rebuilt. It must not outlive
what it copies, so it is rewritten without a photo's rows when the photo is erased or its
owner's key destroyed, and every rewrite overwrites the old file with zeros before the
new one replaces it.

A long-lived process (the API server) also holds the last matrix it loaded from a cache
file, with its Hamming index (:mod:`.hamming`), so a later copy search over the same
hashes needs no rebuild: see :meth:`HashCache.held`. It is held only in memory, only
while the file is the one it was loaded from, and it is overwritten with zeros when this
process erases from the cache (:meth:`HashCache.drop_assets`); a new version of the
file replaces it (then it is let go, not zeroed, as every loaded matrix always was).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DisgorgeError
from ..vault import KekProvider
from ..vault.blobstore import wipe_file
from ..vault.sealed_file import read_sealed_file, write_sealed_file

if TYPE_CHECKING:
    from .phash import HashMatrix

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, see HashCache.locked
    fcntl = None  # type: ignore[assignment]

__all__ = ["CACHE_AAD", "ROW", "HashCache", "pack"]

_log = logging.getLogger("disgorge")

#: binds the wrapped key and the payload to this file's purpose and format (a new format
#: gets a new AAD, so an old file fails to open and is rebuilt)
CACHE_AAD = b"disgorge:pdq-cache:1"
#: one cached row, packed (no padding, 108 bytes); rows are kept in row-id order, so a
#: catalog read in that order is matched against them in one vectorised pass
ROW = np.dtype([("id", "<i8"), ("face", "<i4"), ("asset", "S32"), ("run", "S32"), ("hash", "u1", (32,))])
#: per cache file: (the file's header when loaded, the matrix loaded from it), in memory
_HELD: dict[Path, tuple[bytes, HashMatrix]] = {}


def pack(ids: list[int], assets: list[str], faces: list[int], runs: list[str]) -> np.ndarray | None:
    """Rows of ``ROW`` (hashes zero) for these keys; None when an asset or run id does not
    fit a packed field (32 ASCII characters): such a catalog is simply not cached."""
    rows = np.zeros(len(ids), dtype=ROW)
    if not ids:
        return rows
    try:
        text = np.array(assets), np.array(runs)
        if any(t.dtype.kind != "U" or t.dtype.itemsize > 4 * 32 for t in text):
            return None
        rows["asset"], rows["run"] = (t.astype("S32") for t in text)  # ASCII or UnicodeEncodeError
    except UnicodeEncodeError:
        return None
    rows["id"], rows["face"] = ids, faces
    return rows


class HashCache:
    """The cache file of one workspace. ``read``/``write`` do not lock: a caller that reads
    the catalog and then writes the cache holds :meth:`locked` across both (otherwise a
    search that read the catalog before an erasure could write the erased rows back)."""

    def __init__(self, path: Path, kek: KekProvider) -> None:
        self.path = path
        self.kek = kek

    @property
    def _tmp(self) -> Path:  # write_sealed_file's temporary
        return self.path.with_name(self.path.name + ".tmp")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cache's lock (an exclusive ``flock`` on a file beside it; released by
        the kernel if the process dies). Not re-entrant."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "ab") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            yield

    def stamp(self) -> bytes | None:
        """The file's length prefix and wrapped key: new on every write (a fresh key), so
        equal stamps mean the same version of the file; None when there is none."""
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(4)
                return head + fh.read(int.from_bytes(head, "big"))
        except OSError:
            return None

    def held(self, stamp: bytes | None) -> HashMatrix | None:
        """The matrix this process last loaded from this file, when ``stamp`` (the file's
        stamp now) is the one it was loaded from; None otherwise."""
        entry = _HELD.get(self.path)
        return entry[1] if entry is not None and stamp is not None and entry[0] == stamp else None

    def hold(self, stamp: bytes | None, matrix: HashMatrix) -> None:
        """Keep ``matrix`` as the one loaded from the file with ``stamp``, instead of the
        one held before (let go, not zeroed: a caller may still be searching it)."""
        _HELD.pop(self.path, None)
        if stamp is not None:
            _HELD[self.path] = (stamp, matrix)

    def forget(self) -> None:
        """Zero and drop the matrix held for this file, if any (an erasure: its hashes must
        not stay in this process's memory)."""
        entry = _HELD.pop(self.path, None)
        if entry is not None:
            entry[1].wipe()

    def read(self) -> np.ndarray | None:
        """The cached rows (``ROW``, by increasing row id); None when the file is absent or
        does not open or parse (a damaged or foreign file is never trusted, only rebuilt)."""
        try:
            rows = np.frombuffer(read_sealed_file(self.path, self.kek, CACHE_AAD, what="PDQ cache"), ROW)
            if np.any(np.diff(rows["id"]) <= 0):
                raise ValueError("rows out of order")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, DisgorgeError) as exc:
            _log.warning("PDQ cache %s is unreadable (%s); it will be rebuilt", self.path, exc)
            return None
        return rows

    def write(self, rows: np.ndarray) -> None:
        """Replace the file with ``rows`` (``ROW``, by increasing row id) sealed under a fresh
        key (:func:`~disgorge.vault.sealed_file.write_sealed_file`: the old file is zeroed
        first; a crash leaves the old file, the new one, or zeros, which read as absent)."""
        write_sealed_file(self.path, np.ascontiguousarray(rows, dtype=ROW).tobytes(), self.kek, CACHE_AAD)

    def drop_assets(self, asset_ids: Iterable[str]) -> int:
        """Rewrite the cache without the rows of ``asset_ids``; returns how many went.

        Idempotent; nothing to do when there is no cache. A file that does not open is
        wiped: it may still hold rows of these photos."""
        gone = [a.encode() for a in asset_ids if a.isascii() and len(a) <= 32]  # others: never cached
        with self.locked():
            self.forget()
            wipe_file(self._tmp, unlink=True)
            rows = self.read()
            if rows is None:
                wipe_file(self.path, unlink=True)
                return 0
            dropped = np.isin(rows["asset"], np.array(gone, dtype="S32"))
            if dropped.any():
                self.write(rows[~dropped])
            return int(dropped.sum())
