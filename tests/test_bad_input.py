"""Bad input: every broken or hostile thing a user can hand disgorge.

Each test checks what a user relies on: a clear message that names the file or row and
the reason, and that nothing already stored is lost or duplicated. Real files, real
SQLite, the real CLI; no mocks. Messages and the audit log must never carry an external
subject id (the names below are used as subject ids throughout).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from disgorge import IntegrityError, InvalidInput, KekError, NotFound, Workspace
from disgorge._time import parse_instant
from disgorge.audit.log import event_hash
from disgorge.demo import _bomb_png
from disgorge.ingest import IngestReport
from disgorge.samples import synthetic_photo
from disgorge.vault import encode_key, new_key

#: external subject ids: they may appear in the user's own inputs, never in our outputs
SECRET_IDS = ("Ada_Lovelace", "Alan_Turing", "Grace_Hopper")


# -- helpers ---------------------------------------------------------------------------------
def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ingest_good(ws: Workspace, photo_dir: Path) -> dict[str, bytes]:
    """Ingest the 12 good photos of ``photo_dir``; return sha256 -> original bytes."""
    report = ws.ingest(photo_dir, source="app", subject_from="dirname")
    assert report.ok and report.ingested == 12, report.to_dict()
    return {sha(p.read_bytes()): p.read_bytes() for p in sorted(photo_dir.rglob("*.jpg"))}


def blob_files(ws: Workspace) -> list[Path]:
    root = Path(ws.config.resolved_store_url())
    return [p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(root).parts]


def assert_intact(ws: Workspace, stored: dict[str, bytes]) -> None:
    """The catalog holds exactly ``stored`` (no loss, no duplicate), each one decrypting."""
    assert ws.status()["assets"] == len(stored)
    assert len(blob_files(ws)) == len(stored), "a blob was written for something not catalogued"
    for digest, data in stored.items():
        assert ws.read_asset(digest) == data


def assert_private(ws: Workspace, *messages: str) -> None:
    """No external subject id in the given messages nor anywhere in the audit log."""
    log = json.dumps(ws.audit_events(limit=1000))
    for secret in SECRET_IDS:
        for message in messages:
            assert secret not in message, message
        assert secret not in log


def rejections(report: IngestReport) -> dict[str, str]:
    return {r.path: r.reason for r in report.rejected}


def catalog_db(ws: Workspace) -> Path:
    url = ws.config.resolved_catalog_url()
    assert url.startswith("sqlite:///")
    return Path(url.removeprefix("sqlite:///"))


def sql(ws: Workspace, statement: str, *params: object) -> list[tuple]:
    """Run one statement on the catalog with the plain sqlite3 module (an outside edit)."""
    with closing(sqlite3.connect(catalog_db(ws))) as con:
        rows = con.execute(statement, params).fetchall()
        con.commit()
    return rows


def write_rows(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


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


# -- 7: symlinks inside an ingest folder ----------------------------------------------------------
def test_folder_symlinks_outside_the_root_are_refused_inside_accepted(
    ws: Workspace, photo_dir: Path, tmp_path: Path
) -> None:
    stored = ingest_good(ws, photo_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = synthetic_photo(8, 0)
    (outside / "secret.jpg").write_bytes(secret)
    root = tmp_path / "batch"
    ada = root / "Ada_Lovelace"
    ada.mkdir(parents=True)
    loose = synthetic_photo(8, 1)
    (root / "loose.jpg").write_bytes(loose)  # at the root: refused for itself (no folder name)
    (ada / "inside.jpg").symlink_to("../loose.jpg")  # relative link staying inside: accepted
    (ada / "outside-abs.jpg").symlink_to(outside / "secret.jpg")
    (ada / "outside-rel.jpg").symlink_to("../../outside/secret.jpg")
    (ada / "dangling.jpg").symlink_to("../missing.jpg")
    (ada / "linked-folder").symlink_to(outside, target_is_directory=True)

    report = ws.ingest(root, source="app", subject_from="dirname")

    refused = rejections(report)
    assert refused["Ada_Lovelace/outside-abs.jpg"] == "symlink points outside the ingest root"
    assert refused["Ada_Lovelace/outside-rel.jpg"] == "symlink points outside the ingest root"
    assert refused["Ada_Lovelace/dangling.jpg"].startswith("cannot read")
    assert refused["Ada_Lovelace/linked-folder"] == "symlinked folder not followed"
    assert "no folder name" in refused["loose.jpg"]
    assert "Ada_Lovelace/inside.jpg" not in refused
    assert len(refused) == 5
    assert report.ingested == 1
    with pytest.raises(NotFound):
        ws.asset(sha(secret))
    stored[sha(loose)] = loose
    assert_intact(ws, stored)
    assert ws.asset(sha(loose))["owner"] == ws.subject_ref("Ada_Lovelace")
    assert_private(ws, *refused.values())


# -- 8: manifests ---------------------------------------------------------------------------------
def test_manifest_naming_a_missing_file_reports_it_with_its_line(
    ws: Workspace, photo_dir: Path, tmp_path: Path
) -> None:
    stored = ingest_good(ws, photo_dir)
    batch = tmp_path / "batch"
    batch.mkdir()
    a, b, c = (synthetic_photo(9, i) for i in range(3))
    (batch / "a.jpg").write_bytes(a)
    (batch / "b.jpg").write_bytes(b)
    (batch / "c.jpg").write_bytes(c)
    manifest = write_rows(
        tmp_path / "manifest.csv",
        """
