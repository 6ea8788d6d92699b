"""Restore without resurrection: a catalog (or a whole workspace) restored from a backup
taken before an erasure is refused until ``disgorge restore-check`` has erased again what
the backup brought back, from the erasure ledger.

The backups are real copies of a closed workspace's files; the erasures, the replays and
their forensic scans are real; the CLI runs as a real process.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from conftest import REASON, Syn, cli, rejections, sha
from disgorge import Workspace
from disgorge.config import Config
from disgorge.errors import IntegrityError, NotFound, RestoreNeeded


def _mirrored(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        ImageOps.mirror(im.convert("RGB")).save(out, "JPEG", quality=90)
        return out.getvalue()


def restore_catalog(backup: Path, live: Path) -> None:
    """What an operator does with a database backup: the catalog's files and the blob
    store put back as they were (the workspace is closed: no process holds them)."""
    for name in ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"):
        (live / ".disgorge" / name).unlink(missing_ok=True)
        if (backup / ".disgorge" / name).exists():
            shutil.copy2(backup / ".disgorge" / name, live / ".disgorge" / name)
    shutil.rmtree(live / ".disgorge" / "blobs")
    shutil.copytree(backup / ".disgorge" / "blobs", live / ".disgorge" / "blobs")


@pytest.fixture
def live(syn: Syn, tmp_path: Path) -> Path:
    shutil.copytree(syn.template, tmp_path / "live")
    return tmp_path / "live"


def test_a_restored_catalog_is_refused_until_the_erasure_is_replayed(
    live: Path, syn: Syn, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    shutil.copytree(live, backup)  # taken before the erasure
    ada = syn.of("Ada_Lovelace")
    with Workspace.open(live) as ws:
        done = ws.erase("subject", "Ada_Lovelace", reason=REASON)
        assert done["state"] == "completed", done["error"]
        [entry] = sorted((live / ".disgorge" / "ledger").glob("*.json"))
        assert done["id"] in entry.name
        text = entry.read_text()
        assert "Ada" not in text and all(sha(d) not in text for d in ada.values())

    restore_catalog(backup, live)
    with pytest.raises(RestoreNeeded, match="restore-check"):
        Workspace.open(live)
    refused = cli("status", cwd=live)
    assert refused.returncode == 1 and "restore-check" in refused.stderr

    dry = cli("restore-check", "--dry-run", "--json", cwd=live)
    assert dry.returncode == 1, dry.stderr
    report = json.loads(dry.stdout)
    assert report["missing"] == 1 and report["ok"] is False
    [row] = report["replayed"]
    assert row == {
        "request": done["id"],
        "replay": None,
        "photos": 3,
        "subjects": 1,
        "models": 0,
        "fingerprints": 3,
        "hashes": 3,
    }
    with Workspace.open(live, check_ledger=False) as ws:  # the dry run changed nothing
        assert ws.asset(sha(next(iter(ada.values()))))["state"] == "active"

    ran = cli("restore-check", "--json", cwd=live)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["ok"] and report["audit"]["rolled_back"] is True
    replay = report["replayed"][0]["replay"]

    with Workspace.open(live) as ws:  # opens again
        for data in ada.values():
            with pytest.raises(NotFound):
                ws.asset(sha(data))
        assert ws.subject("Ada_Lovelace")["state"] == "erased"
        view = ws.erasure(replay)
        assert view["state"] == "completed" and view["verification"]["ok"]
        assert done["id"] in view["reason"]
        assert ws.verify_erasure(replay)["ok"]
        # the photo and a near-copy of it stay out
        folder = tmp_path / "again" / "Ada_Lovelace"
        folder.mkdir(parents=True)
        name, data = next(iter(ada.items()))
        (folder / name).write_bytes(data)
        other = tmp_path / "again" / "Someone_Else"  # under another name: only the hashes know it
        other.mkdir()
        (other / f"mirror-{name}").write_bytes(_mirrored(data))
        report_in = ws.ingest(folder.parent, source="app", subject_from="dirname")
        assert report_in.ingested == 0
        reasons = rejections(report_in)
        assert any("erased" in r for r in reasons.values()), reasons
        assert any("near-copy" in r for r in reasons.values()), reasons
        assert ws.verify_audit().ok
    assert cli("restore-check", "--json", cwd=live).returncode == 0  # nothing left: idempotent


def test_a_whole_workspace_restore_with_the_ledger_elsewhere(live: Path, syn: Syn, tmp_path: Path) -> None:
    """The ledger on other storage; the whole workspace folder restored from its copy; one
    erased photo was ingested after the backup (the backup never held it): its fingerprint
    is put back all the same, so it cannot be ingested again."""
    ledger = tmp_path / "worm" / "ledger"
    config = Config.load(live / ".disgorge")
    config.ledger_path = str(ledger)
    config.save()
    backup = tmp_path / "backup"
    shutil.copytree(live, backup)
    late = tmp_path / "late" / "Late_Person"
    late.mkdir(parents=True)
    late_photo = syn.photos[next(iter(syn.of("Grace_Hopper")))]
    late_photo = _mirrored(late_photo)  # a new photo, never in the backup
    (late / "late.jpg").write_bytes(late_photo)
    with Workspace.open(live) as ws:
        assert ws.ingest(late.parent, source="app", subject_from="dirname").ingested == 1
        assert ws.erase("subject", "Late_Person", reason=REASON)["state"] == "completed"
        assert ws.erase("subject", "Edsger_Dijkstra", reason=REASON)["state"] == "completed"
    assert len(list(ledger.glob("*.json"))) == 2

    shutil.rmtree(live)
    shutil.copytree(backup, live)
    with pytest.raises(RestoreNeeded):
        Workspace.open(live)
    with Workspace.open(live, check_ledger=False) as ws:
        report = ws.restore_check()
        assert report["ok"] and report["missing"] == 2
        by_photos = sorted(r["photos"] for r in report["replayed"])
        assert by_photos == [0, 3]  # the late photo was never in the backup
    with Workspace.open(live) as ws:
        assert ws.subject("Edsger_Dijkstra")["state"] == "erased"
        again = ws.ingest(late.parent, source="app", subject_from="dirname")
        assert again.ingested == 0, rejections(again)


def test_a_damaged_ledger_entry_is_refused(live: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    shutil.copytree(live, backup)
    with Workspace.open(live) as ws:
        assert ws.erase("subject", "Ada_Lovelace", reason=REASON)["state"] == "completed"
    [entry] = (live / ".disgorge" / "ledger").glob("*.json")
    document = json.loads(entry.read_text())
    document["body"]["fingerprints"] = document["body"]["fingerprints"][1:]  # one photo "forgotten"
    entry.write_text(json.dumps(document))
    restore_catalog(backup, live)
    with pytest.raises(IntegrityError, match="ledger entry"):
        Workspace.open(live)
    refused = cli("restore-check", cwd=live)
    assert refused.returncode == 1 and "damaged or not signed" in refused.stderr
    with Workspace.open(live, check_ledger=False) as ws:  # nothing was replayed from it
        assert ws.subject("Ada_Lovelace")["state"] == "active"
