"""Subjects: finding them by external id or ref, creating them with their data key, what
the catalog holds about one, and crypto-shredding one.

A subject is known to the catalog only by a keyed ref (``sub_...``): the external id a
user types is turned into it here (:func:`ref_of`) and never stored.

:mod:`disgorge.consent` and :mod:`disgorge.vision` build on the lookups here, so the two
services below import them inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypedDict

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from ._time import iso
from .catalog import purge_free_space
from .catalog.models import Asset, AssetSubject, ConsentRecord, Subject
from .context import Context, when
from .errors import InvalidInput, NotFound
from .vault import REF_PATTERN, Vault

__all__ = [
    "SubjectAssetView",
    "SubjectConsentView",
    "SubjectView",
    "destroy_subject_key",
    "find_subject",
    "get_or_create_subject",
    "get_or_create_subjects",
    "ref_of",
    "subject_view",
]


class SubjectAssetView(TypedDict):
    sha256: str
    role: str
    state: str


class SubjectConsentView(TypedDict):
    purpose: str
    decision: str
    at: str | None
    policy_version: str | None
    asset: str | None
    evidence: bool


class SubjectView(TypedDict):
    """A subject's ref, state, photos and consent history: no personal data."""

    ref: str
    state: str
    key: str
    created_at: str | None
    assets: list[SubjectAssetView]
    consent: list[SubjectConsentView]
    consent_now: dict[str, str]


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


def subject_view(ctx: Context, subject_id: str) -> SubjectView:
    """A subject's ref, state, assets and consent history (no personal data), with the
    decision now in force for each purpose (``none`` where they gave none)."""
    from .consent import Purpose
    from .consent.records import prevails

    with ctx.reader() as session:
        subject = find_subject(session, ctx.vault, subject_id)
        links = session.execute(
            select(Asset.sha256, AssetSubject.role, Asset.state)
            .join(AssetSubject, AssetSubject.asset_id == Asset.id)
            .where(AssetSubject.subject_id == subject.id)
            .order_by(Asset.ingested_at, Asset.sha256)
        ).all()
        records = session.scalars(
            select(ConsentRecord)
            .where(ConsentRecord.subject_id == subject.id)
            .order_by(ConsentRecord.at, ConsentRecord.id)
        ).all()
        current: dict[str, str] = {}
        current_at: dict[str, datetime] = {}
        for rec in records:  # at one instant the more restrictive decision prevails
            if rec.asset_id is None and prevails(
                rec.decision, rec.at, current.get(rec.purpose), current_at.get(rec.purpose)
            ):
                current[rec.purpose], current_at[rec.purpose] = rec.decision, rec.at
        return {
            "ref": subject.ref,
            "state": subject.state,
            "key": "active" if subject.dek_wrapped is not None else "destroyed",
            "created_at": iso(subject.created_at),
            "assets": [{"sha256": s, "role": r, "state": st} for s, r, st in links],
            "consent": [
                {
                    "purpose": r.purpose,
                    "decision": r.decision,
                    "at": iso(r.at),
                    "policy_version": r.policy_version,
                    "asset": r.asset_id,
                    "evidence": r.evidence_enc is not None,
                }
                for r in records
            ],
            "consent_now": {p.value: current.get(p.value, "none") for p in Purpose},
        }


def destroy_subject_key(ctx: Context, subject_id: str, *, at: str | datetime | None = None) -> str:
    """Crypto-shred a subject: destroy its data key, so nothing sealed under it opens.

    The wrapped key is overwritten in the database (secure_delete) and the WAL and free
    pages are purged. The erasure engine calls this as one of its steps; it does not
    delete catalog rows or blobs by itself. Returns the subject's ref.
    """
    from .vision.index import drop_from_face_index

    instant = when(at)
    with ctx.sessions.begin() as session:
        subject = find_subject(session, ctx.vault, subject_id)
        ctx.vault.shred(subject)
        audit.append(session, "subject.key_destroyed", {"subject": subject.ref}, actor=ctx.actor, at=instant)
        ref = subject.ref
        owned = list(session.scalars(select(Asset.id).where(Asset.owner_id == subject.id)))
    # after the commit, so no search can put them back: the PDQ cache holds the subject's
    # hashes decrypted, under the live KEK, where the destroyed key no longer guards them;
    # the sealed face index their embeddings likewise
    ctx.hash_cache.drop_assets(owned)
    drop_from_face_index(ctx, owned)
    purge_free_space(ctx.engine)
    return ref
