"""The audit log: append-only, hash-chained, free of personal data.

Each event's hash covers its own fields and the previous event's hash, so editing,
deleting or re-ordering any event breaks the chain from that point on, and
:func:`verify_chain` names the first broken link. The chain head lives in a one-row
table that every append updates inside the writer's transaction: that serialises
concurrent writers on SQLite and PostgreSQL alike.

Payloads hold ids (asset ids, subject refs, source names) and counts only. Callers must
never put external subject ids, file paths or image data in them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from .._canonical import canonical
from .._time import iso, utcnow
from ..catalog.models import AuditEvent, AuditHead

__all__ = ["GENESIS", "ChainReport", "append", "append_many", "event_hash", "iter_events", "verify_chain"]

#: prev_hash of the first event
GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return canonical(value).decode("utf-8")


def event_hash(
    seq: int,
    at: datetime,
    recorded_at: datetime,
    action: str,
    actor: str,
    payload: str,
    prev_hash: str,
) -> str:
    body = canonical_json(
        {
            "seq": seq,
            "at": iso(at),
            "recorded_at": iso(recorded_at),
            "action": action,
            "actor": actor,
            "payload": payload,
            "prev": prev_hash,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def append(
    session: Session,
    action: str,
    payload: dict[str, Any],
    *,
    actor: str,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits with the change it records)."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    recorded = utcnow()
    when = at or recorded
    text = canonical_json(payload)
    seq = head.seq + 1
    digest = event_hash(seq, when, recorded, action, actor, text, head.hash)
    event = AuditEvent(
        seq=seq,
        at=when,
        recorded_at=recorded,
        action=action,
        actor=actor,
        payload=text,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(event)
    head.seq, head.hash = seq, digest
    session.flush()
    return event


def append_many(
    session: Session,
    events: Iterable[tuple[str, dict[str, Any]]],
    *,
    actor: str,
    at: datetime | None = None,
) -> None:
    """Append several ``(action, payload)`` events, in order, in the caller's transaction.

    The chain is the one that as many :func:`append` calls would write (same sequence
    numbers, same links), but the head is read and updated once and the rows go in as one
    bulk INSERT, without ORM objects: this is what the ingest uses for its one event per
    photo. Read the events back with :func:`iter_events` if needed.
    """
    pending = list(events)
    if not pending:
        return
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    seq, prev = head.seq, head.hash
    rows: list[dict[str, Any]] = []
    for action, payload in pending:
        recorded = utcnow()
        when = at or recorded
        text = canonical_json(payload)
        seq += 1
        digest = event_hash(seq, when, recorded, action, actor, text, prev)
        rows.append(
            {
                "seq": seq,
                "at": when,
                "recorded_at": recorded,
                "action": action,
                "actor": actor,
                "payload": text,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    session.execute(insert(AuditEvent), rows)
    head.seq, head.hash = seq, prev
    session.flush()


@dataclass(frozen=True)
class ChainReport:
    """Result of checking the chain: ``ok``, how many events, and the first bad link.

    ``anchor`` is set by ``verify --since`` (:func:`.anchor.check_since`): whether the log
    extends a signed tree head kept outside the workspace, with the consistency proof.
    """

    ok: bool
    events: int
    head: str
    first_bad_seq: int | None = None
    reason: str | None = None
    anchor: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "events": self.events,
            "head": self.head,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
        }
        if self.anchor is not None:
            out["anchor"] = self.anchor
        return out


def iter_events(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify_chain(session: Session) -> ChainReport:
    prev = GENESIS
    expected_seq = 1
    count = 0
    for ev in iter_events(session):
        if ev.seq != expected_seq:
            return ChainReport(False, count, prev, expected_seq, "event missing (gap in sequence)")
        if ev.prev_hash != prev:
            return ChainReport(False, count, prev, ev.seq, "prev_hash does not match the event before")
        digest = event_hash(ev.seq, ev.at, ev.recorded_at, ev.action, ev.actor, ev.payload, ev.prev_hash)
        if digest != ev.hash:
            return ChainReport(False, count, prev, ev.seq, "event content does not match its hash (edited)")
        prev = ev.hash
        expected_seq += 1
        count += 1
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != count or head.hash != prev):
        return ChainReport(
            False, count, prev, count + 1, "chain head names events that are missing (tail removed)"
        )
    return ChainReport(True, count, prev)
