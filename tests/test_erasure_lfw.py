"""Erasure end to end on real photos: the issue's "Done when" case.

The shared LFW photos (lfw10x10): one person in two dataset versions, a SISA face model
and an external model, erased; everything is checked from the outside (raw bytes on disk,
re-ingest, predictions, lineage, the certificate verified by the CLI in a folder holding
only the certificate and its key). Skipped when ../shared is not checked out.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import (
    REASON,
    ROOT,
    SHARED_FACES,
    add_source_with_policy,
    cli,
    import_consent_csv,
    raw_scan,
    sha,
    shared_faces_dir,
)
from disgorge import Workspace
from disgorge.catalog.models import (
    Asset,
    AssetDerivative,
)
from disgorge.erasure.certificate import item_leaf, verify_certificate

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses SIGKILL and fork (Linux only)"
)


LFW = SHARED_FACES / "lfw10x10"


def middle_windows(data: bytes, label: str) -> dict[str, bytes]:
    """Three 32-byte windows from the middle of a file (JPEG headers are shared by many)."""
    return {f"{label}@{f}": data[int(len(data) * f) : int(len(data) * f) + 32] for f in (0.3, 0.5, 0.7)}


# -- Done when: real photos -------------------------------------------------------------------
FORGET = "Colin_Powell"


@dataclass
class LfwCase:
    root: Path  # the workspace, erased by the CLI; tests below only add to it (re-ingest)
    ref: str
    theirs: dict[str, bytes]  # their photos: path inside LFW -> bytes
    others: dict[str, bytes]
    needles: dict[str, bytes]  # what must not be on disk afterwards, found by our own scan
    before: list[tuple[str, str]]  # what our scan found before the erasure
    known_before: int  # of their photos, how many the face model named them on
    dry_run: dict[str, Any]
    dry_run_text: str
    result: dict[str, Any]
    faces_per_photo: dict[str, int] = field(default_factory=dict)
    derived: dict[str, int] = field(default_factory=dict)  # their derived values, by kind, before


@pytest.fixture(scope="module")
def lfw(tmp_path_factory: pytest.TempPathFactory) -> LfwCase:
    shared_faces_dir("lfw10x10")  # or skip
    from disgorge.vision.faces import analyze

    names = sorted(p.name for p in LFW.iterdir() if p.is_dir())
    assert FORGET in names[:6]  # so they are in both dataset versions
    photos = {str(p.relative_to(LFW)): p.read_bytes() for p in sorted(LFW.rglob("*.jpg"))}
    theirs = {k: v for k, v in photos.items() if k.startswith(f"{FORGET}/")}
    others = {k: v for k, v in photos.items() if k not in theirs}
    tmp = tmp_path_factory.mktemp("lfw")
    root = tmp / "ws"
    with Workspace.init(root, actor="tester") as ws:
        add_source_with_policy(ws, "lfw")
        assert ws.ingest(LFW, source="lfw", subject_from="dirname", at="2013-02-01").ingested == 100
        granted = [f"{n},biometric_processing,granted,2013-01-05" for n in names]
        import_consent_csv(ws, tmp / "consent.csv", granted, at="2013-01-05")
        assert ws.analyze(workers=2).embedded_faces >= 100
        first = ws.build_dataset("faces", purpose="ai_training", subjects=names[:6], at="2014-01-01")
        second = ws.build_dataset("faces", purpose="ai_training", at="2014-02-01")
        assert (first.version, first.members, second.version, second.members) == ("1.0.0", 60, "1.1.0", 100)
        trained = ws.train_model("faceid", dataset="faces", shards=4, at="2014-03-01")
        assert (trained["model"], trained["dataset"], trained["samples"]) == (
            "model:faceid@1",
            "faces@1.1.0",
            100,
        )
        ws.record_run(
            "vendor-train",
            purpose="ai_training",
            inputs=["faces@1.0.0"],
            outputs=[{"kind": "model", "name": "vendor"}],
            at="2014-03-02",
        )
        ref = ws.subject_ref(FORGET)
        with ws.reader() as session:
            theirs_ids = select(Asset.id).where(Asset.sha256.in_([sha(d) for d in theirs.values()]))
            derived = dict(
                session.execute(
                    select(AssetDerivative.kind, func.count())
                    .where(AssetDerivative.asset_id.in_(theirs_ids))
                    .group_by(AssetDerivative.kind)
                ).all()
            )
        assert derived["embedding"] == derived["face"] == derived["crop"] == 10 and derived["phash"] >= 10
        known_before = sum(
            any(f["subject"] == ref for f in ws.predict("faceid", data)["faces"]) for data in theirs.values()
        )

    needles: dict[str, bytes] = {"external-id": FORGET.encode()}
    faces_per_photo = {}
    for name, data in theirs.items():
        needles.update(middle_windows(data, f"photo:{name}"))
        needles[f"sha256-hex:{name}"] = sha(data).encode()
        needles[f"sha256:{name}"] = bytes.fromhex(sha(data))
        analysis = analyze(data, embed=True, phash=False)
        faces_per_photo[name] = len(analysis.faces)
        for k, face in enumerate(analysis.faces):
            assert face.embedding is not None and len(face.embedding) == 512
            needles[f"embedding:{name}:{k}"] = face.embedding
            needles[f"embedding-part:{name}:{k}"] = face.embedding[200:232]
    before = raw_scan(root / ".disgorge", needles)

    dry = cli("erase", "--subject", FORGET, "--dry-run", "--json", "-w", str(root))
    assert dry.returncode == 0, dry.stderr
    text = cli("erase", "--subject", FORGET, "--dry-run", "-w", str(root))
    assert text.returncode == 0, text.stderr
    out = cli("erase", "--subject", FORGET, "--reason", REASON, "--yes", "--json", "-w", str(root))
    assert out.returncode == 0, out.stderr
    return LfwCase(
        root,
        ref,
        theirs,
        others,
        needles,
        before,
        known_before,
        json.loads(dry.stdout),
        text.stdout,
        json.loads(out.stdout),
        faces_per_photo,
        derived,
    )


@pytest.mark.slow
def test_lfw_the_dry_run_lists_exactly_the_blast_radius(lfw: LfwCase) -> None:
    plan = lfw.dry_run
    assert plan["scope"] == {"kind": "subject", "ref": lfw.ref}
    assert plan["subjects"] == [lfw.ref] and (plan["owned"], plan["depicting"]) == (10, 0)
    assert sorted(plan["datasets"], key=lambda d: d["dataset"]) == [
        {"dataset": "faces@1.0.0", "items": 10},
        {"dataset": "faces@1.1.0", "items": 10},
    ]
    assert plan["models_unlearn"] == ["model:faceid@1"]
    assert plan["models_retire"] == [
        {"model": "model:vendor@1", "why": "trained outside disgorge: cannot be unlearned"}
    ]
    assert plan["artifacts_retire"] == [] and plan["recipients"] == [] and plan["notes"] == []
    assert plan["counts"] == {
        "photos": 10,
        "subjects_shredded": 1,
        **{f"derived_{kind}": n for kind, n in lfw.derived.items()},  # as the catalog held them
        "dataset_versions": 2,
        "models_unlearned": 1,
        "models_retired": 1,
        "artifacts_retired": 0,
        "recipients": 0,
        "items_at_recipients": 0,
    }
    for line in (
        "erasure of subject " + lfw.ref,
        "dataset faces@1.0.0: 10 photo(s) -> new MAJOR version without them",
        "dataset faces@1.1.0: 10 photo(s) -> new MAJOR version without them",
        "unlearn model:faceid@1",
        "retire  model:vendor@1 (trained outside disgorge: cannot be unlearned)",
    ):
        assert line in lfw.dry_run_text, lfw.dry_run_text
    assert FORGET not in lfw.dry_run_text  # pseudonymous refs only
    # and the erasure did what the dry run said
    assert lfw.result["plan"]["counts"] == plan["counts"]
    assert lfw.result["state"] == "completed"


@pytest.mark.slow
def test_lfw_no_byte_of_them_remains_anywhere_in_the_workspace(lfw: LfwCase) -> None:
    home = lfw.root / ".disgorge"
    # our scan sees what there was to see: their photos' hashes in the catalog (the photos
    # themselves were only ever stored encrypted, their embeddings too: the face index is
    # sealed, design note 7)
    seen = {label.split(":")[0] for label, _ in lfw.before}
    assert "sha256-hex" in seen and not {"embedding", "embedding-part"} & seen, lfw.before
    assert any(f == "catalog.sqlite" for _, f in lfw.before)
    assert not any(f.startswith("index") for _, f in lfw.before)
    assert sum(lfw.faces_per_photo.values()) >= 10
    # afterwards nothing, in any file: blobs, the SQLite database, its WAL, indexes, models
    files = [p for p in home.rglob("*") if p.is_file()]
    assert home / "catalog.sqlite" in files and len(files) > 90
    assert raw_scan(home, lfw.needles) == []
    # the engine's own scan agrees
    ver = lfw.result["verification"]
    assert ver["ok"] and ver["forensic_scan"]["hits"] == [] and ver["forensic_scan"]["needles"] >= 50
    assert ver["active_models_using_erased_items"] == []


@pytest.mark.slow
def test_lfw_their_photos_are_refused_at_reingest_and_the_others_are_duplicates(lfw: LfwCase) -> None:
    out = cli(
        "ingest", str(LFW), "--source", "lfw", "--subject-from", "dirname", "--json", "-w", str(lfw.root)
    )
    assert out.returncode == 3, out.stderr
    report = json.loads(out.stdout)
    assert (report["files"], report["ingested"], report["duplicates"]) == (101, 0, 90)  # + a LICENSE file
    refused = {r["path"]: r["reason"] for r in report["rejected"] if r["path"].endswith(".jpg")}
    assert sorted(refused) == sorted(lfw.theirs) and len(report["rejected"]) == 11
    assert all("this photo was erased on" in why for why in refused.values())
    # refusing them wrote nothing of them anywhere
    assert raw_scan(lfw.root / ".disgorge", lfw.needles) == []


@pytest.mark.slow
def test_lfw_the_face_model_no_longer_knows_them(lfw: LfwCase) -> None:
    assert lfw.known_before >= 8  # it did know them
    with Workspace.open(lfw.root, actor="tester") as ws:
        models = {(m["name"], m["version"]): m for m in ws.models()}
        assert {k: m["state"] for k, m in models.items()} == {
            ("faceid", "1"): "retired",
            ("faceid", "2"): "active",
            ("vendor", "1"): "retired",
        }
        new = models[("faceid", "2")]
        assert (new["dataset"], new["samples"], new["classes"], new["unlearned_from"]) == (
            "faces@2.0.0",
            90,
            9,
            "1",
        )
        for data in lfw.theirs.values():
            assert all(f["subject"] != lfw.ref for f in ws.predict("faceid", data)["faces"])
        # it still knows the others
        for name in ("Tony_Blair/Tony_Blair_0001.jpg", "Hugo_Chavez/Hugo_Chavez_0001.jpg"):
            faces = ws.predict("faceid", lfw.others[name])["faces"]
            assert ws.subject_ref(name.split("/")[0]) in {f["subject"] for f in faces}
        audit = ws.model_audit("faceid", forgotten=[FORGET])
        assert audit["still_trained_on_them"] == 0
        [forgetting] = ws.erasure_certificate(lfw.result["id"])["body"]["forgetting"]
        assert (forgetting["from"], forgetting["model"], forgetting["forgotten"]) == (
            "model:faceid@1",
            "model:faceid@2",
            10,
        )


@pytest.mark.slow
def test_lfw_they_are_downstream_of_no_active_model(lfw: LfwCase) -> None:
    with Workspace.open(lfw.root, actor="tester") as ws:
        graph = ws.lineage(f"subject:{lfw.ref}")
        models = [n for n in graph.nodes if n["kind"] == "model"]
        assert {n["id"] for n in models} == {"model:faceid@1", "model:vendor@1"}
        assert all(n["state"] != "active" for n in graph.nodes if n["kind"] in ("model", "dataset_version"))
        for m in ws.models():
            if m["state"] == "active":
                up = ws.lineage(f"model:{m['name']}@{m['version']}", direction="upstream")
                assert up.subjects["count"] == 9 and lfw.ref not in up.subjects["sample"]
        assert ws.dataset("faces@1.0.0")["state"] == "erased"
        assert ws.dataset("faces@1.1.0")["state"] == "erased"
        assert ws.dataset("faces@2.0.0")["state"] == "active"


@pytest.mark.slow
def test_lfw_the_certificate_verifies_offline_with_only_the_public_key(lfw: LfwCase, tmp_path: Path) -> None:
    export = tmp_path / "export" / "cert.json"
    export.parent.mkdir()
    out = cli("certificate", "export", lfw.result["id"], "--out", str(export), "-w", str(lfw.root))
    assert out.returncode == 0, out.stderr
    # a folder holding only the certificate, the public key and two photos; no workspace
    offline = tmp_path / "offline"
    offline.mkdir()
    shutil.copy(export, offline / "cert.json")
    shutil.copy(export.with_suffix(".pub.pem"), offline / "key.pub.pem")
    theirs = next(iter(lfw.theirs.values()))
    (offline / "theirs.jpg").write_bytes(theirs)
    (offline / "someone.jpg").write_bytes(lfw.others["Tony_Blair/Tony_Blair_0001.jpg"])
    cert = json.loads((offline / "cert.json").read_text())
    body = cert["body"]
    assert body["scope"] == {"kind": "subject", "ref": lfw.ref} and body["reason"] == REASON
    assert FORGET not in (offline / "cert.json").read_text()
    assert len(body["items"]["leaves"]) == 10
    assert verify_certificate(cert, (offline / "key.pub.pem").read_bytes()).ok
    assert {item_leaf(body["items"]["salt"], d) for d in lfw.theirs.values()} == set(body["items"]["leaves"])

    ok = cli("certificate", "verify", "cert.json", "--public-key", "key.pub.pem", cwd=offline)
    assert ok.returncode == 0 and ok.stdout.startswith("valid: signature valid"), ok.stdout + ok.stderr
    covered = cli(
        "certificate",
        "verify",
        "cert.json",
        "--public-key",
        "key.pub.pem",
        "--prove-item",
        "theirs.jpg",
        cwd=offline,
    )
    assert covered.returncode == 0 and "theirs.jpg is among the 10 erased item(s)" in covered.stdout
    proof = json.loads(
        cli(
            "certificate",
            "verify",
            "cert.json",
            "--public-key",
            "key.pub.pem",
            "--prove-item",
            "theirs.jpg",
            "--json",
            cwd=offline,
        ).stdout
    )
    assert proof["item"]["covered"] and proof["item"]["merkle_root"] == body["items"]["merkle_root"]
    # the inclusion proof, checked by hand: leaf, then the siblings up to the signed root
    assert (
        proof["item"]["leaf"]
        == hashlib.sha256(bytes.fromhex(body["items"]["salt"]) + hashlib.sha256(theirs).digest()).hexdigest()
    )
    node = hashlib.sha256(b"\x00" + bytes.fromhex(proof["item"]["leaf"])).digest()
    for step in proof["item"]["proof"]:
        pair = bytes.fromhex(step["left"]) + node if "left" in step else node + bytes.fromhex(step["right"])
        node = hashlib.sha256(b"\x01" + pair).digest()
    assert node.hex() == body["items"]["merkle_root"] and 2 <= len(proof["item"]["proof"]) <= 4
    not_covered = cli(
        "certificate",
        "verify",
        "cert.json",
        "--public-key",
        "key.pub.pem",
        "--prove-item",
        "someone.jpg",
        cwd=offline,
    )
    assert (
        not_covered.returncode == 1 and "someone.jpg is NOT among the 10 erased item(s)" in not_covered.stdout
    )

    # one byte changed: the number of photos in the counts, 10 -> 19
    text = (offline / "cert.json").read_text()
    altered = text.replace('"photos": 10', '"photos": 19', 1)
    (offline / "cert.json").write_text(altered)
    bad = cli("certificate", "verify", "cert.json", "--public-key", "key.pub.pem", cwd=offline)
    assert bad.returncode == 1 and "INVALID" in bad.stdout and "(body.counts)" in bad.stdout, bad.stdout

    # the documented 15-line verifier (docs/certificate.md), which needs only `cryptography`
    (offline / "cert.json").write_text(text)
    snippet = _doc_snippet("verify-offline")
    assert (
        len(snippet.splitlines()) <= 15
        and "import disgorge" not in snippet
        and "from disgorge" not in snippet
    )
    (offline / "verify.py").write_text(snippet)
    run = subprocess.run(
        [sys.executable, "-I", "verify.py", "cert.json", "key.pub.pem"],
        capture_output=True,
        text=True,
        cwd=offline,
    )
    assert run.returncode == 0 and run.stdout.strip() == "valid", run.stdout + run.stderr
    (offline / "cert.json").write_text(altered)
    run = subprocess.run(
        [sys.executable, "-I", "verify.py", "cert.json", "key.pub.pem"],
        capture_output=True,
        text=True,
        cwd=offline,
    )
    assert run.returncode != 0 and "InvalidSignature" in run.stderr


def _doc_snippet(name: str) -> str:
    doc = (ROOT / "docs" / "certificate.md").read_text()
    start = doc.index(f"<!-- example: {name} -->")
    fence = doc.index("```python\n", start) + len("```python\n")
    return doc[fence : doc.index("```", fence)]
