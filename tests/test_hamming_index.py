"""The multi-index-hashing PDQ index answers exactly what the linear scan answers, and
deletes without a trace (disgorge.vision.hamming, HashMatrix.indexed/remove)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from disgorge import Workspace
from disgorge.catalog.models import Asset
from disgorge.samples import synthetic_photo
from disgorge.vision import blocklist, hamming
from disgorge.vision.hamming import MAX_RADIUS, HammingIndex
from disgorge.vision.phash import HashMatrix


def _flip(h: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    """``h`` (4 uint64 words) with exactly ``bits`` distinct bits flipped."""
    out = h.copy()
    for b in rng.choice(256, size=bits, replace=False):
        out[b // 64] ^= np.uint64(1) << np.uint64(b % 64)
    return out


def _world(seed: int, n: int = 20_000, queries: int = 12) -> tuple[HashMatrix, list[list[bytes]]]:
    """``n`` random hashes, plus, for each of ``queries`` query sets of 8 (dihedral-like)
    hashes, stored hashes at every distance 0..MAX_RADIUS+2 of one of its hashes (exactly
    at the radius and one past it included), and some duplicated rows."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64)
    sets = []
    row = 0
    for _ in range(queries):
        qs = rng.integers(0, 2**64, size=(8, 4), dtype=np.uint64)
        for d in range(MAX_RADIUS + 3):
            words[row] = _flip(qs[rng.integers(8)], d, rng)
            row += 1
        words[row] = words[row - 5]  # the same hash twice, under two ids
        row += 1
        sets.append([q.tobytes() for q in qs])
    ids = [f"a{i // 2}" for i in range(n)]  # two rows per asset id, as crops would be
    return HashMatrix(words, ids), sets


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_index_answers_exactly_the_linear_scan_at_every_radius(seed: int) -> None:
    matrix, sets = _world(seed)
    linear = HashMatrix(matrix.words.copy(), list(matrix.ids))
    indexed = matrix.indexed(min_rows=0)
    assert indexed.index is not None
    for qs in sets:
        for radius in range(MAX_RADIUS + 1):
            expected = linear.search(qs, radius)
            assert indexed.search(qs, radius) == expected
        for one in qs:  # a single hash, as the blocklist asks
            assert indexed.search([one], MAX_RADIUS) == linear.search([one], MAX_RADIUS)


def test_pairs_at_the_radius_and_one_past_it() -> None:
    rng = np.random.default_rng(7)
    words = rng.integers(0, 2**64, size=(5_000, 4), dtype=np.uint64)
    q = rng.integers(0, 2**64, size=(1, 4), dtype=np.uint64)
    for radius in range(MAX_RADIUS + 1):
        words[2 * radius] = _flip(q[0], radius, rng)
        words[2 * radius + 1] = _flip(q[0], radius + 1, rng)
    index = HammingIndex(np.asfortranarray(words))
    for radius in range(MAX_RADIUS + 1):
        _, rows, dist = index.search(q, radius)
        got = dict(zip(rows.tolist(), dist.tolist(), strict=True))
        assert got[2 * radius] == radius
        assert 2 * radius + 1 not in got
        want = np.flatnonzero(np.bitwise_count(words ^ q).sum(axis=1) <= radius)
        assert sorted(got) == want.tolist()


def test_eight_dihedral_variants_find_a_copy_near_any_one_of_them() -> None:
    rng = np.random.default_rng(11)
    words = rng.integers(0, 2**64, size=(30_000, 4), dtype=np.uint64)
    variants = rng.integers(0, 2**64, size=(8, 4), dtype=np.uint64)
    for v in range(8):  # a mirrored/rotated copy: near variant v only
        words[1000 * v] = _flip(variants[v], 3 * v + 1, rng)
    ids = [f"p{i}" for i in range(len(words))]
    linear = HashMatrix(words.copy(), ids)
    indexed = HashMatrix(words.copy(), list(ids)).indexed(min_rows=0)
    queries = [v.tobytes() for v in variants]
    got = indexed.search(queries, 31)
    assert got == linear.search(queries, 31)
    assert got == [(f"p{1000 * v}", 3 * v + 1) for v in range(8)]
    for v in range(8):  # one variant alone finds only its own copy
        assert indexed.search([queries[v]], 31) == [(f"p{1000 * v}", 3 * v + 1)]