path,subject,captured_at
a.jpg,Ada_Lovelace,2013-01-15
missing.jpg,Alan_Turing,2013-01-16
b.jpg,Grace_Hopper,
""",
    )

    report = ws.ingest(batch, source="app", manifest=manifest)

    refused = rejections(report)
    assert refused == {
        "missing.jpg": "listed in the manifest (line 3) but not found",
        "c.jpg": "not listed in the manifest",
    }
    assert report.ingested == 2
    stored.update({sha(a): a, sha(b): b})
    assert_intact(ws, stored)
    with pytest.raises(NotFound):
        ws.asset(sha(c))
    assert_private(ws, *refused.values())


BAD_MANIFESTS = {
    "csv-bad-date": (
        "manifest.csv",
        "path,subject,captured_at\na.jpg,Ada_Lovelace,2013-01-15\nb.jpg,Alan_Turing,2013-02-30\n",
        ["manifest.csv line 3: captured_at", "2013-02-30", "ISO 8601"],
    ),
    "csv-missing-subject-column": (
        "manifest.csv",
        "path,captured_at\na.jpg,2013-01-15\n",
        ["manifest.csv (header): missing column(s) subject"],
    ),
    "jsonl-bad-date": (
        "manifest.jsonl",
        '{"path": "a.jpg", "subject": "Ada_Lovelace"}\n'
        '{"path": "b.jpg", "subject": "Alan_Turing", "captured_at": "last tuesday"}\n',
        ["manifest.jsonl line 2: captured_at", "last tuesday"],
    ),
    "jsonl-missing-subject": (
        "manifest.jsonl",
        '{"path": "a.jpg", "subject": "Ada_Lovelace"}\n{"path": "b.jpg"}\n',
        ["manifest.jsonl line 2: missing column(s) subject"],
    ),
    "csv-path-escaping": (
        "manifest.csv",
        "path,subject\na.jpg,Ada_Lovelace\n../b.jpg,Alan_Turing\n",
        ["manifest.csv line 3: path must be relative to the ingest root"],
    ),
}


@pytest.mark.parametrize("kind", list(BAD_MANIFESTS))
def test_bad_manifest_stops_the_ingest_before_anything_is_stored(
    ws: Workspace, photo_dir: Path, tmp_path: Path, kind: str
) -> None:
    name, text, expected = BAD_MANIFESTS[kind]
    stored = ingest_good(ws, photo_dir)
    before = ws.status()
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "a.jpg").write_bytes(synthetic_photo(9, 10))
    (batch / "b.jpg").write_bytes(synthetic_photo(9, 11))
    manifest = write_rows(tmp_path / name, text)

    with pytest.raises(InvalidInput) as caught:
        ws.ingest(batch, source="app", manifest=manifest)

    message = str(caught.value)
    for part in expected:
        assert part in message, message
    after = ws.status()
    assert after["subjects"] == before["subjects"]
    assert after["audit_events"] == before["audit_events"]
    assert_intact(ws, stored)
    assert_private(ws, message)


# -- 9: consent files -----------------------------------------------------------------------------
GOOD_CONSENT = """
subject,purpose,decision,at,policy_version
Ada_Lovelace,ai_training,granted,2014-01-01,v1
Alan_Turing,biometric_processing,denied,2014-01-02T10:00:00Z,v1
"""


def _import_good_consent(ws: Workspace, tmp_path: Path) -> Path:
    good = write_rows(tmp_path / "consent" / "good.csv", GOOD_CONSENT)
    report = ws.import_consent(good)
    assert (report.imported, report.subjects_created) == (2, 2)
    return good


def _assert_only_good_consent(ws: Workspace, good: Path) -> None:
    status = ws.status()
    assert status["consent_records"] == 2
    assert status["subjects"] == 2
    assert ws.subject("Ada_Lovelace")["consent_now"]["ai_training"] == "granted"
    assert ws.subject("Alan_Turing")["consent_now"]["ai_training"] == "none"
    with pytest.raises(NotFound):
        ws.subject("Grace_Hopper")
    assert len(ws.audit_events(limit=1000, action="consent.imported")) == 1
    again = ws.import_consent(good)  # and importing the good file again duplicates nothing
    assert (again.imported, again.already_present) == (0, 2)


def test_consent_csv_with_bad_rows_imports_nothing_and_keeps_earlier_consent(
    ws: Workspace, tmp_path: Path
) -> None:
    good = _import_good_consent(ws, tmp_path)
    bad = write_rows(
        tmp_path / "consent" / "bad.csv",
        """
