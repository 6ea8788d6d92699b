"""Sticky erasure reaches copies: an erased photo's resized, mirrored or re-encoded copy is
refused at ingest and in a received bundle, through the sealed PDQ hashes the erasure kept.

Real drawn photos, real workspaces, real erasures; the crash is a real SIGKILL of a real
process, armed through the erasure's fault-injection hook.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from conftest import REASON, catalog_db, rejections, sha
from disgorge import Workspace
from disgorge.samples import synthetic_photo
from disgorge.vision.blocklist import VARIANTS, erased_photo_hashes

PEOPLE = ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper"]
PER_PERSON = 2
NEAR_COPY = re.compile(r"^a near-copy of a photo erased by request ([0-9a-f]{32}): refused$")


def _photos() -> dict[tuple[str, int], bytes]:
    return {(p, i): synthetic_photo(n, i, size=200) for n, p in enumerate(PEOPLE) for i in range(PER_PERSON)}


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue()


def copies_of(data: bytes) -> dict[str, bytes]:
    """A 50% resized copy, a mirrored copy and a recompressed (quality 40) JPEG."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        return {
            "half.jpg": _jpeg(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)),
            "mirror.jpg": _jpeg(ImageOps.mirror(im)),
            "recompressed.jpg": _jpeg(im, quality=40),
        }


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def erased(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding 3 people x 2 photos, with Ada_Lovelace erased (closed: copy it)."""
    root = tmp_path_factory.mktemp("sticky")
    folder = root / "photos"
    for (person, i), data in _photos().items():
        _write(folder / person, {f"{i}.jpg": data})
    with Workspace.init(root / "ws", actor="tester") as ws:
        ws.add_source("app")
        assert ws.ingest(folder, source="app", subject_from="dirname").ingested == len(PEOPLE) * PER_PERSON
        done = ws.erase("subject", "Ada_Lovelace", reason=REASON)
        assert done["state"] == "completed", done
    return root / "ws"


@pytest.fixture
def ews(erased: Path, tmp_path: Path):
    shutil.copytree(erased, tmp_path / "ws")
    with Workspace.open(tmp_path / "ws", actor="tester") as ws:
        yield ws


def _only_request(ws: Workspace) -> str:
    [request] = ws.erasures()
    return str(request["id"])


def _ingest_copies(ws: Workspace, tmp: Path, files: dict[str, bytes]) -> dict[str, str]:
    folder = _write(tmp / "incoming" / "Someone_Else", files)
    report = ws.ingest(folder.parent, source="app", subject_from="dirname")
    return rejections(report)


def test_resized_mirrored_and_recompressed_copies_are_refused_an_unrelated_photo_is_not(
    ews: Workspace, tmp_path: Path
) -> None:
    rid = _only_request(ews)
    originals = _photos()
    files: dict[str, bytes] = {}
    for i in range(PER_PERSON):
        files |= {f"{i}-{name}": data for name, data in copies_of(originals[("Ada_Lovelace", i)]).items()}
    files["unrelated.jpg"] = synthetic_photo(7, 3, size=200)
    refused = _ingest_copies(ews, tmp_path, files)
    copies = {f"Someone_Else/{n}" for n in files if n != "unrelated.jpg"}
    assert set(refused) == copies, refused
    for reason in refused.values():
        match = NEAR_COPY.match(reason)
        assert match and match.group(1) == rid, reason  # the request id, and nothing personal
    assert ews.status()["assets"] == (len(PEOPLE) - 1) * PER_PERSON + 1
    # the other people's photos are no copies of an erased one: their copies come in
    kept = copies_of(originals[("Alan_Turing", 0)])
    assert not _ingest_copies(ews, tmp_path / "more", kept)


def test_with_sticky_copies_off_copies_are_accepted_and_the_kept_hashes_are_dropped(
    ews: Workspace, tmp_path: Path
) -> None:
    with ews.reader() as session:
        from disgorge.vision.blocklist import kept

        assert kept(session) == PER_PERSON
    ews.set_setting("sticky_copies", 0)
    assert ews.settings()["sticky_copies"] == 0
    with ews.reader() as session:
        assert kept(session) == 0
    assert not _catalog_rows(ews, "SELECT * FROM erased_hashes")
    assert not _catalog_rows(ews, "SELECT * FROM meta WHERE key = 'blocklist_key'")
    [event] = [e for e in ews.audit_events(limit=1000) if e["action"] == "settings.changed"]
    assert event["payload"]["perceptual_hashes_dropped"] == PER_PERSON
    files = copies_of(_photos()[("Ada_Lovelace", 0)])
    assert not _ingest_copies(ews, tmp_path, files)
    assert ews.status()["assets"] == (len(PEOPLE) - 1) * PER_PERSON + len(files)
    # the exact bytes stay refused: their keyed fingerprint is another matter
    exact = _ingest_copies(ews, tmp_path / "exact", {"same.jpg": _photos()[("Ada_Lovelace", 0)]})
    assert "was erased on" in exact["Someone_Else/same.jpg"]


def test_an_erasure_with_sticky_copies_off_keeps_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for (person, i), data in _photos().items():
        _write(folder / person, {f"{i}.jpg": data})
    with Workspace.init(tmp_path / "ws", actor="tester") as ws:
        ws.add_source("app")
        ws.ingest(folder, source="app", subject_from="dirname")
        ws.set_setting("sticky_copies", 0)
        ws.erase("subject", "Alan_Turing", reason=REASON)
        assert not _catalog_rows(ws, "SELECT * FROM erased_hashes")
        ws.set_setting("sticky_copies", 1)
        assert not _ingest_copies(ws, tmp_path, copies_of(_photos()[("Alan_Turing", 1)]))


def _catalog_rows(ws: Workspace, statement: str) -> list[tuple]:
    with sqlite3.connect(catalog_db(ws)) as db:
        return db.execute(statement).fetchall()


def test_the_catalog_holds_no_perceptual_hash_in_clear(ews: Workspace) -> None:
    hashes = [erased_photo_hashes(_photos()[("Ada_Lovelace", i)]) for i in range(PER_PERSON)]
    needles = [h[k : k + 32] for h in hashes if h is not None for k in range(0, 32 * VARIANTS, 32)]
    assert len(needles) == PER_PERSON * VARIANTS
    sealed = _catalog_rows(ews, "SELECT sealed FROM erased_hashes")
    assert len(sealed) == PER_PERSON
    tables = [t for (t,) in _catalog_rows(ews, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    found = []
    for table in tables:
        for row in _catalog_rows(ews, f'SELECT * FROM "{table}"'):
            cells = [c if isinstance(c, bytes) else str(c).encode() for c in row if c is not None]
            for cell in cells:
                found += [table for n in needles if n in cell or n.hex().encode() in cell]
    assert not found, found
    # nor in the file itself (old pages, the WAL), raw
    db = catalog_db(ews)
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert not [n for n in needles if n in raw]


KILL = r"""
import os, signal, sys
from disgorge import Workspace
from disgorge.erasure.steps import inject

def die():
    os.kill(os.getpid(), signal.SIGKILL)

ws = Workspace.open(sys.argv[1], actor="tester")
with inject("delete_blobs", blob_deleted=die):  # the hashes are kept; one blob is gone
    ws.erase("subject", "Ada_Lovelace", reason=sys.argv[2])
"""


def test_an_erasure_killed_after_keeping_the_hashes_keeps_each_photo_once_when_resumed(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "photos"
    for (person, i), data in _photos().items():
        _write(folder / person, {f"{i}.jpg": data})
    with Workspace.init(tmp_path / "ws", actor="tester") as ws:
        ws.add_source("app")
        ws.ingest(folder, source="app", subject_from="dirname")
    proc = subprocess.run(
        [sys.executable, "-c", KILL, str(tmp_path / "ws"), REASON],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    with Workspace.open(tmp_path / "ws", actor="tester") as ws:
        rid = _only_request(ws)
        assert len(_catalog_rows(ws, "SELECT id FROM erased_hashes")) == PER_PERSON
        assert ws.erasure_resume(rid)["state"] == "completed"
        rows = _catalog_rows(ws, "SELECT request_id FROM erased_hashes")
        assert rows == [(rid,)] * PER_PERSON
        check = ws.verify_erasure(rid)
        assert check["catalog"]["perceptual_hashes_kept"] == PER_PERSON
        assert '"perceptual_hashes_kept": 2' in json.dumps(ws.erasure(rid))  # the journal's summary
        refused = _ingest_copies(ws, tmp_path, copies_of(_photos()[("Ada_Lovelace", 1)]))
        assert len(refused) == 3 and all(NEAR_COPY.match(r) for r in refused.values())


def test_a_bundle_holding_a_near_copy_is_received_without_it(erased: Path, tmp_path: Path) -> None:
    shutil.copytree(erased, tmp_path / "us")
    mirrored = copies_of(_photos()[("Ada_Lovelace", 0)])["mirror.jpg"]
    folder = _write(tmp_path / "partner-photos", {"copy.jpg": mirrored, "other.jpg": synthetic_photo(8, 1)})
    (tmp_path / "partner.csv").write_text("path,subject\ncopy.jpg,p1@partner\nother.jpg,p2@partner\n")
    with (
        Workspace.init(tmp_path / "partner", actor="tester") as partner,
        Workspace.open(tmp_path / "us", actor="tester") as us,
    ):
        partner.add_source("partner", at="2020-01-01")
        partner.add_policy(
            "partner",
            "2020",
            text=b"partners",
            effective_from="2020-01-01",
            allows=["third_party_sharing", "ai_training"],
            at="2020-01-01",
        )
        report = partner.ingest(folder, source="partner", manifest=tmp_path / "partner.csv", at="2020-02-01")
        assert report.ingested == 2
        partner.build_dataset("faces", purpose="third_party_sharing", at="2020-03-01")
        partner.add_peer("recipient", "us", public_key=us.public_key_pem())
        us.add_peer("sender", "partner", public_key=partner.public_key_pem())
        bundle = tmp_path / "bundle.zip"
        partner.share("faces@1.0.0", to="us", purposes=["ai_training"], out=bundle, at="2021-01-01")
        before = us.status()["assets"]
        received = us.receive_bundle(bundle, at="2021-02-01")
        assert received["ingested"] == 1 and received["items"] == 1, received
        [rejected] = received["rejected"]
        assert NEAR_COPY.match(rejected["reason"]), rejected
        assert us.status()["assets"] == before + 1


def test_verify_lists_an_analysed_copy_held_from_before_the_erasure(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for (person, i), data in _photos().items():
        _write(folder / person, {f"{i}.jpg": data})
    mirrored = copies_of(_photos()[("Ada_Lovelace", 0)])["mirror.jpg"]
    _write(folder / "Someone_Else", {"mirror.jpg": mirrored})
    with Workspace.init(tmp_path / "ws", actor="tester") as ws:
        ws.add_source("app")
        ws.ingest(folder, source="app", subject_from="dirname")
        [(copy_id,)] = _catalog_rows(ws, f"SELECT id FROM assets WHERE sha256 = '{sha(mirrored)}'")
        ws.analyze(workers=1)  # PDQ hashes of every photo
        rid = ws.erase("subject", "Ada_Lovelace", reason=REASON)["id"]
        check = ws.verify_erasure(rid)
        assert check["catalog"]["perceptual_hashes_kept"] == PER_PERSON
        assert [c["asset"] for c in check["copy_candidates"]] == [copy_id]
        assert check["copy_candidates"][0]["distance"] <= 8
