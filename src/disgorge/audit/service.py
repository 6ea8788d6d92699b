"""The audit log as a service: verify its chain, sign its tree head, prove, list events.

The log itself (:mod:`.log`), its Merkle tree (:mod:`.anchor`) and the tree heads'
format (:mod:`.transparency`) work on a session; these functions add what only an opened
workspace has: its signing key and id, so that a head kept outside the workspace can
later prove that nothing was removed or rewritten (docs/audit.md).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, NotRequired, cast

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import OperationalError
from typing_extensions import TypedDict

from .._time import iso, parse_instant, utcnow
from ..catalog.models import AuditEvent
from ..context import Context
from ..errors import IntegrityError, InvalidInput
from . import anchor
from .log import ChainReport, append
from .log import verify_chain as verify_log
from .transparency import check_tree_head, signed_tree_head
from .violations import ViolationReport, find_violations

__all__ = [
    "AuditEventView",
    "EventsFound",
    "InclusionView",
    "ProofView",
    "TreeHead",
    "TreeHeadBody",
    "checkpoint",
    "events",
    "find_events",
    "prove",
    "verify_chain",
    "violations",
]

_log = logging.getLogger("disgorge")


class TreeHeadBody(TypedDict):
    type: str
    workspace_id: str
    tree_size: int
    root_hash: str
    timestamp: str
    public_key: str


class TreeHead(TypedDict):
    """A signed tree head: Ed25519 over the body's canonical JSON."""

    body: TreeHeadBody
    signature: str
    algorithm: str


class OldHeadView(TypedDict):
    tree_size: int
    root_hash: str
    timestamp: str


class InclusionView(TypedDict):
    seq: int
    leaf_index: int
    event_hash: str
    path: list[str]


#: a head now, with the proofs asked for: what a third party checks offline; ``from`` is
#: the head the consistency proof starts from (a keyword, hence the functional syntax)
ProofView = TypedDict(
    "ProofView",
    {
        "head": TreeHead,
        "from": NotRequired[OldHeadView],
        "consistency": NotRequired[list[str]],
        "inclusion": NotRequired[InclusionView],
    },
)


class AuditEventView(TypedDict):
    seq: int
    at: str | None
    recorded_at: str | None
    action: str
    actor: str
    payload: dict[str, Any]
    hash: str


class EventsFound(TypedDict):
    """Events that match a filter, one page of them (:func:`find_events`)."""

    items: list[AuditEventView]
    #: how many events match in all
    total: int


def _identity(ctx: Context) -> tuple[str, str]:
    return ctx.public_key().public_bytes_raw().hex(), ctx.workspace_id


def _tree_head(ctx: Context, key: str, workspace_id: str, size: int, root: bytes) -> TreeHead:
    head = signed_tree_head(ctx.sign, key, workspace_id, size, root, iso(utcnow()) or "")
    return cast(TreeHead, head)  # built with exactly these keys


def verify_chain(ctx: Context, since: dict[str, Any] | None = None) -> ChainReport:
    """Check the hash chain; with ``since`` (a signed tree head kept outside, e.g. from
    :func:`checkpoint`), also prove that the log extends it (docs/audit.md)."""
    key, workspace_id = _identity(ctx)
    with ctx.reader() as session:
        report = verify_log(session)
        if since is None:
            return report
        return anchor.check_since(session, report, since, public_key_hex=key, workspace_id=workspace_id)


def checkpoint(ctx: Context, *, save_cache: bool = True, audited: bool = False) -> TreeHead:
    """A signed tree head of the audit log as it stands now (docs/audit.md): keep it
    outside the workspace; ``verify_chain(ctx, since=head)`` later proves the log extends it.

    ``save_cache=False`` never writes: the server's answers use it, so that reading a
    request's state never waits for the catalog's write lock (the process keeps its
    own copy of the tree's edge either way). ``audited=True`` records who had the
    workspace sign it (``audit.checkpointed``, after the head: it is not in the tree it signs)."""
    key, workspace_id = _identity(ctx)
    with ctx.reader() as session:
        size, root, to_save = anchor.tree_root(session, cache_key=f"{workspace_id}:{ctx.engine.url}")
    if audited:
        head = _tree_head(ctx, key, workspace_id, size, root)
        with ctx.sessions.begin() as session:
            if to_save is not None:
                anchor.save_frontier(session, to_save)
            record = {"tree_size": size, "root_hash": root.hex()}
            append(session, "audit.checkpointed", record, actor=ctx.actor)
        return head
    if to_save is not None and save_cache:
        try:  # only a cache (audit.anchor): never worth failing for
            with ctx.sessions.begin() as session:
                anchor.save_frontier(session, to_save)
        except OperationalError:
            _log.info("audit frontier not saved (the catalog is busy)")
    return _tree_head(ctx, key, workspace_id, size, root)


