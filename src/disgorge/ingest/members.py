"""Walking what is ingested: a folder, a ``.zip`` or a ``.tar(.gz|.bz2|.xz)``.

Nothing is ever extracted to disk: archive members are read into memory one at a time,
so a hostile name (``../../etc/passwd``, an absolute path, a link) can only be refused,
never written. Each member yields a :class:`Member` with a normalised relative path and
a way to read its bytes, or a refusal with its reason.
"""

from __future__ import annotations

import lzma
import os
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import InvalidInput

__all__ = ["Member", "walk"]

#: what a damaged archive member raises while it is decompressed (zlib.error and
#: lzma.LZMAError are not OSErrors; an unsupported or encrypted zip member raises
#: NotImplementedError / RuntimeError)
_DAMAGED = (
    zipfile.BadZipFile,
    tarfile.TarError,
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
    RuntimeError,
)


@dataclass
class Member:
    """One file to ingest: its path relative to the root, and how to read it."""

    path: str
    size: int
    read: Callable[[], bytes] | None
    #: why the member is refused before reading (unsafe path, link, too large)
    refused: str | None = None


def _safe_relpath(name: str) -> str | None:
    """The normalised relative path, or None if it escapes the root or is absolute."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    norm = posixpath.normpath(name)
    if norm == "." or norm.startswith("../") or norm == ".." or "/../" in f"/{norm}/":
        return None
    return norm


def walk(path: Path, *, max_bytes: int) -> Iterator[Member]:
    """Yield the members of a folder, zip or tar archive, in a stable order.

    Archives stay open while the generator runs: read each member's bytes before
    advancing the generator past the end.
    """
    if path.is_dir():
        yield from _walk_folder(path, max_bytes)
        return
    if not path.exists():
        raise InvalidInput(f"{path}: no such file or folder")
    name = path.name.lower()
    if name.endswith(".zip"):
        yield from _walk_zip(path, max_bytes)
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        yield from _walk_tar(path, max_bytes)
    else:
        raise InvalidInput(f"{path.name}: not a folder, .zip or .tar(.gz) archive")


def _reader(path: Path, max_bytes: int) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as fh:
            data = _read_at_most(fh, max_bytes + 1)
        if len(data) > max_bytes:
            raise InvalidInput(f"larger than the {max_bytes}-byte limit")
        return data

    return read


def _read_at_most(fh: IO[bytes], limit: int) -> bytes:
    """Read to the end of ``fh`` or to ``limit`` bytes, whichever comes first.

    Like ``fh.read(limit)``, which allocates ``limit`` bytes up front: a 256 MiB buffer for
    every 12 kB photo costs several times the read itself. This asks for the file's size
    (plus one byte, to see the end) and reads on in chunks only if the file has grown.
    """
    first = min(os.fstat(fh.fileno()).st_size + 1, limit)
    data = fh.read(first)
    if len(data) < first:  # a short read is the end of the file
        return data
    parts, got = [data], len(data)
    while got < limit:
        chunk = fh.read(min(limit - got, 1 << 24))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


#: the most an archive member's decompressor may produce in one step
_STEP = 1 << 20


def _read_bounded(fh: IO[bytes], limit: int) -> bytes:
    """Read at most ``limit`` bytes from a decompressing stream, ``_STEP`` at a time.

    Memory stays at what was read plus one step, whatever the stream's headers claim.
    """
    parts: list[bytes] = []
    got = 0
    while got < limit:
        chunk = fh.read(min(limit - got, _STEP))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _walk_folder(root: Path, max_bytes: int) -> Iterator[Member]:
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for dirname in list(dirnames):
            if (here / dirname).is_symlink():
                dirnames.remove(dirname)
                rel = (here / dirname).relative_to(root).as_posix()
                yield Member(rel, 0, None, "symlinked folder not followed")
        for filename in sorted(filenames):
            full = here / filename
            rel = full.relative_to(root).as_posix()
            try:
                st = full.lstat()
                if stat.S_ISLNK(st.st_mode):
                    target = full.resolve()
                    if not target.is_relative_to(real_root):
                        yield Member(rel, 0, None, "symlink points outside the ingest root")
                        continue
                    st = target.stat()
                    full = target
                if not stat.S_ISREG(st.st_mode):
                    yield Member(rel, 0, None, "not a regular file")
                    continue
            except OSError as exc:
                yield Member(rel, 0, None, f"cannot read ({exc.strerror})")
                continue
            if st.st_size > max_bytes:
                yield Member(rel, st.st_size, None, f"larger than the {max_bytes}-byte limit")
                continue
            yield Member(rel, st.st_size, _reader(full, max_bytes))


def _walk_zip(path: Path, max_bytes: int) -> Iterator[Member]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{path.name}: not a readable zip archive ({exc})") from None
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            rel = _safe_relpath(info.filename)
            shown = rel or info.filename
            if rel is None:
                yield Member(shown, 0, None, "unsafe path in archive (absolute or '..')")
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                yield Member(shown, 0, None, "link in archive not followed")
                continue
            if info.file_size > max_bytes:
                yield Member(shown, info.file_size, None, f"larger than the {max_bytes}-byte limit")
                continue

            def read(info: zipfile.ZipInfo = info) -> bytes:
                # Never trust the headers: read in small steps and stop one byte past the
                # declared size, so a member that inflates beyond it costs a chunk, not
                # the whole limit (``fh.read(n)`` inflates up to n bytes at once).
                declared = info.file_size
                try:
                    with zf.open(info) as fh:
                        data = _read_bounded(fh, min(declared, max_bytes) + 1)
                except _DAMAGED as exc:
                    raise InvalidInput(f"corrupt archive member ({_one_line(exc, info.filename)})") from None
                if len(data) > declared:
                    raise InvalidInput("corrupt archive member (more data than its header declares)")
                return data

            yield Member(rel, info.file_size, read)


def _walk_tar(path: Path, max_bytes: int) -> Iterator[Member]:
    try:
        tf = tarfile.open(path)  # noqa: SIM115 - closed by the with-block below
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"{path.name}: not a readable tar archive ({_one_line(exc)})") from None
    with tf:
        # Archive order, not sorted: a compressed tar can only be read forwards cheaply.
        while True:
            try:
                info = tf.next()
            except _DAMAGED as exc:
                raise InvalidInput(f"{path.name}: corrupt tar archive ({_one_line(exc)})") from None
            if info is None:
                _check_tar_end(tf, path)
                break
            if info.isdir():
                continue
            rel = _safe_relpath(info.name)
            shown = rel or info.name
            if rel is None:
                yield Member(shown, 0, None, "unsafe path in archive (absolute or '..')")
                continue
            if info.issym() or info.islnk():
                yield Member(shown, 0, None, "link in archive not followed")
                continue
            if not info.isfile():
                yield Member(shown, 0, None, "not a regular file")
                continue
            if info.size > max_bytes:
                yield Member(shown, info.size, None, f"larger than the {max_bytes}-byte limit")
                continue

            def read(info: tarfile.TarInfo = info) -> bytes:
                try:
                    fh = tf.extractfile(info)
                    data = _read_bounded(fh, min(info.size, max_bytes) + 1) if fh else b""
                except _DAMAGED as exc:
                    raise InvalidInput(f"corrupt archive member ({_one_line(exc, info.name)})") from None
                return data

            yield Member(rel, info.size, read)


def _check_tar_end(tf: tarfile.TarFile, path: Path) -> None:
    """Read what follows the end of a tar: only zero padding may be there.

    tarfile stops quietly at a damaged header (the members after it would be silently
    skipped), and a compressed stream's checksum is only checked at its very end.
    """
    assert tf.fileobj is not None
    try:
        while chunk := tf.fileobj.read(1 << 16):
            if chunk.strip(b"\0"):
                raise InvalidInput(
                    f"{path.name}: corrupt tar archive (a damaged header, or data after its end)"
                )
    except _DAMAGED as exc:
        raise InvalidInput(f"{path.name}: corrupt tar archive ({_one_line(exc)})") from None


def _one_line(exc: BaseException, member: str | None = None) -> str:
    """The error as one line; a member's own name (it may hold a subject id) left out,
    since the rejection already names the member."""
    text = str(exc)
    if member:
        text = text.replace(repr(member), "this member").replace(member, "this member")
    return " ".join(text.split()) or type(exc).__name__
