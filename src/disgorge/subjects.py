"""Subjects: finding them by external id or ref, creating them with their data key, and
crypto-shredding one.

A subject is known to the catalog only by a keyed ref (``sub_...``): the external id a
user types is turned into it here (:func:`ref_of`) and never stored. What the catalog
holds about a subject, consent included, is :func:`disgorge.consent.service.subject_view`
(consent builds on the lookups here).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .catalog import purge_free_space
from .catalog.models import Asset, Subject
from .context import Context, when
from .errors import ErasureBlocked, InvalidInput, NotFound
from .holds import held_assets
from .vault import REF_PATTERN, Vault

__all__ = [
    "destroy_subject_key",
    "find_subject",
    "get_or_create_subject",
    "get_or_create_subjects",
    "ref_of",
]


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
        owned = list(session.scalars(select(Asset.id).where(Asset.owner_id == subject.id)))
        kept = held_assets(session, owned)
        if kept:  # their photos would no longer open: a deletion a legal hold forbids
            holds = sorted({h for ids in kept.values() for h in ids})
            raise ErasureBlocked(
                f"legal hold(s) {', '.join(h[:12] for h in holds)} keep "
                f"{len(kept)} photo(s) of {subject.ref}: "
                "its key cannot be destroyed until they are released"
            )
        ctx.vault.shred(subject)
        audit.append(session, "subject.key_destroyed", {"subject": subject.ref}, actor=ctx.actor, at=instant)
        ref = subject.ref
    # after the commit, so no search can put them back: the PDQ cache holds the subject's
    # hashes decrypted, under the live KEK, where the destroyed key no longer guards them;
    # the sealed face index their embeddings likewise
    ctx.hash_cache.drop_assets(owned)
    drop_from_face_index(ctx, owned)
    purge_free_space(ctx.engine)
    return ref
