"""The audit log as a Merkle log in the manner of Certificate Transparency (RFC 9162, 2.1).

Why: the hash chain (:mod:`.log`) lives inside the catalog it protects, so whoever can
write the file can cut the tail and roll the head back, or rewrite every row with a
recomputed chain, and the chain still checks. A *signed tree head* taken out of the
workspace (a file a regulator keeps, the head inside every certificate and every answer
to a sender) commits to the first ``n`` events; a *consistency proof* shows that today's
log still begins with exactly those ``n`` events. Truncation, rollback and rewrite all
break it, and the check needs only the old head, the new head, the proof and the public
key (docs/audit.md describes every byte, so it needs no disgorge either).

Leaves: leaf ``i`` (0-based) is the event with ``seq = i + 1``; its input is the 32 raw
bytes of the event's chain hash (which covers every field of the event and the hash of
the one before), so ``leaf = SHA-256(0x00 || event_hash)``; interior nodes are
``SHA-256(0x01 || left || right)``; the tree over ``n`` leaves splits at the largest power
of two below ``n`` (RFC 9162 2.1.1); the empty tree's hash is ``SHA-256("")``.

The proof algorithms are written twice on purpose: :func:`inclusion_ranges` and
:func:`consistency_ranges` name *which* subtrees a proof holds (pure arithmetic on sizes),
and :class:`Frontier` hashes the leaves once, in order, keeping O(log n) hashes, and picks
up those subtrees as it goes, so a proof over millions of events needs no leaf list in
memory. :func:`verify_inclusion` and :func:`verify_consistency` are RFC 9162's
verification algorithms (2.1.3.2 and 2.1.4.2), independent of how the proof was built.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .._canonical import canonical

__all__ = [
    "EMPTY_ROOT",
    "TREE_HEAD_TYPE",
    "Frontier",
    "HeadCheck",
    "check_tree_head",
    "consistency_ranges",
    "inclusion_ranges",
    "leaf_hash",
    "mth",
    "node_hash",
    "signed_tree_head",
    "verify_consistency",
    "verify_inclusion",
    "verify_proof",
]

#: the ``type`` of a signed tree head's body
TREE_HEAD_TYPE = "disgorge.audit-tree-head/1"
#: MTH of the empty log
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]


def leaf_hash(event_hash_hex: str) -> bytes:
    """The leaf of one event: SHA-256(0x00 || the 32 bytes of its chain hash)."""
    return hashlib.sha256(b"\x00" + bytes.fromhex(event_hash_hex)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a list of leaf hashes, straight from the definition."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees ``[a, b)`` of an inclusion proof of leaf ``index`` (RFC 9162 PATH), leaf first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")

    def path(m: int, lo: int, hi: int) -> list[Range]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*path(m, lo, lo + k), (lo + k, hi)]
        return [*path(m - k, lo + k, hi), (lo, lo + k)]

    return path(index, 0, size)


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The subtrees ``[a, b)`` of a consistency proof from ``old_size`` to ``new_size``
    (RFC 9162 PROOF / SUBPROOF). Empty when ``old_size`` is 0 or equal to ``new_size``."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []

    def subproof(m: int, lo: int, hi: int, whole: bool) -> list[Range]:
        n = hi - lo
        if m == n:
            return [] if whole else [(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*subproof(m, lo, lo + k, whole), (lo + k, hi)]
        return [*subproof(m - k, lo + k, hi, False), (lo, lo + k)]

    return subproof(old_size, 0, new_size, True)


@dataclass
class Frontier:
    """The right edge of the tree while leaves stream in: O(log n) subtree hashes.

    ``stack`` holds ``(start, size, hash)`` of the perfect subtrees that cover the leaves
    pushed so far, largest first (the binary digits of ``count``). ``wanted`` subtrees are
    recorded in ``found`` as they complete; a subtree on the right edge of the final tree
    (``[a, count)``) is folded from the stack by :meth:`node`.
    """

    stack: list[tuple[int, int, bytes]] = field(default_factory=list)
    count: int = 0
    wanted: set[Range] = field(default_factory=set)
    found: dict[Range, bytes] = field(default_factory=dict)

    def push(self, leaf: bytes) -> None:
        if not self.wanted:
            self._push_fast(leaf)
            return
        start, size, digest = self.count, 1, leaf
        self.count += 1
        if (start, start + 1) in self.wanted:
            self.found[(start, start + 1)] = digest
        while self.stack and self.stack[-1][1] == size:
            left_start, _, left = self.stack.pop()
            start, size, digest = left_start, size * 2, node_hash(left, digest)
            if (start, start + size) in self.wanted:
                self.found[(start, start + size)] = digest
        self.stack.append((start, size, digest))

    def _push_fast(self, leaf: bytes) -> None:
        # the same as push, for a frontier that records nothing (the common case)
        stack, count, digest, size = self.stack, self.count, leaf, 1
        self.count = count + 1
        while count & 1:  # each trailing 1 bit of the old count is a subtree to merge with
            _, _, left = stack.pop()
            digest = hashlib.sha256(b"\x01" + left + digest).digest()
            size, count = size * 2, count >> 1
        stack.append((self.count - size, size, digest))

    def extend(self, leaves: Iterable[bytes]) -> None:
        push = self._push_fast if not self.wanted else self.push
        for leaf in leaves:
            push(leaf)

    def root(self) -> bytes:
        """MTH of every leaf pushed so far."""
        return self.node((0, self.count))

    def node(self, rng: Range) -> bytes:
        """The hash of subtree ``rng``: recorded when it completed, or on the right edge now."""
        if rng in self.found:
            return self.found[rng]
        start, end = rng
        if start == end == 0:
            return EMPTY_ROOT
        if end != self.count:
            raise ValueError(f"subtree {rng} was not asked for before the leaves went by")
        digest: bytes | None = None
        for s, _, h in reversed(self.stack):
            digest = h if digest is None else node_hash(h, digest)
            if s == start:
                return digest
        raise ValueError(f"{rng} is not a subtree of a tree of {self.count}")

    def copy(self) -> Frontier:
        return Frontier(list(self.stack), self.count)


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` lead from leaf ``index`` to ``root`` of a tree of ``size``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, old_root: bytes, new_size: int, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree of ``new_size`` leaves an extension of the one of ``old_size``?

    Roots are raw 32-byte digests (``bytes.fromhex`` of a head's ``root_hash``). The empty
    tree is extended by every tree (its proof is empty); a tree extends itself only with
    an empty proof and the same root.
    """
    if not 0 <= old_size <= new_size:
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


