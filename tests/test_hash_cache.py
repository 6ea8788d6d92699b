"""The sealed PDQ cache (``index/pdq.sealed``): same answers, no decryption, nothing kept.

Real workspaces (SQLite catalog, sealed blobs, the KEK file), real drawn portraits,
analysed for real. The only thing wrapped is ``Vault.open`` on the instance, to count
how many hashes a load decrypts; the one crash is a real SIGKILL of a real process.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from disgorge import Workspace
from disgorge.catalog.models import Asset, AssetDerivative
from disgorge.samples import synthetic_photo
from disgorge.vision import HashMatrix, load_hash_matrix
from disgorge.vision.hash_cache import HashCache, pack

PEOPLE = ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper"]
PER_PERSON = 3
REASON = "GDPR Art. 17 request 2024-117"


@dataclass
class Template:
    path: Path  # a closed workspace: copy it before changing it
    photos: dict[str, dict[str, bytes]]  # person -> file name -> bytes


def _write(folder: Path, person: int, name: str, count: int, offset: int = 0) -> dict[str, bytes]:
    (folder / name).mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(offset, offset + count):
        out[f"{name}_{i}.jpg"] = data = synthetic_photo(person, i, size=160)
        (folder / name / f"{name}_{i}.jpg").write_bytes(data)
    return out


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("pdq")
    photos = {name: _write(root / "photos", p, name, PER_PERSON) for p, name in enumerate(PEOPLE)}
    with Workspace.init(root / "ws", actor="tester", at="2013-01-01") as ws:
        ws.add_source("app", at="2013-01-01")
        report = ws.ingest(root / "photos", source="app", subject_from="dirname", at="2013-02-01")
        assert report.ingested == len(PEOPLE) * PER_PERSON
        assert ws.analyze(workers=1, at="2013-03-01").analyzed == len(PEOPLE) * PER_PERSON
    return Template(root / "ws", photos)


@pytest.fixture
def ws(template: Template, tmp_path: Path) -> Iterator[Workspace]:
    shutil.copytree(template.path, tmp_path / "ws")
    # analyze leaves a current cache (tested below); most tests start without one
    assert (tmp_path / "ws" / ".disgorge" / "index" / "pdq.sealed").exists()
    (tmp_path / "ws" / ".disgorge" / "index" / "pdq.sealed").unlink()
    workspace = Workspace.open(tmp_path / "ws", actor="tester")
    yield workspace
    workspace.close()


def opened(monkeypatch: pytest.MonkeyPatch, ws: Workspace) -> list[str]:
    """The contexts of the PDQ hashes ``ws.vault`` decrypts from now on."""
    contexts: list[str] = []
    real = ws.vault.open

    def counting(subject, sealed, context):  # type: ignore[no-untyped-def]
        if context.startswith("phash:"):
            contexts.append(context)
        return real(subject, sealed, context)

    monkeypatch.setattr(ws.vault, "open", counting)
    return contexts


def same(a: HashMatrix, b: HashMatrix) -> bool:
    return a.ids == b.ids and np.array_equal(a.words, b.words)


def uncached(ws: Workspace) -> HashMatrix:
    return load_hash_matrix(ws.reader, ws.vault)


def cached(ws: Workspace) -> HashMatrix:
    return load_hash_matrix(ws.reader, ws.vault, cache=ws.hash_cache)


def hashes_of(ws: Workspace, asset_ids: set[str]) -> list[bytes]:
    m = uncached(ws)
    return [m.words[i].tobytes() for i, a in enumerate(m.ids) if a in asset_ids]


def shas(photos: dict[str, bytes]) -> set[str]:
    return {hashlib.sha256(d).hexdigest() for d in photos.values()}


def asset_ids(ws: Workspace, photos: dict[str, bytes]) -> set[str]:
    with ws.reader() as session:
        return set(session.scalars(select(Asset.id).where(Asset.sha256.in_(shas(photos)))))


def copies(ws: Workspace, data: bytes) -> list[str]:
    return [m["sha256"] for m in ws.find(data, by="copy")["matches"]]


def cached_assets(ws: Workspace) -> set[str]:
    rows = ws.hash_cache.read()
    assert rows is not None
    return {a.decode() for a in rows["asset"].tolist()}


def cached_hashes(ws: Workspace) -> set[bytes]:
    rows = ws.hash_cache.read()
    assert rows is not None
    return {h.tobytes() for h in rows["hash"]}


def test_the_cached_matrix_is_the_uncached_one(ws: Workspace) -> None:
    before = uncached(ws)
    assert len(before) == len(PEOPLE) * PER_PERSON * 3  # whole image and two centre crops
    assert not ws.hash_cache.path.exists()
    assert same(cached(ws), before)  # built
    assert ws.hash_cache.path.exists()
    assert same(cached(ws), before)  # read back


def test_a_second_load_decrypts_nothing(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    contexts = opened(monkeypatch, ws)
    first = cached(ws)
    assert len(contexts) == len(first)
    contexts.clear()
    mtime = ws.hash_cache.path.stat().st_mtime_ns
    assert same(cached(ws), first)
    assert contexts == []
    assert ws.hash_cache.path.stat().st_mtime_ns == mtime  # nothing stale: not rewritten


@pytest.mark.parametrize("damage", ["truncated", "one byte flipped", "zeros", "garbage", "empty"])
def test_a_damaged_cache_is_rebuilt_and_the_answer_is_still_right(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    truth = cached(ws)
    path = ws.hash_cache.path
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) - 100]
    elif damage == "one byte flipped":
        data[-50] ^= 1
    elif damage == "zeros":
        data = bytearray(len(data))
    elif damage == "garbage":
        data = bytearray(b"\xff" * 7)
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    assert ws.hash_cache.read() is None
    contexts = opened(monkeypatch, ws)
    assert same(cached(ws), truth)
    assert len(contexts) == len(truth)  # nothing taken from the damaged file
    assert ws.hash_cache.read() is not None  # rewritten whole
    contexts.clear()
    assert same(cached(ws), truth) and contexts == []


def test_a_row_the_catalog_does_not_hold_is_never_used(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached row whose id or run id is not an active row's (an old row, or a row id
    SQLite gave again to a re-analysed photo) is dropped, and the catalog's row decrypted."""
    truth = cached(ws)
    rows = ws.hash_cache.read()
    assert rows is not None
    wrong = rows.copy()
    wrong["run"][0] = b"0" * 32
    wrong["hash"][0] = 0
    extra = wrong[-1:].copy()
    extra["id"] += 1000
    ws.hash_cache.write(np.concatenate([wrong, extra]))
    contexts = opened(monkeypatch, ws)
    assert same(cached(ws), truth)
    assert len(contexts) == 1
    assert ws.hash_cache.read().tobytes() == rows.tobytes()  # type: ignore[union-attr]