subject,purpose,decision,at
Ada_Lovelace,ai_training,revoked,2015-01-01
Grace_Hopper,face_swapping,granted,2015-01-02
Alan_Turing,ai_training,granted,2015-13-45
Grace_Hopper,data_mining,granted,2015-01-03
""",
    )

    with pytest.raises(InvalidInput) as caught:
        ws.import_consent(bad)

    message = str(caught.value)
    assert message.startswith("bad.csv: 2 bad row(s), nothing imported")
    assert "bad.csv line 3: purpose: unknown purpose 'face_swapping'" in message
    assert "bad.csv line 4: at: '2015-13-45' is not an ISO 8601" in message
    assert "line 2" not in message and "line 5" not in message
    _assert_only_good_consent(ws, good)
    assert_private(ws, message)


BAD_JSONL = {
    "broken-json": ('{"subject": "Grace_Hopper", "purpose": "ai_training", "decision": ', "not valid JSON"),
    "not-an-object": ('["Grace_Hopper", "ai_training", "granted", "2015-01-01"]', "expected a JSON object"),
    "nested-object": (
        '{"subject": {"name": "Grace_Hopper"}, "purpose": "ai_training", "decision": "granted", '
        '"at": "2015-01-01"}',
        "field 'subject' must not be an object",
    ),
    "unknown-column": (
        '{"subject": "Grace_Hopper", "purpose": "ai_training", "decision": "granted", '
        '"at": "2015-01-01", "email": "grace@example.org"}',
        "unknown column(s) email",
    ),
    "bad-decision": (
        '{"subject": "Grace_Hopper", "purpose": "ai_training", "decision": "maybe", "at": "2015-01-01"}',
        "decision: unknown decision 'maybe'",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_JSONL))
def test_consent_jsonl_with_a_malformed_line_imports_nothing(
    ws: Workspace, tmp_path: Path, kind: str
) -> None:
    good = _import_good_consent(ws, tmp_path)
    line2, reason = BAD_JSONL[kind]
    first = '{"subject": "Grace_Hopper", "purpose": "data_mining", "decision": "granted", "at": "2015-01-01"}'
    last = '{"subject": "Ada_Lovelace", "purpose": "ai_training", "decision": "revoked", "at": "2015-02-01"}'
    bad = write_rows(tmp_path / "consent" / "bad.jsonl", f"{first}\n{line2}\n{last}\n")

    with pytest.raises(InvalidInput) as caught:
        ws.import_consent(bad)

    message = str(caught.value)
    assert "bad.jsonl line 2: " in message and reason in message, message
    _assert_only_good_consent(ws, good)
    assert_private(ws, message)


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


# -- 12: tampered audit log -----------------------------------------------------------------------
def _cli() -> Path:
    exe = Path(sys.executable).parent / "disgorge"
    if exe.exists():
        return exe
    found = shutil.which("disgorge")
    assert found, "the disgorge console script is not installed"
    return Path(found)


def run_cli_many(*argvs: list[str | Path]) -> list[subprocess.CompletedProcess[str]]:
    """Run the real ``disgorge`` console script once per argv, all at the same time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISGORGE_")}
    env.update(COLUMNS="400", NO_COLOR="1", TERM="dumb")
    procs = [
        (
            argv := [str(_cli()), *map(str, args)],
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
        )
        for args in argvs
    ]
    results = []
    for argv, proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return results


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_cli_many(list(args))[0]


