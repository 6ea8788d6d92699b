"""Shared fixtures: real workspaces in temp folders, real generated JPEGs."""

from __future__ import annotations

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
