"""Merkle roots over sets of hex digests (dataset members, erased items).

Leaves are sorted, so the root depends only on the set. Leaf and node hashes are domain
separated (RFC 6962 style: 0x00 for leaves, 0x01 for nodes) so a node can never pass for a
leaf; an odd node is promoted unchanged. The root of the empty set is sha256(b"").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["merkle_root"]


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
