"""Importing consent history from CSV or JSON Lines (format: docs/formats.md).

A file is checked whole before anything is written: if any row is bad, every bad row is
reported (file, line, reason) and nothing is imported, so a half-imported file never
leaves consent history in a state nobody intended. Importing the same file again adds
nothing (each record has a natural key).

Two decisions of one subject for one purpose (and the same photo, or both subject-wide)
at the same instant *conflict*: nobody can tell which was meant last, and the order of
rows in a file (or of two imports) must not decide. Both are kept; the more restrictive
one prevails wherever records are read (``prevails``), and the import counts the conflicts
it met so that an operator can look at them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from .._tabular import read_rows
from .._time import iso, parse_instant
from ..catalog.models import Asset, ConsentRecord, Subject
from ..errors import InvalidInput
from ..subjects import get_or_create_subject, ref_of
from ..vault import Vault
from .purposes import Decision, Purpose, parse_decision, parse_purpose

__all__ = [
    "ConsentImportReport",
    "ConsentRow",
    "import_consent",
    "parse_consent_file",
    "prevails",
    "record_decision",
    "restrictiveness",
]

REQUIRED = ("subject", "purpose", "decision", "at")
OPTIONAL = ("policy_version", "evidence", "asset")

#: at one instant, the more restrictive decision prevails (denial wins whatever the order)
_RESTRICTIVENESS = {
    Decision.GRANTED.value: 0,
    Decision.CONSTRAINED.value: 1,
    Decision.REVOKED.value: 2,
    Decision.DENIED.value: 3,
}


def restrictiveness(decision: str) -> int:
    """Rank of a decision: higher is more restrictive (an unknown one counts as a denial)."""
    return _RESTRICTIVENESS.get(decision, _RESTRICTIVENESS[Decision.DENIED.value])


def prevails(new: str, new_at: datetime, old: str | None, old_at: datetime | None) -> bool:
    """Whether decision ``new`` replaces ``old`` as the current one (same scope).

    Later wins; at the same instant the more restrictive wins, so the outcome does not
    depend on the order the records were written in.
    """
    if old is None or old_at is None:
        return True
    if new_at != old_at:
        return new_at > old_at
    return restrictiveness(new) > restrictiveness(old)


@dataclass(frozen=True)
class ConsentRow:
    line: int
    ref: str
    purpose: Purpose
    decision: Decision
    at: datetime
    policy_version: str | None
    evidence: str | None
    asset_sha256: str | None

    @property
    def row_key(self) -> str:
        ident = "|".join(
            [
                self.ref,
                self.purpose,
                self.decision,
                iso(self.at) or "",
                self.policy_version or "",
                self.asset_sha256 or "",
            ]
        )
        return hashlib.sha256(ident.encode()).hexdigest()


@dataclass
class ConsentImportReport:
    file: str
    rows: int = 0
    imported: int = 0
    already_present: int = 0
    subjects_created: int = 0
    #: groups of records (subject, purpose, photo or none, instant) with different
    #: decisions, in this file or between it and the catalog; the most restrictive wins
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "imported": self.imported,
            "already_present": self.already_present,
            "subjects_created": self.subjects_created,
            "conflicts": self.conflicts,
        }


def parse_consent_file(path: Path, vault: Vault) -> list[ConsentRow]:
    """Parse and validate every row; InvalidInput listing all bad rows if any is bad."""
    rows: list[ConsentRow] = []
    errors: list[str] = []
    for line, raw in read_rows(path, REQUIRED, OPTIONAL):
        where = f"{path.name} line {line}"
        try:
            if not raw["subject"]:
                raise InvalidInput(f"{where}: subject is empty")
            asset = raw.get("asset", "").lower() or None
            if asset is not None and (len(asset) != 64 or any(c not in "0123456789abcdef" for c in asset)):
                raise InvalidInput(f"{where}: asset must be a photo's sha256 (64 hex digits)")
            rows.append(
                ConsentRow(
                    line=line,
                    ref=ref_of(vault, raw["subject"]),
                    purpose=parse_purpose(raw["purpose"], where=f"{where}: purpose"),
                    decision=parse_decision(raw["decision"], where=f"{where}: decision"),
                    at=parse_instant(raw["at"], what=f"{where}: at"),
                    policy_version=raw.get("policy_version") or None,
                    evidence=raw.get("evidence") or None,
                    asset_sha256=asset,
                )
            )
        except InvalidInput as exc:
            errors.append(str(exc))
    if errors:
        shown = errors[:20]
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise InvalidInput(
            f"{path.name}: {len(errors)} bad row(s), nothing imported:\n" + "\n".join(shown) + more
        )
    return rows


def import_consent(
    session: Session, vault: Vault, path: Path, *, actor: str, at: datetime
) -> ConsentImportReport:
    """Validate ``path`` whole, then add its records in the caller's transaction."""
    rows = parse_consent_file(path, vault)
    report = ConsentImportReport(file=path.name, rows=len(rows))
    existing: set[str] = set()
    keys = [r.row_key for r in rows]
    for i in range(0, len(keys), 500):
        existing.update(
            session.scalars(select(ConsentRecord.row_key).where(ConsentRecord.row_key.in_(keys[i : i + 500])))
        )
    asset_ids: dict[str, str] = {}
    wanted = {r.asset_sha256 for r in rows if r.asset_sha256}
    if wanted:
        for sha, asset_id in session.execute(select(Asset.sha256, Asset.id).where(Asset.sha256.in_(wanted))):
            asset_ids[sha] = asset_id
        unknown = sorted(r.line for r in rows if r.asset_sha256 and r.asset_sha256 not in asset_ids)
        if unknown:
            raise InvalidInput(
                f"{path.name}: line(s) {', '.join(map(str, unknown[:20]))} name an asset this "
                "workspace does not hold; nothing imported"
            )
    report.conflicts = _count_conflicts(session, rows, asset_ids)
    for row in rows:
        key = row.row_key
        if key in existing:
            report.already_present += 1
            continue
        existing.add(key)
        subject, created = get_or_create_subject(session, vault, row.ref, at=at, actor=actor)
        report.subjects_created += int(created)
        evidence = vault.seal(subject, row.evidence.encode(), f"evidence:{key}") if row.evidence else None
        session.add(
            ConsentRecord(
                subject_id=subject.id,
                asset_id=asset_ids.get(row.asset_sha256) if row.asset_sha256 else None,
                purpose=row.purpose.value,
                decision=row.decision.value,
                at=row.at,
                policy_version=row.policy_version,
                evidence_enc=evidence,
                row_key=key,
                recorded_at=at,
            )
        )
        report.imported += 1
    audit.append(
        session,
        "consent.imported",
        {
            "records": report.imported,
            "already_present": report.already_present,
            "subjects_created": report.subjects_created,
            "conflicts": report.conflicts,
        },
        actor=actor,
        at=at,
    )
    return report


