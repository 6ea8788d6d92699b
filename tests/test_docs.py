"""The docs cannot drift from the code.

- docs/cli.md is generated from every command's --help by cog, and must be up to date;
- every command, sub-command, argument and option has help text;
- every example in docs/formats.md is run through the real code, and the results the
  page quotes in bold are the results it gets;
- the README mentions every top-level command.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

import pytest
from cogapp import Cog
from typer.main import get_command
from typer.testing import CliRunner

from conftest import files_elsewhere
from disgorge import Workspace
from disgorge.cli import app
from disgorge.errors import InvalidInput
from disgorge.samples import synthetic_photo

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "cli.md"
FORMATS_MD = ROOT / "docs" / "formats.md"
README = ROOT / "README.md"

#: `<!-- example: NAME -->` (or `output:`) right before a fenced block
BLOCK = re.compile(r"<!-- (example|output): (\S+) -->\n```[\w-]*\n(.*?)\n```", re.S)
CONSENT_RESULT = re.compile(r"\*\*imported (\d+), already present (\d+), new subjects (\d+)\*\*")
INGEST_RESULT = re.compile(r"\*\*stored (\d+), already present (\d+), refused (\d+), new subjects (\d+)\*\*")

#: what the brief promises the CLI has; more may be added
DOCUMENTED_COMMANDS = {
    "init",
    "status",
    "ingest",
    "gc",
    "migrate",
    "keygen",
    "demo",
    "source add",
    "source policy",
    "source list",
    "source show",
    "consent import",
    "subject show",
    "asset show",
    "asset get",
    "audit verify",
    "audit log",
}


def _commands(command=None, path: tuple[str, ...] = ()):
    """(path, click command) for the root and every command and sub-command below it."""
    command = command if command is not None else get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


class Example:
    def __init__(self, text: str, after: str) -> None:
        self.text = text
        #: the doc text from the end of the block to the next heading
        self.after = after

    def consent_results(self) -> list[tuple[int, int, int]]:
        return [tuple(map(int, m)) for m in CONSENT_RESULT.findall(self.after)]

    def ingest_results(self) -> list[tuple[int, int, int, int]]:
        return [tuple(map(int, m)) for m in INGEST_RESULT.findall(self.after)]


def _blocks(kind: str) -> dict[str, Example]:
    doc = FORMATS_MD.read_text(encoding="utf-8")
    found: dict[str, Example] = {}
    for m in BLOCK.finditer(doc):
        if m.group(1) != kind:
            continue
        assert m.group(2) not in found, f"two {kind} blocks named {m.group(2)}"
        rest = doc[m.end() :]
        heading = re.search(r"^#", rest, re.M)
        found[m.group(2)] = Example(m.group(3), rest[: heading.start()] if heading else rest)
    return found


EXAMPLES = _blocks("example")
OUTPUTS = _blocks("output")


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text(EXAMPLES[name].text + "\n", encoding="utf-8")
    return path


def _make_tree(tmp_path: Path, name: str) -> dict[str, bytes]:
    """Create the files a `<!-- example: folder/ -->` block lists; photos are synthetic."""
    made: dict[str, bytes] = {}
    for n, line in enumerate(EXAMPLES[name].text.splitlines()):
        rel = line.strip()
        suffix = Path(rel).suffix.lower()
        if suffix in {".jpg", ".jpeg"}:
            data = synthetic_photo(n, n)
        elif suffix == ".png":
            data = synthetic_photo(n, n, fmt="PNG")
        else:
            data = b"not a photo\n"
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
        made[rel] = data
    return made


def _new_workspace(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws", actor="tester")


# -- (a) the CLI reference is generated and up to date -----------------------------------


def test_cli_reference_is_up_to_date():
    assert Cog().main(["cog", "--check", str(CLI_MD)]) == 0, (
        "docs/cli.md is out of date: run .venv/bin/cog -r docs/cli.md"
    )


def test_cli_reference_covers_every_command():
    text = CLI_MD.read_text(encoding="utf-8")
    for path, _ in _commands():
        assert f"### `{' '.join(('disgorge', *path))}`" in text
    assert "\x1b" not in text


# -- (b) help texts -----------------------------------------------------------------------


def test_the_documented_commands_exist():
    have = {" ".join(path) for path, _ in _commands() if path}
    assert have >= DOCUMENTED_COMMANDS, f"missing: {sorted(DOCUMENTED_COMMANDS - have)}"


@pytest.mark.parametrize("path", [p for p, _ in _commands()], ids=lambda p: " ".join(p) or "disgorge")
def test_every_command_and_parameter_has_help(path):
    command = dict(_commands())[path]
    assert (command.help or "").strip(), f"disgorge {' '.join(path)} has no help text"
    for param in command.params:
        assert (getattr(param, "help", None) or "").strip(), (
            f"disgorge {' '.join(path)}: {param.name} has no help text"
        )


# -- (c) the examples in docs/formats.md work, with the results it quotes -------------------


def test_every_example_is_exercised_here():
    assert set(EXAMPLES) == {
        "consent.csv",
        "consent.jsonl",
        "bad-consent.csv",
        "uploads/",
        "manifest.csv",
        "manifest.jsonl",
        "lfw/",
        "config.toml",
        "workspace-layout",
    }
    assert set(OUTPUTS) == {"bad-consent.csv"}


@pytest.mark.parametrize("name", ["consent.csv", "consent.jsonl"])
def test_consent_example(tmp_path, name):
    results = EXAMPLES[name].consent_results()
    assert len(results) == 2, "expected a first-import result and a re-import result"
    path = _write(tmp_path, name)
    with _new_workspace(tmp_path) as ws:
        for expected in results:
            report = ws.import_consent(path)
            assert (report.imported, report.already_present, report.subjects_created) == expected
        # the current decision is the latest by `at`; cawg. prefix and zones as documented
        subject = ws.subject("user-0001@dating.example")
        assert subject["ref"].startswith("sub_")
        assert subject["consent_now"]["ai_training"] == "revoked"
        assert subject["consent_now"]["ai_generative_training"] == "denied"
        assert [c["at"] for c in subject["consent"]] == [
            "2013-06-01T00:00:00Z",
            "2013-06-01T09:30:00Z",
            "2019-03-14T07:00:00Z",
        ]
        assert ws.subject("user-0003@dating.example")["consent"][0]["at"] == "2015-11-30T12:00:00Z"
        assert ws.subject("user-0002@dating.example")["consent_now"]["biometric_processing"] == "constrained"
    # subjects are stored hashed, evidence encrypted
    stored = b"".join(files_elsewhere(tmp_path / "ws" / ".disgorge", "catalog.sqlite").values())
    for clear in (b"user-0001@dating.example", b"signup form v3", b"support ticket 4411"):
        assert clear not in stored


def test_consent_examples_hold_the_same_records(tmp_path):
    first, second = _write(tmp_path, "consent.csv"), _write(tmp_path, "consent.jsonl")
    with _new_workspace(tmp_path) as ws:
        ws.import_consent(first)
        report = ws.import_consent(second)
    assert (report.imported, report.already_present) == (0, report.rows)


def test_bad_consent_example_imports_nothing_and_lists_every_bad_row(tmp_path):
    path = _write(tmp_path, "bad-consent.csv")
    documented = OUTPUTS["bad-consent.csv"].text
    with _new_workspace(tmp_path) as ws:
        with pytest.raises(InvalidInput) as caught:
            ws.import_consent(path)
        assert f"error: {caught.value}" == documented
        assert ws.status()["consent_records"] == 0
        assert ws.status()["subjects"] == 0
    result = CliRunner().invoke(app, ["consent", "import", str(path), "-w", str(tmp_path / "ws")])
    assert result.exit_code == 1
    assert result.output.strip() == documented


@pytest.mark.parametrize("name", ["manifest.csv", "manifest.jsonl"])
def test_manifest_example(tmp_path, name):
    results = EXAMPLES[name].ingest_results()
    assert len(results) == 2, "expected a first-ingest result and a re-ingest result"
    made = _make_tree(tmp_path, "uploads/")
    manifest = _write(tmp_path, name)
    with _new_workspace(tmp_path) as ws:
        ws.add_source("dating-app")
        for expected in results:
            report = ws.ingest(tmp_path / "uploads", source="dating-app", manifest=manifest, workers=1)
            got = (report.ingested, report.duplicates, len(report.rejected), report.subjects_created)
            assert got == expected
            reasons = {r.path: r.reason for r in report.rejected}
            assert reasons["notes.txt"] == "not listed in the manifest"
            assert reasons["2014/missing.jpg"].startswith("listed in the manifest (line ")
            assert reasons["2014/missing.jpg"].endswith(") but not found")
        group = ws.asset(hashlib.sha256(made["uploads/2013/ada-and-alan.jpg"]).hexdigest())
        assert len(group["depicted"]) == 2
        assert group["captured_at"] == "2013-08-01T00:00:00Z"
        assert group["owner"] == ws.subject_ref("user-0001@dating.example")
        png = ws.asset(hashlib.sha256(made["uploads/2014/grace.png"]).hexdigest())
        assert png["media_type"] == "image/png"


def test_manifest_example_exits_3_from_the_cli(tmp_path):
    _make_tree(tmp_path, "uploads/")
    manifest = _write(tmp_path, "manifest.csv")
    with _new_workspace(tmp_path) as ws:
        ws.add_source("dating-app")
    args = ["ingest", str(tmp_path / "uploads"), "--source", "dating-app", "--manifest", str(manifest)]
    result = CliRunner().invoke(app, [*args, "--workers", "1", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 3, result.output


def test_subject_from_dirname_example(tmp_path):
    results = EXAMPLES["lfw/"].ingest_results()
    assert len(results) == 1
    _make_tree(tmp_path, "lfw/")
    with _new_workspace(tmp_path) as ws:
        ws.add_source("lfw")
        report = ws.ingest(tmp_path / "lfw", source="lfw", subject_from="dirname", workers=1)
        got = (report.ingested, report.duplicates, len(report.rejected), report.subjects_created)
        assert got == results[0]
        assert [r.path for r in report.rejected] == ["README.txt"]
        assert len(ws.subject("Ada_Lovelace")["assets"]) == 2


def test_config_and_workspace_layout_are_what_init_writes(tmp_path):
    _new_workspace(tmp_path).close()
    home = tmp_path / "ws" / ".disgorge"
    written = (home / "config.toml").read_text(encoding="utf-8")
    assert written.strip() == EXAMPLES["config.toml"].text.strip()
    doc = FORMATS_MD.read_text(encoding="utf-8")
    for section, keys in tomllib.loads(written).items():
        for key in keys:
            assert f"| `{section}.{key}` |" in doc, f"config key {section}.{key} is not documented"
    # the entries directly under .disgorge/ in the layout drawing
    documented = set(re.findall(r"^    [├└]── (\S+?)/?(?:\s|$)", EXAMPLES["workspace-layout"].text, re.M))
    actual = {p.name for p in home.iterdir() if not p.name.endswith(("-wal", "-shm"))}
    assert actual == documented
    assert (home / "kek.key").stat().st_mode & 0o777 == 0o600


# -- (d) the README -------------------------------------------------------------------------


def test_readme_mentions_every_top_level_command():
    readme = README.read_text(encoding="utf-8")
    missing = [name for name in get_command(app).commands if f"disgorge {name}" not in readme]
    assert not missing, f"README.md never mentions: {missing}"
