"""Consent as services: import a consent history, ask the gate about one subject, and
show what the catalog holds about a subject (their photos and consent history).

The gate (:mod:`.policy`) and the records (:mod:`.records`) work inside a caller's
session; these functions are what the CLI, the API and the web UI call, with the
workspace's vault (external ids become refs before anything is stored or looked up).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from typing_extensions import TypedDict

from .._time import iso
from ..catalog.models import Asset, AssetSubject, ConsentRecord
from ..context import Context, when
from ..subjects import find_subject
from .policy import ConsentGate, ItemRef
from .purposes import Purpose, parse_purpose
from .records import ConsentImportReport, prevails
from .records import import_consent as import_records

__all__ = [
    "ConsentCheckItem",
    "ConsentCheckResult",
    "SubjectAssetView",
    "SubjectConsentView",
    "SubjectView",
    "consent_check",
    "import_consent",
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


class ConsentCheckItem(TypedDict):
    sha256: str
    allowed: bool
    #: the rule that decided (a subject's decision, a policy version, no basis...)
    rule: str
    reason: str


class ConsentCheckResult(TypedDict):
    """The gate's verdict on each of a subject's active photos, for one purpose."""

    subject: str
    purpose: str
    at: str | None
    allowed: bool
    photos: int
    covered: int
    items: list[ConsentCheckItem]


def import_consent(
    ctx: Context, path: str | Path, *, at: str | datetime | None = None
) -> ConsentImportReport:
    """Import consent history from CSV/JSON Lines; all-or-nothing (docs/formats.md)."""
    instant = when(at)
    with ctx.sessions.begin() as session:
        return import_records(session, ctx.vault, Path(path), actor=ctx.actor, at=instant)


def consent_check(
    ctx: Context, subject_id: str, purpose: str, *, at: str | datetime | None = None
) -> ConsentCheckResult:
    """May this subject's photos be used for ``purpose`` at ``at``? A verdict per photo, with reasons."""
    instant = when(at)
    purpose_value = parse_purpose(purpose).value
    with ctx.reader() as session:
        subject = find_subject(session, ctx.vault, subject_id)
        rows = session.execute(
            select(Asset.id, Asset.sha256, Asset.source_id, Asset.owner_id)
            .join(AssetSubject, AssetSubject.asset_id == Asset.id)
            .where(AssetSubject.subject_id == subject.id, Asset.state == "active")
            .order_by(Asset.sha256)
        ).all()
        verdicts = ConsentGate(session, purpose_value, instant).evaluate(
            [ItemRef(r.id, r.source_id, r.owner_id) for r in rows]
        )
        items: list[ConsentCheckItem] = [
            {
                "sha256": r.sha256,
                "allowed": verdicts[r.id].allowed,
                "rule": verdicts[r.id].rule,
                "reason": verdicts[r.id].reason,
            }
            for r in rows
        ]
    return {
        "subject": subject.ref,
        "purpose": purpose_value,
        "at": iso(instant),
        "allowed": bool(items) and all(i["allowed"] for i in items),
        "photos": len(items),
        "covered": sum(1 for i in items if i["allowed"]),
        "items": items,
    }


def subject_view(ctx: Context, subject_id: str) -> SubjectView:
    """A subject's ref, state, assets and consent history (no personal data), with the
    decision now in force for each purpose (``none`` where they gave none)."""
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
