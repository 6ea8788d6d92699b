"""Workspace settings, kept in ``.disgorge/config.toml``.

A workspace is a directory holding a ``.disgorge`` folder, found the way git finds
``.git``: ``--workspace``, then ``$DISGORGE_WORKSPACE``, then the current directory and
its parents. Relative paths and URLs in the config are relative to the ``.disgorge``
folder, so a workspace can be moved or copied whole.

The ``.disgorge`` folder holds the catalog, keys and sealed photos: it is private to its
owner (mode 0700, its files 0600). ``make_private`` enforces that when a workspace is
created or opened; it also makes the process's umask at least 0o077, because many parts
(the blob store, SQLite's WAL and SHM files, indexes, caches) create files later, and a
file that is never readable by others needs no chmod afterwards.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkspaceError

__all__ = [
    "CONFIG_NAME",
    "MARKER",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "Config",
    "find_workspace",
    "make_private",
]

MARKER = ".disgorge"
CONFIG_NAME = "config.toml"
ENV_WORKSPACE = "DISGORGE_WORKSPACE"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: the catalog's own files: chmod by path only (never opened outside SQLite); SQLite
#: gives a new WAL/SHM the mode of the database file
_CATALOG_FILES = ("", "-wal", "-shm", "-journal")


@dataclass
class Config:
    #: the .disgorge folder
    home: Path
    catalog_url: str = "sqlite:///catalog.sqlite"
    store_url: str = "blobs"
    #: an S3-compatible endpoint for an ``s3://`` store (empty: AWS, or ``AWS_ENDPOINT_URL``)
    store_endpoint: str = ""
    #: "file" (key file in the workspace) or "env" (environment variable)
    kek_source: str = "file"
    kek_path: str = "kek.key"
    kek_env: str = "DISGORGE_KEK"
    max_pixels: int = 89_478_485
    max_file_bytes: int = 256 * 1024 * 1024
    #: OpenLineage events: "none" (default), "console", "file" or "http"
    openlineage_transport: str = "none"
    openlineage_path: str = "openlineage.jsonl"
    openlineage_url: str = ""
    #: the erasure ledger's folder: keep it where the catalog's backups do not roll it back
    ledger_path: str = "ledger"

    @property
    def root(self) -> Path:
        """The workspace directory (the parent of ``.disgorge``)."""
        return self.home.parent

    def resolved_catalog_url(self) -> str:
        prefix = "sqlite:///"
        if self.catalog_url.startswith(prefix) and not self.catalog_url.startswith("sqlite:////"):
            rel = self.catalog_url[len(prefix) :]
            return prefix + str((self.home / rel).resolve())
        return self.catalog_url

    def resolved_store_url(self) -> str:
        if "://" in self.store_url:
            return self.store_url
        return str((self.home / self.store_url).resolve())

    def resolved_openlineage_path(self) -> Path:
        return (self.home / self.openlineage_path).resolve()

    def resolved_ledger_path(self) -> Path:
        return (self.home / self.ledger_path).resolve()

    def resolved_kek_path(self) -> Path:
        return (self.home / self.kek_path).resolve()

    def catalog_file(self) -> Path | None:
        """The SQLite catalog file, or None when the catalog is not a local SQLite file."""
        url = self.resolved_catalog_url()
        prefix = "sqlite:///"
        if not url.startswith(prefix) or url.endswith(":memory:"):
            return None
        return Path(url[len(prefix) :].split("?", 1)[0])

    @classmethod
    def load(cls, home: Path) -> Config:
        path = home / CONFIG_NAME
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WorkspaceError(f"{path} is missing: not a disgorge workspace") from None
        except tomllib.TOMLDecodeError as exc:
            raise WorkspaceError(f"{path}: invalid TOML ({exc})") from None
        catalog = data.get("catalog", {})
        store = data.get("store", {})
        kek = data.get("kek", {})
        ingest = data.get("ingest", {})
        lineage = data.get("openlineage", {})
        ledger = data.get("ledger", {})
        return cls(
            home=home,
            catalog_url=catalog.get("url", cls.catalog_url),
            store_url=store.get("url", cls.store_url),
            store_endpoint=store.get("endpoint", cls.store_endpoint),
            kek_source=kek.get("source", cls.kek_source),
            kek_path=kek.get("path", cls.kek_path),
            kek_env=kek.get("env", cls.kek_env),
            max_pixels=int(ingest.get("max_pixels", cls.max_pixels)),
            max_file_bytes=int(ingest.get("max_file_bytes", cls.max_file_bytes)),
            openlineage_transport=lineage.get("transport", cls.openlineage_transport),
            openlineage_path=lineage.get("path", cls.openlineage_path),
            openlineage_url=lineage.get("url", cls.openlineage_url),
            ledger_path=ledger.get("path", cls.ledger_path),
        )

    def save(self) -> None:
        text = (
            "# disgorge workspace settings; relative paths are relative to this folder\n"
            f"[catalog]\nurl = {_q(self.catalog_url)}\n\n"
            f"[store]\nurl = {_q(self.store_url)}\n"
            + (f"endpoint = {_q(self.store_endpoint)}\n" if self.store_endpoint else "")
            + "\n"
            f"[kek]\nsource = {_q(self.kek_source)}\npath = {_q(self.kek_path)}\n"
            f"env = {_q(self.kek_env)}\n\n"
            f"[ingest]\nmax_pixels = {self.max_pixels}\nmax_file_bytes = {self.max_file_bytes}\n\n"
            "# OpenLineage run events: transport none | console | file | http\n"
            f"[openlineage]\ntransport = {_q(self.openlineage_transport)}\n"
            f"path = {_q(self.openlineage_path)}\n"
            f"url = {_q(self.openlineage_url)}\n\n"
            "# the erasure ledger (docs/requests.md): on storage the catalog's backups do not roll back\n"
            f"[ledger]\npath = {_q(self.ledger_path)}\n"
        )
        (self.home / CONFIG_NAME).write_text(text, encoding="utf-8")


def make_private(home: Path, config: Config | None = None) -> None:
    """Keep the workspace private to its owner: umask 0o077, folder 0700, own files 0600.

    Best effort for what this user does not own (a shared workspace set up by an
    administrator keeps the modes it was given); never opens a file. The KEK file is
    left alone: one that others could read is refused (``FileKek``), not quietly fixed.
    """
    os.umask(os.umask(0o077) | 0o077)
    _tighten(home, PRIVATE_DIR_MODE)
    if config is None:
        return
    _tighten(home / CONFIG_NAME, PRIVATE_FILE_MODE)
    _tighten(home / "signing.pub", PRIVATE_FILE_MODE)
    catalog = config.catalog_file()
    if catalog is not None:
        for suffix in _CATALOG_FILES:
            _tighten(catalog.with_name(catalog.name + suffix), PRIVATE_FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` if it is looser (missing or not ours: left alone)."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
        if current & ~mode & 0o777:
            os.chmod(path, current & mode)
    except (FileNotFoundError, PermissionError):
        pass


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_workspace(start: Path | str | None = None) -> Path:
    """The ``.disgorge`` folder for ``start``, ``$DISGORGE_WORKSPACE`` or the cwd upwards."""
    if start is not None:
        candidate = Path(start).expanduser().resolve()
        home = candidate if candidate.name == MARKER else candidate / MARKER
        if not home.is_dir():
            raise WorkspaceError(f"{candidate} is not a disgorge workspace (run `disgorge init {start}`)")
        return home
    env = os.environ.get(ENV_WORKSPACE)
    if env:
        return find_workspace(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / MARKER).is_dir():
            return folder / MARKER
    raise WorkspaceError(
        "no disgorge workspace here or in any parent folder; run `disgorge init` or pass "
        f"--workspace / set ${ENV_WORKSPACE}"
    )