def test_beyond_the_index_radius_the_scan_answers() -> None:
    matrix, sets = _world(5, n=4_000, queries=2)
    linear = HashMatrix(matrix.words.copy(), list(matrix.ids))
    matrix.indexed(min_rows=0)
    for radius in (MAX_RADIUS + 1, 48, 64):
        assert matrix.search(sets[0], radius) == linear.search(sets[0], radius)
    with pytest.raises(ValueError):
        assert matrix.index is not None
        matrix.index.search(np.zeros((1, 4), dtype=np.uint64), MAX_RADIUS + 1)


def test_small_matrices_are_not_indexed() -> None:
    matrix, _ = _world(6, n=2_000, queries=1)
    assert matrix.indexed().index is None  # below MIN_ROWS the scan is as fast
    assert matrix.indexed(min_rows=0).index is not None


def test_a_removed_hash_is_never_returned_and_leaves_no_trace() -> None:
    matrix, sets = _world(8, n=10_000, queries=6)
    matrix.indexed(min_rows=0)
    old_words = matrix.words
    found = {aid for qs in sets for aid, _ in matrix.search(qs, MAX_RADIUS)}
    gone = set(sorted(found)[::2]) | {"a100", "a4999"}
    removed_rows = [i for i, aid in enumerate(matrix.ids) if aid in gone]
    kept = [i for i, aid in enumerate(matrix.ids) if aid not in gone]
    survivors = old_words[kept].copy()
    assert matrix.remove(gone) == len(removed_rows)
    # the removed rows' bits are zeroed in the old array and absent from the new one
    assert not old_words[removed_rows].any()
    assert np.array_equal(matrix.words, survivors)
    assert matrix.ids == [aid for aid in [f"a{i // 2}" for i in range(10_000)] if aid not in gone]
    # the index is byte for byte a fresh build over what remains: no bucket, no hole
    fresh = HammingIndex(np.asfortranarray(survivors))
    assert matrix.index is not None
    assert np.array_equal(matrix.index.rows, fresh.rows)
    assert np.array_equal(matrix.index.offsets, fresh.offsets)
    linear = HashMatrix(survivors, list(matrix.ids))
    for qs in sets:
        for radius in (0, 10, 31):
            got = matrix.search(qs, radius)
            assert got == linear.search(qs, radius)
            assert not {aid for aid, _ in got} & gone
    assert matrix.remove({"no-such-id"}) == 0


def test_removal_without_an_index_and_wipe() -> None:
    matrix, sets = _world(9, n=3_000, queries=2)
    old = matrix.words
    target = matrix.search(sets[0], 31)[0][0]
    rows = [i for i, aid in enumerate(matrix.ids) if aid == target]
    assert matrix.remove({target}) == len(rows)
    assert not old[rows].any()
    assert target not in {aid for aid, _ in matrix.search(sets[0], 64)}
    words = matrix.words
    matrix.indexed(min_rows=0)
    matrix.wipe()
    assert not words.any() and matrix.index is not None and not matrix.index.offsets.any()
    assert matrix.search(sets[0], 31) == [] and matrix.search(sets[0], 64) == []


def test_empty_and_single_row() -> None:
    empty = HashMatrix.from_hashes([]).indexed(min_rows=0)
    assert empty.search([bytes(32)], 31) == []
    one = HashMatrix.from_hashes([("x", bytes(32))]).indexed(min_rows=0)
    assert one.search([bytes(31) + b"\x01"], 31) == [("x", 1)]
    assert one.remove({"x"}) == 1 and one.search([bytes(32)], 31) == []


# -- through a real workspace: find --by copy, an erasure, the sticky blocklist ----------------

PEOPLE = ["Ada_Lovelace", "Alan_Turing"]
REASON = "GDPR Art. 17 request 2024-117"


@pytest.fixture
def ws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Workspace, dict[str, dict[str, bytes]]]]:
    """A real workspace (SQLite, sealed blobs) of drawn portraits, analysed; the index
    threshold set to 0 so its few hashes are indexed as 100,000 would be."""
    monkeypatch.setattr(hamming, "MIN_ROWS", 0)
    photos: dict[str, dict[str, bytes]] = {}
    for p, name in enumerate(PEOPLE):
        (tmp_path / "photos" / name).mkdir(parents=True)
        photos[name] = {}
        for i in range(2):
            photos[name][f"{i}.jpg"] = data = synthetic_photo(p, i, size=160)
            (tmp_path / "photos" / name / f"{i}.jpg").write_bytes(data)
    with Workspace.init(tmp_path / "ws", actor="tester", at="2013-01-01") as workspace:
        workspace.add_source("app", at="2013-01-01")
        workspace.ingest(tmp_path / "photos", source="app", subject_from="dirname", at="2013-02-01")
        assert workspace.analyze(workers=1, at="2013-03-01").analyzed == 4
        yield workspace, photos


