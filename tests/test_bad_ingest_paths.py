"""Ingest paths, symlinks, manifests and options that cannot work.

What every bad-input test checks is said in conftest.py ("bad input").
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import assert_intact, assert_private, ingest_good, rejections, sha, write_rows
from disgorge import InvalidInput, NotFound, Workspace
from disgorge.samples import synthetic_photo


# -- 7: symlinks inside an ingest folder ----------------------------------------------------------
def test_folder_symlinks_outside_the_root_are_refused_inside_accepted(
    ws: Workspace, photo_dir: Path, tmp_path: Path
) -> None:
    stored = ingest_good(ws, photo_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = synthetic_photo(8, 0)
    (outside / "secret.jpg").write_bytes(secret)
    root = tmp_path / "batch"
    ada = root / "Ada_Lovelace"
    ada.mkdir(parents=True)
    loose = synthetic_photo(8, 1)
    (root / "loose.jpg").write_bytes(loose)  # at the root: refused for itself (no folder name)
    (ada / "inside.jpg").symlink_to("../loose.jpg")  # relative link staying inside: accepted
    (ada / "outside-abs.jpg").symlink_to(outside / "secret.jpg")
    (ada / "outside-rel.jpg").symlink_to("../../outside/secret.jpg")
    (ada / "dangling.jpg").symlink_to("../missing.jpg")
    (ada / "linked-folder").symlink_to(outside, target_is_directory=True)

    report = ws.ingest(root, source="app", subject_from="dirname")

    refused = rejections(report)
    assert refused["Ada_Lovelace/outside-abs.jpg"] == "symlink points outside the ingest root"
    assert refused["Ada_Lovelace/outside-rel.jpg"] == "symlink points outside the ingest root"
    assert refused["Ada_Lovelace/dangling.jpg"].startswith("cannot read")
    assert refused["Ada_Lovelace/linked-folder"] == "symlinked folder not followed"
    assert "no folder name" in refused["loose.jpg"]
    assert "Ada_Lovelace/inside.jpg" not in refused
    assert len(refused) == 5
    assert report.ingested == 1
    with pytest.raises(NotFound):
        ws.asset(sha(secret))
    stored[sha(loose)] = loose
    assert_intact(ws, stored)
    assert ws.asset(sha(loose))["owner"] == ws.subject_ref("Ada_Lovelace")
    assert_private(ws, *refused.values())


# -- 8: manifests ---------------------------------------------------------------------------------
def test_manifest_naming_a_missing_file_reports_it_with_its_line(
    ws: Workspace, photo_dir: Path, tmp_path: Path
) -> None:
    stored = ingest_good(ws, photo_dir)
    batch = tmp_path / "batch"
    batch.mkdir()
    a, b, c = (synthetic_photo(9, i) for i in range(3))
    (batch / "a.jpg").write_bytes(a)
    (batch / "b.jpg").write_bytes(b)
    (batch / "c.jpg").write_bytes(c)
    manifest = write_rows(
        tmp_path / "manifest.csv",
        """
