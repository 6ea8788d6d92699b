"""The violation audit finds the story of DESIGN.md when its history is backfilled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from disgorge import ConsentDenied, Workspace


def _story(ws: Workspace, photos: Path, consent_rows: str, tmp_path: Path) -> None:
    """A dating app's 2013 policy allows matching (ai_inference), not ML training."""
    ws.add_source("dating-app", at="2013-01-01")
    ws.add_policy(
        "dating-app",
        "2013",
        text=b"we use your photos to match you",
        effective_from="2013-01-01",
        allows=["ai_inference"],
        at="2013-01-01",
    )
    ws.ingest(photos, source="dating-app", subject_from="dirname", at="2013-06-01")
    consent = tmp_path / "consent.csv"
    consent.write_text("subject,purpose,decision,at\n" + consent_rows)
    ws.import_consent(consent, at="2013-06-01")
    ws.build_dataset("matching", purpose="ai_inference", at="2013-07-01")


def test_backfilled_2014_vendor_training_is_found(tmp_path: Path, shared_faces) -> None:
    lfw = shared_faces("lfw10x10")
    with Workspace.init(tmp_path / "ws") as ws:
        _story(ws, lfw, "Tony_Blair,ai_inference,denied,2013-01-01\n", tmp_path)
        # the 2014 transfer-and-training, recorded after the fact: the gate refuses it...
        with pytest.raises(ConsentDenied, match="policy_disallows: 90"):
            ws.record_run(
                "vendor-train",
                purpose="ai_training",
                inputs=["matching@1.0.0"],
                outputs=[{"kind": "model", "name": "vendor-face-id"}],
                at="2014-03-01",
            )
        # ...so history is backfilled under a recorded override, and the audit flags it.
        ws.record_run(
            "vendor-train",
            purpose="ai_training",
            inputs=["matching@1.0.0"],
            outputs=[{"kind": "model", "name": "vendor-face-id"}],
            at="2014-03-01",
            override=("legal", "backfilling the 2014 vendor transfer from contract records"),
        )
        with ws.run(
            "distill",
            purpose="ai_training",
            inputs=["model:vendor-face-id@1"],
            at="2014-05-01",
            override=("legal", "backfilling the vendor's derived model"),
        ) as run:
            run.add_output("model", name="vendor-small")
        report = ws.violations()
    assert report["uses_checked"] == 3  # the dataset and two runs
    by_use = {v.get("job"): v for v in report["violations"]}
    train = by_use["vendor-train"]
    assert (train["purpose"], train["at"], train["items"], train["checked"]) == (
        "ai_training",
        "2014-03-01T00:00:00Z",
        90,
        90,
    )
    assert train["subjects"] == 9 and train["by_source"] == {"dating-app": 90}
    assert train["by_rule"] == {"policy_disallows": 90}
    assert train["outputs"] == ["model:vendor-face-id@1"]
    assert "model:vendor-small@1" in train["downstream"]
    assert train["override"].startswith("legal: backfilling")
    assert report["by_purpose"] == {"ai_training": 180}
    assert "Tony_Blair" not in json.dumps(report)


def test_as_of_limits_knowledge_and_uses(ws: Workspace, tmp_path: Path) -> None:
    from disgorge.samples import synthetic_photo

    folder = tmp_path / "p"
    for n, person in enumerate(["ann", "ben"]):
        (folder / person).mkdir(parents=True)
        (folder / person / "1.jpg").write_bytes(synthetic_photo(n, 1, size=64))
    ws.add_policy("app", "2013", text=b"p", effective_from="2013-01-01", allows=["ai_training"])
    ws.ingest(folder, source="app", subject_from="dirname", at="2013-02-01")
    ds = ws.build_dataset("d", purpose="ai_training", at="2014-01-01")
    assert ds.members == 2
    assert ws.violations()["uses_with_violations"] == 0
    # Years later we learn that ben had objected before the build (a backfilled record).
    late = tmp_path / "late.csv"
    late.write_text("subject,purpose,decision,at\nben,ai_training,denied,2013-12-01\n")
    ws.import_consent(late, at="2020-01-01")
    now = ws.violations()
    assert now["uses_with_violations"] == 1 and now["violations"][0]["by_rule"] == {"consent_denied": 1}
    # As known in 2019, the build was clean.
    assert ws.violations(as_of="2019-01-01")["uses_with_violations"] == 0
    # And uses after the as-of date are not judged.
    assert ws.violations(as_of="2013-06-01")["uses_checked"] == 0


def test_cli_violations_exit_code_and_html(tmp_path: Path) -> None:
    from disgorge.samples import synthetic_photo

    with Workspace.init(tmp_path / "ws") as ws:
        folder = tmp_path / "p" / "ann"
        folder.mkdir(parents=True)
        (folder / "1.jpg").write_bytes(synthetic_photo(1, 1, size=64))
        _story(ws, tmp_path / "p", "", tmp_path)
        exe = str(Path(sys.executable).parent / "disgorge")
        clean = subprocess.run(
            [exe, "audit", "violations", "-w", str(ws.root)], capture_output=True, text=True
        )
        assert clean.returncode == 0 and "0 of 1 uses" in clean.stdout
        ws.record_run(
            "t",
            purpose="ai_training",
            inputs=["matching@1.0.0"],
            outputs=[{"kind": "model", "name": "m"}],
            at="2014-01-01",
            override=("dpo", "backfill of a legacy model"),
        )
    html = tmp_path / "report.html"
    out = subprocess.run(
        [exe, "audit", "violations", "--html", str(html), "--json", "-w", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert json.loads(out.stdout)["items"] == 1
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "model:m@1" in page and "policy_disallows" in page
    assert "ann" not in page.replace("dataset", "").replace("legacy", "")
