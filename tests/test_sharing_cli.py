"""The sharing commands as a user runs them: two workspaces, the file route, end to end.

Every step is the real ``disgorge`` executable in a subprocess; the two organisations
exchange only files (public keys, a bundle, a request, an answer, a certificate).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import cli
from disgorge.samples import synthetic_photo

USERS = ["ada@app.example", "bob@app.example", "cy@app.example"]


def ok(*args: str | Path) -> subprocess.CompletedProcess[str]:
    out = cli(*args)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def test_share_receive_erase_and_ack_by_files(tmp_path: Path) -> None:
    app, vendor = tmp_path / "app", tmp_path / "vendor"
    photos = tmp_path / "photos"
    photos.mkdir()
    rows = ["path,subject"]
    for u, user in enumerate(USERS):
        for i in range(2):
            (photos / f"{u}_{i}.jpg").write_bytes(synthetic_photo(60 + u, i, size=96))
            rows.append(f"{u}_{i}.jpg,{user}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "consent.csv").write_text(
        "subject,purpose,decision,at\n"
        + "".join(f"{u},third_party_sharing,granted,2020-01-01\n" for u in USERS)
    )
    (tmp_path / "policy.txt").write_text("we share with research partners\n")
    ok("init", app)
    ok("init", vendor)
    ok("source", "add", "app", "-w", app)
    ok(
        "source",
        "policy",
        "app",
        "--version",
        "1",
        "--text",
        tmp_path / "policy.txt",
        "--from",
        "2020-01-01",
        "--allows",
        "ai_inference,third_party_sharing",
        "-w",
        app,
    )
    ok("consent", "import", tmp_path / "consent.csv", "-w", app)
    ok("ingest", photos, "--source", "app", "--manifest", tmp_path / "manifest.csv", "-w", app)
    ok("dataset", "build", "faces", "--purpose", "ai_inference", "-w", app)
    ok("recipient", "add", "vendor", "--public-key", vendor / ".disgorge" / "signing.pub", "-w", app)
    ok("sender", "add", "app", "--public-key", app / ".disgorge" / "signing.pub", "-w", vendor)
    listed = json.loads(ok("recipient", "list", "--json", "-w", app).stdout)
    assert [(p["name"], p["endpoint"]) for p in listed] == [("vendor", None)]

    # a share without an output file (and no --at) is a usage error; inside the workspace, refused
    assert (
        cli("share", "faces@1.0.0", "--to", "vendor", "--purpose", "ai_inference", "-w", app).returncode == 2
    )
    inside = cli(
        "share", "faces@1.0.0", "--to", "vendor", "--purpose", "ai_inference", "-o", app / "b.zip", "-w", app
    )
    assert inside.returncode == 1 and "outside the workspace" in inside.stderr
    shared = json.loads(
        ok(
            "share",
            "faces@1.0.0",
            "--to",
            "vendor",
            "--purpose",
            "ai_inference",
            "-o",
            tmp_path / "b.zip",
            "--json",
            "-w",
            app,
        ).stdout
    )
    assert shared["items"] == 6 and shared["purposes"] == ["ai_inference"]

    received = ok("ingest", tmp_path / "b.zip", "-w", vendor)
    assert "6 stored" in received.stdout and "usable for ai_inference only" in received.stdout
    again = json.loads(ok("ingest", tmp_path / "b.zip", "--json", "-w", vendor).stdout)
    assert again["already_received"]
    transfers = json.loads(ok("transfer", "list", "--json", "-w", vendor).stdout)
    assert [(t["direction"], t["peer"], t["items"]) for t in transfers] == [("in", "app", 6)]

    dry = ok("erase", "--subject", USERS[0], "--reason", "GDPR Art. 17", "--dry-run", "-w", app)
    assert "recipient vendor: 2 photo(s)" in dry.stdout
    erased = ok("erase", "--subject", USERS[0], "--reason", "GDPR Art. 17", "--yes", "--wait", "0", "-w", app)
    assert "awaiting_recipients" in erased.stdout and "erasure request" in erased.stdout
    [request] = json.loads(ok("erasure", "list", "--json", "-w", app).stdout)
    assert request["state"] == "awaiting_recipients"
    ok(
        "erasure",
        "request",
        request["id"][:8],
        "--recipient",
        "vendor",
        "-o",
        tmp_path / "request.json",
        "-w",
        app,
    )
    answer = ok("erasure", "receive", tmp_path / "request.json", "-o", tmp_path / "answer.json", "-w", vendor)
    assert "completed: 2 of 2 photo(s) found here" in answer.stdout
    replay = cli("erasure", "receive", tmp_path / "request.json", "-o", tmp_path / "again.json", "-w", vendor)
    assert replay.returncode == 0 and "completed" in replay.stdout  # the same request: one erasure
    acked = ok("erasure", "ack", tmp_path / "answer.json", "-w", app)
    assert "recipient answer: completed" in acked.stdout and "erasure" in acked.stdout

    ok("certificate", "export", request["id"][:8], "-o", tmp_path / "cert.json", "-w", app)
    check = ok("certificate", "verify", tmp_path / "cert.json", "--public-key", tmp_path / "cert.pub.pem")
    assert "1 recipient certificate(s) verified" in check.stdout
    cert = json.loads((tmp_path / "cert.json").read_text())
    cert["body"]["recipients"][0]["certificate"]["body"]["reason"] = "edited"
    (tmp_path / "edited.json").write_text(json.dumps(cert))
    bad = cli("certificate", "verify", tmp_path / "edited.json", "--public-key", tmp_path / "cert.pub.pem")
    assert bad.returncode == 1 and "INVALID" in bad.stdout

    # a stranger's request file is refused, and says why
    stranger = tmp_path / "stranger"
    ok("init", stranger)
    refused = cli("erasure", "receive", tmp_path / "request.json", "-o", tmp_path / "x.json", "-w", stranger)
    assert refused.returncode == 1 and "addressed to another workspace" in refused.stderr
    assert not (tmp_path / "x.json").exists()
