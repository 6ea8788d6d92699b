"""The workspace side of the transparency log: tree heads, proofs and ``verify --since``.

:mod:`.transparency` holds the hashing and the proofs as pure functions; this module reads
the leaves (the ``hash`` column of ``audit_events`` in ``seq`` order, one streaming pass,
O(log n) memory) inside the caller's read session, so the size, root and proof it returns
describe one snapshot of the log. No table is added: the tree is recomputed from the
events. For the heads that certificates and answers carry (many per process in a server),
a per-process frontier (the right edge of the tree, O(log n) hashes) is kept and extended
by the new events only, after checking that the event it ended on is still there
unchanged; :func:`check_since`, the one that judges tampering, never uses it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..catalog.models import AuditEvent
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

__all__ = ["check_since", "consistency_proof", "inclusion_proof", "tree_root"]

_BATCH = 20_000
_FRONTIERS: dict[str, tuple[Frontier, str]] = {}
_LOCK = threading.Lock()


def _size(session: Session) -> int:
    return session.scalar(select(func.max(AuditEvent.seq))) or 0


def _leaves(session: Session, after: int, upto: int) -> Iterator[bytes]:
    """Leaf hashes of events ``after+1 .. upto``; IntegrityError on a gap in ``seq``."""
    expected = after + 1
    while expected <= upto:
        rows = session.execute(
            select(AuditEvent.seq, AuditEvent.hash)
            .where(AuditEvent.seq >= expected, AuditEvent.seq <= upto)
            .order_by(AuditEvent.seq)
            .limit(_BATCH)
        ).all()
        for seq, digest in rows:
            if seq != expected:
                raise IntegrityError(f"audit event {expected} is missing; run `disgorge audit verify`")
            yield leaf_hash(digest)
            expected += 1
        if not rows:
            raise IntegrityError(f"audit event {expected} is missing; run `disgorge audit verify`")


def tree_root(session: Session, cache_key: str | None = None) -> tuple[int, bytes]:
    """``(tree_size, root)`` of the log as this session sees it.

    With ``cache_key`` (one per workspace and catalog), the frontier left by the last call
    in this process is extended instead of re-reading every event.
    """
    size = _size(session)
    frontier = Frontier()
    if cache_key is not None:
        with _LOCK:
            cached = _FRONTIERS.get(cache_key)
        if cached is not None and 0 < cached[0].count <= size:
            still = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == cached[0].count))
            if still == cached[1]:
                frontier = cached[0].copy()
    frontier.extend(_leaves(session, frontier.count, size))
    if cache_key is not None and size:
        last = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == size))
        with _LOCK:
            _FRONTIERS[cache_key] = (frontier.copy(), str(last))
    return size, frontier.root()


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