def _middle_ingest_event(ws: Workspace) -> int:
    events = ws.audit_events(limit=1000, action="asset.ingested")
    assert len(events) == 12
    return events[5]["seq"]


@pytest.mark.parametrize("column", ["payload", "actor", "action"])
def test_audit_event_edited_in_sqlite_is_named(ws: Workspace, photo_dir: Path, column: str) -> None:
    ingest_good(ws, photo_dir)
    assert ws.verify_audit().ok
    seq = _middle_ingest_event(ws)
    (value,) = sql(ws, f"SELECT {column} FROM audit_events WHERE seq = ?", seq)[0]
    edited = value.replace("image/jpeg", "image/png") if column == "payload" else value + "x"
    assert edited != value
    sql(ws, f"UPDATE audit_events SET {column} = ? WHERE seq = ?", edited, seq)

    report = ws.verify_audit()

    assert not report.ok
    assert report.first_bad_seq == seq
    assert report.events == seq - 1
    assert "edited" in (report.reason or "")


def test_audit_event_edited_and_rehashed_breaks_the_next_link(ws: Workspace, photo_dir: Path) -> None:
    ingest_good(ws, photo_dir)
    seq = _middle_ingest_event(ws)
    action, actor, payload, prev = sql(
        ws, "SELECT action, actor, payload, prev_hash FROM audit_events WHERE seq = ?", seq
    )[0]
    event = next(e for e in ws.audit_events(limit=1000) if e["seq"] == seq)
    payload = payload.replace("image/jpeg", "image/png")
    digest = event_hash(
        seq, parse_instant(event["at"]), parse_instant(event["recorded_at"]), action, actor, payload, prev
    )
    sql(ws, "UPDATE audit_events SET payload = ?, hash = ? WHERE seq = ?", payload, digest, seq)

    report = ws.verify_audit()

    assert not report.ok
    assert report.first_bad_seq == seq + 1
    assert "prev_hash" in (report.reason or "")


