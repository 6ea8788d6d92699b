"""Broken image files and decompression bombs in an ingest folder.

What every bad-input test checks is said in conftest.py ("bad input").
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import assert_intact, assert_private, ingest_good, rejections, sha
from disgorge import Workspace
from disgorge.demo import _bomb_png
from disgorge.samples import synthetic_photo

# -- 1-4: broken files and decompression bombs in an ingest folder ------------------------------
BAD_FILES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "truncated-jpeg": ("cut.jpg", lambda: synthetic_photo(5, 0)[:3000], "truncated or corrupt image"),
    "empty-file": ("empty.jpg", lambda: b"", "empty file (0 bytes)"),
    "text-named-jpg": ("notes.jpg", lambda: b"dear diary, this is not a photo\n" * 20, "not an image"),
    # over twice Pillow's own limit: Pillow refuses it while opening (DecompressionBombError)
    "bomb-40000x40000": ("bomb.png", lambda: _bomb_png(40_000, 40_000), "decompression bomb"),
    # between Pillow's limit and twice it: Pillow only warns, which must still refuse it
    "bomb-10000x10000": ("bomb.png", lambda: _bomb_png(10_000, 10_000), "decompression bomb"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_image_file_is_refused_and_stored_photos_survive(
    ws: Workspace, photo_dir: Path, tmp_path: Path, kind: str
) -> None:
    name, make, reason = BAD_FILES[kind]
    stored = ingest_good(ws, photo_dir)
    batch = tmp_path / "batch2"
    (batch / "Ada_Lovelace").mkdir(parents=True)
    (batch / "Ada_Lovelace" / name).write_bytes(make())
    fresh = synthetic_photo(0, 50)
    (batch / "Ada_Lovelace" / "new.jpg").write_bytes(fresh)
    already = sorted(photo_dir.rglob("*.jpg"))[0]
    shutil.copy(already, batch / "Ada_Lovelace" / "again.jpg")

    report = ws.ingest(batch, source="app", subject_from="dirname")

    assert report.files == 3
    refused = rejections(report)
    assert set(refused) == {f"Ada_Lovelace/{name}"}
    assert reason in refused[f"Ada_Lovelace/{name}"]
    assert report.ingested == 1 and report.duplicates == 1
    stored[sha(fresh)] = fresh
    assert_intact(ws, stored)
    assert_private(ws, *refused.values())


def test_bomb_just_over_the_configured_limit_is_refused(
    ws: Workspace, photo_dir: Path, tmp_path: Path
) -> None:
    """A workspace limit far below Pillow's own: the workspace's limit is the one applied."""
    stored = ingest_good(ws, photo_dir)
    ws.config.max_pixels = 250 * 250  # the synthetic photos are exactly 250 x 250
    batch = tmp_path / "batch2" / "Ada_Lovelace"
    batch.mkdir(parents=True)
    (batch / "wide.png").write_bytes(_bomb_png(251, 250))
    fresh = synthetic_photo(0, 51)
    (batch / "at-limit.jpg").write_bytes(fresh)

    report = ws.ingest(batch.parent, source="app", subject_from="dirname")

    reason = rejections(report)["Ada_Lovelace/wide.png"]
    assert "decompression bomb" in reason
    assert "251 x 250" in reason and "62500" in reason
    assert report.ingested == 1 and len(report.rejected) == 1
    stored[sha(fresh)] = fresh
    assert_intact(ws, stored)
