"""The workspace side of the transparency log: tree heads, proofs and ``verify --since``.

:mod:`.transparency` holds the hashing and the proofs as pure functions; this module reads
the leaves (the ``hash`` column of ``audit_events`` in ``seq`` order, one streaming pass,
O(log n) memory) inside the caller's read session, so the size, root and proof it returns
describe one snapshot of the log. No table is added: the tree is recomputed from the
events. For the heads that certificates and answers carry (many per process in a server,
one per erasure in a CLI process), the frontier (the right edge of the tree, O(log n)
hashes) is kept, in this process and in the ``meta`` row ``audit_frontier``, and extended
by the new events only, after checking that the event it ended on is still there
unchanged. It is a cache, not evidence: :func:`check_since`, the one that judges
tampering, always recomputes from the events.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..catalog.models import AuditEvent, Meta
from ..errors import IntegrityError, InvalidInput
from .log import ChainReport
from .transparency import (
    EMPTY_ROOT,
    Frontier,
    check_tree_head,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    verify_consistency,
)

__all__ = ["check_since", "consistency_proof", "inclusion_proof", "save_frontier", "tree_root"]

#: the stored frontier is rewritten once it is this many events behind (a small write)
SAVE_EVERY = 10_000
FRONTIER_KEY = "audit_frontier"
_FRONTIERS: dict[str, tuple[Frontier, str]] = {}
_LOCK = threading.Lock()


def _size(session: Session) -> int:
    return session.scalar(select(func.max(AuditEvent.seq))) or 0


def _leaves(session: Session, after: int, upto: int) -> Iterator[bytes]:
    """Leaf hashes of events ``after+1 .. upto``, one streamed query; IntegrityError on a gap."""
    expected = after + 1
    if expected > upto:
        return
    rows = session.execute(
        select(AuditEvent.seq, AuditEvent.hash)
        .where(AuditEvent.seq > after, AuditEvent.seq <= upto)
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=50_000)
    )
    for seq, digest in rows:
        if seq != expected:
            break
        yield leaf_hash(digest)
        expected += 1
    if expected <= upto:
        raise IntegrityError(f"audit event {expected} is missing; run `disgorge audit verify`")


def _encode(frontier: Frontier, last: str) -> bytes:
    stack = [[start, size, digest.hex()] for start, size, digest in frontier.stack]
    return json.dumps({"count": frontier.count, "last": last, "stack": stack}).encode()


def _decode(value: bytes) -> tuple[Frontier, str] | None:
    try:
        doc = json.loads(value)
        stack = [(int(a), int(b), bytes.fromhex(h)) for a, b, h in doc["stack"]]
        frontier = Frontier(stack, int(doc["count"]))
        return frontier, str(doc["last"])
    except (ValueError, KeyError, TypeError):
        return None  # a damaged cache is recomputed


def _usable(session: Session, cached: tuple[Frontier, str] | None, size: int) -> Frontier | None:
    if cached is None or not 0 < cached[0].count <= size:
        return None
    still = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == cached[0].count))
    return cached[0].copy() if still == cached[1] else None


def tree_root(session: Session, cache_key: str | None = None) -> tuple[int, bytes, bytes | None]:
    """``(tree_size, root, to_save)`` of the log as this session sees it.

    With ``cache_key`` (one per workspace and catalog), the frontier left by the last call
    in this process, or else the one stored in ``meta``, is extended instead of reading
    every event; ``to_save`` is a new value for the stored one when it is far behind
    (:func:`save_frontier`), else None.
    """
    size = _size(session)
    frontier: Frontier | None = None
    stored_count = 0
    if cache_key is not None:
        with _LOCK:
            frontier = _usable(session, _FRONTIERS.get(cache_key), size)
        row = session.get(Meta, FRONTIER_KEY)
        stored = _decode(row.value) if row is not None else None
        stored_count = stored[0].count if stored is not None else 0
        if frontier is None:
            frontier = _usable(session, stored, size)
    frontier = frontier or Frontier()
    frontier.extend(_leaves(session, frontier.count, size))
    to_save = None
    if cache_key is not None and size:
        last = str(session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == size)))
        with _LOCK:
            _FRONTIERS[cache_key] = (frontier.copy(), last)
        if size - stored_count >= SAVE_EVERY:
            to_save = _encode(frontier, last)
    return size, frontier.root(), to_save


def save_frontier(session: Session, value: bytes) -> None:
    """Store a frontier from :func:`tree_root` (in a write transaction of its own)."""
    row = session.get(Meta, FRONTIER_KEY)
    if row is None:
        session.add(Meta(key=FRONTIER_KEY, value=value))
    else:
        row.value = value


def consistency_proof(session: Session, old_size: int) -> dict[str, Any]:
    """The current size and root, the root of the first ``old_size`` events, and the
    consistency proof between them (hex). ``old_root`` is None when the log is shorter."""
    size = _size(session)
    if old_size > size:
        return {"tree_size": size, "root": None, "old_root": None, "proof": None}
    ranges = consistency_ranges(old_size, size)
    frontier = Frontier(wanted=set(ranges))
    old_root = EMPTY_ROOT if old_size == 0 else None
    for leaf in _leaves(session, 0, size):
        frontier.push(leaf)
        if frontier.count == old_size:
            old_root = frontier.root()
    return {
        "tree_size": size,
        "root": frontier.root(),
        "old_root": old_root,
        "proof": [frontier.node(r) for r in ranges],
    }


def inclusion_proof(session: Session, seq: int) -> dict[str, Any]:
    """The inclusion proof of event ``seq`` in the current tree: its chain hash, leaf index,
    the sibling hashes (leaf first) and the root they lead to."""
    size = _size(session)
    if not 1 <= seq <= size:
        raise InvalidInput(f"there is no audit event {seq} (the log has {size})")
    ranges = inclusion_ranges(seq - 1, size)
    frontier = Frontier(wanted=set(ranges))
    frontier.extend(_leaves(session, 0, size))
    event_hash = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == seq))
    return {
        "seq": seq,
        "leaf_index": seq - 1,
        "event_hash": event_hash,
        "tree_size": size,
        "root": frontier.root(),
        "proof": [frontier.node(r) for r in ranges],
    }


def check_since(
    session: Session, chain: ChainReport, head: Any, *, public_key_hex: str, workspace_id: str
) -> ChainReport:
    """Does the log, as this session sees it, extend the signed ``head``?

    Checks the head's signature against this workspace's key, then recomputes the tree
    from the events and checks the consistency proof from the head's size to today's.
    Returns ``chain`` with an ``anchor`` section; not ok if either part fails.
    """
    try:
        old = check_tree_head(head, public_key_hex)
    except ValueError as exc:
        raise InvalidInput(f"--since: {exc}") from None
    if old.workspace_id != workspace_id:
        raise InvalidInput("--since: the tree head is of another workspace")
    anchor: dict[str, Any] = {
        "ok": False,
        "since": {"tree_size": old.tree_size, "root_hash": old.root.hex(), "timestamp": old.timestamp},
        "tree_size": None,
        "root_hash": None,
        "consistency": None,
        "reason": None,
    }
    first_bad: int | None = None
    try:
        found = consistency_proof(session, old.tree_size)
    except IntegrityError as exc:
        anchor["reason"] = f"the tree cannot be computed: {exc}"
    else:
        size = found["tree_size"]
        anchor["tree_size"] = size
        if found["root"] is None:
            first_bad = size + 1
            anchor["reason"] = (
                f"the log has {size} event(s) where the signed head of {old.timestamp} has "
                f"{old.tree_size}: events were removed (truncation or rollback)"
            )
        else:
            proof = found["proof"]
            anchor["root_hash"] = found["root"].hex()
            anchor["consistency"] = [p.hex() for p in proof]
            if found["old_root"] != old.root:
                anchor["reason"] = (
                    f"the log's first {old.tree_size} event(s) no longer hash to the root signed on "
                    f"{old.timestamp}: the log was rewritten (or rolled back and appended to)"
                )
            elif not verify_consistency(old.tree_size, old.root, size, found["root"], proof):
                anchor["reason"] = "the consistency proof from the signed head does not verify"
            else:
                anchor["ok"] = True
    if chain.ok and not anchor["ok"]:
        return ChainReport(False, chain.events, chain.head, first_bad, anchor["reason"], anchor)
    return ChainReport(chain.ok, chain.events, chain.head, chain.first_bad_seq, chain.reason, anchor)
