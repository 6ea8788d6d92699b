"""Data-subject requests as cases: what was asked, when it is due, how the requester's
identity was checked, and what the case produced (issue #15).

A privacy office receives a request (access, erasure, objection to a purpose) and must
answer it in time: GDPR Art. 12(3) gives one month from receipt, extendable once by up to
two further months with a reason; the CCPA gives 45 days, extendable once by 45 more.
The periods are :data:`PERIODS`, one row per jurisdiction. A case holds the subject only
as its keyed ``sub_`` ref (computable from the external id, so a request from someone the
workspace holds nothing about is a case too); the audit log records case ids and refs.

disgorge records identity verification (who checked, how, when); it does not contact
anyone. An erasure case is acted on through :func:`disgorge.erasure.service.erase` once
the identity is verified; an objection records a denial for the purpose at once (a
restriction, safe before verification) and shows what already used the subject's photos
for it.
"""

from __future__ import annotations

import calendar
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._time import iso, parse_instant
from ..catalog.dsr_models import DsrCase
from ..catalog.lineage import NodeRef, downstream
from ..catalog.models import DatasetVersion, Run, Subject
from ..consent.purposes import Decision, parse_purpose
from ..consent.records import record_decision
from ..context import Context, when
from ..erasure import service as erasure_service
from ..erasure.service import ErasureView
from ..errors import ErasureBlocked, InvalidInput, NotFound
from ..subjects import ref_of
from .export import SubjectExport, export_subject

__all__ = [
    "CHANNELS",
    "KINDS",
    "PERIODS",
    "CaseDetail",
    "CaseErasure",
    "CaseExport",
    "CaseView",
    "IdentityView",
    "Period",
    "PurposeUse",
    "Span",
    "add_span",
    "close_case",
    "erase_case",
    "export_case",
    "extend_case",
    "list_cases",
    "open_case",
    "parse_span",
    "show_case",
    "verify_identity",
]

KINDS = ("access", "erasure", "objection")
CHANNELS = ("email", "portal", "regulator", "post", "phone")
STATUSES = ("open", "completed", "refused")


@dataclass(frozen=True)
class Span:
    """A legal period: calendar months (same day, clamped to the month's end) then days."""

    months: int = 0
    days: int = 0

    def __str__(self) -> str:
        parts = [f"{self.months} month(s)"] if self.months else []
        return " and ".join(parts + ([f"{self.days} day(s)"] if self.days or not parts else []))


@dataclass(frozen=True)
class Period:
    #: the time to answer from receipt
    answer: Span
    #: the most one extension may add
    extension: Span


#: the deadlines per jurisdiction: GDPR Art. 12(3), CCPA Cal. Civ. Code 1798.130(a)(2)
PERIODS: dict[str, Period] = {
    "gdpr": Period(answer=Span(months=1), extension=Span(months=2)),
    "ccpa": Period(answer=Span(days=45), extension=Span(days=45)),
}

_SPAN = re.compile(r"^\s*(\d{1,4})\s*(d|day|days|w|week|weeks|m|month|months)\s*$", re.IGNORECASE)


def parse_span(text: str) -> Span:
    """``45d``, ``2w``, ``2m`` (also ``45 days``, ``2 months``) as a :class:`Span`."""
    match = _SPAN.match(text)
    if match is None:
        raise InvalidInput(f"{text!r} is not a period: use e.g. 45d, 2w or 2m")
    n, unit = int(match[1]), match[2].lower()
    if unit.startswith("m"):
        return Span(months=n)
    return Span(days=n * 7 if unit.startswith("w") else n)


def add_span(start: datetime, span: Span) -> datetime:
    """``start`` plus ``span``: a month is the same day next month, clamped to its last day
    (31 January + 1 month = 28 or 29 February)."""
    total = start.month - 1 + span.months
    year, month = start.year + total // 12, total % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day) + timedelta(days=span.days)


class IdentityView(TypedDict):
    #: unverified, verified or failed
    state: str
    method: str | None
    by: str | None
    at: str | None


class CaseView(TypedDict):
    """One case: no personal data (the subject by ref)."""

    id: str
    kind: str
    subject: str
    channel: str
    purpose: str | None
    jurisdiction: str
    received_at: str
    due_at: str
    #: whole days until the due date (negative: overdue); None once closed
    days_left: int | None
    overdue: bool
    extended_at: str | None
    extension_reason: str | None
    #: open, completed or refused
    status: str
    identity: IdentityView
    erasure_id: str | None
    export_sha256: str | None
    note: str
    outcome: str | None
    actor: str
    created_at: str
    updated_at: str
    closed_at: str | None


