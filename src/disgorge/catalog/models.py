"""SQLAlchemy 2 models of the catalog.

The schema follows the concepts of DESIGN.md. Two rules shape it:

* nothing personal in clear: subjects are known by a keyed pseudonymous ``ref``; every
  value that could name or show a person (original file path, consent evidence) is a
  ``*_enc`` column sealed under the subject's data key;
* history, not flags: consent is a list of dated decisions, and the audit log is an
  append-only hash chain.

Changes to these models need an Alembic revision in ``catalog/migrations/versions``;
``tests/test_migrations.py`` fails when the two drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry, relationship

__all__ = [
    "DATASET_MEMBERS_VIEW",
    "Artifact",
    "Asset",
    "AssetDerivative",
    "AssetSource",
    "AssetSubject",
    "AuditEvent",
    "AuditHead",
    "Base",
    "ConsentRecord",
    "DatasetDrop",
    "DatasetExclusion",
    "DatasetMember",
    "DatasetMemberRow",
    "DatasetVersion",
    "ErasedFingerprint",
    "ErasureApproval",
    "ErasureRequest",
    "ErasureStep",
    "IncomingRequest",
    "Meta",
    "Peer",
    "PolicyVersion",
    "RecipientNotice",
    "Run",
    "RunInput",
    "Source",
    "Subject",
    "Transfer",
    "TransferItem",
    "UTCDateTime",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would drop the zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use disgorge._time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Workspace-wide values: id, KEK check value, wrapped secrets, public key."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class Subject(Base):
    """A data subject, known only by ``ref`` = HMAC-SHA256(workspace secret, external id)."""

    __tablename__ = "subjects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    #: the subject's data-encryption key wrapped by the KEK; NULL once crypto-shredded
    dek_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Source(Base):
    """Where data came from: an app, a scrape, a transfer."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32), default="app")
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: active, erasing (an erasure of the whole source is under way: ingest refuses), erased
    state: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    policies: Mapped[list[PolicyVersion]] = relationship(
        back_populates="source", order_by="PolicyVersion.effective_from"
    )


class PolicyVersion(Base):
    """One version of a source's privacy policy: what it allowed, and when it was in force."""

    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("source_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    version: Mapped[str] = mapped_column(String(64))
    text_sha256: Mapped[str] = mapped_column(String(64))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    effective_to: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    allowed_purposes: Mapped[list[str]] = mapped_column(JSON)
    source: Mapped[Source] = relationship(back_populates="policies")


class Asset(Base):
    """A raw item (a photo), stored encrypted under its owner's data key."""

    __tablename__ = "assets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), index=True)
    blob_key: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    #: path inside the ingested folder/archive, sealed under the owner's key
    origin_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default="active")
    #: faces found by the last analysis (NULL: not analysed yet)
    faces: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: 1 when a face was found: the photo is biometric data
    biometric: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    analyzed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    source: Mapped[Source] = relationship()
    owner: Mapped[Subject] = relationship()


class AssetSubject(Base):
    """Who an asset shows: its owner (role ``owner``) and anyone else depicted."""

    __tablename__ = "asset_subjects"
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    __table_args__ = (Index("ix_asset_subjects_subject", "subject_id"),)


class AssetSource(Base):
    """Another source of this workspace's own that holds the same bytes as an asset.

    An asset row is created once, by the first source that brought its bytes (``Asset.source_id``);
    when a later ingest from another source of its own meets the same bytes, they are held
    through that source too, and its policy and its subjects' consent must allow each use
    (design note 19). Incoming transfers are the other kind of provenance (transfer items).
    """

    __tablename__ = "asset_sources"
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (Index("ix_asset_sources_source", "source_id"),)