@pytest.mark.parametrize("which", ["last", "middle"])
def test_deleted_audit_event_is_detected(ws: Workspace, photo_dir: Path, which: str) -> None:
    ingest_good(ws, photo_dir)
    last = ws.status()["audit_events"]
    seq = last if which == "last" else _middle_ingest_event(ws)
    sql(ws, "DELETE FROM audit_events WHERE seq = ?", seq)

    report = ws.verify_audit()

    assert not report.ok
    assert report.first_bad_seq == seq
    assert "missing" in (report.reason or "")


def test_cli_audit_verify_exits_1_and_names_the_edited_event(ws: Workspace, photo_dir: Path) -> None:
    ingest_good(ws, photo_dir)
    intact = run_cli("audit", "verify", "-w", ws.root)
    assert intact.returncode == 0, intact.stderr
    assert "audit chain intact" in intact.stdout
    seq = _middle_ingest_event(ws)
    sql(ws, "UPDATE audit_events SET payload = '{}' WHERE seq = ?", seq)

    broken, as_json = run_cli_many(
        ["audit", "verify", "-w", ws.root], ["audit", "verify", "--json", "-w", ws.root]
    )

    assert broken.returncode == 1
    assert f"audit chain broken at event {seq}:" in broken.stderr
    assert "Traceback" not in broken.stderr + broken.stdout
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["first_bad_seq"] == seq
    assert_private(ws, broken.stdout + broken.stderr)


