"""The real `disgorge` command, run as a user runs it (subprocess, real files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import cli


@pytest.fixture
def cli_ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    assert cli("init", str(ws)).returncode == 0
    assert cli("source", "add", "app", "-w", str(ws)).returncode == 0
    return ws


def test_version_and_help() -> None:
    out = cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("disgorge ")
    helped = cli("--help")
    assert helped.returncode == 0
    for command in ("init", "ingest", "status", "consent", "subject", "asset", "audit", "gc", "demo"):
        assert command in helped.stdout


def test_ingest_json_summary_and_read_commands(cli_ws: Path, photo_dir: Path, tmp_path: Path) -> None:
    out = cli(
        "ingest", str(photo_dir), "--source", "app", "--subject-from", "dirname", "-w", str(cli_ws), "--json"
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["ingested"], summary["duplicates"], summary["rejected"]) == (12, 0, [])

    status = json.loads(cli("status", "--json", "-w", str(cli_ws)).stdout)
    assert (status["assets"], status["subjects"], status["sources"]) == (12, 3, 1)

    subject = json.loads(cli("subject", "show", "Ada_Lovelace", "--json", "-w", str(cli_ws)).stdout)
    assert subject["ref"].startswith("sub_") and len(subject["assets"]) == 4
    by_ref = json.loads(cli("subject", "show", subject["ref"], "--json", "-w", str(cli_ws)).stdout)
    assert by_ref["ref"] == subject["ref"]

    original = (photo_dir / "Ada_Lovelace" / "Ada_Lovelace_0002.jpg").read_bytes()
    sha = hashlib.sha256(original).hexdigest()
    asset = json.loads(cli("asset", "show", sha[:12], "--json", "-w", str(cli_ws)).stdout)
    assert asset["sha256"] == sha and asset["owner"] == subject["ref"]
    target = tmp_path / "out.jpg"
    assert cli("asset", "get", sha, "--out", str(target), "-w", str(cli_ws)).returncode == 0
    assert target.read_bytes() == original

    verify = cli("audit", "verify", "-w", str(cli_ws))
    assert verify.returncode == 0 and "intact" in verify.stdout
    log = json.loads(cli("audit", "log", "--json", "--action", "asset.ingested", "-w", str(cli_ws)).stdout)
    assert len(log) == 12 and all("Ada" not in json.dumps(e) for e in log)
    # reading a photo's bytes is audited, with the actor and the asset's id only
    [read] = json.loads(cli("audit", "log", "--json", "--action", "asset.read", "-w", str(cli_ws)).stdout)
    assert read["actor"] == "cli-test" and "Ada" not in json.dumps(read) and sha not in json.dumps(read)


def test_workspace_found_from_cwd_and_env(cli_ws: Path, tmp_path: Path) -> None:
    inner = cli_ws / "sub"
    inner.mkdir()
    assert json.loads(cli("status", "--json", cwd=inner).stdout)["sources"] == 1
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert cli("status", cwd=other).returncode == 1
    via_env = cli("status", "--json", cwd=other, env={"DISGORGE_WORKSPACE": str(cli_ws)})
    assert json.loads(via_env.stdout)["sources"] == 1


def test_refused_files_give_exit_code_3_and_are_listed(cli_ws: Path, photo_dir: Path) -> None:
    (photo_dir / "Ada_Lovelace" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = cli("ingest", str(photo_dir), "-s", "app", "--subject-from", "dirname", "-w", str(cli_ws))
    assert out.returncode == 3
    assert "Ada_Lovelace/broken.jpg" in out.stdout
    assert "stored" in out.stdout


def test_errors_are_one_line_without_traceback(cli_ws: Path) -> None:
    out = cli("subject", "show", "nobody", "-w", str(cli_ws))
    assert out.returncode == 1
    assert out.stderr.startswith("error: no subject sub_")
    assert "Traceback" not in out.stderr and "nobody" not in out.stderr
    usage = cli("ingest", "-w", str(cli_ws))
    assert usage.returncode == 2


def test_consent_import_and_policy(cli_ws: Path, tmp_path: Path) -> None:
    consent = tmp_path / "c.csv"
    consent.write_text("subject,purpose,decision,at\nann,ai_training,granted,2014-01-01\n")
    out = cli("consent", "import", str(consent), "-w", str(cli_ws), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["imported"] == 1
    policy = tmp_path / "policy.txt"
    policy.write_text("we may show your photos")
    out = cli(
        "source",
        "policy",
        "app",
        "--version",
        "v1",
        "--text",
        str(policy),
        "--from",
        "2013-01-01",
        "--allows",
        "ai_inference,data_mining",
        "-w",
        str(cli_ws),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["policies"][0]["allows"] == ["ai_inference", "data_mining"]


def test_gc_and_keygen(cli_ws: Path) -> None:
    orphan = cli_ws / ".disgorge" / "blobs" / "ab" / "cd"
    orphan.mkdir(parents=True)
    (orphan / ("abcd" + "0" * 60)).write_bytes(b"sealed leftovers")
    # an erasure's samples whose request was never recorded (a crash in between)
    samples = cli_ws / ".disgorge" / "erasure" / ("f" * 32 + ".samples")
    samples.parent.mkdir(exist_ok=True)
    samples.write_bytes(b"sealed samples")
    dry = json.loads(cli("gc", "--grace", "0", "--dry-run", "--json", "-w", str(cli_ws)).stdout)
    assert dry == {
        "orphan_blobs": 1,
        "temporaries": 0,
        "orphan_samples": 1,
        "vacuumed": False,
        "removed": False,
    }
    assert samples.exists()
    done = json.loads(cli("gc", "--grace", "0", "--vacuum", "--json", "-w", str(cli_ws)).stdout)
    assert done["removed"] and done["vacuumed"] and not (orphan / ("abcd" + "0" * 60)).exists()
    assert not samples.exists()
    key = cli("keygen").stdout.strip()
    assert len(key) == 44


def test_demo_runs_the_story() -> None:
    """The README's first command: the whole story, two workspaces, HTTP on loopback."""
    out = cli("demo")
    assert out.returncode == 0, out.stderr
    assert "0 found in clear" in out.stdout
    assert "The gate refuses" in out.stdout
    assert "answered 'completed' with its own signed certificate" in out.stdout
    assert "Every check passed" in out.stdout
    summary = json.loads(cli("demo", "--json").stdout)
    assert summary["ok"] and all(summary["checks"].values()) and len(summary["checks"]) >= 20
    assert summary["ingested"] == 32 and summary["clear_text_hits"] == 0
    assert {r["path"] for r in summary["refused"]} == {"bomb.png", "notes.jpg", "truncated.jpg"}
    assert summary["violations"] == 1 and summary["transfer"]["items"] == 32
    assert summary["known_before"] == 8 and summary["known_after"] == 0
    assert [e["state"] for e in summary["erasures"]] == ["completed", "completed"]
    assert [e["recipients"] for e in summary["erasures"]] == [["completed"], ["completed"]]
    assert summary["vendor_scan_hits"] == 0 and summary["certificate_ok"]


@pytest.mark.slow
def test_demo_runs_the_story_on_real_photos() -> None:
    lfw = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "lfw10x10"
    if not lfw.is_dir():
        pytest.skip(f"real photos not present ({lfw}); the drawn-portrait demo above still runs")
    out = cli("demo", "--photos", str(lfw), "--json")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    summary = json.loads(out.stdout)
    assert summary["embedder"] == "dlib" and summary["ok"], summary["checks"]
    assert summary["known_after"] == 0 and summary["vendor_scan_hits"] == 0
