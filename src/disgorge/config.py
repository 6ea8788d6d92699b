"""Workspace settings, kept in ``.disgorge/config.toml``.

A workspace is a directory holding a ``.disgorge`` folder, found the way git finds
``.git``: ``--workspace``, then ``$DISGORGE_WORKSPACE``, then the current directory and
its parents. Relative paths and URLs in the config are relative to the ``.disgorge``
folder, so a workspace can be moved or copied whole.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkspaceError

__all__ = ["CONFIG_NAME", "MARKER", "Config", "find_workspace"]

MARKER = ".disgorge"
CONFIG_NAME = "config.toml"
ENV_WORKSPACE = "DISGORGE_WORKSPACE"


@dataclass
class Config:
    #: the .disgorge folder
    home: Path
    catalog_url: str = "sqlite:///catalog.sqlite"
    store_url: str = "blobs"
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

    def resolved_kek_path(self) -> Path:
        return (self.home / self.kek_path).resolve()

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
        return cls(
            home=home,
            catalog_url=catalog.get("url", cls.catalog_url),
            store_url=store.get("url", cls.store_url),
            kek_source=kek.get("source", cls.kek_source),
            kek_path=kek.get("path", cls.kek_path),
            kek_env=kek.get("env", cls.kek_env),
            max_pixels=int(ingest.get("max_pixels", cls.max_pixels)),
            max_file_bytes=int(ingest.get("max_file_bytes", cls.max_file_bytes)),
            openlineage_transport=lineage.get("transport", cls.openlineage_transport),
            openlineage_path=lineage.get("path", cls.openlineage_path),
            openlineage_url=lineage.get("url", cls.openlineage_url),
        )

    def save(self) -> None:
        text = (
            "# disgorge workspace settings; relative paths are relative to this folder\n"
            f"[catalog]\nurl = {_q(self.catalog_url)}\n\n"
            f"[store]\nurl = {_q(self.store_url)}\n\n"
            f"[kek]\nsource = {_q(self.kek_source)}\npath = {_q(self.kek_path)}\n"
            f"env = {_q(self.kek_env)}\n\n"
            f"[ingest]\nmax_pixels = {self.max_pixels}\nmax_file_bytes = {self.max_file_bytes}\n\n"
            "# OpenLineage run events: transport none | console | file | http\n"
            f"[openlineage]\ntransport = {_q(self.openlineage_transport)}\n"
            f"path = {_q(self.openlineage_path)}\n"
            f"url = {_q(self.openlineage_url)}\n"
        )
        (self.home / CONFIG_NAME).write_text(text, encoding="utf-8")


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