# -- signed tree heads ------------------------------------------------------------------------
def signed_tree_head(
    sign: Any, public_key_hex: str, workspace_id: str, tree_size: int, root: bytes, timestamp: str
) -> dict[str, Any]:
    """A signed tree head: ``{"body", "signature", "algorithm"}``, Ed25519 over the body's
    canonical JSON (the encoding of certificates and sharing documents)."""
    body = {
        "type": TREE_HEAD_TYPE,
        "workspace_id": workspace_id,
        "tree_size": tree_size,
        "root_hash": root.hex(),
        "timestamp": timestamp,
        "public_key": public_key_hex,
    }
    return {
        "body": body,
        "signature": base64.b64encode(sign(canonical(body))).decode(),
        "algorithm": "Ed25519",
    }


@dataclass(frozen=True)
class HeadCheck:
    """A tree head that passed :func:`check_tree_head`: its size and root (raw bytes)."""

    workspace_id: str
    tree_size: int
    root: bytes
    timestamp: str
    public_key: str


def check_tree_head(doc: Any, public_key_hex: str | None = None) -> HeadCheck:
    """The checked contents of a signed tree head; ``ValueError`` (one line, why) if it is not one.

    With ``public_key_hex``, the head must be signed by that key (compare with the key you
    trust); without it, by the key the head names (which proves only that it is intact).
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("body"), dict):
        raise ValueError("not a signed audit tree head (no body)")
    body = doc["body"]
    if body.get("type") != TREE_HEAD_TYPE:
        raise ValueError(f"not a signed audit tree head (type {body.get('type')!r})")
    if doc.get("algorithm") != "Ed25519":
        raise ValueError(f"unsupported signature algorithm {doc.get('algorithm')!r} (only Ed25519)")
    size, root_hex, key_hex = body.get("tree_size"), body.get("root_hash"), body.get("public_key")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("the tree head's tree_size is not a count")
    if not isinstance(root_hex, str) or len(root_hex) != 64 or root_hex != root_hex.lower():
        raise ValueError("the tree head's root_hash is not 64 lowercase hex digits")
    if not isinstance(key_hex, str) or not isinstance(doc.get("signature"), str):
        raise ValueError("the tree head has no signature or names no public key")
    if public_key_hex is not None and key_hex.lower() != public_key_hex.lower():
        raise ValueError("the tree head is signed by another key than this workspace's")
    try:
        root = bytes.fromhex(root_hex)
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
        key.verify(base64.b64decode(doc["signature"], validate=True), canonical(body))
    except (ValueError, InvalidSignature):
        raise ValueError(
            "the tree head's signature does not match: it was altered or signed by another key"
        ) from None
    return HeadCheck(str(body.get("workspace_id")), size, root, str(body.get("timestamp")), key_hex)


def verify_proof(old_head: Any, proof_doc: Any, public_key_hex: str) -> HeadCheck:
    """Check a consistency proof document (``disgorge audit prove``) against a head you kept.

    Both heads must be signed by ``public_key_hex``, belong to the same workspace, and the
    proof must show that the new head's log extends the old one. Returns the new head;
    ``ValueError`` saying why not.
    """
    old = check_tree_head(old_head, public_key_hex)
    if not isinstance(proof_doc, dict):
        raise ValueError("not a consistency proof document")
    new = check_tree_head(proof_doc.get("head"), public_key_hex)
    if new.workspace_id != old.workspace_id:
        raise ValueError("the two tree heads are of different workspaces")
    hexes = proof_doc.get("consistency")
    if not isinstance(hexes, list) or not all(isinstance(h, str) and len(h) == 64 for h in hexes):
        raise ValueError("the consistency proof is not a list of 64-digit hex hashes")
    try:
        proof = [bytes.fromhex(h) for h in hexes]
    except ValueError:
        raise ValueError("the consistency proof is not a list of 64-digit hex hashes") from None
    if new.tree_size < old.tree_size:
        raise ValueError(
            f"the log has {new.tree_size} event(s) where the kept head signed {old.tree_size}: "
            "events were removed (truncation or rollback)"
        )
    if not verify_consistency(old.tree_size, old.root, new.tree_size, new.root, proof):
        raise ValueError(
            f"the log of {new.tree_size} event(s) does not extend the kept head of {old.tree_size}: "
            "the consistency proof fails (the log was rewritten or forked)"
        )
    return new
