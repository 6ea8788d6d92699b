"""Hostile input (issue 12): input crafted to mislead, exhaust or disguise.

Conflicting consent rows whose outcome must not depend on their order, JSON nested to
break the parser, file names that rewrite the terminal, zips whose headers lie, a
workspace readable by other users, arguments that one path accepts and another refuses,
certificates with a forged algorithm. Real files, real SQLite, the real CLI; no mocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import DISGORGE, cli
from disgorge import InvalidInput, Workspace
from disgorge.samples import synthetic_photo


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI failed with a one-line message and no traceback; return the message."""
    assert result.returncode in (1, 2), (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


# -- consent conflicts (defect 6) ------------------------------------------------------------
def _policy(ws: Workspace) -> None:
    ws.add_policy(
        "app", "v1", text=b"policy", effective_from="2010-01-01", allows=["ai_training", "data_mining"]
    )


def _verdicts(ws: Workspace, subject: str) -> set[str]:
    return {item["rule"] for item in ws.consent_check(subject, "ai_training", at="2020-01-01")["items"]}


@pytest.mark.parametrize("order", ["denied_first", "granted_first"])
def test_denial_wins_a_tie_in_one_file_whatever_the_order(ws: Workspace, tmp_path: Path, order: str) -> None:
    _policy(ws)
    photos = tmp_path / "p" / "Ada_Lovelace"
    photos.mkdir(parents=True)
    (photos / "a.jpg").write_bytes(synthetic_photo(0, 0))
    ws.ingest(tmp_path / "p", source="app", subject_from="dirname")
    rows = [
        "Ada_Lovelace,ai_training,denied,2015-01-01T00:00:00Z",
        "Ada_Lovelace,ai_training,granted,2015-01-01T00:00:00Z",
    ]
    if order == "granted_first":
        rows.reverse()
    path = tmp_path / "consent.csv"
    path.write_text("subject,purpose,decision,at\n" + "\n".join(rows) + "\n")
    report = ws.import_consent(path)
    assert report.imported == 2
    assert report.conflicts == 1
    assert report.to_dict()["conflicts"] == 1
    assert _verdicts(ws, "Ada_Lovelace") == {"consent_denied"}
    assert ws.subject("Ada_Lovelace")["consent_now"]["ai_training"] == "denied"


@pytest.mark.parametrize("order", ["subject_denial_first", "photo_grant_first"])
def test_a_subject_wide_denial_beats_a_per_photo_grant_of_the_same_instant(
    ws: Workspace, tmp_path: Path, order: str
) -> None:
    _policy(ws)
    photos = tmp_path / "p" / "Ada_Lovelace"
    photos.mkdir(parents=True)
    data = synthetic_photo(0, 0)
    (photos / "a.jpg").write_bytes(data)
    ws.ingest(tmp_path / "p", source="app", subject_from="dirname")
    digest = hashlib.sha256(data).hexdigest()
    rows = [
        "Ada_Lovelace,ai_training,denied,2015-01-01T00:00:00Z,",
        f"Ada_Lovelace,ai_training,granted,2015-01-01T00:00:00Z,{digest}",
    ]
    if order == "photo_grant_first":
        rows.reverse()
    path = tmp_path / "consent.csv"
    path.write_text("subject,purpose,decision,at,asset\n" + "\n".join(rows) + "\n")
    ws.import_consent(path)
    assert _verdicts(ws, "Ada_Lovelace") == {"consent_denied"}


@pytest.mark.parametrize("first", ["denied", "granted"])
def test_denial_wins_a_tie_across_two_imports(ws: Workspace, tmp_path: Path, first: str) -> None:
    _policy(ws)
    photos = tmp_path / "p" / "Ada_Lovelace"
    photos.mkdir(parents=True)
    (photos / "a.jpg").write_bytes(synthetic_photo(0, 0))
    ws.ingest(tmp_path / "p", source="app", subject_from="dirname")
    second = "granted" if first == "denied" else "denied"
    for i, decision in enumerate([first, second]):
        path = tmp_path / f"consent{i}.jsonl"
        row = {"subject": "Ada_Lovelace", "purpose": "ai_training", "decision": decision, "at": "2015-01-01"}
        path.write_text(json.dumps(row) + "\n")
        report = ws.import_consent(path)
        assert report.conflicts == i  # the second import meets the first one's record
    assert _verdicts(ws, "Ada_Lovelace") == {"consent_denied"}
    assert ws.subject("Ada_Lovelace")["consent_now"]["ai_training"] == "denied"
    # a later grant is not a conflict and still wins
    later = tmp_path / "later.csv"
    later.write_text("subject,purpose,decision,at\nAda_Lovelace,ai_training,granted,2016-01-01\n")
    assert ws.import_consent(later).conflicts == 0
    assert _verdicts(ws, "Ada_Lovelace") == {"allowed"}


def test_cli_reports_the_conflict_count_without_the_subject(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert cli("init", ws).returncode == 0
    path = tmp_path / "consent.csv"
    path.write_text(
        "subject,purpose,decision,at\n"
        "Grace_Hopper,ai_training,granted,2015-01-01\n"
        "Grace_Hopper,ai_training,denied,2015-01-01\n"
        "Grace_Hopper,data_mining,denied,2015-01-01\n"
    )
    plain = cli("consent", "import", path, "-w", ws)
    assert plain.returncode == 0, plain.stderr
    assert "1 conflict(s)" in plain.stderr
    assert "Grace_Hopper" not in plain.stdout + plain.stderr
    again = cli("consent", "import", path, "-w", ws, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["conflicts"] == 1
    assert json.loads(again.stdout)["already_present"] == 3


# -- deep JSON Lines (defect 7) --------------------------------------------------------------
def test_deeply_nested_jsonl_consent_line_is_a_clear_error(ws: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "consent.jsonl"
    good = {"subject": "Ada_Lovelace", "purpose": "ai_training", "decision": "granted", "at": "2015-01-01"}
    path.write_text(json.dumps(good) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(InvalidInput, match=r"consent\.jsonl line 2: JSON nested too deeply"):
        ws.import_consent(path)
    assert ws.status()["consent_records"] == 0
    nested_field = tmp_path / "nested.jsonl"
    nested_field.write_text(json.dumps({**good, "evidence": [[["x"]]]}) + "\n")
    with pytest.raises(InvalidInput, match=r"nested\.jsonl line 1: field 'evidence' must be a flat list"):
        ws.import_consent(nested_field)


def test_cli_deep_jsonl_is_one_line_naming_the_line(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert cli("init", ws).returncode == 0
    path = tmp_path / "consent.jsonl"
    path.write_text("\n\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    message = one_line_error(cli("consent", "import", path, "-w", ws))
    assert "line 3" in message and "nested too deeply" in message


# -- a private workspace (defect 7) ----------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_workspace_folder_and_files_are_private(tmp_path: Path, photo_dir: Path) -> None:
    os.umask(0o022)  # a usual umask: files would be 0644 if the workspace did not care
    ws = Workspace.init(tmp_path / "ws", actor="tester")
    try:
        ws.add_source("app")
        report = ws.ingest(photo_dir, source="app", subject_from="dirname")
        assert report.ingested == 12
        home = ws.config.home
        assert _mode(home) == 0o700
        catalog = ws.config.catalog_file()
        assert catalog is not None and catalog.parent == home
        wal = catalog.with_name(catalog.name + "-wal")
        assert wal.exists(), "the catalog is in WAL mode while a connection is open"
        files = [p for p in home.rglob("*") if p.is_file()]
        blobs = [p for p in files if "blobs" in p.relative_to(home).parts]
        assert len(blobs) >= 12 and catalog in files and wal in files
        assert home / "kek.key" in files and home / "config.toml" in files
        loose = {str(p.relative_to(home)): oct(_mode(p)) for p in files if _mode(p) & 0o077}
        assert loose == {}
        folders = {str(p.relative_to(home)): oct(_mode(p)) for p in home.rglob("*") if p.is_dir()}
        assert all(int(m, 8) & 0o077 == 0 for m in folders.values()), folders
    finally:
        ws.close()
        os.umask(0o022)


def test_opening_a_workspace_tightens_a_loose_folder_and_catalog(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws").close()
    home = tmp_path / "ws" / ".disgorge"
    os.chmod(home, 0o755)
    os.chmod(home / "catalog.sqlite", 0o644)
    os.chmod(home / "config.toml", 0o644)
    os.umask(0o022)
    try:
        Workspace.open(tmp_path / "ws").close()
        assert _mode(home) == 0o700
        assert _mode(home / "catalog.sqlite") == 0o600
        assert _mode(home / "config.toml") == 0o600
    finally:
        os.umask(0o022)


# -- a zip whose headers lie (defect 7) ------------------------------------------------------
def _lying_zip(path: Path, real_bytes: int, declared: int = 1000) -> None:
    """A zip with one good photo and ``liar.jpg``: ``real_bytes`` of zeros that its local
    header and central directory both declare as ``declared`` bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("Ada_Lovelace/a.jpg", synthetic_photo(0, 0))
        with zf.open("Ada_Lovelace/liar.jpg", "w") as fh:
            chunk = bytes(1 << 20)
            for _ in range(real_bytes >> 20):
                fh.write(chunk)
    data = bytearray(path.read_bytes())
    name = b"Ada_Lovelace/liar.jpg"
    patched = 0
    for signature, header, name_len_at, size_at in ((b"PK\x03\x04", 30, 26, 22), (b"PK\x01\x02", 46, 28, 24)):
        pos = data.find(signature)
        while pos != -1:
            (name_len,) = struct.unpack_from("<H", data, pos + name_len_at)
            if data[pos + header : pos + header + name_len] == name:
                struct.pack_into("<I", data, pos + size_at, declared)
                patched += 1
            pos = data.find(signature, pos + 4)
    assert patched == 2
    path.write_bytes(bytes(data))


def test_zip_member_inflating_past_its_declared_size_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    archive = tmp_path / "photos.zip"
    _lying_zip(archive, 320 * 1024 * 1024)
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("Ada_Lovelace/liar.jpg").file_size == 1000
    ws = tmp_path / "ws"
    assert cli("init", ws).returncode == 0
    assert cli("source", "add", "app", "-w", ws).returncode == 0
    # measure the ingest alone: a fresh parent whose only child is `disgorge ingest`
    measure = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.stderr.write(r.stdout + r.stderr)\n"
        "sys.exit(r.returncode)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISGORGE_")}
    env.update(COLUMNS="400", NO_COLOR="1", TERM="dumb")
    argv = [DISGORGE, "ingest", str(archive), "-s", "app", "--subject-from", "dirname", "-w", str(ws)]
    result = subprocess.run(
        [sys.executable, "-c", measure, *argv, "--workers", "1", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 3, result.stderr  # finished, one file refused
    peak_mb = int(result.stdout.strip()) / 1024
    report = json.loads(result.stderr[: result.stderr.rindex("}") + 1])
    assert report["ingested"] == 1
    assert [r["path"] for r in report["rejected"]] == ["Ada_Lovelace/liar.jpg"]
    assert "corrupt archive member" in report["rejected"][0]["reason"]
    assert peak_mb < 200, f"ingest peaked at {peak_mb:.0f} MB RSS"


def test_zip_member_read_stops_at_the_declared_size(tmp_path: Path) -> None:
    from disgorge.ingest.members import walk

    archive = tmp_path / "photos.zip"
    _lying_zip(archive, 8 * 1024 * 1024, declared=4096)
    outcome: dict[str, bytes | str] = {}
    for member in walk(archive, max_bytes=256 * 1024 * 1024):  # read while the zip is open
        assert member.read is not None
        try:
            outcome[member.path] = member.read()
        except InvalidInput as exc:
            outcome[member.path] = str(exc)
    assert outcome["Ada_Lovelace/a.jpg"] == synthetic_photo(0, 0)
    assert str(outcome["Ada_Lovelace/liar.jpg"]).startswith("corrupt archive member")


# -- erasure arguments and certificates (defects 7 and 10) -----------------------------------
@pytest.fixture(scope="module")
def erased(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A CLI workspace where Ada_Lovelace was erased, and her exported certificate."""
    tmp = tmp_path_factory.mktemp("erased")
    photos = tmp / "photos"
    for person, name in enumerate(["Ada_Lovelace", "Alan_Turing"]):
        (photos / name).mkdir(parents=True)
        for i in range(2):
            (photos / name / f"{name}_{i:04d}.jpg").write_bytes(synthetic_photo(person, i))
    ws = tmp / "ws"
    assert cli("init", ws).returncode == 0
    assert cli("source", "add", "app", "-w", ws).returncode == 0
    assert cli("ingest", photos, "-s", "app", "--subject-from", "dirname", "-w", ws).returncode == 0
    done = cli("erase", "--subject", "Ada_Lovelace", "--reason", "GDPR Art. 17", "--yes", "--json", "-w", ws)
    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)["id"]
    cert = tmp / "cert.json"
    exported = cli("certificate", "export", request, "-o", cert, "-w", ws)
    assert exported.returncode == 0, exported.stderr
    return {
        "ws": ws,
        "request": request,
        "cert": cert,
        "pub": cert.with_suffix(".pub.pem"),
        "erased_photo": photos / "Ada_Lovelace" / "Ada_Lovelace_0000.jpg",
        "kept_photo": photos / "Alan_Turing" / "Alan_Turing_0000.jpg",
        "tmp": tmp,
    }


def test_a_short_reason_is_refused_the_same_way_with_and_without_dry_run(erased: dict[str, object]) -> None:
    ws = erased["ws"]
    planned = cli("erase", "--subject", "Alan_Turing", "--reason", "t", "--dry-run", "-w", ws)
    real = cli("erase", "--subject", "Alan_Turing", "--reason", "t", "--yes", "-w", ws)
    assert planned.returncode == real.returncode == 2
    assert one_line_error(planned) == one_line_error(real)
    assert "at least 3 characters" in one_line_error(real)
    assert "at least 3 characters" in one_line_error(
        cli("erase", "--subject", "Alan_Turing", "--reason", " ab ", "--dry-run", "-w", ws)
    )
    # a plan without --reason is still a plan
    assert cli("erase", "--subject", "Alan_Turing", "--dry-run", "-w", ws).returncode == 0
    # nothing was planned or erased
    listed = json.loads(cli("erasure", "list", "--json", "-w", ws).stdout)
    assert [r["id"] for r in listed] == [erased["request"]]


def test_python_api_refuses_a_short_reason_with_the_same_message(ws: Workspace, photo_dir: Path) -> None:
    ws.ingest(photo_dir, source="app", subject_from="dirname")
    with pytest.raises(InvalidInput, match="at least 3 characters"):
        ws.erase("subject", "Ada_Lovelace", reason="ab")
    assert ws.erasures() == []


def test_certificate_export_to_a_missing_folder_is_a_clear_error(erased: dict[str, object]) -> None:
    missing = Path(erased["tmp"]) / "no" / "such" / "dir" / "c.json"
    message = one_line_error(
        cli("certificate", "export", erased["request"], "-o", missing, "-w", erased["ws"])
    )
    assert "no such folder" in message
    assert not missing.parent.exists()
    folder = one_line_error(
        cli("certificate", "export", erased["request"], "-o", erased["tmp"], "-w", erased["ws"])
    )
    assert "is a folder" in folder


@pytest.mark.parametrize("algorithm", ["Ed24519", "ed25519", "", None, "RS256", ["Ed25519"]])
def test_certificate_naming_another_algorithm_does_not_verify(
    erased: dict[str, object], algorithm: object
) -> None:
    from disgorge.erasure.certificate import verify_certificate

    cert = json.loads(Path(erased["cert"]).read_text())
    pub = Path(erased["pub"]).read_bytes()
    assert cert["algorithm"] == "Ed25519" and verify_certificate(cert, pub).ok
    if algorithm is None:
        del cert["algorithm"]
    else:
        cert["algorithm"] = algorithm
    check = verify_certificate(cert, pub)
    assert not check.ok and check.where == "algorithm" and "only Ed25519" in check.reason


def test_cli_refuses_a_certificate_naming_another_algorithm(
    erased: dict[str, object], tmp_path: Path
) -> None:
    cert = json.loads(Path(erased["cert"]).read_text())
    cert["algorithm"] = "Ed24519"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(cert))
    result = cli("certificate", "verify", forged, "--public-key", erased["pub"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout.startswith("INVALID: unsupported signature algorithm 'Ed24519'")


# -- demo --photos with short folder names (defect 7) ----------------------------------------
def test_demo_scan_leaves_out_ids_too_short_to_look_for(tmp_path: Path) -> None:
    """LFW-style folders named with 2 characters: the ids are needles that turn up by chance
    in ciphertext and SQLite pages, so the demo's scans reported leaks that were not."""
    from disgorge.demo import _real_people, _scan_needles
    from disgorge.erasure import scan_tree
    from disgorge.erasure.forensics import MIN_NEEDLE_BYTES

    layout = tmp_path / "lfw"
    names = ["ab", "cd", "ef", "gh", "Long_Enough_Name"]
    for person, name in enumerate(names):
        (layout / name).mkdir(parents=True)
        for i in range(6):
            (layout / name / f"{name}_{i}.jpg").write_bytes(synthetic_photo(person, i))
    people = _real_people(layout)
    needles = _scan_needles(people)
    assert all(len(n) >= MIN_NEEDLE_BYTES for n in needles.values())
    assert "id Long_Enough_Name" in needles and "id ab" not in needles
    assert sum(label.startswith("photo ") for label in needles) == sum(
        len(people.photos[u]) for u in people.users
    )

    ws = Workspace.init(tmp_path / "ws")
    try:
        ws.add_source("app")
        assert ws.ingest(layout, source="app", subject_from="dirname", workers=1).ingested == 30
        home = ws.config.home
    finally:
        ws.close()
    assert scan_tree(home, needles) == []
    # what the demo used to look for: two-byte ids are "found" in a workspace holding none
    short = {f"id {u}": u.encode() for u in people.users if len(u) < MIN_NEEDLE_BYTES}
    assert short and scan_tree(home, short), "a 2-byte needle turns up by chance in sealed bytes"


# -- names that rewrite the terminal (defect 7) ----------------------------------------------
ESC_NAME = "evil\x1b[2J\x1b]0;owned\x07\u202egpj.exe\x85end"


def _assert_no_raw_controls(text: str) -> None:
    for ch in ("\x1b", "\x07", "\u202e", "\x85"):
        assert ch not in text, (ch, text)


def test_cli_escapes_control_and_bidi_characters_in_file_names(tmp_path: Path) -> None:
    photos = tmp_path / "photos" / "Ada_Lovelace"
    photos.mkdir(parents=True)
    (photos / "good.jpg").write_bytes(synthetic_photo(0, 0))
    (photos / ESC_NAME).write_bytes(b"not an image at all")
    ws = tmp_path / "ws"
    assert cli("init", ws).returncode == 0
    assert cli("source", "add", "app", "-w", ws).returncode == 0
    plain = cli("ingest", photos.parent, "-s", "app", "--subject-from", "dirname", "-w", ws)
    assert plain.returncode == 3, plain.stderr
    _assert_no_raw_controls(plain.stdout + plain.stderr)
    assert "refused Ada_Lovelace/evil\\x1b[2J\\x1b]0;owned\\x07\\u202egpj.exe\\x85end: " in plain.stdout
    as_json = cli("ingest", photos.parent, "-s", "app", "--subject-from", "dirname", "-w", ws, "--json")
    _assert_no_raw_controls(as_json.stdout)
    rejected = json.loads(as_json.stdout)["rejected"]
    assert [r["path"] for r in rejected] == [f"Ada_Lovelace/{ESC_NAME}"]  # the JSON still carries the name


def test_cli_prints_names_with_markup_and_controls_as_text(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert cli("init", ws).returncode == 0
    name = "src[/]\x1b[31m[bold]x"
    added = cli("source", "add", name, "--description", "desc \u202e [/b]", "-w", ws)
    assert added.returncode == 0, added.stderr
    assert "Traceback" not in added.stderr
    _assert_no_raw_controls(added.stdout)
    assert "src[/]\\x1b[31m[bold]x" in added.stdout and "desc \\u202e [/b]" in added.stdout
    missing = one_line_error(cli("consent", "import", tmp_path / f"{ESC_NAME}.csv", "-w", ws))
    _assert_no_raw_controls(missing)
    assert "\\u202e" in missing


def test_shown_escapes_only_what_is_unsafe() -> None:
    from disgorge.cli._common import shown

    assert shown("Zoë_Ünal/photo 1.jpg") == "Zoë_Ünal/photo 1.jpg"
    assert shown("a\tb\nc") == "a\\x09b\\x0ac"
    assert shown("a\tb\nc", keep="\n") == "a\\x09b\nc"
    assert shown("x\u200by\u2066z\ufeff") == "x\\u200by\\u2066z\\ufeff"
    assert shown("bad\udcffbyte") == "bad\\udcffbyte"  # an undecodable byte of a file name
