"""The access export (GDPR Art. 15): ``disgorge subject export`` / ``POST /v1/subjects/export``.

On a copy of the synthetic workspace (``syn``): Grace_Hopper owns three photos and appears
in Alan_Turing's group photo. Her export lists that photo with a count of the other
people in it and never who they are; her own photos come back byte for byte; the signed
``export.json`` verifies offline and fails once a byte changes; the export is audited by
ref and sha256; it is never written inside the workspace; the API hands the same zip to
a privacy officer and refuses an auditor (no ``asset:bytes``).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from conftest import GROUP, REASON, SYN_PEOPLE, Syn, cli, serve_api, sha
from disgorge import Workspace
from disgorge.dsr.export import verify_export
from disgorge.errors import InvalidInput
from disgorge.uploads import uploads_dir

GRACE, ALAN = "Grace_Hopper", "Alan_Turing"


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def body_of(files: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(files["export.json"])["body"]


@pytest.fixture
def grace(sws: Workspace, tmp_path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    out = tmp_path / "out" / "grace.zip"
    out.parent.mkdir()
    summary = sws.export_subject(GRACE, out, at="2026-01-02")
    return dict(summary), members(out.read_bytes())


def test_a_group_photo_is_listed_with_a_count_never_with_who_else_is_in_it(
    sws: Workspace, syn: Syn, grace: tuple[dict[str, Any], dict[str, bytes]]
) -> None:
    summary, files = grace
    body = body_of(files)
    assert summary["subject"] == body["subject"]["ref"] == sws.subject_ref(GRACE)
    by_sha = {p["sha256"]: p for p in body["photos"]}
    group = by_sha[sha(syn.photos[GROUP])]
    assert (group["role"], group["other_people"], group["file"], group["origin"]) == (
        "depicted",
        1,
        None,
        None,
    )
    assert "Art. 15(4)" in group["no_file"]
    page = files["index.html"].decode()
    assert "you and 1 other person" in page
    assert {sha(d) for d in syn.of(GRACE).values()} | {sha(syn.photos[GROUP])} == set(by_sha)
    # nobody else: neither their refs nor their names, anywhere in the zip
    everything = b"".join(files.values())
    for person in SYN_PEOPLE:
        if person != GRACE:
            assert person.encode() not in everything
            assert person.split("_")[0].encode() not in files["index.html"] + files["export.json"]
            assert sws.subject_ref(person).encode() not in everything
    # what her photos fed: the dataset, the SISA model and the vendor's recorded model
    assert [(d["name"], d["purpose"], d["your_photos"]) for d in body["datasets"]] == [
        ("faces", "ai_training", 4)
    ]
    assert {m["name"] for m in body["models"]} >= {"faceid", "vendor"}
    assert any(r["job"] == "vendor-train" and r["recorded_afterwards"] for r in body["runs"])
    assert summary["photos"] == 4 and summary["photo_files"] == 3 and summary["datasets"] == 1
    # where her own photos came from: the source, its policy then and now, the manifest's path
    own = next(p for p in body["photos"] if p["role"] == "owner")
    assert own["source"] == {"name": "app", "kind": "app"}
    assert own["policy_at_collection"] is not None and own["origin"].startswith(GRACE)
    assert {c["purpose"] for c in body["consent"]["history"]} == {"biometric_processing"}
    assert "<script" not in page.lower()


def test_her_photos_come_back_byte_for_byte_in_a_private_zip(
    sws: Workspace, syn: Syn, grace: tuple[dict[str, Any], dict[str, bytes]], tmp_path: Path
) -> None:
    summary, files = grace
    photos = {name: data for name, data in files.items() if name.startswith("photos/")}
    assert sorted(photos.values()) == sorted(syn.of(GRACE).values())
    assert all(name == f"photos/{sha(data)}.jpg" for name, data in photos.items())
    out = Path(summary["path"])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert [p.name for p in out.parent.iterdir()] == ["grace.zip"]  # no temporary file left


def test_the_signed_document_verifies_offline_and_a_changed_byte_fails(
    sws: Workspace, grace: tuple[dict[str, Any], dict[str, bytes]]
) -> None:
    _, files = grace
    key = sws.public_key_pem()
    document = json.loads(files["export.json"])
    assert document["body"]["schema"] == "disgorge.subject-export/1"
    assert document["body"]["public_key"] == sws.public_key().public_bytes_raw().hex()
    assert verify_export(document, key, files=files).ok
    raw = files["export.json"]
    at = raw.index(b'"size":') + len(b'"size":')
    digit = b"8" if raw[at : at + 1] == b"9" else b"9"
    changed = raw[:at] + digit + raw[at + 1 :]  # one digit of a photo's size
    check = verify_export(json.loads(changed), key)
    assert not check.ok and "signature" in check.reason
    photo = next(n for n in files if n.startswith("photos/"))
    altered = {**files, photo: files[photo][:-1] + b"\0"}
    assert not verify_export(document, key, files=altered).ok
    with Workspace.init(sws.root.parent / "other") as other:
        assert not verify_export(document, other.public_key_pem()).ok


def test_the_export_is_audited_by_ref_and_hash_with_its_actor(
    sws: Workspace, grace: tuple[dict[str, Any], dict[str, bytes]]
) -> None:
    summary, _ = grace
    [event] = sws.audit_events(action="subject.exported")
    assert event["actor"] == "tester"
    assert event["payload"] == {"subject": sws.subject_ref(GRACE), "sha256": summary["sha256"]}
    assert GRACE not in json.dumps(event)


def test_erasures_concerning_her_are_listed(sws: Workspace, syn: Syn, tmp_path: Path) -> None:
    photo = sha(next(iter(syn.of(GRACE).values())))
    planned = sws.erase("asset", photo, reason=REASON, execute=False)
    sws.erase("asset", sha(syn.of(ALAN)["Alan_Turing_0.jpg"]), reason=REASON, execute=False)
    summary = sws.export_subject(GRACE, tmp_path / "grace.zip")
    [erasure] = body_of(members((tmp_path / "grace.zip").read_bytes()))["erasures"]
    assert (erasure["id"], erasure["of"], erasure["state"]) == (planned["id"], "a photo of you", "planned")
    assert erasure["reason"] == REASON and summary["erasures"] == 1


def test_it_is_never_written_inside_the_workspace(sws: Workspace, tmp_path: Path) -> None:
    for inside in (sws.root / "grace.zip", sws.config.home / "grace.zip"):
        with pytest.raises(InvalidInput, match="outside the workspace"):
            sws.export_subject(GRACE, inside)
        assert not inside.exists()
    taken = tmp_path / "taken.zip"
    taken.write_bytes(b"mine")
    with pytest.raises(InvalidInput, match="already exists"):
        sws.export_subject(GRACE, taken)
    assert taken.read_bytes() == b"mine"
    assert sws.audit_events(action="subject.exported") == []


def test_the_cli_writes_the_export(syn: Syn, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(syn.template, root)
    done = cli("subject", "export", GRACE, "-o", tmp_path / "grace.zip", "-w", root)
    assert "4 photo(s)" in done.stdout and GRACE not in done.stdout
    files = members((tmp_path / "grace.zip").read_bytes())
    with Workspace.open(root) as ws:
        assert verify_export(json.loads(files["export.json"]), ws.public_key_pem(), files=files).ok


def test_the_api_gives_a_privacy_officer_the_same_zip_and_refuses_an_auditor(
    syn: Syn, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(syn.template, root)
    with Workspace.open(root, actor="tester") as ws:
        ws.export_subject(GRACE, tmp_path / "local.zip", at="2026-01-02")
        local = members((tmp_path / "local.zip").read_bytes())
        temp = uploads_dir(ws.ctx)
    with serve_api(root) as api:
        refused = api.call("auditor", "POST", "/v1/subjects/export", json={"external_id": GRACE})
        assert refused.status_code == 403
        answer = api.call("privacy_officer", "POST", "/v1/subjects/export", json={"external_id": GRACE})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/zip"
        missing = api.call("privacy_officer", "POST", "/v1/subjects/export", json={"external_id": "nobody"})
        assert missing.status_code == 404 and "nobody" not in missing.text
    remote = members(answer.content)
    assert set(remote) == set(local)
    assert all(remote[n] == local[n] for n in local if n.startswith("photos/"))
    mine, theirs = body_of(local), body_of(remote)
    assert {**theirs, "generated_at": None} == {**mine, "generated_at": None}
    assert not (temp.is_dir() and any(temp.iterdir()))  # the server's copy is wiped
    with Workspace.open(root) as ws:
        exported = ws.audit_events(action="subject.exported")
        assert [e["actor"] for e in exported] == ["tester", "officer-1"]
        assert verify_export(json.loads(remote["export.json"]), ws.public_key_pem(), files=remote).ok
