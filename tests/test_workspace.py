"""Workspace creation, discovery and keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from disgorge import KekError, Workspace, WorkspaceError
from disgorge.catalog import SCHEMA_HEAD
from disgorge.vault import encode_key, new_key


def test_init_creates_catalog_store_keys(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        home = ws.config.home
        assert (home / "catalog.sqlite").is_file()
        assert (home / "blobs").is_dir()
        assert (home / "signing.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
        kek = home / "kek.key"
        assert stat.S_IMODE(kek.stat().st_mode) == 0o600
        status = ws.status()
        assert status["schema"] == SCHEMA_HEAD
        assert status["assets"] == 0
        assert status["audit_events"] == 1


def test_init_twice_refuses_and_keeps_the_first(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        ws.add_source("keep-me")
    with pytest.raises(WorkspaceError, match="already holds"):
        Workspace.init(tmp_path / "ws")
    with Workspace.open(tmp_path / "ws") as ws:
        assert [s["name"] for s in ws.sources()] == ["keep-me"]


def test_open_finds_workspace_like_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Workspace.init(tmp_path / "ws").close()
    deep = tmp_path / "ws" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    monkeypatch.delenv("DISGORGE_WORKSPACE", raising=False)
    with Workspace.open() as ws:
        assert ws.root == (tmp_path / "ws").resolve()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceError, match="no disgorge workspace"):
        Workspace.open()
    monkeypatch.setenv("DISGORGE_WORKSPACE", str(tmp_path / "ws"))
    with Workspace.open() as ws:
        assert ws.root == (tmp_path / "ws").resolve()


def test_open_missing_workspace_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="disgorge init"):
        Workspace.open(tmp_path / "nothing-here")


def test_kek_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEK", encode_key(new_key()))
    with Workspace.init(tmp_path / "ws", kek_env="MY_KEK") as ws:
        ws.add_source("app")
        assert not (ws.config.home / "kek.key").exists()
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.status()["kek"] == "env MY_KEK"
    monkeypatch.delenv("MY_KEK")
    with pytest.raises(KekError, match="MY_KEK"):
        Workspace.open(tmp_path / "ws")


def test_init_with_unset_kek_env_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_KEK", raising=False)
    with pytest.raises(KekError, match="disgorge keygen"):
        Workspace.init(tmp_path / "ws", kek_env="NOT_SET_KEK")
    assert not (tmp_path / "ws" / ".disgorge").exists()


def test_signing_key_signs_and_public_key_verifies(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        signature = ws.sign(b"certificate body")
        public = ws.public_key()
        public.verify(signature, b"certificate body")
        with pytest.raises(InvalidSignature):
            public.verify(signature, b"certificate body, altered")


def test_signing_key_is_not_stored_in_clear(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with Workspace.init(tmp_path / "ws") as ws:
        raw = ws.kek.unwrap(_meta(ws, "signing_key"), b"disgorge:signing-key")
        Ed25519PrivateKey.from_private_bytes(raw)  # it is the real key
        home = ws.config.home
    blob = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert raw not in blob


def _meta(ws: Workspace, key: str) -> bytes:
    from disgorge.catalog import Meta

    with ws.sessions() as session:
        return session.get(Meta, key).value


def test_workspace_can_be_moved(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        ws.add_source("app")
    os.rename(tmp_path / "ws", tmp_path / "moved")
    with Workspace.open(tmp_path / "moved") as ws:
        assert ws.root == (tmp_path / "moved").resolve()
        assert ws.source("app")["name"] == "app"
