"""Subjects: finding them by external id or ref, and creating them with their data key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .catalog.models import Subject
from .errors import InvalidInput, NotFound
from .vault import REF_PATTERN, Vault

__all__ = ["find_subject", "get_or_create_subject", "ref_of"]


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