class PurposeUse(TypedDict):
    """A dataset version or run that used the subject's photos for the objected purpose."""

    #: ``dataset:NAME@VERSION`` or ``run:ID``
    use: str
    kind: str
    at: str


class CaseDetail(CaseView):
    """A case as ``request show`` gives it; for an objection, what already used the subject's
    photos for that purpose (empty for other kinds)."""

    used: list[PurposeUse]


class CaseErasure(TypedDict):
    """An erasure case after ``request erase``: the case and the erasure it started."""

    case: CaseView
    erasure: ErasureView


def _view(case: DsrCase, now: datetime) -> CaseView:
    is_open = case.status == "open"
    return {
        "id": case.id,
        "kind": case.kind,
        "subject": case.subject_ref,
        "channel": case.channel,
        "purpose": case.purpose,
        "jurisdiction": case.jurisdiction,
        "received_at": iso(case.received_at),
        "due_at": iso(case.due_at),
        "days_left": (case.due_at.date() - now.date()).days if is_open else None,
        "overdue": is_open and case.due_at < now,
        "extended_at": iso(case.extended_at),
        "extension_reason": case.extension_reason,
        "status": case.status,
        "identity": {
            "state": case.identity_state,
            "method": case.identity_method,
            "by": case.identity_verified_by,
            "at": iso(case.identity_verified_at),
        },
        "erasure_id": case.erasure_id,
        "export_sha256": case.export_sha256,
        "note": case.note,
        "outcome": case.outcome,
        "actor": case.actor,
        "created_at": iso(case.created_at),
        "updated_at": iso(case.updated_at),
        "closed_at": iso(case.closed_at),
    }


def _find(session: Session, case_id: str) -> DsrCase:
    text = case_id.strip()
    case = session.get(DsrCase, text)
    if case is not None:
        return case
    if len(text) >= 6:
        found = list(session.scalars(select(DsrCase).where(DsrCase.id.startswith(text)).limit(2)))
        if len(found) == 1:
            return found[0]
    raise NotFound(f"no case {text!r} (give its id or a unique prefix of at least 6 characters)")


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    text = value.strip().lower()
    if text not in allowed:
        raise InvalidInput(f"{what} must be one of {', '.join(allowed)} (got {value!r})")
    return text


def _open(case: DsrCase, action: str) -> None:
    if case.status != "open":
        raise InvalidInput(f"case {case.id} is {case.status}: cannot {action} it")


def _uses(session: Session, ref: str, purpose: str) -> list[PurposeUse]:
    subject = session.scalar(select(Subject).where(Subject.ref == ref))
    if subject is None:
        return []
    graph = downstream(session, NodeRef("subject", str(subject.id), ref))
    artifacts = [n["artifact_id"] for n in graph.nodes if "artifact_id" in n]
    run_ids = [n["id"].removeprefix("run:") for n in graph.nodes if n["kind"] == "run"]
    uses: list[PurposeUse] = [
        {"use": f"dataset:{d.name}@{d.version}", "kind": "dataset_version", "at": iso(d.built_at)}
        for d in session.scalars(
            select(DatasetVersion).where(
                DatasetVersion.artifact_id.in_(artifacts), DatasetVersion.purpose == purpose
            )
        )
    ]
    uses += [
        {"use": f"run:{r.id}", "kind": "run", "at": iso(r.started_at)}
        for r in session.scalars(
            select(Run).where(
                Run.id.in_(run_ids), Run.purpose == purpose, ~Run.job.startswith("dataset.build:")
            )
        )
    ]
    return sorted(uses, key=lambda u: (u["at"], u["use"]))


def _detail(session: Session, case: DsrCase, now: datetime) -> CaseDetail:
    used = _uses(session, case.subject_ref, case.purpose) if case.kind == "objection" and case.purpose else []
    return {**_view(case, now), "used": used}


