"""Content-addressed store for sealed blobs, through fsspec.

Keys are the sha256 of the *ciphertext*: naming a blob by its plaintext hash would let
anyone holding a photo confirm it is stored here. Writes go to a temporary name and are
renamed into place, so a crash leaves either nothing or a complete blob; a blob that the
catalog never learned about is found and removed by :meth:`BlobStore.orphans` / ``gc``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..errors import IntegrityError, NotFound

__all__ = ["BlobStore", "put_local", "wipe_file"]

_TMP = ".tmp"


class BlobStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.fs.makedirs(f"{self.root}/{_TMP}", exist_ok=True)
        #: plain local paths: ``put`` takes direct os calls instead of the fsspec layers
        self._direct = type(self.fs) is LocalFileSystem

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    @property
    def local_root(self) -> str | None:
        """The folder of a store on the local disk (for :func:`put_local`), else None."""
        return self.root if self._direct else None

    def _path(self, key: str) -> str:
        return _blob_path(self.root, key)

    def put(self, data: bytes) -> str:
        if self._direct:
            return _put_local(self.root, data)
        key = hashlib.sha256(data).hexdigest()
        final = self._path(key)
        tmp = f"{self.root}/{_TMP}/{key}.{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        self.fs.mv(tmp, final)
        return key

    def put_many(self, blobs: list[bytes]) -> list[str]:
        return [self.put(data) for data in blobs]

    def get(self, key: str) -> bytes:
        try:
            data = self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            raise NotFound(f"blob {key} is missing from the store") from None
        if hashlib.sha256(data).hexdigest() != key:
            raise IntegrityError(f"blob {key}: content does not match its address")
        return data

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._path(key))

    def delete(self, key: str, *, overwrite: bool = False) -> None:
        """Remove a blob; removing one that is already gone is not an error (idempotent).

        ``overwrite`` first writes zeros over it in place (local stores): for a blob whose
        key lives on, unlinking alone would leave decryptable ciphertext in free blocks.
        Best effort below the file system (copy-on-write file systems and SSDs may keep old
        blocks; full-disk encryption covers those).
        """
        path = self._path(key)
        if overwrite and self.is_local:
            wipe_file(path)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def entries(self) -> Iterator[tuple[str, float]]:
        """Every stored key with its modification time (epoch seconds)."""
        for path, info in self.fs.find(self.root, detail=True).items():
            name = path.rsplit("/", 1)[-1]
            if f"/{_TMP}/" in path or len(name) != 64:
                continue
            yield name, _mtime(info)

    def temporaries(self) -> Iterator[tuple[str, float]]:
        """Half-written files left by a crash, with their modification time."""
        for path, info in self.fs.find(f"{self.root}/{_TMP}", detail=True).items():
            yield path, _mtime(info)

    def remove_path(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def erasure_obstacle(self) -> str | None:
        """Why an erasure could not delete this store's blobs, or None (a folder: never;
        an S3 bucket with Object Lock: :class:`disgorge.vault.s3.S3BlobStore`)."""
        return None


def wipe_file(path: str | os.PathLike[str], *, unlink: bool = False) -> None:
    """Write zeros over a local file in place and fsync (a missing file is nothing to do);
    then unlink it if asked. Best effort below the file system."""
    with contextlib.suppress(FileNotFoundError):
        with open(path, "r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            for start in range(0, size, 1 << 20):
                fh.write(b"\0" * min(1 << 20, size - start))
            fh.flush()
            os.fsync(fh.fileno())
        if unlink:
            os.unlink(path)


def put_local(root: str, blobs: list[bytes]) -> list[str]:
    """Store ``blobs`` in the local store whose folder is ``root``; return their keys.

    The same as :meth:`BlobStore.put` for each, as a function of plain values, so that a
    writer process can run it (the ingest pipeline does, for a store on the local disk).
    """
    return [_put_local(root, data) for data in blobs]


def _blob_path(root: str, key: str) -> str:
    return f"{root}/{key[:2]}/{key[2:4]}/{key}"


def _put_local(root: str, data: bytes) -> str:
    """The local-disk put: the steps of the fsspec route (write a temporary, make the folder,
    rename into place) as direct os calls, making the folder only when it is missing."""
    key = hashlib.sha256(data).hexdigest()
    final = _blob_path(root, key)
    tmp = f"{root}/{_TMP}/{key}.{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return key


def _mtime(info: dict) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("created")
    if value is None:
        return time.time()
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)
