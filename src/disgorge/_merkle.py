"""Merkle roots over sets of hex digests (dataset members, erased items).

Leaves are sorted, so the root depends only on the set. Leaf and node hashes are domain
separated (RFC 6962 style: 0x00 for leaves, 0x01 for nodes) so a node can never pass for a
leaf; an odd node is promoted unchanged. The root of the empty set is sha256(b"").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["merkle_path", "merkle_root", "root_from_path"]


def merkle_root(hex_digests: Iterable[str]) -> str:
    level = [hashlib.sha256(b"\x00" + bytes.fromhex(h)).digest() for h in sorted(set(hex_digests))]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        nxt = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


def merkle_path(hex_digests: Iterable[str], leaf: str) -> list[dict[str, str]] | None:
    """The inclusion proof of ``leaf``: the sibling at each level, bottom up, as
    ``{"left": hex}`` or ``{"right": hex}`` (a level where the node is promoted has none).
    None when ``leaf`` is not in the set."""
    leaves = sorted(set(hex_digests))
    if leaf not in leaves:
        return None
    level = [hashlib.sha256(b"\x00" + bytes.fromhex(h)).digest() for h in leaves]
    index, path = leaves.index(leaf), []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append({"left" if sibling < index else "right": level[sibling].hex()})
        nxt = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level, index = nxt, index // 2
    return path


def root_from_path(leaf: str, path: list[dict[str, str]]) -> str:
    """The root an inclusion proof leads to (compare it with the published root)."""
    node = hashlib.sha256(b"\x00" + bytes.fromhex(leaf)).digest()
    for step in path:
        if "left" in step:
            node = hashlib.sha256(b"\x01" + bytes.fromhex(step["left"]) + node).digest()
        else:
            node = hashlib.sha256(b"\x01" + node + bytes.fromhex(step["right"])).digest()
    return node.hex()