def test_the_cache_file_holds_no_hash_in_clear(ws: Workspace) -> None:
    matrix = cached(ws)
    data = ws.hash_cache.path.read_bytes()
    for row in matrix.words:
        h = row.tobytes()
        assert h not in data and h.hex().encode() not in data
    for aid in set(matrix.ids):
        assert aid.encode() not in data
    # and a fresh key each write: the same rows never give the same bytes
    ws.hash_cache.write(ws.hash_cache.read())  # type: ignore[arg-type]
    assert ws.hash_cache.path.read_bytes()[:64] != data[:64]


def test_new_photos_analysed_after_the_cache_was_written_are_found(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached(ws)
    fresh = _write(tmp_path / "more", 7, "Edsger_Dijkstra", 2)
    assert ws.ingest(tmp_path / "more", source="app", subject_from="dirname").ingested == 2
    contexts = opened(monkeypatch, ws)
    ws.analyze(workers=1)  # puts the new rows into the cache, decrypting only them
    assert len(contexts) == 2 * 3
    for data in fresh.values():
        assert hashlib.sha256(data).hexdigest() in copies(ws, data)
    assert len(contexts) == 2 * 3  # the searches decrypted nothing more
    new = asset_ids(ws, fresh)
    assert cached_assets(ws) >= new
    assert same(cached(ws), uncached(ws))


def test_reanalysed_photos_replace_their_cached_rows(ws: Workspace, template: Template) -> None:
    cached(ws)
    ws.analyze(force=True, workers=1)  # new derivative rows, new ids
    with ws.reader() as session:
        live = {r for r in session.scalars(select(AssetDerivative.id).where(AssetDerivative.kind == "phash"))}
    assert same(cached(ws), uncached(ws))
    assert set(ws.hash_cache.read()["id"].tolist()) == live  # type: ignore[index]


def test_erasing_a_subject_takes_their_hashes_out_of_the_cache(ws: Workspace, template: Template) -> None:
    ada = template.photos["Ada_Lovelace"]
    ids = asset_ids(ws, ada)
    theirs = hashes_of(ws, ids)
    assert len(theirs) == PER_PERSON * 3
    cached(ws)
    done = ws.erase("subject", "Ada_Lovelace", reason=REASON)
    assert done["state"] == "completed" and done["verification"]["ok"], done
    assert not cached_assets(ws) & ids
    assert not set(theirs) & cached_hashes(ws)
    assert same(cached(ws), uncached(ws))
    # look-alike search still works, and finds nothing of hers
    for data in template.photos["Alan_Turing"].values():
        assert hashlib.sha256(data).hexdigest() in copies(ws, data)
    for data in ada.values():
        assert not set(copies(ws, data)) & shas(ada)


def test_an_erasure_without_a_cache_makes_none_before_verifying(ws: Workspace, template: Template) -> None:
    ids = asset_ids(ws, template.photos["Ada_Lovelace"])
    ws.erase("subject", "Ada_Lovelace", reason=REASON)
    # the verifier's look-alike search builds it from what is left
    assert not cached_assets(ws) & ids


def test_dropping_assets_is_idempotent_and_nothing_without_a_cache(ws: Workspace, template: Template) -> None:
    ids = asset_ids(ws, template.photos["Grace_Hopper"])
    assert ws.hash_cache.drop_assets(ids) == 0 and not ws.hash_cache.path.exists()
    cached(ws)
    assert ws.hash_cache.drop_assets(ids) == PER_PERSON * 3
    assert ws.hash_cache.drop_assets(ids) == 0
    ws.hash_cache.path.write_bytes(b"\x00" * 300)  # unreadable: wiped, not left behind
    assert ws.hash_cache.drop_assets(ids) == 0 and not ws.hash_cache.path.exists()


def test_destroying_a_subject_key_takes_their_hashes_out_of_the_cache(
    ws: Workspace, template: Template
) -> None:
    ids = asset_ids(ws, template.photos["Grace_Hopper"])
    theirs = set(hashes_of(ws, ids))
    cached(ws)
    ws.destroy_subject_key("Grace_Hopper")
    assert not cached_assets(ws) & ids and not theirs & cached_hashes(ws)
    assert same(cached(ws), uncached(ws))


def test_the_cache_of_another_kek_is_not_trusted(ws: Workspace, tmp_path: Path) -> None:
    cached(ws)
    with Workspace.init(tmp_path / "other", actor="tester") as other:
        foreign = HashCache(ws.hash_cache.path, other.kek)
        assert foreign.read() is None


KILL_AFTER_REMOVE_INDEX = r"""
import os, signal, sys
from disgorge import Workspace
from disgorge.erasure.steps import inject

def killed():
    os.kill(os.getpid(), signal.SIGKILL)  # done, not yet marked done

ws = Workspace.open(sys.argv[1], actor="tester")
with inject("remove_index", after=killed):
    ws.erase("subject", sys.argv[2], reason="test")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses SIGKILL")
def test_a_search_between_remove_index_and_the_deletion_does_not_put_the_hashes_back(
    ws: Workspace, template: Template
) -> None:
    ada = template.photos["Ada_Lovelace"]
    ids = asset_ids(ws, ada)
    theirs = set(hashes_of(ws, ids))
    cached(ws)
    out = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_REMOVE_INDEX, str(ws.root), "Ada_Lovelace"], capture_output=True
    )
    assert out.returncode == -9, out.stderr.decode()
    assert not theirs & cached_hashes(ws)
    # her hashes are still in the catalog (delete_derivatives has not run), yet a search
    # does not find her photos nor write their hashes back into the cache
    for data in ada.values():
        assert not set(copies(ws, data)) & shas(ada)
    assert not theirs & cached_hashes(ws)
    [req] = ws.erasures()
    done = ws.erasure_resume(req["id"])  # runs remove_index again: the same end
    assert done["state"] == "completed" and done["verification"]["ok"], done
    assert not cached_assets(ws) & ids and not theirs & cached_hashes(ws)


def test_ids_that_do_not_fit_the_packed_rows_are_not_cached() -> None:
    assert pack([1], ["a" * 32], [0], ["r" * 32]) is not None
    assert pack([1], ["a" * 33], [0], ["r"]) is None
    assert pack([1], ["ä"], [0], ["r"]) is None
    assert pack([], [], [], []) is not None