def _shas(photos: dict[str, bytes]) -> set[str]:
    return {hashlib.sha256(d).hexdigest() for d in photos.values()}


def test_find_by_copy_answers_through_the_index_and_an_erasure_leaves_nothing(
    ws: tuple[Workspace, dict[str, dict[str, bytes]]],
) -> None:
    workspace, photos = ws
    ada = next(iter(photos["Ada_Lovelace"].values()))
    first = workspace.find(ada, by="copy")  # a fresh load: scanned
    cache = workspace.hash_cache
    assert cache.held(cache.stamp()) is not None
    second = workspace.find(ada, by="copy")  # the same hashes again: through the index
    held = cache.held(cache.stamp())
    assert held is not None and held.index is not None
    assert second == first and hashlib.sha256(ada).hexdigest() in {m["sha256"] for m in second["matches"]}
    linear = HashMatrix(held.words.copy(), list(held.ids))
    for data in (d for person in photos.values() for d in person.values()):
        queries = [held.words[0].tobytes(), bytes(32), data[:32].ljust(32, b"\0")]
        assert held.search(queries, 31) == linear.search(queries, 31)
    with workspace.reader() as session:
        her_ids = set(
            session.scalars(select(Asset.id).where(Asset.sha256.in_(_shas(photos["Ada_Lovelace"]))))
        )
    hers = {held.words[i].tobytes() for i, aid in enumerate(held.ids) if aid in her_ids}
    assert len(hers) == 2 * 3  # 2 photos: the whole image and two centre crops each
    done = workspace.erase("subject", "Ada_Lovelace", reason=REASON)
    assert done is not None and done["state"] == "completed" and done["verification"]["ok"], done
    # the matrix this process held is zeroed, index and all, and finds nothing
    assert not held.words.any() and not held.index.offsets.any() and not held.index.rows.any()
    assert held.search(queries, 64) == []
    # and the next searches, indexed again, never return her photos
    for _ in range(2):
        for data in photos["Ada_Lovelace"].values():
            assert not {m["sha256"] for m in workspace.find(data, by="copy")["matches"]} & _shas(
                photos["Ada_Lovelace"]
            )
    alan = next(iter(photos["Alan_Turing"].values()))
    assert hashlib.sha256(alan).hexdigest() in {
        m["sha256"] for m in workspace.find(alan, by="copy")["matches"]
    }
    again = cache.held(cache.stamp())
    assert again is not None and again.index is not None and len(again) == 2 * 3
    # nothing of hers in the new matrix, its index (a fresh build) or the sealed cache file
    assert not hers & {again.words[i].tobytes() for i in range(len(again))} and not her_ids & set(again.ids)
    fresh = HammingIndex(again.words)
    assert np.array_equal(again.index.rows, fresh.rows) and np.array_equal(again.index.offsets, fresh.offsets)
    on_disk = cache.read()
    assert on_disk is not None and not hers & {h.tobytes() for h in on_disk["hash"]}


def test_the_sticky_blocklist_refuses_through_the_index(
    ws: tuple[Workspace, dict[str, dict[str, bytes]]],
) -> None:
    workspace, photos = ws
    workspace.set_setting("sticky_copies", 1)
    workspace.erase("subject", "Alan_Turing", reason=REASON)
    with workspace.ctx.reader() as session:
        kept = blocklist.load(session, workspace.ctx.kek)
    assert kept.photos == 2 and kept.matrix.index is not None
    linear = HashMatrix(kept.matrix.words.copy(), list(kept.matrix.ids))
    for person in photos.values():
        for data in person.values():
            query = blocklist.query_hash(data)
            assert query is not None
            assert kept.matrix.search([query], 31) == linear.search([query], 31)
    for data in photos["Alan_Turing"].values():
        assert kept.refusal(data) is not None
    for data in photos["Ada_Lovelace"].values():
        assert kept.refusal(data) is None
