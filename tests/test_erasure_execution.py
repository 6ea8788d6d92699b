"""What an erasure's steps destroy and what its verifier scans for: real SQLite, real files.

The tests run on the synthetic workspace of conftest.py (``syn``, copied by ``sws``).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conftest import GROUP, REASON, Syn, read_elsewhere, sha
from disgorge import Workspace
from disgorge.catalog.models import (
    Asset,
)
from disgorge.samples import synthetic_photo

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses SIGKILL and fork (Linux only)"
)


def test_a_short_external_id_is_not_a_scan_needle(sws: Workspace, tmp_path: Path) -> None:
    """The id "ann" is inside "planned", a word the catalog holds: as a needle it would be a false hit.
    The catalog never holds the id itself, only its keyed ref, so nothing is lost by not
    scanning for it."""
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / "ann_1.jpg").write_bytes(synthetic_photo(31, 0, size=120))
    (tmp_path / "ann.csv").write_text("path,subject\nann_1.jpg,ann\n")
    sws.ingest(folder, source="app", manifest=tmp_path / "ann.csv", at="2013-03-01")
    done = sws.erase("subject", "ann", reason=REASON)
    assert done["state"] == "completed", done
    assert done["verification"]["ok"], done["verification"]


def test_blobs_whose_key_lives_on_are_overwritten_before_they_are_unlinked(sws: Workspace, syn: Syn) -> None:
    """The group photo is Alan's and shows Grace: erasing Grace keeps Alan's key, so the
    photo's ciphertext must not survive in free blocks (a hard link sees the old inode)."""
    with sws.reader() as session:
        blobs = dict(session.execute(select(Asset.sha256, Asset.blob_key)).all())
    group, own = sha(syn.photos[GROUP]), sha(next(iter(syn.of("Grace_Hopper").values())))
    links = {}
    for name, digest in (("group", group), ("own", own)):
        links[name] = sws.root / f"{name}.link"
        os.link(sws.store._path(blobs[digest]), links[name])
    done = sws.erase("subject", "Grace_Hopper", reason=REASON)
    assert done["state"] == "completed"
    [summary] = [s["summary"] for s in done["steps"] if s["step"] == "delete_blobs"]
    assert summary["overwritten"] == 1  # only the group photo: Grace's own key is destroyed
    data = links["group"].read_bytes()
    assert data == bytes(len(data))
    assert links["own"].read_bytes() != bytes(len(links["own"].read_bytes()))  # shredded instead


def test_a_small_erasure_checkpoints_and_vacuums_only_when_the_scan_finds_a_stale_copy(
    sws: Workspace, syn: Syn
) -> None:
    """secure_delete zeroes what an erasure deletes, so a small erasure skips VACUUM (seconds on
    a large catalog). A copy of a photo's hash left in a free page by someone else's
    connection without secure_delete is exactly what the scan must catch: then it VACUUMs
    and scans again."""
    photos = syn.of("Ada_Lovelace")
    digest = sha(next(iter(photos.values())))
    database = sws.config.home / "catalog.sqlite"
    raw = sqlite3.connect(database)
    raw.execute("PRAGMA secure_delete = OFF")
    raw.execute("CREATE TABLE scratch (note TEXT)")
    raw.executemany("INSERT INTO scratch VALUES (?)", [(f"copied {digest} by hand",)] * 5000)
    raw.commit()
    raw.execute("DROP TABLE scratch")  # its pages go to the free list, not zeroed
    raw.commit()
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    # the photo's row holds its hash once; the dropped table's free pages hold thousands
    assert read_elsewhere(database).count(digest.encode()) > 1000

    done = sws.erase("subject", "Ada_Lovelace", reason=REASON)
    assert done["state"] == "completed", done
    [purge] = [s["summary"] for s in done["steps"] if s["step"] == "purge_database"]
    assert purge["vacuum"] is False
    scan = done["verification"]["forensic_scan"]
    assert scan["vacuumed_after_scan"] is True and scan["hits"] == []
    assert done["verification"]["ok"]
    assert digest.encode() not in read_elsewhere(database)

    # the next small erasure finds nothing stale: no VACUUM at all
    again = sws.erase("subject", "Edsger_Dijkstra", reason=REASON)
    assert again["verification"]["forensic_scan"]["vacuumed_after_scan"] is False
    assert again["verification"]["ok"]
    for data in syn.of("Edsger_Dijkstra").values():
        assert sha(data).encode() not in read_elsewhere(database)


def test_review_candidates_are_kept_by_id_and_shown_with_their_hash_while_it_exists(
    sws: Workspace, syn: Syn
) -> None:
    """Look-alikes listed for review are other people's photos: the request keeps their
    catalog ids, and shows each one's sha256 only while that photo exists."""
    first = sws.erase("subject", "Ada_Lovelace", reason=REASON)
    edsger = {sha(d) for d in syn.of("Edsger_Dijkstra").values()}

    def listed(view: dict[str, Any]) -> list[Any]:
        ver = view["verification"]
        return [c["sha256"] for c in ver["copy_candidates"] + ver["face_candidates"]]

    assert set(listed(first)) & edsger  # the drawn portraits look alike: some of his are listed
    sws.erase("subject", "Edsger_Dijkstra", reason=REASON)
    again = sws.erasure(first["id"])
    assert not set(listed(again)) & edsger and None in listed(again)
    con = sqlite3.connect(sws.config.home / "catalog.sqlite")
    [stored] = con.execute(
        "SELECT verification FROM erasure_requests WHERE id = ?", (first["id"],)
    ).fetchone()
    con.close()
    assert not any(digest in stored for digest in edsger)
