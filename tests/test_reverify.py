"""`disgorge verify` on a completed erasure: what a later check shows, and what it cannot.

The byte samples the completion-time scan looked for are destroyed once it is done, so a
later scan would have nothing to look for. A later `verify` must say so instead of
"passing" a scan with no needles, and check what the catalog still lets it check.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sqlalchemy import select, update

from conftest import cli
from disgorge import Workspace
from disgorge.catalog.models import Asset


def _verify_cli(ws: Workspace, request: str) -> subprocess.CompletedProcess[str]:
    return cli("verify", request, "--json", "-w", ws.root, timeout=120)


def test_a_later_verify_checks_the_catalog_and_says_it_did_not_rescan(ws: Workspace, photo_dir: Path) -> None:
    ws.ingest(photo_dir, source="app", subject_from="dirname")
    done = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17 request 7")
    assert done["state"] == "completed"
    first_scan = done["verification"]["forensic_scan"]
    assert first_scan["needles"] > 0

    out = _verify_cli(ws, done["id"])
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] is True
    assert result["catalog"]["photos"] == 4
    assert result["catalog"]["photos_not_tombstoned"] == 0
    assert result["catalog"]["derived_values_left"] == 0
    assert result["catalog"]["subjects_with_a_key_left"] == 0
    assert result["catalog"]["reingestion_fingerprints"] == 4
    scan = result["forensic_scan"]
    assert scan["performed"] is False and "destroyed" in scan["why"]
    assert scan["at_completion"]["needles"] == first_scan["needles"]
    assert scan["at_completion"]["hits"] == 0


def test_a_later_verify_fails_when_an_erased_photo_came_back(ws: Workspace, photo_dir: Path) -> None:
    ws.ingest(photo_dir, source="app", subject_from="dirname")
    done = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17 request 7")
    with ws.transaction() as session:  # a restored backup row, say
        erased = session.scalars(select(Asset.id).where(Asset.state == "erased").limit(1)).one()
        session.execute(update(Asset).where(Asset.id == erased).values(state="active"))
    out = _verify_cli(ws, done["id"])
    assert out.returncode == 1
    assert json.loads(out.stdout)["catalog"]["photos_not_tombstoned"] == 1