def open_case(
    ctx: Context,
    kind: str,
    subject_id: str,
    *,
    received_at: str | datetime,
    channel: str,
    purpose: str | None = None,
    jurisdiction: str = "gdpr",
    note: str = "",
    at: str | datetime | None = None,
) -> CaseDetail:
    """Open a case for a request received at ``received_at``; due per :data:`PERIODS`.

    The subject (an external id or a ``sub_`` ref) is kept as its ref only, whether or not
    the workspace holds anything about them. An objection (``purpose`` required) records a
    denial of that purpose from ``received_at`` at once; the result lists what already used
    the subject's photos for it.
    """
    instant = when(at)
    kind = _choice(kind, KINDS, "kind")
    channel = _choice(channel, CHANNELS, "channel")
    jurisdiction = _choice(jurisdiction, tuple(PERIODS), "jurisdiction")
    received = parse_instant(received_at, what="received_at")
    if received > instant:
        raise InvalidInput("received_at is in the future")
    if kind == "objection":
        if not purpose:
            raise InvalidInput("an objection names the purpose objected to (--purpose)")
        purpose_value: str | None = parse_purpose(purpose).value
    elif purpose:
        raise InvalidInput("only an objection names a purpose")
    else:
        purpose_value = None
    ref = ref_of(ctx.vault, subject_id)
    case = DsrCase(
        id="case_" + secrets.token_hex(8),
        kind=kind,
        subject_ref=ref,
        channel=channel,
        purpose=purpose_value,
        jurisdiction=jurisdiction,
        received_at=received,
        due_at=add_span(received, PERIODS[jurisdiction].answer),
        status="open",
        identity_state="unverified",
        note=note.strip(),
        actor=ctx.actor,
        created_at=instant,
        updated_at=instant,
    )
    with ctx.sessions.begin() as session:
        session.add(case)
        session.flush()
        audit.append(
            session,
            "case.opened",
            {
                "case": case.id,
                "kind": kind,
                "subject": ref,
                "channel": channel,
                "jurisdiction": jurisdiction,
                "purpose": purpose_value,
                "due_at": iso(case.due_at),
            },
            actor=ctx.actor,
            at=instant,
        )
        if purpose_value is not None:
            record_decision(
                session,
                ctx.vault,
                ref,
                parse_purpose(purpose_value),
                Decision.DENIED,
                decided_at=received,
                actor=ctx.actor,
                at=instant,
                why=f"objection, case {case.id}",
            )
        return _detail(session, case, instant)


def extend_case(
    ctx: Context, case_id: str, *, by: str, reason: str, at: str | datetime | None = None
) -> CaseView:
    """Extend an open case's due date once, by at most the jurisdiction's extension."""
    instant = when(at)
    span = parse_span(by)
    if len(reason.strip()) < 3:
        raise InvalidInput("an extension needs a reason (at least 3 characters)")
    with ctx.sessions.begin() as session:
        case = _find(session, case_id)
        _open(case, "extend")
        if case.extended_at is not None:
            raise InvalidInput(
                f"case {case.id} was already extended on {iso(case.extended_at)}: "
                "the law allows one extension only"
            )
        limit = PERIODS[case.jurisdiction].extension
        if span == Span() or add_span(case.due_at, span) > add_span(case.due_at, limit):
            raise InvalidInput(f"{case.jurisdiction} allows one extension of at most {limit} (asked: {span})")
        case.due_at = add_span(case.due_at, span)
        case.extended_at, case.extension_reason, case.updated_at = instant, reason.strip(), instant
        audit.append(
            session,
            "case.extended",
            {"case": case.id, "subject": case.subject_ref, "by": str(span), "due_at": iso(case.due_at)},
            actor=ctx.actor,
            at=instant,
        )
        return _view(case, instant)


def verify_identity(
    ctx: Context, case_id: str, *, how: str, failed: bool = False, at: str | datetime | None = None
) -> CaseView:
    """Record ``how`` the requester's identity was checked (by ``ctx.actor``, now), or that it failed."""
    instant = when(at)
    method = how.strip()
    if len(method) < 3:
        raise InvalidInput("say how the identity was checked (--method, at least 3 characters)")
    with ctx.sessions.begin() as session:
        case = _find(session, case_id)
        _open(case, "verify")
        case.identity_state = "failed" if failed else "verified"
        case.identity_method, case.identity_verified_by = method[:200], ctx.actor
        case.identity_verified_at = case.updated_at = instant
        audit.append(
            session,
            "case.identity_failed" if failed else "case.identity_verified",
            {"case": case.id, "subject": case.subject_ref},
            actor=ctx.actor,
            at=instant,
        )
        return _view(case, instant)


def close_case(
    ctx: Context, case_id: str, *, outcome: str, refused: bool = False, at: str | datetime | None = None
) -> CaseView:
    """Close a case as completed, or as refused (``outcome`` says why)."""
    instant = when(at)
    outcome = outcome.strip()
    if len(outcome) < 3:
        raise InvalidInput("say what the outcome was (--outcome, at least 3 characters)")
    with ctx.sessions.begin() as session:
        case = _find(session, case_id)
        _open(case, "close")
        case.status = "refused" if refused else "completed"
        case.outcome, case.closed_at, case.updated_at = outcome, instant, instant
        audit.append(
            session,
            "case.closed",
            {"case": case.id, "subject": case.subject_ref, "status": case.status},
            actor=ctx.actor,
            at=instant,
        )
        return _view(case, instant)


