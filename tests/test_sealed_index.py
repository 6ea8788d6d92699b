"""Issue 12, defect 8: the face index is sealed at rest, like ``index/pdq.sealed``.

Face embeddings are biometric data (GDPR Art. 9). The index that holds them for person
search is now ``index/faces.sealed``: sealed under a fresh key per write, wrapped by the
KEK, the old file zeroed before the new one replaces it. Real photos (LFW), dlib, real
workspaces, a real erasure; the workspace folder is read byte for byte by the forensic
scan (with the catalog closed: nothing may open its files beside a live connection).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from conftest import shared_faces_dir
from disgorge import Workspace
from disgorge.catalog.models import Asset, AssetDerivative, Subject
from disgorge.erasure.forensics import scan_tree
from disgorge.vision import FaceIndex, reconcile_index

PEOPLE = ("Tony_Blair", "Colin_Powell")
PER_PERSON = 3
AT = "2013-01-01"


@dataclass
class Template:
    path: Path  # a closed, analysed workspace: copy it before use
    lfw: Path


@dataclass
class Embedding:
    id: int
    person: str
    vector: bytes  # float32, little-endian, 128 values


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    lfw = shared_faces_dir("lfw10x10")
    root = tmp_path_factory.mktemp("sealed-index")
    for person in PEOPLE:
        (root / "in" / person).mkdir(parents=True)
        for f in sorted((lfw / person).glob("*.jpg"))[:PER_PERSON]:
            shutil.copy(f, root / "in" / person / f.name)
    (root / "consent.csv").write_text(
        "subject,purpose,decision,at\n" + "".join(f"{p},biometric_processing,granted,{AT}\n" for p in PEOPLE)
    )
    with Workspace.init(root / "ws", actor="tester", at=AT) as ws:
        ws.add_source("photos", at=AT)
        ws.add_policy("photos", "v1", text=b"p", effective_from=AT, allows=["biometric_processing"], at=AT)
        ws.ingest(root / "in", source="photos", subject_from="dirname", at="2013-02-01", workers=1)
        ws.import_consent(root / "consent.csv", at="2013-02-01")
        report = ws.analyze(workers=1, at="2013-03-01")
        assert report.embedded_faces >= len(PEOPLE) * PER_PERSON
    return Template(root / "ws", lfw)


@pytest.fixture
def ws_path(template: Template, tmp_path: Path) -> Path:
    shutil.copytree(template.path, tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture
def ws(ws_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.open(ws_path, actor="tester")
    yield workspace
    workspace.close()


def embeddings(ws: Workspace) -> list[Embedding]:
    """Every active embedding, decrypted from the catalog."""
    names = {ws.subject_ref(p): p for p in PEOPLE}
    out = []
    with ws.reader() as session:
        rows = session.execute(
            select(AssetDerivative.id, AssetDerivative.asset_id, AssetDerivative.value_enc, Asset.owner_id)
            .join(Asset, Asset.id == AssetDerivative.asset_id)
            .where(AssetDerivative.kind == "embedding", AssetDerivative.state == "active")
        ).all()
        for r in rows:
            owner = session.get(Subject, r.owner_id)
            vector = ws.vault.open(owner, r.value_enc, f"embedding:{r.asset_id}:{r.id}")
            out.append(Embedding(r.id, names[owner.ref], vector))
    return out


def needles(found: list[Embedding]) -> dict[str, bytes]:
    """Each embedding whole, and two 64-byte windows of it (a fragment is as telling)."""
    out: dict[str, bytes] = {}
    for e in found:
        out[f"{e.id}:whole"] = e.vector
        out[f"{e.id}:head"] = e.vector[:64]
        out[f"{e.id}:middle"] = e.vector[224:288]
    return out


def scan_closed(path: Path, found: list[Embedding]) -> list:
    """The forensic scan of the whole workspace folder; the caller has closed the workspace."""
    return scan_tree(path, needles(found))


# -- at rest -----------------------------------------------------------------------------------


def test_no_embedding_is_in_clear_anywhere_and_search_still_works(ws: Workspace, ws_path: Path) -> None:
    found = embeddings(ws)
    assert len(found) >= len(PEOPLE) * PER_PERSON
    assert ws.face_index_path.name == "faces.sealed" and ws.face_index_path.exists()
    index = FaceIndex(ws.face_index_path, ws.kek)
    assert index.ids() == {e.id for e in found}
    # the sealed file opens only with the KEK: a person search finds the right person
    lfw = shared_faces_dir("lfw10x10")
    for person in PEOPLE:
        query = sorted((lfw / person).glob("*.jpg"))[PER_PERSON]  # a photo not ingested
        matches = ws.find(query, by="face")["matches"]
        assert matches and {m["owner"] for m in matches} == {ws.subject_ref(person)}
    ws.close()
    assert scan_closed(ws_path, found) == []
    assert not list(ws.face_index_path.parent.glob("*.tmp"))


def test_erasure_removes_the_embedding_from_the_sealed_index(ws: Workspace, ws_path: Path) -> None:
    found = embeddings(ws)
    gone = [e for e in found if e.person == "Tony_Blair"]
    kept = [e for e in found if e.person != "Tony_Blair"]
    done = ws.erase("subject", "Tony_Blair", reason="GDPR Art. 17 request 2024-117")
    assert done["state"] == "completed", done.get("error")
    step = next(s for s in done["steps"] if s["step"] == "remove_index")
    assert step["summary"]["removed"] == len(gone)
    index = FaceIndex(ws.face_index_path, ws.kek)
    assert index.ids() == {e.id for e in kept}
    for e in gone:
        assert index.search(e.vector, max_distance=0.3) == []
    for e in kept:
        assert index.search(e.vector, max_distance=0.01)[0][0] == e.id
    ws.close()
    assert scan_closed(ws_path, found) == []


def test_destroying_a_subject_key_drops_their_vectors_from_the_index(ws: Workspace) -> None:
    """As for the PDQ cache: the index is sealed under the KEK, which lives on, so a
    destroyed data key would no longer guard the subject's embeddings in it."""
    found = embeddings(ws)
    ws.destroy_subject_key("Tony_Blair")
    kept = {e.id for e in found if e.person != "Tony_Blair"}
    assert FaceIndex(ws.face_index_path, ws.kek).ids() == kept
    # their rows are still in the catalog (the erasure deletes them), sealed under a key
    # that is gone: a search reconciles the index without them, and finds nobody for them
    lfw = shared_faces_dir("lfw10x10")
    query = sorted((lfw / "Tony_Blair").glob("*.jpg"))[PER_PERSON]
    owners = {m["owner"] for m in ws.find(query, by="face")["matches"]}
    assert ws.subject_ref("Tony_Blair") not in owners
    assert FaceIndex(ws.face_index_path, ws.kek).ids() == kept


