"""The wrong key-encryption key: in the environment, a replaced file, a readable file.

What every bad-input test checks is said in conftest.py ("bad input").
"""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from conftest import assert_intact, assert_private, ingest_good
from disgorge import KekError, Workspace
from disgorge.vault import encode_key, new_key

# -- 10: the wrong key-encryption key -------------------------------------------------------------
KEK_VAR = "DISGORGE_TEST_BAD_INPUT_KEK"


def test_wrong_kek_in_the_environment_is_refused(
    tmp_path: Path, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    right = encode_key(new_key())
    monkeypatch.setenv(KEK_VAR, right)
    path = tmp_path / "envws"
    with Workspace.init(path, kek_env=KEK_VAR, actor="tester") as ws:
        ws.add_source("app")
        stored = ingest_good(ws, photo_dir)
    assert right not in (path / ".disgorge" / "config.toml").read_text()

    wrong = encode_key(new_key())
    cases = {
        wrong: "does not open this workspace's keys",
        "not base64 at all!": "not valid base64",
        base64.b64encode(b"\x01" * 16).decode(): "a KEK is 32 bytes, this is 16",
        "": "holds no KEK",
    }
    for value, reason in cases.items():
        monkeypatch.setenv(KEK_VAR, value)
        with pytest.raises(KekError) as caught:
            Workspace.open(path)
        message = str(caught.value)
        assert reason in message and KEK_VAR in message, message
        assert right not in message and (not value or value not in message)
    monkeypatch.delenv(KEK_VAR)
    with pytest.raises(KekError, match=f"{KEK_VAR} holds no KEK"):
        Workspace.open(path)

    monkeypatch.setenv(KEK_VAR, right)
    with Workspace.open(path) as ws:
        assert_intact(ws, stored)
        assert_private(ws)


def test_replaced_kek_file_is_refused_and_the_right_one_still_opens(ws: Workspace, photo_dir: Path) -> None:
    stored = ingest_good(ws, photo_dir)
    ws.close()
    key_file = ws.config.resolved_kek_path()
    original = key_file.read_text()
    other = encode_key(new_key())
    key_file.write_text(other + "\n")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    with pytest.raises(KekError) as caught:
        Workspace.open(ws.root)
    message = str(caught.value)
    assert "kek.key" in message and "does not open this workspace's keys" in message
    assert other not in message and original.strip() not in message

    key_file.write_text("garbage\n")
    with pytest.raises(KekError, match="not valid base64"):
        Workspace.open(ws.root)
    key_file.unlink()
    with pytest.raises(KekError, match="is missing"):
        Workspace.open(ws.root)

    key_file.write_text(original)
    key_file.chmod(0o600)
    with Workspace.open(ws.root) as again:
        assert_intact(again, stored)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_kek_file_readable_by_others_is_refused(ws: Workspace, mode: int) -> None:
    ws.close()
    key_file = ws.config.resolved_kek_path()
    key_file.chmod(mode)
    with pytest.raises(KekError) as caught:
        Workspace.open(ws.root)
    message = str(caught.value)
    assert f"readable by others (mode {mode:o})" in message and "chmod 600" in message
    assert key_file.read_text().strip() not in message
    key_file.chmod(0o600)
    Workspace.open(ws.root).close()
