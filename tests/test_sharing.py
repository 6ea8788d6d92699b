"""Sharing between two real workspaces, by bundle and by signed files (no server).

The sender ("app") and the recipient ("vendor") are real workspaces in tmp_path with
real synthetic photos; bundles are real zip files; requests and answers are the signed
documents a person would carry between the two. The HTTP route is in test_sharing_http.py.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import sha
from disgorge import ConsentDenied, InvalidInput, NotFound, Workspace
from disgorge.erasure.certificate import verify_certificate
from disgorge.erasure.forensics import scan_tree
from disgorge.samples import synthetic_photo
from disgorge.sharing.bundle import MANIFEST_NAME

USERS = [f"user-{n}@app.example" for n in range(4)]
PER_USER = 3
REASON = "GDPR Art. 17 request 2026-042"


@dataclass
class Pair:
    root: Path
    photos: dict[str, bytes]  # file name -> bytes
    owner: dict[str, str]  # file name -> user

    def of(self, user: str) -> dict[str, bytes]:
        return {n: d for n, d in self.photos.items() if self.owner[n] == user}


def _make_pair(root: Path) -> Pair:
    folder = root / "photos"
    folder.mkdir(parents=True)
    photos, owner, rows = {}, {}, ["path,subject"]
    for u, user in enumerate(USERS):
        for i in range(PER_USER):
            name = f"{u}_{i}.jpg"
            photos[name] = synthetic_photo(40 + u, i, size=128)
            owner[name] = user
            (folder / name).write_bytes(photos[name])
            rows.append(f"{name},{user}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    consent = ["subject,purpose,decision,at"]
    for u, user in enumerate(USERS):
        # user 3 never agreed to sharing: their photos must stay home
        sharing = "denied" if u == 3 else "granted"
        consent += [
            f"{user},third_party_sharing,{sharing},2020-01-01",
            f"{user},biometric_processing,granted,2020-01-01",
        ]
    (root / "consent.csv").write_text("\n".join(consent) + "\n")
    with (
        Workspace.init(root / "app", actor="tester") as app,
        Workspace.init(root / "vendor", actor="tester") as v,
    ):
        app.add_source("app", at="2020-01-01")
        app.add_policy(
            "app",
            "2020",
            text=b"we share your photos with partners for face recognition research",
            effective_from="2020-01-01",
            allows=["ai_training", "ai_inference", "biometric_processing", "third_party_sharing"],
            at="2020-01-01",
        )
        app.import_consent(root / "consent.csv", at="2020-01-01")
        report = app.ingest(folder, source="app", manifest=root / "manifest.csv", at="2020-02-01", workers=1)
        assert report.ingested == len(photos)
        app.build_dataset("faces", purpose="ai_training", at="2020-03-01")
        app.add_peer("recipient", "vendor", public_key=v.public_key_pem(), agreement="DSA-7")
        v.add_peer("sender", "app", public_key=app.public_key_pem())
    return Pair(root, photos, owner)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return _make_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture
def pair(template: Pair, tmp_path: Path) -> Pair:
    for name in ("app", "vendor", "photos"):
        shutil.copytree(template.root / name, tmp_path / name)
    shutil.copy(template.root / "manifest.csv", tmp_path / "manifest.csv")
    return Pair(tmp_path, template.photos, template.owner)


def _share(pair: Pair, purposes: list[str], name: str = "bundle.zip") -> tuple[dict, Path]:
    out = pair.root / name
    with Workspace.open(pair.root / "app", actor="tester") as app:
        result = app.share("faces@1.0.0", to="vendor", purposes=purposes, out=out, at="2021-01-01")
    return result, out


def _rewrite_zip(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change.get(info.filename, zin.read(info)))


# -- sharing through the gate ---------------------------------------------------------------
def test_only_covered_photos_leave_and_the_rest_are_reported_by_rule(pair: Pair) -> None:
    result, bundle = _share(pair, ["ai_training", "biometric_processing"])
    kept_home = len(pair.of(USERS[3]))
    assert result["items"] == len(pair.photos) - kept_home
    assert result["excluded"] == kept_home
    assert result["excluded_by_rule"] == {"third_party_sharing: consent_denied": kept_home}
    with zipfile.ZipFile(bundle) as zf:
        names = set(zf.namelist())
        doc = json.loads(zf.read(MANIFEST_NAME))
    shipped = {item["sha256"] for item in doc["body"]["items"]}
    assert shipped == {sha(d) for n, d in pair.photos.items() if pair.owner[n] != USERS[3]}
    assert names == {MANIFEST_NAME} | {item["path"] for item in doc["body"]["items"]}
    item = doc["body"]["items"][0]
    entries = item["assertions"][0]["data"]["entries"]
    assert item["assertions"][0]["label"] == "cawg.training-mining"
    assert entries["cawg.ai_training"] == {"use": "allowed"}
    assert entries["cawg.ai_inference"] == {"use": "notAllowed"}
    raw = json.dumps(doc)
    assert not any(user in raw for user in USERS)  # pseudonymous refs only
    with Workspace.open(pair.root / "app", actor="tester") as app:
        downstream = app.lineage(f"subject:{USERS[0]}")
        assert any(n["kind"] == "transfer" for n in downstream.nodes)


def test_sharing_for_a_purpose_nobody_allowed_is_refused(pair: Pair) -> None:
    with (
        Workspace.open(pair.root / "app", actor="tester") as app,
        pytest.raises(ConsentDenied, match="none of the 12 photos"),
    ):
        app.share("faces@1.0.0", to="vendor", purposes=["data_mining"], out=pair.root / "x.zip")
    assert not (pair.root / "x.zip").exists()


def test_the_recipient_applies_the_senders_terms(pair: Pair) -> None:
    """Shared for ai_inference only: the vendor's own gate refuses to train on them."""
    _, bundle = _share(pair, ["ai_inference", "biometric_processing"])
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        got = vendor.receive_bundle(bundle, at="2021-02-01")
        assert got["ingested"] == got["items"] == 9 and not got["rejected"]
        for data in pair.of(USERS[0]).values():
            assert vendor.read_asset(sha(data)) == data
        with pytest.raises(ConsentDenied, match=r"ai_training .*\(policy_disallows: 9\)"):
            vendor.build_dataset("train", purpose="ai_training", at="2021-03-01")
        inference = vendor.build_dataset("match", purpose="ai_inference", at="2021-03-01")
        assert inference.members == 9
        with (
            pytest.raises(ConsentDenied, match="not covered"),
            vendor.run("train-anyway", purpose="ai_training", inputs=["match@1.0.0"], at="2021-03-02"),
        ):
            pass
        again = vendor.receive_bundle(bundle)
        assert again["already_received"] and vendor.status()["assets"] == 9


