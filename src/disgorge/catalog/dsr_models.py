"""The catalog's tables for data-subject requests: cases, and the perceptual blocklist.

Kept apart from :mod:`.models` (what the workspace holds) because they record what people
asked for and what must never come back. Same ``Base``, so one metadata and one Alembic
history (revisions 0010, 0011).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UTCDateTime

__all__ = ["DsrCase", "ErasedHashes", "LegalHold", "RetentionRule"]


class DsrCase(Base):
    """A data-subject request handled as a case: what was asked, by whom (pseudonymously),
    when it is due, how the requester's identity was checked, and what it produced."""

    __tablename__ = "dsr_cases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: access, erasure or objection
    kind: Mapped[str] = mapped_column(String(16))
    #: the subject's keyed ref (never the external id)
    subject_ref: Mapped[str] = mapped_column(String(64), index=True)
    #: email, portal, regulator, post, phone...
    channel: Mapped[str] = mapped_column(String(32))
    #: for an objection: the purpose objected to
    purpose: Mapped[str | None] = mapped_column(String(64), nullable=True)
    jurisdiction: Mapped[str] = mapped_column(String(16), default="gdpr")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    extended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    extension_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: open, completed, refused
    status: Mapped[str] = mapped_column(String(16), index=True)
    #: unverified, verified, failed
    identity_state: Mapped[str] = mapped_column(String(16), default="unverified")
    identity_method: Mapped[str | None] = mapped_column(String(200), nullable=True)
    identity_verified_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    identity_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: what it produced: an erasure request, or an export's sha256
    erasure_id: Mapped[str | None] = mapped_column(ForeignKey("erasure_requests.id"), nullable=True)
    export_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    actor: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ErasedHashes(Base):
    """The perceptual hashes (PDQ, all eight dihedral variants) of one erased photo, sealed:
    ingest and received bundles refuse near-copies of what was erased, the way a hash
    blocklist blocks re-uploads without keeping the image (issue #15's sticky erasure)."""

    __tablename__ = "erased_hashes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("erasure_requests.id"), index=True)
    #: the 8 x 32-byte hashes, AES-256-GCM under the workspace's blocklist key
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LegalHold(Base):
    """Something that must be kept despite an erasure (litigation, a regulator's order).

    An erasure that reaches held photos or models erases the rest and leaves these
    ``withheld``; releasing the last hold on them finishes that erasure."""

    __tablename__ = "legal_holds"
    __table_args__ = (Index("ix_legal_holds_target", "target_kind", "target_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: subject, source, dataset or model
    target_kind: Mapped[str] = mapped_column(String(16))
    #: subject id, source id, dataset name or model name (every version of either)
    target_key: Mapped[str] = mapped_column(String(200))
    #: what lists show: the subject's keyed ref, ``source:NAME``, ``dataset:NAME``, ``model:NAME``
    target_ref: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    release_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class RetentionRule(Base):
    """How many days a source's or a dataset's photos are kept after their ingest."""

    __tablename__ = "retention_rules"

    #: source or dataset
    target_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    target_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    days: Mapped[int] = mapped_column(Integer)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)
    set_by: Mapped[str] = mapped_column(String(128))