def test_a_clear_index_of_an_older_version_is_wiped_and_rebuilt_on_open(ws_path: Path) -> None:
    """What an older disgorge left: ``index/faces.faiss`` in clear (and a crash's
    ``faces.tmp``), no sealed index. Opening the workspace zeroes and removes both and
    rebuilds the sealed index from the catalog; nothing in the old file is trusted."""
    import faiss

    with Workspace.open(ws_path, actor="tester") as ws:
        found = embeddings(ws)
        sealed = ws.face_index_path
    sealed.unlink()
    folder = sealed.parent
    stray = np.random.default_rng(8).standard_normal(128).astype("<f4")
    legacy = faiss.IndexIDMap2(faiss.IndexFlatL2(128))
    matrix = np.frombuffer(b"".join(e.vector for e in found), dtype="<f4").reshape(len(found), 128)
    ids = np.asarray([e.id for e in found] + [77], "int64")
    legacy.add_with_ids(np.vstack([matrix, stray[None, :]]), ids)
    clear = folder / "faces.faiss"
    faiss.write_index(legacy, str(clear))
    shutil.copy(clear, folder / "faces.tmp")
    assert len(scan_closed(ws_path, found)) >= len(found)  # the scan sees what was in clear

    with Workspace.open(ws_path, actor="tester") as ws:
        assert not clear.exists() and not (folder / "faces.tmp").exists()
        assert FaceIndex(ws.face_index_path, ws.kek).ids() == {e.id for e in found}  # not 77
    assert scan_closed(ws_path, found) == []
    assert scan_tree(ws_path, {"stray": stray.tobytes()}) == []


# -- the file: concurrent writers, damage ----------------------------------------------------------


def test_two_writers_do_not_undo_each_others_removals(ws: Workspace) -> None:
    """Each save merges its own changes into the file as it is now (under a lock), so a
    writer that loaded the index earlier cannot write back what another one removed."""
    found = embeddings(ws)
    a, b = FaceIndex(ws.face_index_path, ws.kek), FaceIndex(ws.face_index_path, ws.kek)
    a.remove([found[0].id])
    a.save()
    b.remove([found[1].id])
    b.save()
    assert FaceIndex(ws.face_index_path, ws.kek).ids() == {e.id for e in found[2:]}
    assert b.ids() == {e.id for e in found[2:]}


def test_a_damaged_index_is_rebuilt_never_trusted(ws: Workspace) -> None:
    found = embeddings(ws)
    path = ws.face_index_path
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(bytes(data))
    damaged = FaceIndex(path, ws.kek)
    assert len(damaged) == 0  # it does not open: read as absent
    assert reconcile_index(ws.reader, ws.vault, damaged) == (0, len(found))
    assert FaceIndex(path, ws.kek).ids() == {e.id for e in found}
    # a file sealed under another purpose's key and AAD (the PDQ cache) does not open either
    shutil.copy(path.with_name("pdq.sealed"), path)
    assert len(FaceIndex(path, ws.kek)) == 0


_REMOVER = """
import sys
from pathlib import Path
from disgorge.vault.kek import FileKek
from disgorge.vision import FaceIndex
path, kek, ids = Path(sys.argv[1]), FileKek(Path(sys.argv[2])), [int(i) for i in sys.argv[3].split(",")]
for i in ids:  # one removal per load and save: as many chances to lose another's as there can be
    index = FaceIndex(path, kek)
    index.remove([i])
    index.save()
"""


def test_concurrent_processes_lose_no_removal(tmp_path: Path) -> None:
    """Four processes each remove their own 15 vectors, one load-remove-save at a time, all
    at once against one sealed index file: every removal holds."""
    from disgorge.vault.kek import FileKek

    kek_path = tmp_path / "kek.key"
    kek = FileKek.create(kek_path)
    path = tmp_path / "index" / "faces.sealed"
    rng = np.random.default_rng(12)
    ids = list(range(1, 101))
    index = FaceIndex(path, kek)
    index.add(ids, [rng.standard_normal(128).astype("<f4").tobytes() for _ in ids])
    index.save()
    groups = [ids[k * 15 : (k + 1) * 15] for k in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _REMOVER, str(path), str(kek_path), ",".join(map(str, g))],
            stderr=subprocess.PIPE,
            text=True,
        )
        for g in groups
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert FaceIndex(path, kek).ids() == set(ids[60:])
