"""Files sent to the API to be used by a later call: an archive to ingest, a manifest, a bundle.

An API client has no folder on the server, so it uploads first (``POST /v1/uploads``,
the raw bytes as the body) and names the upload in the call that uses it
(``POST /v1/ingest``, ``POST /v1/bundles``). An upload is a file in the workspace's
private ``uploads/`` folder (0600, like everything under ``.disgorge``), named by a random
id and kept only until the call that uses it ends (then overwritten and unlinked) or, if
no call comes, until ``disgorge gc`` finds it older than its grace period. Its bytes are
the user's own photos in the form they sent them, exactly as a folder given to
``disgorge ingest`` is: ingest seals what it stores, and nothing is kept longer than the
call needs.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from pathlib import Path

from typing_extensions import TypedDict

from . import audit
from .context import Context
from .errors import InvalidInput, NotFound
from .vault.blobstore import wipe_file

__all__ = ["UploadView", "Writer", "discard", "new_file", "path_of", "stale", "uploads_dir"]

_ID = re.compile(r"^upl_[0-9a-f]{32}$")


class UploadView(TypedDict):
    #: the id to name it by in the call that uses it
    upload: str
    bytes: int
    sha256: str


def uploads_dir(ctx: Context) -> Path:
    return ctx.home / "uploads"


class Writer:
    """Writes one upload chunk by chunk, refusing more than ``max_bytes``; :meth:`close`
    records it (audited), :meth:`abort` removes what was written."""

    def __init__(self, ctx: Context, max_bytes: int) -> None:
        self.ctx, self.max_bytes = ctx, max_bytes
        self.id = "upl_" + secrets.token_hex(16)
        folder = uploads_dir(ctx)
        folder.mkdir(mode=0o700, exist_ok=True)
        self.path = folder / self.id
        self._fh = open(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")  # noqa: SIM115
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise InvalidInput(f"the upload is larger than {self.max_bytes} bytes")
        self._sha.update(chunk)
        self._fh.write(chunk)

    def close(self) -> UploadView:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        if self.size == 0:
            self.abort()
            raise InvalidInput("the upload is empty")
        view: UploadView = {"upload": self.id, "bytes": self.size, "sha256": self._sha.hexdigest()}
        with self.ctx.sessions.begin() as session:
            audit.append(
                session, "upload.received", {"upload": self.id, "bytes": self.size}, actor=self.ctx.actor
            )
        return view

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.path.unlink(missing_ok=True)


def new_file(ctx: Context) -> tuple[str, Path]:
    """An id and a path for a file the server writes for a client to download once (a
    bundle to send): the same folder and lifetime as an upload."""
    folder = uploads_dir(ctx)
    folder.mkdir(mode=0o700, exist_ok=True)
    upload_id = "upl_" + secrets.token_hex(16)
    return upload_id, folder / upload_id


def path_of(ctx: Context, upload_id: str) -> Path:
    """The file of an upload; NotFound for an unknown (or malformed) id."""
    if not _ID.match(upload_id or ""):
        raise NotFound("no such upload; send the file to POST /v1/uploads first")
    path = uploads_dir(ctx) / upload_id
    if not path.is_file():
        raise NotFound(f"no upload {upload_id} (uploads are kept until used once, or until gc)")
    return path


def discard(ctx: Context, upload_id: str) -> None:
    """Overwrite and unlink an upload once the call that used it ended."""
    wipe_file(uploads_dir(ctx) / upload_id, unlink=True)


def stale(ctx: Context, cutoff: float | None = None) -> list[Path]:
    """Uploads older than ``cutoff`` (a time.time() value; default now): what gc removes."""
    folder = uploads_dir(ctx)
    if not folder.is_dir():
        return []
    limit = time.time() if cutoff is None else cutoff
    return sorted(p for p in folder.iterdir() if _ID.match(p.name) and p.stat().st_mtime <= limit)