# -- 13: the CLI's one-line errors ----------------------------------------------------------------
CLI_ERRORS: dict[str, tuple[list[str], str]] = {
    "unknown-subject": (["subject", "show", "nobody"], "no subject sub_"),
    "unknown-subject-by-name": (["subject", "show", "Grace_Hopper"], "no subject sub_"),
    "unknown-source": (
        ["ingest", "{photos}", "--source", "nosuch", "--subject-from", "dirname"],
        "no source named 'nosuch'",
    ),
    "unknown-asset": (["asset", "show", "deadbeefdeadbeef"], "no asset with sha256 deadbeefdeadbeef"),
    "unknown-asset-get": (["asset", "get", "deadbeef00", "--out", "{tmp}/x.jpg"], "no asset with sha256"),
    "missing-ingest-path": (
        ["ingest", "{tmp}/nope", "--source", "app", "--subject-from", "dirname"],
        "nope: no such file or folder",
    ),
    "unknown-subject-from": (
        ["ingest", "{photos}", "--source", "app", "--subject-from", "filename"],
        "--subject-from 'filename': expected one of dirname",
    ),
    "bad-consent-row": (["consent", "import", "{tmp}/bad.csv"], "bad.csv line 2: purpose"),
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every CLI_ERRORS case run at once against one workspace holding real photos."""
    tmp = tmp_path_factory.mktemp("cli")
    photos = tmp / "photos"
    for person, name in enumerate(SECRET_IDS[:2]):
        (photos / name).mkdir(parents=True)
        for i in range(2):
            (photos / name / f"{name}_{i:04d}.jpg").write_bytes(synthetic_photo(person, i))
    write_rows(tmp / "bad.csv", "subject,purpose,decision,at\nAda_Lovelace,selling,granted,2014-01-01\n")
    with Workspace.init(tmp / "ws", actor="tester") as ws:
        ws.add_source("app")
        assert ws.ingest(photos, source="app", subject_from="dirname").ingested == 4
        before = ws.status()
        cases = list(CLI_ERRORS)
        argvs = [
            [a.format(photos=photos, tmp=tmp) for a in CLI_ERRORS[c][0]] + ["-w", ws.root] for c in cases
        ]
        results = dict(zip(cases, run_cli_many(*argvs), strict=True))
        after = ws.status()
        log = json.dumps(ws.audit_events(limit=1000))
    return {"tmp": tmp, "before": before, "after": after, "results": results, "log": log}


def test_cli_errors_change_nothing(cli_runs: dict) -> None:
    before, after = cli_runs["before"], cli_runs["after"]
    for key in ("assets", "subjects", "consent_records", "audit_events", "audit_head"):
        assert after[key] == before[key], key
    assert not (cli_runs["tmp"] / "x.jpg").exists()
    for secret in SECRET_IDS:
        assert secret not in cli_runs["log"]


@pytest.mark.parametrize("case", list(CLI_ERRORS))
def test_cli_errors_are_one_line_without_traceback(cli_runs: dict, case: str) -> None:
    expected = CLI_ERRORS[case][1]
    result = cli_runs["results"][case]

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    if case == "bad-consent-row":  # a row file's message lists every bad row, one a line
        assert lines[0] == "error: bad.csv: 1 bad row(s), nothing imported:"
        assert lines[1:] and all(line.startswith("bad.csv line ") for line in lines[1:])
    else:
        assert len(lines) == 1, result.stderr
    assert expected in result.stderr
    for secret in SECRET_IDS:
        assert secret not in result.stdout + result.stderr


# -- 14: ingest options and paths that cannot work ------------------------------------------------
def _garbage(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"this is not an archive\n" * 10)
    return path


BAD_INGESTS: dict[str, tuple[Callable[[Path, Path], dict], type[Exception], str]] = {
    "unknown-subject-from": (
        lambda t, p: {"path": p, "subject_from": "filename"},
        InvalidInput,
        "--subject-from 'filename': expected one of dirname",
    ),
    "missing-folder": (
        lambda t, p: {"path": t / "nope", "subject_from": "dirname"},
        InvalidInput,
        "nope: no such file or folder",
    ),
    "missing-zip": (
        lambda t, p: {"path": t / "nope.zip", "subject_from": "dirname"},
        InvalidInput,
        "nope.zip: no such file or folder",
    ),
    "plain-file": (
        lambda t, p: {
            "path": shutil.copy(sorted(p.rglob("*.jpg"))[0], t / "photo.jpg"),
            "subject_from": "dirname",
        },
        InvalidInput,
        "photo.jpg: not a folder, .zip or .tar(.gz) archive",
    ),
    "garbage-zip": (
        lambda t, p: {"path": _garbage(t, "junk.zip"), "subject_from": "dirname"},
        InvalidInput,
        "junk.zip: not a readable zip archive",
    ),
    "garbage-tar-gz": (
        lambda t, p: {"path": _garbage(t, "junk.tar.gz"), "subject_from": "dirname"},
        InvalidInput,
        "junk.tar.gz: not a readable tar archive",
    ),
    "no-subject-rule": (lambda t, p: {"path": p}, InvalidInput, "say whose photos these are"),
    "two-subject-rules": (
        lambda t, p: {"path": p, "subject_from": "dirname", "manifest": t / "m.csv"},
        InvalidInput,
        "either --manifest or --subject-from",
    ),
    "missing-manifest": (
        lambda t, p: {"path": p, "manifest": t / "m.csv"},
        InvalidInput,
        "m.csv: no such file",
    ),
    "unknown-source": (
        lambda t, p: {"path": p, "subject_from": "dirname", "source": "nosuch"},
        NotFound,
        "no source named 'nosuch'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INGESTS))
def test_ingest_that_cannot_start_says_why_and_changes_nothing(
    ws: Workspace, photo_dir: Path, tmp_path: Path, case: str
) -> None:
    make, error, expected = BAD_INGESTS[case]
    stored = ingest_good(ws, photo_dir)
    subjects = ws.status()["subjects"]
    kwargs = {"source": "app", **make(tmp_path, photo_dir)}
    path = kwargs.pop("path")

    with pytest.raises(error) as caught:
        ws.ingest(path, **kwargs)

    message = str(caught.value)
    assert expected in message
    assert "\n" not in message, message
    assert ws.status()["subjects"] == subjects
    assert_intact(ws, stored)
    assert_private(ws, message)
