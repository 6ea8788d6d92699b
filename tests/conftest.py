"""Shared fixtures: real workspaces in temp folders, real generated JPEGs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from disgorge import Workspace
from disgorge.samples import synthetic_photo

ROOT = Path(__file__).resolve().parents[1]
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"


def _shared_faces(sub: str = "") -> Path:
    path = SHARED_FACES / sub
    if not path.exists():
        pytest.skip(f"real test photos not present at {path} (../shared is not checked out)")
    return path


@pytest.fixture
def shared_faces():
    """``shared_faces("lfw10x10")``: a folder of the shared real photos, or skip saying why."""
    return _shared_faces


@pytest.fixture
def ws(tmp_path: Path):
    """A fresh workspace with one source named 'app'."""
    workspace = Workspace.init(tmp_path / "ws", actor="tester")
    workspace.add_source("app")
    yield workspace
    workspace.close()


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """LFW-style folder: 3 people x 4 generated JPEGs, NAME/NAME_000i.jpg."""
    root = tmp_path / "photos"
    for person, name in enumerate(["Ada_Lovelace", "Alan_Turing", "Grace_Hopper"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            (root / name / f"{name}_{i:04d}.jpg").write_bytes(synthetic_photo(person, i))
    return root


_READ_CHILD = """
import os, sys
root, prefix = sys.argv[1], sys.argv[2]
out = sys.stdout.buffer
walk = os.walk(root) if not prefix else [(root, [], os.listdir(root))]
for dirpath, _dirs, files in walk:
    for name in sorted(f for f in files if f.startswith(prefix)):
        path = os.path.join(dirpath, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            continue
        rel = os.path.relpath(path, root).encode()
        out.write(len(rel).to_bytes(4, "little") + rel + len(data).to_bytes(8, "little") + data)
"""


def files_elsewhere(root: Path, prefix: str = "") -> dict[str, bytes]:
    """Every regular file under ``root`` (relative path -> bytes), read by a child process;
    with ``prefix``, only the files directly in ``root`` whose names start with it.

    A test that holds a workspace open must not open the catalog's files itself: closing any
    descriptor of a database file drops every POSIX lock the process holds on it (SQLite's
    "How To Corrupt An SQLite Database File", 2.2). A child process holds no locks to lose.
    """
    raw = subprocess.run(
        [sys.executable, "-I", "-c", _READ_CHILD, str(root), prefix],
        capture_output=True,
        check=True,
        timeout=300,
    ).stdout
    files: dict[str, bytes] = {}
    at = 0
    while at < len(raw):
        size = int.from_bytes(raw[at : at + 4], "little")
        rel = raw[at + 4 : at + 4 + size].decode()
        at += 4 + size
        size = int.from_bytes(raw[at : at + 8], "little")
        files[rel] = raw[at + 8 : at + 8 + size]
        at += 8 + size
    return files


def read_elsewhere(path: Path) -> bytes:
    """One file's bytes, read by a child process (see :func:`files_elsewhere`); b"" if missing."""
    return files_elsewhere(path.parent, path.name).get(path.name, b"")
