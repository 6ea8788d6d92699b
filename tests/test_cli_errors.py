"""The CLI's errors: one line, no traceback, nothing changed.

What every bad-input test checks is said in conftest.py ("bad input").
"""

from __future__ import annotations

import json

import pytest

from conftest import SECRET_IDS, run_cli_many, write_rows
from disgorge import Workspace
from disgorge.samples import synthetic_photo

# -- 13: the CLI's one-line errors ----------------------------------------------------------------
CLI_ERRORS: dict[str, tuple[list[str], str]] = {
    "unknown-subject": (["subject", "show", "nobody"], "no subject sub_"),
    "unknown-subject-by-name": (["subject", "show", "Grace_Hopper"], "no subject sub_"),
    "unknown-source": (
        ["ingest", "{photos}", "--source", "nosuch", "--subject-from", "dirname"],
        "no source named 'nosuch'",
    ),
    "unknown-asset": (["asset", "show", "deadbeefdeadbeef"], "no asset with sha256 deadbeefdeadbeef"),
    "unknown-asset-get": (["asset", "get", "deadbeef00", "--out", "{tmp}/x.jpg"], "no asset with sha256"),
    "missing-ingest-path": (
        ["ingest", "{tmp}/nope", "--source", "app", "--subject-from", "dirname"],
        "nope: no such file or folder",
    ),
    "unknown-subject-from": (
        ["ingest", "{photos}", "--source", "app", "--subject-from", "filename"],
        "--subject-from 'filename': expected one of dirname",
    ),
    "bad-consent-row": (["consent", "import", "{tmp}/bad.csv"], "bad.csv line 2: purpose"),
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every CLI_ERRORS case run at once against one workspace holding real photos."""
    tmp = tmp_path_factory.mktemp("cli")
    photos = tmp / "photos"
    for person, name in enumerate(SECRET_IDS[:2]):
        (photos / name).mkdir(parents=True)
        for i in range(2):
            (photos / name / f"{name}_{i:04d}.jpg").write_bytes(synthetic_photo(person, i))
    write_rows(tmp / "bad.csv", "subject,purpose,decision,at\nAda_Lovelace,selling,granted,2014-01-01\n")
    with Workspace.init(tmp / "ws", actor="tester") as ws:
        ws.add_source("app")
        assert ws.ingest(photos, source="app", subject_from="dirname").ingested == 4
        before = ws.status()
        cases = list(CLI_ERRORS)
        argvs = [
            [a.format(photos=photos, tmp=tmp) for a in CLI_ERRORS[c][0]] + ["-w", ws.root] for c in cases
        ]
        results = dict(zip(cases, run_cli_many(*argvs), strict=True))
        after = ws.status()
        log = json.dumps(ws.audit_events(limit=1000))
    return {"tmp": tmp, "before": before, "after": after, "results": results, "log": log}


def test_cli_errors_change_nothing(cli_runs: dict) -> None:
    before, after = cli_runs["before"], cli_runs["after"]
    for key in ("assets", "subjects", "consent_records", "audit_events", "audit_head"):
        assert after[key] == before[key], key
    assert not (cli_runs["tmp"] / "x.jpg").exists()
    for secret in SECRET_IDS:
        assert secret not in cli_runs["log"]


@pytest.mark.parametrize("case", list(CLI_ERRORS))
def test_cli_errors_are_one_line_without_traceback(cli_runs: dict, case: str) -> None:
    expected = CLI_ERRORS[case][1]
    result = cli_runs["results"][case]

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    if case == "bad-consent-row":  # a row file's message lists every bad row, one a line
        assert lines[0] == "error: bad.csv: 1 bad row(s), nothing imported:"
        assert lines[1:] and all(line.startswith("bad.csv line ") for line in lines[1:])
    else:
        assert len(lines) == 1, result.stderr
    assert expected in result.stderr
    for secret in SECRET_IDS:
        assert secret not in result.stdout + result.stderr
