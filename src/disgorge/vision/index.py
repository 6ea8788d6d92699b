"""The face-embedding index: sealed at rest, real deletion, no lost removals.

A faiss ``IndexIDMap2`` over an exact ``IndexFlatL2`` (128-d embeddings), keyed by the id
of the embedding's catalog row, kept in ``<workspace>/index/faces.sealed``::

    4-byte length | key wrapped by the KEK | sealed payload (faiss's serialised index)

Embeddings are biometric data (GDPR Art. 9), so the file is never in clear: every write
seals it under a fresh key wrapped by the workspace KEK, writes zeros over the old file
and renames the new one over it (:func:`~disgorge.vault.sealed_file.write_sealed_file`,
as for ``pdq.sealed``). ``remove`` drops the vectors from the in-memory arrays and the
file is rewritten whole, so a removed vector is not left behind.

The index is derived data, never the truth: a file that does not open (damaged, zeroed
by a crash, sealed for something else) is read as empty and rebuilt from the catalog by
:func:`~disgorge.vision.analyze.reconcile_index`; it is never trusted.

Several processes use one workspace. Readers load under a shared ``flock``; :meth:`save`
takes it exclusively, re-reads the file and applies only *this* object's additions and
removals to it: a writer that loaded the index earlier cannot write back vectors that
another one removed meanwhile (an erasure's removal is never undone by a search's save).

Older versions kept the index in clear in ``index/faces.faiss``. :func:`retire_clear_index`
zeroes and removes that file (and a crash's ``faces.tmp``) when a workspace is opened;
the sealed index is rebuilt from the catalog, not from it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..catalog.db import in_chunks
from ..catalog.models import AssetDerivative
from ..context import Context
from ..errors import DisgorgeError
from ..vault import KekProvider
from ..vault.blobstore import wipe_file
from ..vault.sealed_file import read_sealed_file, write_sealed_file
from .models import FacesUnavailable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DIM",
    "INDEX_AAD",
    "INDEX_NAME",
    "SAME_PERSON_DISTANCE",
    "FaceIndex",
    "drop_from_face_index",
    "embedding_ids",
    "retire_clear_index",
]

_log = logging.getLogger("disgorge")

DIM = 128
#: dlib's threshold for "same person" (Euclidean distance between embeddings)
SAME_PERSON_DISTANCE = 0.6
#: the file's name in ``<workspace>/index``
INDEX_NAME = "faces.sealed"
#: binds the wrapped key and the payload to this file's purpose and format
INDEX_AAD = b"disgorge:face-index:1"
#: what older versions wrote in clear: the index and its temporary
_CLEAR_NAMES = ("faces.faiss", "faces.tmp")


def _faiss():
    try:
        import faiss
    except ImportError:
        raise FacesUnavailable(
            "the face index needs the faces extra: pip install 'disgorge[faces]'"
        ) from None
    return faiss


def retire_clear_index(folder: Path) -> bool:
    """Zero and remove the clear index files of older versions in ``folder`` (the
    workspace's ``index``); True if there was one (the caller rebuilds the sealed index)."""
    found = False
    for name in _CLEAR_NAMES:
        path = folder / name
        if path.exists():
            found = True
            wipe_file(path, unlink=True)
    return found


class FaceIndex:
    """The sealed face index of one workspace, loaded whole into memory."""

    def __init__(self, path: Path, kek: KekProvider) -> None:
        self.path = path
        self.kek = kek
        self._faiss = _faiss()
        self._held = False
        self._added: dict[int, bytes] = {}  # unsaved changes, re-applied to the file at save
        self._removed: set[int] = set()
        self._stamp: bytes | None = None  # the header of the file as loaded
        with self.locked(shared=True):
            self.index = self._load()

    # -- the file ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the index's lock (a ``flock`` on a file beside it, released by the kernel
        if the process dies): shared to read the file, exclusive to read and write it.
        Re-entrant within this object (a save inside an exclusive hold takes nothing)."""
        if self._held:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "ab") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            self._held = not shared
            try:
                yield
            finally:
                self._held = False

    def _empty(self):
        return self._faiss.IndexIDMap2(self._faiss.IndexFlatL2(DIM))

    def _header(self) -> bytes | None:
        """The file's length prefix and wrapped key: new on every write (a fresh key, a
        random nonce), so equal headers mean the file is the one loaded."""
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(4)
                return head + fh.read(int.from_bytes(head, "big"))
        except FileNotFoundError:
            return None

    def _load(self):
        """The index in the file; empty when there is none or it does not open."""
        self._stamp = self._header()
        try:
            payload = read_sealed_file(self.path, self.kek, INDEX_AAD, what="face index")
            index = self._faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
            if index.d != DIM:
                raise ValueError(f"{index.d}-d vectors")
            return index
        except FileNotFoundError:
            return self._empty()
        except (OSError, ValueError, RuntimeError, DisgorgeError) as exc:
            _log.warning("face index %s is unreadable (%s); it will be rebuilt", self.path, exc)
            return self._empty()

    def reload(self) -> None:
        """Read the file again, if another writer replaced it since, and re-apply this
        object's unsaved changes to it."""
        with self.locked(shared=True):
            if self._header() == self._stamp:
                return  # the file as loaded, this object's changes already applied
            self.index = self._load()
        self._apply()

    def _apply(self) -> None:
        drop = np.asarray(sorted(self._removed | set(self._added)), dtype=np.int64)
        if len(drop):
            self.index.remove_ids(drop)
        if self._added:
            ids = list(self._added)
            matrix = np.frombuffer(b"".join(self._added.values()), dtype="<f4").reshape(len(ids), DIM)
            self.index.add_with_ids(matrix.astype(np.float32), np.asarray(ids, dtype=np.int64))

    def save(self) -> None:
        """Merge this object's changes into the file as it is now and rewrite it whole,
        sealed under a fresh key (the old file zeroed first), under the exclusive lock."""
        with self.locked():
            self.reload()
            payload = self._faiss.serialize_index(self.index)
            write_sealed_file(self.path, payload.tobytes(), self.kek, INDEX_AAD)
            self._stamp = self._header()
            self._added.clear()
            self._removed.clear()

    @property
    def changed(self) -> bool:
        """Whether this object holds additions or removals not saved yet."""
        return bool(self._added or self._removed)

    # -- the vectors ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: list[int], vectors: list[bytes]) -> None:
        if not ids:
            return
        matrix = np.frombuffer(b"".join(vectors), dtype="<f4").reshape(len(ids), DIM).astype(np.float32)
        self.index.remove_ids(np.asarray(ids, dtype=np.int64))  # an id holds one vector
        self.index.add_with_ids(matrix, np.asarray(ids, dtype=np.int64))
        for i, v in zip(ids, vectors, strict=True):
            self._added[int(i)] = bytes(v)
            self._removed.discard(int(i))

    def remove(self, ids: Iterable[int]) -> int:
        wanted = [int(i) for i in ids]
        if not wanted:
            return 0
        for i in wanted:
            self._added.pop(i, None)
            self._removed.add(i)
        return int(self.index.remove_ids(np.asarray(wanted, dtype=np.int64)))

    def ids(self) -> set[int]:
        return set(self._faiss.vector_to_array(self.index.id_map).tolist())

    def search(
        self, vector: bytes, *, k: int = 50, max_distance: float = SAME_PERSON_DISTANCE
    ) -> list[tuple[int, float]]:
        """Neighbours within ``max_distance`` (Euclidean), nearest first."""
        if not len(self):
            return []
        query = np.frombuffer(vector, dtype="<f4").reshape(1, DIM).astype(np.float32)
        squared, ids = self.index.search(query, min(k, len(self)))
        out = []
        for d2, i in zip(squared[0], ids[0], strict=True):
            if i < 0:
                continue
            dist = float(np.sqrt(max(d2, 0.0)))
            if dist <= max_distance:
                out.append((int(i), dist))
        return out


def embedding_ids(session: Session, asset_ids: Sequence[str]) -> list[int]:
    """The catalog ids of these photos' embedding rows (the face index's keys)."""
    return [
        i
        for part in in_chunks(asset_ids)
        for i in session.scalars(
            select(AssetDerivative.id).where(
                AssetDerivative.asset_id.in_(part), AssetDerivative.kind == "embedding"
            )
        )
    ]


def drop_from_face_index(ctx: Context, asset_ids: Sequence[str]) -> None:
    """Rewrite the sealed face index without these photos' embeddings (if there is one).

    Called when a subject's key is destroyed and by the erasure: the index is sealed under
    the KEK, not the subject's key, so destroying that key does not make their vectors
    unreadable. Where faiss is missing the index cannot be rewritten: it is wiped whole,
    and rebuilt from the catalog by the next analysis or face search.
    """
    if not ctx.face_index_path.exists():
        return
    with ctx.reader() as session:
        ids = embedding_ids(session, asset_ids)
    try:
        index = FaceIndex(ctx.face_index_path, ctx.kek)
    except FacesUnavailable:
        wipe_file(ctx.face_index_path, unlink=True)
        return
    if index.remove(ids):
        index.save()
