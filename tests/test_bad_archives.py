"""Hostile and damaged zip and tar archives handed to ingest.

What every bad-input test checks is said in conftest.py ("bad input").
"""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import assert_intact, assert_private, ingest_good, rejections, sha
from disgorge import InvalidInput, NotFound, Workspace
from disgorge.samples import synthetic_photo


# -- 5: zip archives ------------------------------------------------------------------------------
def _zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def test_zip_members_escaping_the_root_are_refused_and_nothing_is_written(
    ws: Workspace, photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = ingest_good(ws, photo_dir)
    work = tmp_path / "cwd" / "deeper"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # a relative extraction would land inside tmp_path
    evil = synthetic_photo(6, 0)
    fresh = synthetic_photo(0, 52)
    absolute = (tmp_path / "abs_evil.jpg").as_posix()
    unsafe = ["../evil.jpg", "../../evil.jpg", "Ada_Lovelace/../../evil2.jpg", absolute, "C:/evil3.jpg"]
    unsafe.append("..\\evil4.jpg")
    archive = tmp_path / "in" / "upload.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Ada_Lovelace/ok.jpg", fresh)
        for name in unsafe:
            zf.writestr(zipfile.ZipInfo(name), evil)
        zf.writestr(*_zip_symlink("Ada_Lovelace/link.jpg", "/etc/passwd"))
    with zipfile.ZipFile(archive) as zf:  # the hostile names really are in the archive
        assert set(unsafe) <= set(zf.namelist())

    report = ws.ingest(archive, source="app", subject_from="dirname")

    refused = rejections(report)
    for name in unsafe:
        assert "unsafe path in archive" in refused[name], name
    assert refused["Ada_Lovelace/link.jpg"] == "link in archive not followed"
    assert len(refused) == len(unsafe) + 1
    assert report.ingested == 1
    assert not list(tmp_path.rglob("*evil*")), "an archive member was written to disk"
    assert not (tmp_path.parent / "evil.jpg").exists()
    with pytest.raises(NotFound):
        ws.asset(sha(evil))
    stored[sha(fresh)] = fresh
    assert_intact(ws, stored)
    assert_private(ws, *refused.values())


def _patch_zip(data: bytearray, name: str, *, method: int | None = None, crc: int | None = None) -> None:
    """Patch a member's compression method (local and central headers) or its recorded CRC."""
    raw = name.encode()
    for magic, name_len_at, name_at, method_at, crc_at in (
        (b"PK\x03\x04", 26, 30, 8, 14),
        (b"PK\x01\x02", 28, 46, 10, 16),
    ):
        pos = data.find(magic)
        while pos != -1:
            (nlen,) = struct.unpack_from("<H", data, pos + name_len_at)
            if data[pos + name_at : pos + name_at + nlen] == raw:
                if method is not None:
                    struct.pack_into("<H", data, pos + method_at, method)
                if crc is not None:
                    struct.pack_into("<I", data, pos + crc_at, crc)
            pos = data.find(magic, pos + 4)


def test_zip_member_with_damaged_data_is_refused_not_fatal(
    ws: Workspace, photo_dir: Path, tmp_path: Path
) -> None:
    """A damaged deflate stream raises zlib.error, an unknown method NotImplementedError, a
    wrong checksum BadZipFile: each must refuse that one member, never crash the ingest."""
    stored = ingest_good(ws, photo_dir)
    photos = {f"Alan_Turing/n{i}.jpg": synthetic_photo(1, 60 + i) for i in range(4)}
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in photos.items():
            zf.writestr(name, data)
        first = zf.getinfo("Alan_Turing/n0.jpg")
    data = bytearray(archive.read_bytes())
    # n0: the first deflate block header says block type 3, which does not exist
    data[first.header_offset + 30 + len(first.filename.encode())] = 0xFF
    _patch_zip(data, "Alan_Turing/n1.jpg", method=99)
    _patch_zip(data, "Alan_Turing/n2.jpg", crc=0x12345678)
    archive.write_bytes(bytes(data))

    report = ws.ingest(archive, source="app", subject_from="dirname")

    refused = rejections(report)
    assert set(refused) == {f"Alan_Turing/n{i}.jpg" for i in range(3)}
    assert all(r.startswith("corrupt archive member (") for r in refused.values()), refused
    assert "invalid block type" in refused["Alan_Turing/n0.jpg"]
    assert "not supported" in refused["Alan_Turing/n1.jpg"]
    assert "CRC" in refused["Alan_Turing/n2.jpg"]
    assert report.ingested == 1
    stored[sha(photos["Alan_Turing/n3.jpg"])] = photos["Alan_Turing/n3.jpg"]
    assert_intact(ws, stored)
    assert_private(ws, *refused.values())


