"""Files sent to the API to be used by a later call: an archive to ingest, a manifest, a bundle.

An API client has no folder on the server, so it uploads first (``POST /v1/uploads``,
the raw bytes as the body) and names the upload in the call that uses it
(``POST /v1/ingest``, ``POST /v1/bundles``). A bundle the server writes for a client to
download lives the same way. Such a file holds photos in clear, exactly as a folder given
to ``disgorge ingest`` or a bundle written by ``disgorge share -o`` does, so it lives
*outside* the workspace (whose files must never hold a photo in clear: the erasure's
forensic scan looks for them there): in a private folder of the system's temporary
directory named after the workspace (0700, files 0600), named by a random id, kept only
until the call that uses it ends (then overwritten and unlinked) or, if no call comes,
until ``disgorge gc`` finds it older than its grace period.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from typing_extensions import TypedDict

from . import audit
from .context import Context
from .errors import InvalidInput, NotFound
from .vault.blobstore import wipe_file

__all__ = ["UploadView", "Writer", "as_archive", "discard", "new_file", "path_of", "stale", "uploads_dir"]

_ID = re.compile(r"^upl_[0-9a-f]{32}$")


class UploadView(TypedDict):
    #: the id to name it by in the call that uses it
    upload: str
    bytes: int
    sha256: str


def uploads_dir(ctx: Context) -> Path:
    """``$TMPDIR/disgorge-<workspace id>/uploads``: outside the workspace, private."""
    return Path(tempfile.gettempdir()) / f"disgorge-{ctx.workspace_id}" / "uploads"


def _private_folder(ctx: Context) -> Path:
    folder = uploads_dir(ctx)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part in (folder.parent, folder):
        if part.stat().st_uid != os.getuid() or part.stat().st_mode & 0o077:
            raise InvalidInput(f"{part} is not private to this user; remove it and try again")
    return folder


class Writer:
    """Writes one upload chunk by chunk, refusing more than ``max_bytes``; :meth:`close`
    records it (audited), :meth:`abort` removes what was written."""

    def __init__(self, ctx: Context, max_bytes: int) -> None:
        self.ctx, self.max_bytes = ctx, max_bytes
        self.id = "upl_" + secrets.token_hex(16)
        folder = _private_folder(ctx)
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
    folder = _private_folder(ctx)
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


def as_archive(ctx: Context, upload_id: str) -> Path:
    """The upload as an archive the ingest reads, named by what its bytes are (``.zip`` or
    ``.tar``, compressed or not); InvalidInput when it is neither."""
    path = path_of(ctx, upload_id)
    if zipfile.is_zipfile(path):
        suffix = ".zip"
    elif tarfile.is_tarfile(path):
        suffix = ".tar"
    else:
        raise InvalidInput("the upload is not a .zip or .tar(.gz) archive")
    named = path.with_name(path.name + suffix)
    path.rename(named)
    return named


def discard(ctx: Context, upload_id: str) -> None:
    """Overwrite and unlink an upload once the call that used it ended."""
    for path in uploads_dir(ctx).glob(f"{upload_id}*"):
        if path.is_dir():  # a folder a call made for its files (named as the client knows them)
            for inner in path.iterdir():
                wipe_file(inner, unlink=True)
            path.rmdir()
        else:
            wipe_file(path, unlink=True)


def stale(ctx: Context, cutoff: float | None = None) -> list[Path]:
    """Uploads older than ``cutoff`` (a time.time() value; default now): what gc removes."""
    folder = uploads_dir(ctx)
    if not folder.is_dir():
        return []
    limit = time.time() if cutoff is None else cutoff
    return sorted(
        p for p in folder.iterdir() if _ID.match(p.name.split(".")[0]) and p.stat().st_mtime <= limit
    )
