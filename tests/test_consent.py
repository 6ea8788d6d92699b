"""Consent history import and sources with privacy-policy versions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import files_elsewhere
from disgorge import InvalidInput, NotFound, Workspace
from disgorge.samples import synthetic_photo

CSV = """subject,purpose,decision,at,policy_version,evidence
alice,ai_training,granted,2013-01-10,2013,signup form #1
alice,ai_training,revoked,2015-05-01T12:00:00Z,2013,settings page
bob,cawg.ai_inference,granted,2013-01-11,2013,
bob,biometric_processing,constrained,2013-01-11,,
"""


def test_csv_import_builds_history_per_subject(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "consent.csv"
    path.write_text(CSV)
    report = ws.import_consent(path)
    assert report.to_dict() == {
        "file": "consent.csv",
        "rows": 4,
        "imported": 4,
        "already_present": 0,
        "subjects_created": 2,
        "conflicts": 0,
    }
    alice = ws.subject("alice")
    assert [(c["purpose"], c["decision"], c["at"]) for c in alice["consent"]] == [
        ("ai_training", "granted", "2013-01-10T00:00:00Z"),
        ("ai_training", "revoked", "2015-05-01T12:00:00Z"),
    ]
    assert alice["consent_now"]["ai_training"] == "revoked"
    assert alice["consent"][0]["evidence"] is True
    bob = ws.subject("bob")
    assert bob["consent_now"]["ai_inference"] == "granted"
    assert bob["consent_now"]["biometric_processing"] == "constrained"
    assert bob["consent_now"]["ai_training"] == "none"


def test_reimport_adds_nothing(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "consent.csv"
    path.write_text(CSV)
    ws.import_consent(path)
    again = ws.import_consent(path)
    assert (again.imported, again.already_present, again.subjects_created) == (0, 4, 0)
    assert ws.status()["consent_records"] == 4


def test_jsonl_import_and_per_asset_consent(ws: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "p" / "carol"
    folder.mkdir(parents=True)
    photo = synthetic_photo(5, 0)
    (folder / "1.jpg").write_bytes(photo)
    ws.ingest(tmp_path / "p", source="app", subject_from="dirname")
    sha = hashlib.sha256(photo).hexdigest()
    path = tmp_path / "consent.jsonl"
    path.write_text(
        '{"subject": "carol", "purpose": "ai_training", "decision": "denied", "at": "2014-01-01"}\n'
        f'{{"subject": "carol", "purpose": "ai_training", "decision": "granted", "at": "2014-02-01",'
        f' "asset": "{sha}"}}\n'
    )
    report = ws.import_consent(path)
    assert report.imported == 2
    carol = ws.subject("carol")
    per_asset = [c for c in carol["consent"] if c["asset"]]
    assert len(per_asset) == 1 and per_asset[0]["decision"] == "granted"
    assert carol["consent_now"]["ai_training"] == "denied"  # the subject-wide decision


def test_per_asset_consent_for_unknown_photo_is_refused(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "consent.csv"
    path.write_text(
        "subject,purpose,decision,at,asset\ndave,ai_training,granted,2014-01-01," + "ab" * 32 + "\n"
    )
    with pytest.raises(InvalidInput, match=r"line.* 2 .*does not hold"):
        ws.import_consent(path)
    assert ws.status()["consent_records"] == 0


def test_evidence_is_encrypted(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "consent.csv"
    path.write_text(
        "subject,purpose,decision,at,evidence\nerin,ai_training,granted,2014-01-01,Signed by Erin Example\n"
    )
    ws.import_consent(path)
    stored = b"".join(files_elsewhere(ws.config.home).values())  # read by a child process
    assert b"Signed by Erin Example" not in stored
    assert b"erin" not in stored


def test_sources_and_policy_versions(ws: Workspace) -> None:
    ws.add_source("dating-app", kind="app", description="profiles", at="2013-01-01")
    ws.add_policy(
        "dating-app",
        "2013",
        text=b"policy text",
        effective_from="2013-01-01",
        effective_to="2016-01-01",
        allows=["ai_inference", "cawg.data_mining"],
    )
    info = ws.add_policy("dating-app", "2016", text=b"new text", effective_from="2016-01-01", allows=[])
    assert [(p["version"], p["allows"], p["effective_to"]) for p in info["policies"]] == [
        ("2013", ["ai_inference", "data_mining"], "2016-01-01T00:00:00Z"),
        ("2016", [], None),
    ]
    assert info["policies"][0]["text_sha256"] == hashlib.sha256(b"policy text").hexdigest()
    with pytest.raises(InvalidInput, match="already has policy version"):
        ws.add_policy("dating-app", "2013", text=b"x", effective_from="2013-01-01")
    with pytest.raises(InvalidInput, match="unknown purpose"):
        ws.add_policy("dating-app", "2020", text=b"x", effective_from="2020-01-01", allows=["selling"])
    with pytest.raises(InvalidInput, match="--to must be after"):
        ws.add_policy("dating-app", "2021", text=b"x", effective_from="2021-01-01", effective_to="2020-01-01")
    with pytest.raises(NotFound, match="source add"):
        ws.add_policy("nope", "1", text=b"x", effective_from="2020-01-01")
    with pytest.raises(InvalidInput, match="already exists"):
        ws.add_source("dating-app")