def record_decision(
    session: Session,
    vault: Vault,
    ref: str,
    purpose: Purpose,
    decision: Decision,
    *,
    decided_at: datetime,
    actor: str,
    at: datetime,
    why: str = "",
) -> bool:
    """Record one subject-wide decision of the subject ``ref`` (created if new) in the
    caller's transaction, audited by ref only; False if the same record is already there."""
    row = ConsentRow(0, ref, purpose, decision, decided_at, None, None, None)
    key = row.row_key
    if session.scalar(select(ConsentRecord.id).where(ConsentRecord.row_key == key)) is not None:
        return False
    subject, _ = get_or_create_subject(session, vault, ref, at=at, actor=actor)
    session.add(
        ConsentRecord(
            subject_id=subject.id,
            asset_id=None,
            purpose=purpose.value,
            decision=decision.value,
            at=decided_at,
            policy_version=None,
            evidence_enc=None,
            row_key=key,
            recorded_at=at,
        )
    )
    payload = {"subject": ref, "purpose": purpose.value, "decision": decision.value, "at": iso(decided_at)}
    audit.append(session, "consent.recorded", {**payload, "why": why} if why else payload, actor=actor, at=at)
    return True


def _count_conflicts(session: Session, rows: list[ConsentRow], asset_ids: dict[str, str]) -> int:
    """Groups (subject, purpose, photo, instant) that hold more than one decision.

    Counts those within the file and those between the file and records already in the
    catalog (an earlier import), each group once.
    """
    groups: dict[tuple[str, str, str | None, str], set[str]] = {}
    for r in rows:
        asset = asset_ids.get(r.asset_sha256) if r.asset_sha256 else None
        groups.setdefault((r.ref, r.purpose.value, asset, iso(r.at) or ""), set()).add(r.decision.value)
    refs = sorted({r.ref for r in rows})
    for i in range(0, len(refs), 500):
        query = (
            select(
                Subject.ref,
                ConsentRecord.purpose,
                ConsentRecord.asset_id,
                ConsentRecord.at,
                ConsentRecord.decision,
            )
            .join(Subject, Subject.id == ConsentRecord.subject_id)
            .where(Subject.ref.in_(refs[i : i + 500]))
        )
        for ref, purpose, asset, at, decision in session.execute(query):
            group = groups.get((ref, purpose, asset, iso(at) or ""))
            if group is not None:
                group.add(decision)
    return sum(1 for decisions in groups.values() if len(decisions) > 1)
