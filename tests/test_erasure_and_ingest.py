"""Erasure against ingest: erased photos stay out afterwards (sticky), and erasing a source
while an ingest into it runs leaves nothing of it.

The tests run on the synthetic workspace of conftest.py (``syn``, copied by ``sws``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import DISGORGE, REASON, Syn, cli, count
from disgorge import NotFound, Workspace
from disgorge.catalog.models import (
    Asset,
)
from disgorge.samples import synthetic_photo

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses SIGKILL and fork (Linux only)"
)


# -- sticky erasure ---------------------------------------------------------------------------
def test_erased_photos_stay_out_even_renamed_in_a_zip_and_so_do_new_photos_of_the_person(
    sws: Workspace, syn: Syn, tmp_path: Path
) -> None:
    sws.erase("subject", "Ada_Lovelace", reason=REASON)
    ada = syn.of("Ada_Lovelace")
    archive = tmp_path / "holiday.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for n, data in enumerate(ada.values()):
            zf.writestr(f"Someone_Else/IMG_{n:04d}.jpg", data)
    sws.add_source("other", at="2020-01-01")
    report = sws.ingest(archive, source="other", subject_from="dirname")
    assert report.ingested == 0 and len(report.rejected) == 3
    assert all("this photo was erased on" in r.reason for r in report.rejected)
    with pytest.raises(NotFound):  # the refused files created no subject
        sws.subject("Someone_Else")
    # a new photo of Ada, never seen before
    new = tmp_path / "new" / "Ada_Lovelace"
    new.mkdir(parents=True)
    (new / "fresh.jpg").write_bytes(synthetic_photo(0, 42, size=160))
    report = sws.ingest(new.parent, source="other", subject_from="dirname")
    assert report.ingested == 0
    [rejection] = report.rejected
    assert "a subject of this photo was erased" in rejection.reason
    # a photo that merely depicts her, owned by someone else
    (tmp_path / "m.csv").write_text("path,subject,depicted\nfresh.jpg,Alan_Turing,Ada_Lovelace\n")
    report = sws.ingest(new, source="other", manifest=tmp_path / "m.csv")
    assert report.ingested == 0 and "erased" in report.rejected[0].reason
    # the CLI says it too, with exit code 3
    out = cli(
        "ingest",
        str(archive),
        "--source",
        "other",
        "--subject-from",
        "dirname",
        "--json",
        "-w",
        str(sws.root),
    )
    assert out.returncode == 3 and "erased" in out.stdout


# -- erasing a source while an ingest into it runs -------------------------------------------
WAIT_THEN_CLI = "import sys; from disgorge.cli import app; sys.stdin.readline(); app()"


def test_erasing_a_source_while_an_ingest_into_it_runs(sws: Workspace, tmp_path: Path) -> None:
    root = sws.root
    bulk = tmp_path / "bulk"
    names = [f"Bulk_Person_{p:02d}" for p in range(10)]
    for i in range(1500):
        (bulk / names[i % 10]).mkdir(parents=True, exist_ok=True)
        (bulk / names[i % 10] / f"{i:05d}.jpg").write_bytes(synthetic_photo(20 + i % 10, i, size=96))
    first = tmp_path / "first" / names[0]
    first.mkdir(parents=True)
    (first / "seed.jpg").write_bytes(synthetic_photo(20, 99_999, size=96))
    sws.add_source("bulk", at="2020-01-01")
    assert sws.ingest(first.parent, source="bulk", subject_from="dirname").ingested == 1
    sws.close()

    env = {k: v for k, v in os.environ.items() if k != "DISGORGE_WORKSPACE"}
    # the eraser: the real CLI in another process, imported ahead and started on a signal,
    # so that it erases while the ingest is under way (not before it starts, not after it ends)
    erase_cmd = ["erase", "--source", "bulk", "--reason", REASON, "--yes", "--json", "-w", str(root)]
    eraser = subprocess.Popen(
        [sys.executable, "-c", WAIT_THEN_CLI, *erase_cmd],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    ingest_cmd = ["ingest", str(bulk), "-s", "bulk", "--subject-from", "dirname", "--workers", "2"]
    ingest = subprocess.Popen(
        [DISGORGE, *ingest_cmd, "--json", "-w", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        db = sqlite3.connect(root / ".disgorge" / "catalog.sqlite", timeout=60)
        while time.monotonic() < deadline and ingest.poll() is None:  # a first batch is in
            (n,) = db.execute(
                "SELECT count(*) FROM assets JOIN sources ON sources.id = assets.source_id "
                "WHERE sources.name = 'bulk'"
            ).fetchone()
            if n > 1:
                break
            time.sleep(0.02)
        db.close()
        erase_out, erase_err = eraser.communicate("go\n", timeout=300)
        out, err = ingest.communicate(timeout=300)
    finally:
        for proc in (eraser, ingest):
            if proc.poll() is None:
                proc.kill()
    assert eraser.returncode == 0, erase_err
    result = json.loads(erase_out)
    assert result["state"] == "completed" and result["verification"]["ok"], result["verification"]

    if ingest.returncode == 1:  # it began after the source was marked erasing: refused whole
        assert "source 'bulk' is erasing" in err or "source 'bulk' is erased" in err, err
    else:
        assert ingest.returncode in (0, 3), err
        report = json.loads(out)
        assert report["files"] == 1500
        reasons = Counter(r["reason"] for r in report["rejected"])
        assert set(reasons) <= {
            "source is erasing: an erasure of it is under way or done",
            "source is erased: an erasure of it is under way or done",
        }, reasons
        assert report["ingested"] + report["duplicates"] + sum(reasons.values()) == 1500
    with Workspace.open(root, actor="tester") as ws:
        with ws.reader() as session:
            from disgorge.catalog.models import Source

            bulk_id = session.scalar(select(Source.id).where(Source.name == "bulk"))
            states = Counter(session.scalars(select(Asset.state).where(Asset.source_id == bulk_id)))
            assert session.scalar(select(Source.state).where(Source.id == bulk_id)) == "erased"
        assert "active" not in states, states
        assert states["erased"] == result["plan"]["counts"]["photos"]
        gc = ws.gc(dry_run=True, grace_seconds=0)
        assert (gc.orphan_blobs, gc.temporaries) == (0, 0)
        # the other source's photos are all there
        assert count(ws, Asset, Asset.state == "active", Asset.source_id != bulk_id) == 13
        # and the source stays closed
        with pytest.raises(Exception, match="source 'bulk' is erased"):
            ws.ingest(first.parent, source="bulk", subject_from="dirname")