class ConsentRecord(Base):
    """One dated consent decision of a subject for a purpose (optionally for one asset)."""

    __tablename__ = "consent_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"))
    asset_id: Mapped[str | None] = mapped_column(ForeignKey("assets.id"), nullable=True)
    purpose: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    policy_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    evidence_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: sha256 of the record's identity, so importing a file twice adds nothing
    row_key: Mapped[str] = mapped_column(String(64), unique=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the incoming transfer whose terms this is (a bundle's per-photo terms): it counts only
    #: when the photo is used through that transfer's provenance (design note 19); NULL: always
    transfer_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    __table_args__ = (Index("ix_consent_subject_purpose_at", "subject_id", "purpose", "at"),)


class AuditEvent(Base):
    """An append-only, hash-chained event. Holds ids and counts, never personal data."""

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's head (one row). Updating it serialises writers on every backend."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class Run(Base):
    """One execution of a job: what it read, for which purpose, what it produced."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job: Mapped[str] = mapped_column(String(200), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="running")
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    code_version: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: {"checked": n, "covered": n, "not_covered": n} at the time of use
    consent_check: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    override_justification: Mapped[str | None] = mapped_column(Text, nullable=True)
    actor: Mapped[str] = mapped_column(String(128), default="")
    #: recorded after the fact (`disgorge run record`), not executed through disgorge
    external: Mapped[int] = mapped_column(Integer, default=0)


class RunInput(Base):
    """An input of a run: an asset or an artifact (a dataset version counts as an artifact)."""

    __tablename__ = "run_inputs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    asset_id: Mapped[str | None] = mapped_column(ForeignKey("assets.id"), nullable=True, index=True)
    artifact_id: Mapped[str | None] = mapped_column(ForeignKey("artifacts.id"), nullable=True, index=True)


class Artifact(Base):
    """Anything derived: crop, embedding, phash, dataset version, index, model, export, report."""

    __tablename__ = "artifacts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[str] = mapped_column(String(64), default="")
    uri: Mapped[str] = mapped_column(Text, default="")
    content_sha256: Mapped[str] = mapped_column(String(64), default="")
    #: the run that produced it; never NULL (fail closed: no output without its inputs)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (Index("ix_artifacts_kind_name", "kind", "name"),)


class DatasetVersion(Base):
    """An immutable dataset version: an artifact of kind dataset_version, built through the gate."""

    __tablename__ = "dataset_versions"
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(32))
    #: over the members' sha256; "" for a derived version until asked for (see content_root)
    merkle_root: Mapped[str] = mapped_column(String(64))
    members: Mapped[int] = mapped_column(Integer)
    excluded: Mapped[int] = mapped_column(Integer)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime)
    selector: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: the version whose stored rows this one reads (minus its DatasetDrop rows); None: its own
    members_of: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    __table_args__ = (UniqueConstraint("name", "version"),)


class DatasetMemberRow(Base):
    """Stored membership: (dataset version, asset), for the versions the gate built.

    A relation, not millions of lineage edges. A version derived without some items
    (unlearning, erasure) stores none: it reads its base's rows minus its drops. Read
    membership through :class:`DatasetMember` (the view), write it here."""

    __tablename__ = "dataset_member_rows"
    dataset_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"), primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    __table_args__ = (Index("ix_dataset_members_asset", "asset_id"),)


class DatasetDrop(Base):
    """An item a derived version left out of its base's members (all of them, since the base)."""

    __tablename__ = "dataset_drops"
    dataset_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"), primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), primary_key=True)


#: Views live in their own registry: Alembic compares tables, and a view is made by SQL.
_views = registry()

#: The SQL of the ``dataset_members`` view (migration 0006 creates it). Deriving a version
#: of half a million photos without one person's eight then costs eight rows, not a copy.
#: One join, so that SQLite flattens the view into each query (a UNION ALL view is not
#: pushed into for ``asset_id IN (subquery)``: it scanned all 30 million rows): a stored
#: row belongs to its own (built) version and to each version derived from that one
#: (``members_of``, indexed), less the latter's drops. 8 ms a subject's datasets at 30
#: million rows, against 6.5 ms on the stored rows alone and 19-24 ms for a join on
#: ``coalesce(members_of, artifact_id)``, which no index serves.
DATASET_MEMBERS_VIEW = """
CREATE VIEW dataset_members AS
SELECT v.artifact_id AS dataset_id, r.asset_id AS asset_id
FROM dataset_member_rows AS r
JOIN dataset_versions AS v ON v.artifact_id = r.dataset_id OR v.members_of = r.dataset_id
WHERE v.members_of IS NULL OR NOT EXISTS (
    SELECT 1 FROM dataset_drops AS d WHERE d.dataset_id = v.artifact_id AND d.asset_id = r.asset_id
)
"""


@_views.mapped
class DatasetMember:
    """Membership of every version, derived ones included: the ``dataset_members`` view
    (read-only; builds write :class:`DatasetMemberRow`, derivations :class:`DatasetDrop`)."""

    __table__ = Table(
        "dataset_members",
        _views.metadata,
        Column("dataset_id", String(32), primary_key=True),
        Column("asset_id", String(32), primary_key=True),
    )
    dataset_id: Mapped[str]
    asset_id: Mapped[str]


class DatasetExclusion(Base):
    """An item the gate kept out of a dataset version, and why (rule and record)."""

    __tablename__ = "dataset_exclusions"
    dataset_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"), primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)


class AssetDerivative(Base):
    """A value computed from one photo: its PDQ hash, a face's box and landmarks, a face
    embedding or a face crop. Sealed under the owner's key (``value_enc``) or stored as a
    sealed blob (crops); erasure reaches them through ``asset_id``."""

    __tablename__ = "asset_derivatives"
    #: 64-bit: an embedding's id is random (62 bits, its id in the face index); SQLite's
    #: INTEGER is 64-bit already, and must stay INTEGER to be the rowid
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    face_index: Mapped[int] = mapped_column(Integer, default=0)
    value_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    blob_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (
        UniqueConstraint("asset_id", "kind", "face_index"),
        Index("ix_derivatives_kind", "kind"),
    )


class ErasureRequest(Base):
    """An erasure: its scope (pseudonymous), reason, state, plan, verification, certificate."""

    __tablename__ = "erasure_requests"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope_kind: Mapped[str] = mapped_column(String(16))
    #: a subject ref, a keyed fingerprint of a photo, a source name or a model id: never an external id
    scope_ref: Mapped[str] = mapped_column(String(200), index=True)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(24), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    verification: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    certificate: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: verifier samples sealed with ``samples_key`` (wrapped by the KEK); both dropped after the scan
    samples_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    samples_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    actor: Mapped[str] = mapped_column(String(128), default="")
    #: the API principal that asked for it (``None``: the workspace's owner at the shell)
    principal_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ErasureApproval(Base):
    """One principal's decision on an erasure request: who, when, why (two-person rule)."""

    __tablename__ = "erasure_approvals"
    request_id: Mapped[str] = mapped_column(ForeignKey("erasure_requests.id"), primary_key=True)
    principal_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    principal_name: Mapped[str] = mapped_column(String(128))
    #: ``approve`` or ``deny``
    decision: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ErasureStep(Base):
    """One journaled step of an erasure; ``done_at`` is set in the step's own transaction."""

    __tablename__ = "erasure_steps"
    request_id: Mapped[str] = mapped_column(ForeignKey("erasure_requests.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ErasedFingerprint(Base):
    """A keyed fingerprint of an erased file: ingest refuses a file that matches (sticky erasure)."""

    __tablename__ = "erased_fingerprints"
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("erasure_requests.id"))
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Peer(Base):
    """Another organisation: a recipient we send photos to, or a sender we accept them from.

    Known by name and Ed25519 public key; a recipient may have an HTTP ``endpoint`` that
    receives erasure requests (without one, requests travel as signed files)."""

    __tablename__ = "peers"
    __table_args__ = (UniqueConstraint("role", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: recipient or sender
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    endpoint: Mapped[str] = mapped_column(Text, default="")
    agreement: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Transfer(Base):
    """Photos that left for a recipient (``out``) or came from a sender (``in``).

    An outgoing transfer is also an artifact of kind ``transfer`` (``artifact_id``) made by
    the run that shared it, so lineage reaches it; ``backfilled`` marks a legacy export
    recorded after the fact, without a bundle."""

    __tablename__ = "transfers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8))
    peer_id: Mapped[int] = mapped_column(ForeignKey("peers.id"), index=True)
    artifact_id: Mapped[str | None] = mapped_column(ForeignKey("artifacts.id"), nullable=True)
    #: the dataset version shared (out) or the source the items were ingested into (in)
    dataset: Mapped[str] = mapped_column(String(240), default="")
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id"), nullable=True)
    purposes: Mapped[list[str]] = mapped_column(JSON, default=list)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    items: Mapped[int] = mapped_column(Integer, default=0)
    bundle_sha256: Mapped[str] = mapped_column(String(64), default="")
    backfilled: Mapped[int] = mapped_column(Integer, default=0)
    #: how erasure requests name the items: ``fingerprint`` (the sender's keyed
    #: fingerprint, from a bundle) or ``sha256`` (a legacy transfer: nothing else was agreed)
    id_kind: Mapped[str] = mapped_column(String(16), default="fingerprint")


class TransferItem(Base):
    """One photo of a transfer; ``fingerprint`` is the sender's keyed fingerprint of it."""

    __tablename__ = "transfer_items"

    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    __table_args__ = (Index("ix_transfer_items_asset", "asset_id"),)


class RecipientNotice(Base):
    """An erasure request sent (or to be delivered) to one recipient, and its answer.

    The signed request names photos (fingerprints or sha256), so it is kept only sealed
    (``doc_enc`` under ``doc_key``, wrapped by the KEK) and both are dropped once the
    recipient has answered for good."""

    __tablename__ = "recipient_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("erasure_requests.id"), index=True)
    peer_id: Mapped[int] = mapped_column(ForeignKey("peers.id"))
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    transfers: Mapped[list[str]] = mapped_column(JSON, default=list)
    items: Mapped[int] = mapped_column(Integer, default=0)
    #: pending, acknowledged, completed, not_found, exception, overdue, closed
    state: Mapped[str] = mapped_column(String(16), default="pending")
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    doc_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    doc_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    doc_sha256: Mapped[str] = mapped_column(String(64), default="")
    #: the recipient's signed answer (with its certificate once completed)
    response: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    closed_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class IncomingRequest(Base):
    """An erasure request received from a sender, by nonce (a replay is recognised)."""

    __tablename__ = "incoming_requests"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    peer_id: Mapped[int] = mapped_column(ForeignKey("peers.id"))
    doc_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the active photos it matched (asset ids), and how many it named
    asset_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    named: Mapped[int] = mapped_column(Integer, default=0)
    #: received, executing, completed, not_found, exception
    state: Mapped[str] = mapped_column(String(16), default="received")
    erasure_id: Mapped[str | None] = mapped_column(ForeignKey("erasure_requests.id"), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