def prove(ctx: Context, *, since: dict[str, Any] | None = None, event: int | None = None) -> ProofView:
    """A signed head now, with the consistency proof from ``since`` (a head kept before)
    and/or the inclusion proof of event ``event``: what a third party checks offline."""
    key, workspace_id = _identity(ctx)
    old = None
    if since is not None:
        try:
            old = check_tree_head(since, key)
        except ValueError as exc:
            raise InvalidInput(f"--from: {exc}") from None
    found: dict[str, Any] = {}
    with ctx.reader() as session:
        if old is not None:
            found = anchor.consistency_proof(session, old.tree_size)
            if found["root"] is None:
                raise IntegrityError(
                    f"the log has {found['tree_size']} event(s) where the given head has "
                    f"{old.tree_size}: events were removed (truncation or rollback)"
                )
            size, root = found["tree_size"], found["root"]
        else:
            size, root, _ = anchor.tree_root(session)
        included = anchor.inclusion_proof(session, event) if event is not None else None
    out: ProofView = {"head": _tree_head(ctx, key, workspace_id, size, root)}
    if old is not None:
        then: OldHeadView = {
            "tree_size": old.tree_size,
            "root_hash": old.root.hex(),
            "timestamp": old.timestamp,
        }
        out["from"] = then
        out["consistency"] = [p.hex() for p in found["proof"]]
    if included is not None:
        out["inclusion"] = {
            "seq": included["seq"],
            "leaf_index": included["leaf_index"],
            "event_hash": included["event_hash"],
            "path": [p.hex() for p in included["proof"]],
        }
    return out


def _event_view(e: AuditEvent) -> AuditEventView:
    return {
        "seq": e.seq,
        "at": iso(e.at),
        "recorded_at": iso(e.recorded_at),
        "action": e.action,
        "actor": e.actor,
        "payload": json.loads(e.payload),
        "hash": e.hash,
    }


def events(ctx: Context, *, limit: int = 50, action: str | None = None) -> list[AuditEventView]:
    """The last ``limit`` events (of one ``action``), oldest first."""
    with ctx.reader() as session:
        query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
        if action:
            query = query.where(AuditEvent.action == action)
        rows = list(session.scalars(query))
    return [_event_view(e) for e in reversed(rows)]


def find_events(
    ctx: Context,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> EventsFound:
    """The events of ``action`` by ``actor`` that happened (``at``) at or after ``since``
    and before ``until`` (each filter only if given), oldest first: ``limit`` of them from
    the ``offset``-th, and how many match in all. Filtered, counted and paged by the
    database: a long log is never read whole. Offsets stay valid as the log grows."""
    if limit < 1 or offset < 0:
        raise InvalidInput(f"limit {limit} and offset {offset}: expected limit >= 1 and offset >= 0")
    where: list[ColumnElement[bool]] = []
    if action is not None:
        where.append(AuditEvent.action == action)
    if actor is not None:
        where.append(AuditEvent.actor == actor)
    if since is not None:
        where.append(AuditEvent.at >= parse_instant(since, what="since"))
    if until is not None:
        where.append(AuditEvent.at < parse_instant(until, what="until"))
    with ctx.reader() as session:
        total = session.scalar(select(func.count()).select_from(AuditEvent).where(*where)) or 0
        query = select(AuditEvent).where(*where).order_by(AuditEvent.seq).limit(limit).offset(offset)
        rows = list(session.scalars(query))
    return {"items": [_event_view(e) for e in rows], "total": total}


def violations(ctx: Context, *, as_of: str | datetime | None = None) -> ViolationReport:
    """Every dataset version and run that used items their consent or policy did not cover
    (as known at ``as_of``, by default now: see :mod:`.violations`)."""
    instant = parse_instant(as_of, what="--as-of") if as_of is not None else None
    with ctx.reader() as session:
        return find_violations(session, as_of=instant)