def show_case(ctx: Context, case_id: str, *, at: str | datetime | None = None) -> CaseDetail:
    """One case (id or unique prefix), with days left and, for an objection, what used the purpose."""
    instant = when(at)
    with ctx.reader() as session:
        return _detail(session, _find(session, case_id), instant)


def list_cases(
    ctx: Context,
    *,
    status: str | None = None,
    kind: str | None = None,
    overdue: bool = False,
    due_within: str | int | None = None,
    at: str | datetime | None = None,
) -> list[CaseView]:
    """Cases by due date (soonest first). ``overdue``: open ones past their due date;
    ``due_within`` (days, or a period such as ``7d``): open ones due by then."""
    instant = when(at)
    where = []
    if status is not None:
        where.append(DsrCase.status == _choice(status, STATUSES, "status"))
    if kind is not None:
        where.append(DsrCase.kind == _choice(kind, KINDS, "kind"))
    if overdue:
        where += [DsrCase.status == "open", DsrCase.due_at < instant]
    if due_within is not None:
        span = Span(days=due_within) if isinstance(due_within, int) else parse_span(due_within)
        where += [DsrCase.status == "open", DsrCase.due_at <= add_span(instant, span)]
    with ctx.reader() as session:
        rows = session.scalars(select(DsrCase).where(*where).order_by(DsrCase.due_at, DsrCase.id))
        return [_view(case, instant) for case in rows]


def erase_case(
    ctx: Context,
    case_id: str,
    *,
    reason: str,
    execute: bool = True,
    wait: float = 30.0,
    at: str | datetime | None = None,
) -> CaseErasure:
    """Start the erasure an erasure case asks for (its subject, by ref), once the requester's
    identity is verified, and link it to the case. ``execute`` and ``wait`` as in
    :func:`disgorge.erasure.service.erase`."""
    instant = when(at)
    with ctx.reader() as session:
        case = _find(session, case_id)
        case_id, ref = case.id, case.subject_ref
        _open(case, "erase for")
        if case.kind != "erasure":
            raise InvalidInput(f"case {case.id} is an {case.kind} request, not an erasure request")
        if case.identity_state != "verified":
            raise ErasureBlocked(
                f"case {case.id}: the requester's identity is {case.identity_state}; "
                f"verify it first (`disgorge request verify {case.id} --method ...`)"
            )
        if case.erasure_id is not None:
            linked = erasure_service.show(ctx, case.erasure_id)
            if linked["state"] not in ("cancelled", "denied"):
                raise ErasureBlocked(f"case {case.id} already started erasure {case.erasure_id}")
    erasure = erasure_service.erase(
        ctx, "subject", ref, reason=reason, execute=execute, wait=wait, at=instant
    )
    with ctx.sessions.begin() as session:
        case = _find(session, case_id)
        case.erasure_id, case.updated_at = erasure["id"], instant
        audit.append(
            session,
            "case.erasure_started",
            {"case": case.id, "subject": ref, "erasure": erasure["id"]},
            actor=ctx.actor,
            at=instant,
        )
        view = _view(case, instant)
    return {"case": view, "erasure": erasure_service.show(ctx, erasure["id"])}


class CaseExport(TypedDict):
    """An access case after ``request export``: the case (its ``export_sha256`` set) and
    what the export holds."""

    case: CaseView
    export: SubjectExport


def export_case(
    ctx: Context, case_id: str, out: str | Path, *, at: str | datetime | None = None
) -> CaseExport:
    """Answer an access case: write its subject's export to ``out`` (outside the workspace;
    :func:`disgorge.dsr.export.export_subject`), once the requester's identity is verified,
    and record the export's sha256 on the case (what was handed over can be proved later)."""
    instant = when(at)
    with ctx.reader() as session:
        case = _find(session, case_id)
        case_id, ref = case.id, case.subject_ref
        _open(case, "export for")
        if case.kind != "access":
            raise InvalidInput(f"case {case.id} is an {case.kind} request, not an access request")
        if case.identity_state != "verified":
            raise ErasureBlocked(
                f"case {case.id}: the requester's identity is {case.identity_state}; an export holds "
                f"their photos: verify it first (`disgorge request verify {case.id} --method ...`)"
            )
    export = export_subject(ctx, ref, out, at=instant)
    with ctx.sessions.begin() as session:
        case = _find(session, case_id)
        case.export_sha256, case.updated_at = export["sha256"], instant
        audit.append(
            session,
            "case.export_made",
            {"case": case.id, "subject": ref, "sha256": export["sha256"]},
            actor=ctx.actor,
            at=instant,
        )
        view = _view(case, instant)
    return {"case": view, "export": export}
