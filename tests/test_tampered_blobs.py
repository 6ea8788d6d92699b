"""Blobs altered or swapped on disk: never another photo, always an IntegrityError.

What every bad-input test checks is said in conftest.py ("bad input").
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import assert_private, ingest_good, sha, sql
from disgorge import IntegrityError, Workspace


# -- 11: altered and swapped blobs ----------------------------------------------------------------
def blob_path(ws: Workspace, digest: str) -> Path:
    key = ws.asset(digest)["blob"]
    return Path(ws.config.resolved_store_url()) / key[:2] / key[2:4] / key


def _flip_in_place(ws: Workspace, digest: str) -> None:
    path = blob_path(ws, digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _flip_and_readdress(ws: Workspace, digest: str) -> None:
    """Alter the ciphertext and store it under its new address, updating the catalog:
    the address check passes, so only the AES-GCM tag can catch it."""
    path = blob_path(ws, digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    key = sha(bytes(data))
    new_path = path.parents[2] / key[:2] / key[2:4] / key
    new_path.parent.mkdir(parents=True, exist_ok=True)
    new_path.write_bytes(bytes(data))
    path.unlink()
    sql(ws, "UPDATE assets SET blob_key = ? WHERE sha256 = ?", key, digest)


def _truncate_blob(ws: Workspace, digest: str) -> None:
    path = blob_path(ws, digest)
    path.write_bytes(path.read_bytes()[:10])


@pytest.mark.parametrize("alter", [_flip_in_place, _flip_and_readdress, _truncate_blob])
def test_altered_blob_raises_integrity_error(
    ws: Workspace, photo_dir: Path, alter: Callable[[Workspace, str], None]
) -> None:
    stored = ingest_good(ws, photo_dir)
    victim = sorted(stored)[3]
    alter(ws, victim)

    with pytest.raises(IntegrityError) as caught:
        ws.read_asset(victim)

    assert_private(ws, str(caught.value))
    del stored[victim]
    for digest, data in stored.items():
        assert ws.read_asset(digest) == data


def _photo_sha(photo_dir: Path, person: str, index: int) -> str:
    return sha((photo_dir / person / f"{person}_{index:04d}.jpg").read_bytes())


@pytest.mark.parametrize("b_owner", ["Ada_Lovelace", "Alan_Turing"], ids=["same-owner", "other-owner"])
@pytest.mark.parametrize("how", ["copy-file", "swap-catalog-keys"])
def test_swapped_blob_never_returns_another_photo(
    ws: Workspace, photo_dir: Path, b_owner: str, how: str
) -> None:
    stored = ingest_good(ws, photo_dir)
    a = _photo_sha(photo_dir, "Ada_Lovelace", 0)
    b = _photo_sha(photo_dir, b_owner, 1)
    if how == "copy-file":  # A's blob file now holds B's ciphertext
        shutil.copyfile(blob_path(ws, b), blob_path(ws, a))
    else:  # the catalog points A at B's (intact) blob and B at A's
        ka, kb = ws.asset(a)["blob"], ws.asset(b)["blob"]
        sql(ws, "UPDATE assets SET blob_key = 'x' WHERE sha256 = ?", a)
        sql(ws, "UPDATE assets SET blob_key = ? WHERE sha256 = ?", ka, b)
        sql(ws, "UPDATE assets SET blob_key = ? WHERE sha256 = ?", kb, a)
        assert ws.asset(a)["blob"] == kb

    with pytest.raises(IntegrityError) as caught:
        ws.read_asset(a)
    assert_private(ws, str(caught.value))
    if how == "copy-file":
        assert ws.read_asset(b) == stored[b]
    else:
        with pytest.raises(IntegrityError):
            ws.read_asset(b)
    for digest, data in stored.items():
        if digest not in (a, b):
            assert ws.read_asset(digest) == data