# -- bad bundles -------------------------------------------------------------------------------
def test_a_bundle_with_an_altered_photo_is_refused_whole(pair: Pair) -> None:
    _, bundle = _share(pair, ["ai_training"])
    with zipfile.ZipFile(bundle) as zf:
        victim = next(n for n in zf.namelist() if n.startswith("photos/"))
        data = bytearray(zf.read(victim))
    data[len(data) // 2] ^= 0xFF
    bad = pair.root / "altered.zip"
    _rewrite_zip(bundle, bad, {victim: bytes(data)})
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        with pytest.raises(InvalidInput, match="does not match its sha256 in the signed manifest"):
            vendor.receive_bundle(bad)
        assert vendor.status()["assets"] == 0 and vendor.transfers() == []


def test_a_bundle_with_a_bad_signature_is_refused(pair: Pair) -> None:
    _, bundle = _share(pair, ["ai_inference"])
    with zipfile.ZipFile(bundle) as zf:
        doc = json.loads(zf.read(MANIFEST_NAME))
    doc["body"]["purposes"] = ["ai_inference", "ai_training"]  # widen the terms after signing
    bad = pair.root / "widened.zip"
    _rewrite_zip(bundle, bad, {MANIFEST_NAME: json.dumps(doc).encode()})
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        with pytest.raises(InvalidInput, match="signature does not match"):
            vendor.receive_bundle(bad)
        assert vendor.status()["assets"] == 0


def test_a_document_naming_another_signature_algorithm_is_refused(pair: Pair) -> None:
    _, bundle = _share(pair, ["ai_inference"])
    with zipfile.ZipFile(bundle) as zf:
        doc = json.loads(zf.read(MANIFEST_NAME))
    doc["algorithm"] = "Ed24519"  # outside the signed body: only the one algorithm is accepted
    bad = pair.root / "other-algorithm.zip"
    _rewrite_zip(bundle, bad, {MANIFEST_NAME: json.dumps(doc).encode()})
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        with pytest.raises(InvalidInput, match="unsupported signature algorithm"):
            vendor.receive_bundle(bad)
        assert vendor.status()["assets"] == 0


def test_a_bundle_from_an_unknown_sender_or_for_another_workspace_is_refused(
    pair: Pair, tmp_path: Path
) -> None:
    _, bundle = _share(pair, ["ai_inference"])
    with Workspace.init(tmp_path / "stranger", actor="tester") as stranger:
        with pytest.raises(InvalidInput, match="no registered sender"):
            stranger.receive_bundle(bundle)
        with Workspace.open(pair.root / "app", actor="tester") as app:
            stranger.add_peer("sender", "app", public_key=app.public_key_pem())
        with pytest.raises(InvalidInput, match="made for another workspace"):
            stranger.receive_bundle(bundle)
        assert stranger.status()["assets"] == 0
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("photo.jpg", pair.photos["0_0.jpg"])
    with (
        Workspace.open(pair.root / "vendor", actor="tester") as vendor,
        pytest.raises(InvalidInput, match="not a disgorge bundle"),
    ):
        vendor.receive_bundle(plain)


# -- erasure that reaches the recipient, by hand-carried files ---------------------------------
def test_an_erasure_reaches_the_recipient_and_its_certificate_is_embedded(pair: Pair) -> None:
    _, bundle = _share(pair, ["ai_training", "biometric_processing"])
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        vendor.receive_bundle(bundle)
    victim = USERS[1]
    with Workspace.open(pair.root / "app", actor="tester") as app:
        plan = app.erasure_plan("subject", victim)
        assert [(r["recipient"], r["items"]) for r in plan["recipients"]] == [("vendor", PER_USER)]
        resting = app.erase("subject", victim, reason=REASON, wait=0)
        assert resting["state"] == "awaiting_recipients"
        [notice] = resting["recipients"]
        assert (notice["state"], notice["delivery"]) == ("pending", "file")
        request = app.erasure_request_document(resting["id"], "vendor")
    assert all(sha(d) not in json.dumps(request) for d in pair.photos.values())  # fingerprints only
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        answer = vendor.receive_erasure_request(request)
        assert answer["body"]["state"] == "completed" and answer["body"]["matched"] == PER_USER
        for data in pair.of(victim).values():
            with pytest.raises(NotFound):
                vendor.read_asset(sha(data))
        for data in pair.of(USERS[0]).values():  # the others stay
            assert vendor.read_asset(sha(data)) == data
        vendor_key = vendor.public_key_pem()
    needles = {f"{n}": d[len(d) // 2 : len(d) // 2 + 48] for n, d in pair.of(victim).items()}
    assert scan_tree(pair.root / "vendor" / ".disgorge", needles) == []
    with Workspace.open(pair.root / "app", actor="tester") as app:
        done = app.erasure_ack(answer)
        assert done["state"] == "completed" and done["erasure"]["state"] == "completed"
        certificate = app.erasure_certificate(resting["id"])
        app_key = app.public_key_pem()
        with pytest.raises(InvalidInput, match="already completed"):
            app.erasure_close_recipient(resting["id"], "vendor", reason="too late")
    [entry] = certificate["body"]["recipients"]
    assert entry["state"] == "completed" and entry["recipient"] == "vendor"
    assert verify_certificate(entry["certificate"], vendor_key).ok
    check = verify_certificate(certificate, app_key)
    assert check.ok and "1 recipient certificate(s) verified" in check.reason


def test_a_recipient_certificate_that_does_not_verify_is_not_accepted(pair: Pair) -> None:
    _, bundle = _share(pair, ["ai_training"])
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        vendor.receive_bundle(bundle)
    with Workspace.open(pair.root / "app", actor="tester") as app:
        resting = app.erase("subject", USERS[2], reason=REASON, wait=0)
        request = app.erasure_request_document(resting["id"], "vendor")
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        answer = vendor.receive_erasure_request(request)
    forged = json.loads(json.dumps(answer))
    forged["body"]["certificate"]["body"]["counts"]["photos"] = 99  # the vendor's certificate, altered
    with Workspace.open(pair.root / "app", actor="tester") as app:
        result = app.erasure_ack(forged)
        assert result["state"] == "exception"
        assert result["erasure"]["state"] == "awaiting_recipients"
        [notice] = app.erasure(resting["id"])["recipients"]
        assert "does not verify" in notice["last_error"]


def test_a_request_for_photos_the_recipient_never_received_is_answered_not_found(pair: Pair) -> None:
    _share(pair, ["ai_training"])
    with Workspace.open(pair.root / "app", actor="tester") as app:
        resting = app.erase("subject", USERS[0], reason=REASON, wait=0)
        request = app.erasure_request_document(resting["id"], "vendor")
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:  # the bundle never arrived
        answer = vendor.receive_erasure_request(request)
        assert (answer["body"]["state"], answer["body"]["matched"]) == ("not_found", 0)
    with Workspace.open(pair.root / "app", actor="tester") as app:
        assert app.erasure_ack(answer)["erasure"]["state"] == "completed"
        [entry] = app.erasure_certificate(resting["id"])["body"]["recipients"]
        assert entry["state"] == "not_found" and entry["certificate"] is None


def test_a_recipient_that_never_answers_is_closed_by_hand_with_a_reason(pair: Pair) -> None:
    _share(pair, ["ai_training"])
    with Workspace.open(pair.root / "app", actor="tester") as app:
        resting = app.erase("subject", USERS[0], reason=REASON, wait=0, deadline_days=0)
        assert resting["recipients"][0]["state"] == "overdue"
        with pytest.raises(InvalidInput, match="needs a reason"):
            app.erasure_close_recipient(resting["id"], "vendor", reason="")
        app.erasure_close_recipient(resting["id"], "vendor", reason="vendor dissolved; liquidator confirmed")
        done = app.erasure_resume(resting["id"], wait=0)
        assert done["state"] == "completed"
        [entry] = app.erasure_certificate(resting["id"])["body"]["recipients"]
        assert entry["state"] == "closed" and entry["closed_reason"].startswith("vendor dissolved")


# -- a legacy transfer, and disgorgement of the whole transfer ---------------------------------
def test_a_legacy_transfer_is_recorded_under_override_and_erased_by_sha256(pair: Pair) -> None:
    with Workspace.open(pair.root / "app", actor="tester") as app:
        with pytest.raises(ConsentDenied, match="record it under an override"):
            app.share("faces@1.0.0", to="vendor", purposes=["ai_training"], at="2019-06-01")
        legacy = app.share(
            "faces@1.0.0",
            to="vendor",
            purposes=["ai_training"],
            at="2019-06-01",
            override=("legal", "backfilling the 2019 export from the vendor contract"),
        )
        assert legacy["backfilled"] and legacy["items"] == len(pair.photos) and legacy["bundle"] is None
        violations = app.violations()
        assert any(v["job"] == "share:vendor" for v in violations["violations"])
    # the vendor got the photos outside disgorge and ingested them as its own source
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        vendor.add_source("bought-photos", kind="partner", at="2019-06-02")
        vendor.ingest(
            pair.root / "photos",
            source="bought-photos",
            manifest=pair.root / "manifest.csv",
            at="2019-06-02",
            workers=1,
        )
        # ... and records where they came from: a sender's request reaches only what it sent
        vendor.receive_legacy("app", source="bought-photos", at="2019-06-02")
    with Workspace.open(pair.root / "app", actor="tester") as app:
        plan = app.erasure_plan("transfer", legacy["transfer"][:12])
        assert plan["counts"]["photos"] == 0 and plan["counts"]["items_at_recipients"] == len(pair.photos)
        resting = app.erase("transfer", legacy["transfer"][:12], reason="regulator order 2026-7", wait=0)
        request = app.erasure_request_document(resting["id"], "vendor")
        assert request["body"]["items"][0]["id_kind"] == "sha256"
        for data in pair.photos.values():  # the app keeps the photos it collected
            assert app.read_asset(sha(data)) == data
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        answer = vendor.receive_erasure_request(request)
        assert answer["body"]["matched"] == len(pair.photos)
        assert vendor.status()["subjects_erased"] == len(USERS)  # nothing of them is left there
    with Workspace.open(pair.root / "app", actor="tester") as app:
        assert app.erasure_ack(answer)["erasure"]["state"] == "completed"


def test_status_counts_peers_transfers_and_erasures_awaiting_recipients(pair: Pair) -> None:
    _, bundle = _share(pair, ["ai_training"])
    with Workspace.open(pair.root / "vendor", actor="tester") as vendor:
        vendor.receive_bundle(bundle)
        status = vendor.status()
        assert (status["senders"], status["recipients"], status["transfers_in"]) == (1, 0, 1)
    with Workspace.open(pair.root / "app", actor="tester") as app:
        app.erase("subject", USERS[0], reason=REASON, wait=0)
        status = app.status()
        assert (status["recipients"], status["transfers_out"]) == (1, 1)
        assert status["erasures_awaiting_recipients"] == 1
