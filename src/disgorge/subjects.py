"""Subjects: finding them by external id or ref, and creating them with their data key."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .catalog.models import Subject
from .errors import InvalidInput, NotFound
from .vault import REF_PATTERN, Vault

__all__ = ["find_subject", "get_or_create_subject", "get_or_create_subjects", "ref_of"]


def ref_of(vault: Vault, subject_id: str) -> str:
    """The ref for what a user typed: a ref as it is, anything else as an external id."""
    text = subject_id.strip()
    if not text:
        raise InvalidInput("subject id is empty")
    if REF_PATTERN.match(text):
        return text
    return vault.ref(text)


def find_subject(session: Session, vault: Vault, subject_id: str) -> Subject:
    ref = ref_of(vault, subject_id)
    subject = session.scalar(select(Subject).where(Subject.ref == ref))
    if subject is None:
        raise NotFound(f"no subject {ref} in this workspace")
    return subject


def get_or_create_subject(
    session: Session, vault: Vault, ref: str, *, at: datetime, actor: str
) -> tuple[Subject, bool]:
    """Return the subject with ``ref``, creating it (and its data key) if new."""
    subject = session.scalar(select(Subject).where(Subject.ref == ref))
    if subject is not None:
        return subject, False
    subject = Subject(ref=ref, dek_wrapped=vault.new_wrapped_dek(ref), state="active", created_at=at)
    session.add(subject)
    session.flush()
    audit.append(session, "subject.created", {"subject": ref}, actor=actor, at=at)
    return subject, True


def get_or_create_subjects(
    session: Session, vault: Vault, refs: Sequence[str], *, at: datetime, actor: str
) -> list[tuple[Subject, bool]]:
    """:func:`get_or_create_subject` for many refs, in order, with one query and one flush.

    The catalog ends up as if each ref had been passed to :func:`get_or_create_subject`
    in turn (same rows, same ``subject.created`` events in the same order); a ref that
    appears twice is created once.
    """
    wanted = list(dict.fromkeys(refs))
    found: dict[str, Subject] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found.update((s.ref, s) for s in session.scalars(select(Subject).where(Subject.ref.in_(chunk))))
    fresh = [
        Subject(ref=ref, dek_wrapped=vault.new_wrapped_dek(ref), state="active", created_at=at)
        for ref in wanted
        if ref not in found
    ]
    if fresh:
        session.add_all(fresh)
        session.flush()
        events = [("subject.created", {"subject": s.ref}) for s in fresh]
        audit.append_many(session, events, actor=actor, at=at)
    created = {s.ref for s in fresh}
    found.update((s.ref, s) for s in fresh)
    return [(found[ref], ref in created and first) for ref, first in _first_seen(refs)]


def _first_seen(refs: Sequence[str]) -> list[tuple[str, bool]]:
    seen: set[str] = set()
    out = []
    for ref in refs:
        out.append((ref, ref not in seen))
        seen.add(ref)
    return out