# -- 6: tar archives ------------------------------------------------------------------------------
def _tar_add(tf: tarfile.TarFile, name: str, data: bytes = b"", **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tf.addfile(info, io.BytesIO(data) if data else None)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_tar_with_escaping_and_link_members_is_refused_member_by_member(
    ws: Workspace, photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    stored = ingest_good(ws, photo_dir)
    work = tmp_path / "cwd" / "deeper"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    evil = synthetic_photo(6, 1)
    fresh = synthetic_photo(2, 53)
    archive = tmp_path / "in" / f"upload{suffix}"
    archive.parent.mkdir()
    absolute = (tmp_path / "abs_evil.jpg").as_posix()
    with tarfile.open(archive, "w:gz" if suffix.endswith("gz") else "w") as tf:
        _tar_add(tf, "Grace_Hopper/ok.jpg", fresh)
        _tar_add(tf, "../evil.jpg", evil)
        _tar_add(tf, absolute, evil)
        _tar_add(tf, "Grace_Hopper/sym.jpg", type=tarfile.SYMTYPE, linkname="../../../etc/passwd")
        _tar_add(tf, "Grace_Hopper/sym-in.jpg", type=tarfile.SYMTYPE, linkname="ok.jpg")
        _tar_add(tf, "Grace_Hopper/hard.jpg", type=tarfile.LNKTYPE, linkname="Grace_Hopper/ok.jpg")
        _tar_add(tf, "Grace_Hopper/hard-out.jpg", type=tarfile.LNKTYPE, linkname="../evil.jpg")
        _tar_add(tf, "Grace_Hopper/pipe.jpg", type=tarfile.FIFOTYPE)

    report = ws.ingest(archive, source="app", subject_from="dirname")

    refused = rejections(report)
    assert "unsafe path in archive" in refused["../evil.jpg"]
    assert "unsafe path in archive" in refused[absolute]
    for name in ("sym.jpg", "sym-in.jpg", "hard.jpg", "hard-out.jpg"):
        assert refused[f"Grace_Hopper/{name}"] == "link in archive not followed", name
    assert refused["Grace_Hopper/pipe.jpg"] == "not a regular file"
    assert len(refused) == 7 and report.files == 8
    assert report.ingested == 1
    assert not list(tmp_path.rglob("*evil*")), "an archive member was written to disk"
    with pytest.raises(NotFound):
        ws.asset(sha(evil))
    stored[sha(fresh)] = fresh
    assert_intact(ws, stored)
    assert_private(ws, *refused.values())


def _damage_tar_header(path: Path, tmp_path: Path) -> Path:
    """A plain tar whose third member's header is overwritten: tarfile alone stops there
    quietly, silently dropping every member after it."""
    with tarfile.open(path) as tf:
        third = tf.getmembers()[2].offset
    data = bytearray(path.read_bytes())
    data[third : third + 100] = b"\xff" * 100
    out = tmp_path / "damaged-header.tar"
    out.write_bytes(bytes(data))
    return out


def _damage_gzip_body(path: Path, tmp_path: Path) -> Path:
    """A tar.gz with bytes flipped in the middle: only the gzip CRC at its end notices."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for offset in range(mid, mid + 300):
        data[offset] ^= 0xFF
    out = tmp_path / "damaged-body.tar.gz"
    out.write_bytes(bytes(data))
    return out


def _truncate(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / f"truncated{''.join(path.suffixes)}"
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


@pytest.mark.parametrize(
    ("suffix", "damage"),
    [
        (".tar", _damage_tar_header),
        (".tar.gz", _damage_gzip_body),
        (".tar.gz", _truncate),
        (".tar", _truncate),
    ],
    ids=["damaged-header", "damaged-gzip", "truncated-gz", "truncated-tar"],
)
def test_damaged_tar_is_reported_never_silently_shortened(
    ws: Workspace, photo_dir: Path, tmp_path: Path, suffix: str, damage: Callable[[Path, Path], Path]
) -> None:
    stored = ingest_good(ws, photo_dir)
    good = tmp_path / f"good{suffix}"
    photos = [synthetic_photo(3, 70 + i) for i in range(6)]
    with tarfile.open(good, "w:gz" if suffix.endswith("gz") else "w") as tf:
        for i, data in enumerate(photos):
            _tar_add(tf, f"Ada_Lovelace/p{i}.jpg", data)
    archive = damage(good, tmp_path)

    with pytest.raises(InvalidInput) as caught:
        ws.ingest(archive, source="app", subject_from="dirname")

    message = str(caught.value)
    assert message.startswith(f"{archive.name}: corrupt tar archive (")
    assert "\n" not in message
    # whatever the archive held before the damage may or may not be stored, but
    # nothing stored before is lost and nothing is stored twice
    assert len(stored) <= ws.status()["assets"] <= len(stored) + len(photos)
    for digest, data in stored.items():
        assert ws.read_asset(digest) == data
    assert_private(ws, message)
