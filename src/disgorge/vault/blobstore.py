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

__all__ = ["BlobStore"]

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

    def _path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key[2:4]}/{key}"

    def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        final = self._path(key)
        tmp = f"{self.root}/{_TMP}/{key}.{uuid.uuid4().hex}"
        if self._direct:
            _put_local(tmp, final, data)
            return key
        self.fs.pipe_file(tmp, data)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        self.fs.mv(tmp, final)
        return key

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

    def delete(self, key: str) -> None:
        """Remove a blob; removing one that is already gone is not an error (idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(key))

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


def _put_local(tmp: str, final: str, data: bytes) -> None:
    """The local-disk put: the same steps as through fsspec (write a temporary, make the
    folder, rename into place), as direct os calls; the folder is made only when missing.
    Safe to call from several threads at once."""
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


def _mtime(info: dict) -> float:
    value = info.get("mtime") or info.get("LastModified") or info.get("created")
    if value is None:
        return time.time()
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)