path,subject,captured_at
a.jpg,Ada_Lovelace,2013-01-15
missing.jpg,Alan_Turing,2013-01-16
b.jpg,Grace_Hopper,
""",
    )

    report = ws.ingest(batch, source="app", manifest=manifest)

    refused = rejections(report)
    assert refused == {
        "missing.jpg": "listed in the manifest (line 3) but not found",
        "c.jpg": "not listed in the manifest",
    }
    assert report.ingested == 2
    stored.update({sha(a): a, sha(b): b})
    assert_intact(ws, stored)
    with pytest.raises(NotFound):
        ws.asset(sha(c))
    assert_private(ws, *refused.values())


BAD_MANIFESTS = {
    "csv-bad-date": (
        "manifest.csv",
        "path,subject,captured_at\na.jpg,Ada_Lovelace,2013-01-15\nb.jpg,Alan_Turing,2013-02-30\n",
        ["manifest.csv line 3: captured_at", "2013-02-30", "ISO 8601"],
    ),
    "csv-missing-subject-column": (
        "manifest.csv",
        "path,captured_at\na.jpg,2013-01-15\n",
        ["manifest.csv (header): missing column(s) subject"],
    ),
    "jsonl-bad-date": (
        "manifest.jsonl",
        '{"path": "a.jpg", "subject": "Ada_Lovelace"}\n'
        '{"path": "b.jpg", "subject": "Alan_Turing", "captured_at": "last tuesday"}\n',
        ["manifest.jsonl line 2: captured_at", "last tuesday"],
    ),
    "jsonl-missing-subject": (
        "manifest.jsonl",
        '{"path": "a.jpg", "subject": "Ada_Lovelace"}\n{"path": "b.jpg"}\n',
        ["manifest.jsonl line 2: missing column(s) subject"],
    ),
    "csv-path-escaping": (
        "manifest.csv",
        "path,subject\na.jpg,Ada_Lovelace\n../b.jpg,Alan_Turing\n",
        ["manifest.csv line 3: path must be relative to the ingest root"],
    ),
}


@pytest.mark.parametrize("kind", list(BAD_MANIFESTS))
def test_bad_manifest_stops_the_ingest_before_anything_is_stored(
    ws: Workspace, photo_dir: Path, tmp_path: Path, kind: str
) -> None:
    name, text, expected = BAD_MANIFESTS[kind]
    stored = ingest_good(ws, photo_dir)
    before = ws.status()
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "a.jpg").write_bytes(synthetic_photo(9, 10))
    (batch / "b.jpg").write_bytes(synthetic_photo(9, 11))
    manifest = write_rows(tmp_path / name, text)

    with pytest.raises(InvalidInput) as caught:
        ws.ingest(batch, source="app", manifest=manifest)

    message = str(caught.value)
    for part in expected:
        assert part in message, message
    after = ws.status()
    assert after["subjects"] == before["subjects"]
    assert after["audit_events"] == before["audit_events"]
    assert_intact(ws, stored)
    assert_private(ws, message)


# -- 14: ingest options and paths that cannot work ------------------------------------------------
def _garbage(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"this is not an archive\n" * 10)
    return path


BAD_INGESTS: dict[str, tuple[Callable[[Path, Path], dict], type[Exception], str]] = {
    "unknown-subject-from": (
        lambda t, p: {"path": p, "subject_from": "filename"},
        InvalidInput,
        "--subject-from 'filename': expected one of dirname",
    ),
    "missing-folder": (
        lambda t, p: {"path": t / "nope", "subject_from": "dirname"},
        InvalidInput,
        "nope: no such file or folder",
    ),
    "missing-zip": (
        lambda t, p: {"path": t / "nope.zip", "subject_from": "dirname"},
        InvalidInput,
        "nope.zip: no such file or folder",
    ),
    "plain-file": (
        lambda t, p: {
            "path": shutil.copy(sorted(p.rglob("*.jpg"))[0], t / "photo.jpg"),
            "subject_from": "dirname",
        },
        InvalidInput,
        "photo.jpg: not a folder, .zip or .tar(.gz) archive",
    ),
    "garbage-zip": (
        lambda t, p: {"path": _garbage(t, "junk.zip"), "subject_from": "dirname"},
        InvalidInput,
        "junk.zip: not a readable zip archive",
    ),
    "garbage-tar-gz": (
        lambda t, p: {"path": _garbage(t, "junk.tar.gz"), "subject_from": "dirname"},
        InvalidInput,
        "junk.tar.gz: not a readable tar archive",
    ),
    "no-subject-rule": (lambda t, p: {"path": p}, InvalidInput, "say whose photos these are"),
    "two-subject-rules": (
        lambda t, p: {"path": p, "subject_from": "dirname", "manifest": t / "m.csv"},
        InvalidInput,
        "either --manifest or --subject-from",
    ),
    "missing-manifest": (
        lambda t, p: {"path": p, "manifest": t / "m.csv"},
        InvalidInput,
        "m.csv: no such file",
    ),
    "unknown-source": (
        lambda t, p: {"path": p, "subject_from": "dirname", "source": "nosuch"},
        NotFound,
        "no source named 'nosuch'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INGESTS))
def test_ingest_that_cannot_start_says_why_and_changes_nothing(
    ws: Workspace, photo_dir: Path, tmp_path: Path, case: str
) -> None:
    make, error, expected = BAD_INGESTS[case]
    stored = ingest_good(ws, photo_dir)
    subjects = ws.status()["subjects"]
    kwargs = {"source": "app", **make(tmp_path, photo_dir)}
    path = kwargs.pop("path")

    with pytest.raises(error) as caught:
        ws.ingest(path, **kwargs)

    message = str(caught.value)
    assert expected in message
    assert "\n" not in message, message
    assert ws.status()["subjects"] == subjects
    assert_intact(ws, stored)
    assert_private(ws, message)
