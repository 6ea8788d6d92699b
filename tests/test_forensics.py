"""The forensic scanner finds every needle wherever it lies, including across chunk edges."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from disgorge.erasure import forensics
from disgorge.erasure.forensics import scan_tree_in_process as scan_tree  # no catalog here


def test_finds_needles_in_every_file_and_across_chunk_boundaries(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(forensics, "_CHUNK", 4096)  # many chunk edges in a small file
    needles = {f"n{i}": os.urandom(48) for i in range(50)}
    needles["short"] = b"\x00Z"
    blob = bytearray(os.urandom(50_000))
    blob[4096 - 20 : 4096 + 28] = needles["n1"]  # straddles the first chunk edge
    blob[0:48] = needles["n2"]
    blob[-48:] = needles["n3"]
    blob[30_000:30_002] = needles["short"]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "blob.bin").write_bytes(bytes(blob))
    (tmp_path / "wal").write_bytes(b"header" + needles["n4"] + b"trailer")
    clean = os.urandom(10_000)
    while needles["short"] in clean:  # a 2-byte needle turns up in random bytes by chance
        clean = clean.replace(needles["short"], b"\x01Z")
    (tmp_path / "clean").write_bytes(clean)
    hits = {(h.label, h.file, h.offset) for h in scan_tree(tmp_path, needles)}
    assert ("n1", "a/blob.bin", 4096 - 20) in hits
    assert ("n2", "a/blob.bin", 0) in hits
    assert ("n3", "a/blob.bin", 50_000 - 48) in hits
    assert ("n4", "wal", 6) in hits
    assert ("short", "a/blob.bin", blob.find(needles["short"])) in hits
    assert not any(f == "clean" for _, f, _ in hits)


@settings(max_examples=60, deadline=None)
@given(
    st.binary(min_size=0, max_size=3000), st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=8)
)
def test_agrees_with_bytes_find(haystack: bytes, needles: list[bytes]) -> None:
    """Property: for any bytes and needles, the scan reports exactly what bytes.find does."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "f").write_bytes(haystack)
        labelled = {str(i): n for i, n in enumerate(needles)}
        got = {h.label: h.offset for h in scan_tree(root, labelled)}
    expected = {str(i): haystack.find(n) for i, n in enumerate(needles) if haystack.find(n) >= 0}
    assert got == expected


def test_many_needles_sharing_long_prefixes_are_told_apart(tmp_path: Path, monkeypatch) -> None:
    """Thousands of needles alike in all but their last bytes (the index keys only a prefix of
    each gram), more of them than the index holds at full step (so the step shrinks): every
    hit is exact and none is missed."""
    import random

    monkeypatch.setattr(forensics, "_MAX_ENTRIES", 1 << 12)  # 3,000 needles: step 1, not 41
    monkeypatch.setattr(forensics, "_CHUNK", 1 << 16)
    rng = random.Random(5)
    common = os.urandom(40)
    needles = {f"n{i}": common + rng.randbytes(8) for i in range(3000)}
    data = bytearray(os.urandom(400_000))
    slots = rng.sample(range(0, len(data) - 48, 64), 500)  # 64 bytes apart: no overlaps
    placed = {}
    for label, at in zip(rng.sample(sorted(needles), 300), slots[:300], strict=True):
        data[at : at + 48] = needles[label]
        placed[label] = at
    for at in slots[300:]:  # near misses: the common part with a tail no needle has
        data[at : at + 48] = common + b"\xff" * 8
    (tmp_path / "f").write_bytes(bytes(data))
    got = {h.label: h.offset for h in scan_tree(tmp_path, needles)}
    expected = {k: bytes(data).find(n) for k, n in needles.items() if bytes(data).find(n) >= 0}
    assert got == expected and placed.items() <= got.items()
