"""Retention schedules: a source's or a dataset's photos are kept so many days, then erased.

A privacy policy that says "we keep your photos 30 days" is a promise the workspace must
keep without anyone asking. ``disgorge source retention app --days 30`` records the rule;
``disgorge retention run`` (from cron, or ``POST /v1/retention/run``) erases every photo
whose time is up, through the normal erasure path: one plan, the journal, the forensic
verification, and **one signed certificate per run**, however many rules expired photos.

The clock is the photo's ingest (:attr:`~disgorge.catalog.models.Asset.ingested_at`): a
photo expires ``days`` after it was collected. A photo under several rules (its source's,
and the rule of a dataset it is a member of, any version) expires at the earliest: a
retention period is a maximum, and the shortest one binds. Only active photos count; one
a legal hold keeps is planned like any other and left ``withheld`` by the erasure
(:mod:`disgorge.holds`), so it is not counted again by later runs and is erased
when the hold is released (:func:`disgorge.dsr.holds.finish_withheld`).

The run is approved by the workspace itself (:func:`disgorge.erasure.service.erase_set`),
not by the two-person rule: the decision was the rule, set by an administrator and
recorded in the audit log. Rules name sources and datasets, never people, so the reason on
the certificate ("retention: source app keeps photos 30 days") holds no personal data.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._time import iso
from ..catalog.dsr_models import RetentionRule
from ..catalog.models import Asset, DatasetMember, DatasetVersion, ErasureRequest, Source
from ..context import Context, when
from ..erasure import service as erasure_service
from ..erasure.plan import OPEN_STATES, PlanSummary, make_plan, summarize
from ..erasure.service import ErasureView
from ..errors import ErasureBlocked, InvalidInput, NotFound
from ..sources import find_source

__all__ = [
    "KINDS",
    "MAX_DAYS",
    "RetentionDue",
    "RetentionRun",
    "RuleDue",
    "RuleView",
    "clear_retention",
    "list_retention",
    "retention_due",
    "run_retention",
    "set_retention",
]

#: what a rule names
KINDS = ("source", "dataset")
#: a century: more is a typo (and past what a datetime can subtract from today)
MAX_DAYS = 36_500
#: the ``ref`` prefix of a retention run's erasure (its scope is a ``set``)
REF_PREFIX = "retention:"


class RuleView(TypedDict):
    """One retention rule: what it names, how many days its photos are kept, who set it."""

    kind: str
    name: str
    days: int
    set_at: str
    set_by: str


class RuleDue(TypedDict):
    """A rule and what it has expired at an instant."""

    kind: str
    name: str
    days: int
    #: photos ingested at or before this instant have expired under the rule
    cutoff: str
    #: active photos expired under the rule, less those an unfinished retention erasure
    #: covers (a photo under two rules counts under each)
    expired: int


class RetentionDue(TypedDict):
    """What a retention run at ``at`` would erase, rule by rule."""

    at: str
    rules: list[RuleDue]
    #: distinct photos expired under at least one rule (less those an unfinished retention
    #: erasure covers): what a run erases
    photos: int
    #: unfinished retention erasures (ids): what they cover is left to them
    pending: list[str]


class RetentionRun(TypedDict):
    """A retention run: what had expired, and the one erasure that erases it."""

    at: str
    dry_run: bool
    rules: list[RuleDue]
    photos: int
    pending: list[str]
    #: the erasure's plan (a dry run's, or the erasure's own); None when nothing expired
    plan: PlanSummary | None
    #: the erasure started (None: a dry run, or nothing had expired)
    erasure: ErasureView | None


def _view(rule: RetentionRule) -> RuleView:
    return {
        "kind": rule.target_kind,
        "name": rule.target_name,
        "days": rule.days,
        "set_at": iso(rule.set_at),
        "set_by": rule.set_by,
    }


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"a retention rule names a source or a dataset, not {kind!r}")
    return kind


def _check_target(session: Session, kind: str, name: str) -> None:
    """NotFound for a source or dataset the workspace does not hold."""
    if kind == "source":
        find_source(session, name)
    elif "@" in name:
        raise InvalidInput(f"a rule covers every version of a dataset: name it without @VERSION ({name!r})")
    elif session.scalar(select(DatasetVersion.name).where(DatasetVersion.name == name).limit(1)) is None:
        raise NotFound(f"no dataset named {name!r}")


def set_retention(
    ctx: Context, kind: str, name: str, *, days: int, at: str | datetime | None = None
) -> RuleView:
    """Keep a source's or a dataset's photos (every version's) ``days`` days after their
    ingest; a rule already on it is replaced. :func:`run_retention` erases what expired.

    A shorter rule expires photos at the next run, photos already past it included: set it
    with ``retention run --dry-run`` at hand. :func:`clear_retention` removes a rule."""
    _check_kind(kind)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(
            f"retention is a whole number of days from 1 to {MAX_DAYS}, not {days!r} "
            "(to keep photos without limit, clear the rule)"
        )
    instant = when(at)
    with ctx.sessions.begin() as session:
        _check_target(session, kind, name)
        rule = session.get(RetentionRule, (kind, name))
        before = rule.days if rule is not None else None
        if rule is None:
            rule = RetentionRule(target_kind=kind, target_name=name)
            session.add(rule)
        rule.days, rule.set_at, rule.set_by = days, instant, ctx.actor
        audit.append(
            session,
            "retention.set",
            {"target": f"{kind}:{name}", "days": days, "before": before},
            actor=ctx.actor,
            at=instant,
        )
        return _view(rule)


def clear_retention(ctx: Context, kind: str, name: str, *, at: str | datetime | None = None) -> RuleView:
    """Remove the retention rule on a source or a dataset (its photos are then kept without
    limit, unless another rule reaches them); returns the rule removed."""
    _check_kind(kind)
    instant = when(at)
    with ctx.sessions.begin() as session:
        rule = session.get(RetentionRule, (kind, name))
        if rule is None:
            raise NotFound(f"no retention rule on {kind} {name!r}")
        view = _view(rule)
        session.delete(rule)
        audit.append(
            session,
            "retention.cleared",
            {"target": f"{kind}:{name}", "days": rule.days},
            actor=ctx.actor,
            at=instant,
        )
        return view


def list_retention(ctx: Context) -> list[RuleView]:
    """Every retention rule, sources first, by name."""
    query = select(RetentionRule).order_by(RetentionRule.target_kind.desc(), RetentionRule.target_name)
    with ctx.reader() as session:
        return [_view(r) for r in session.scalars(query)]


def _expired(session: Session, rule: RetentionRule, cutoff: datetime) -> set[str]:
    """The active photos a rule has expired: ingested at or before ``cutoff``."""
    due: list[ColumnElement[bool]] = [Asset.state == "active", Asset.ingested_at <= cutoff]
    if rule.target_kind == "source":
        query = (
            select(Asset.id)
            .join(Source, Source.id == Asset.source_id)
            .where(*due, Source.name == rule.target_name)
        )
    else:  # a member of any version of the dataset, derived versions included
        query = (
            select(Asset.id)
            .join(DatasetMember, DatasetMember.asset_id == Asset.id)
            .join(DatasetVersion, DatasetVersion.artifact_id == DatasetMember.dataset_id)
            .where(*due, DatasetVersion.name == rule.target_name)
            .distinct()
        )
    return set(session.scalars(query))


def _pending(session: Session) -> tuple[list[str], set[str]]:
    """Unfinished retention erasures (ids) and the photos they cover."""
    ids: list[str] = []
    covered: set[str] = set()
    for request_id, plan in session.execute(
        select(ErasureRequest.id, ErasureRequest.plan)
        .where(
            ErasureRequest.scope_kind == "set",
            ErasureRequest.scope_ref.startswith(REF_PREFIX),
            ErasureRequest.state.in_(OPEN_STATES),
        )
        .order_by(ErasureRequest.created_at)
    ):
        ids.append(request_id)
        covered.update(((plan or {}).get("set") or {}).get("assets", []))
    return ids, covered


def _due(session: Session, instant: datetime) -> tuple[list[RuleDue], list[str], list[str]]:
    """(per rule, the photos to erase, unfinished retention erasures) at ``instant``."""
    pending, covered = _pending(session)
    rules: list[RuleDue] = []
    photos: set[str] = set()
    for rule in session.scalars(
        select(RetentionRule).order_by(RetentionRule.target_kind.desc(), RetentionRule.target_name)
    ):
        cutoff = instant - timedelta(days=rule.days)
        expired = _expired(session, rule, cutoff) - covered
        photos |= expired
        rules.append(
            {
                "kind": rule.target_kind,
                "name": rule.target_name,
                "days": rule.days,
                "cutoff": iso(cutoff),
                "expired": len(expired),
            }
        )
    return rules, sorted(photos), pending


def retention_due(ctx: Context, *, at: str | datetime | None = None) -> RetentionDue:
    """What has expired at ``at`` (now by default), per rule; changes nothing."""
    instant = when(at)
    with ctx.reader() as session:
        rules, photos, pending = _due(session, instant)
    return {"at": iso(instant), "rules": rules, "photos": len(photos), "pending": pending}


def _reason(rules: list[RuleDue]) -> str:
    """The certificate's reason: the rules that expired photos (names, never people)."""
    parts = [f"{r['kind']} {r['name']} keeps photos {r['days']} days" for r in rules if r["expired"]]
    return "retention: " + "; ".join(parts)


def run_retention(
    ctx: Context,
    *,
    dry_run: bool = False,
    at: str | datetime | None = None,
    run: bool = True,
    wait: float = 30.0,
) -> RetentionRun:
    """Erase every photo expired at ``at`` (now by default) under the retention rules, as
    one erasure with one certificate; nothing when nothing has expired.

    ``dry_run`` plans it and changes nothing. Photos an unfinished retention erasure
    already covers are left to it (a run queued by the API, or one a crash interrupted:
    ``erasure resume`` finishes it). Without ``run`` the erasure waits, approved, for the
    API's job runner; ``wait`` is how long it waits for recipients' certificates."""
    instant = when(at)
    with ctx.reader() as session:
        rules, photos, pending = _due(session, instant)
        ref = f"{REF_PREFIX}{instant.date().isoformat()}:{uuid.uuid4().hex[:8]}"
        members: dict[str, Any] = {
            "assets": photos,
            "models": [],
            "subjects": [],
            "why": "expired under a retention rule",
            # one retention erasure open at a time: two runs at once (cron and the API) make one
            "exclusive": REF_PREFIX,
        }
        preview = summarize(make_plan(session, "set", ref, ref, members)) if dry_run and photos else None
    result: RetentionRun = {
        "at": iso(instant),
        "dry_run": dry_run,
        "rules": rules,
        "photos": len(photos),
        "pending": pending,
        "plan": preview,
        "erasure": None,
    }
    if dry_run or not photos:
        return result
    try:
        view = erasure_service.erase_set(ctx, ref, members, reason=_reason(rules), at=instant, run=False)
    except ErasureBlocked:  # another run's erasure was made meanwhile: what it covers is left to it
        with ctx.reader() as session:
            result["rules"], photos, result["pending"] = _due(session, instant)
        result["photos"] = len(photos)
        return result
    if run:
        try:
            view = erasure_service.resume(ctx, view["id"], wait=wait)
        except ErasureBlocked:  # another command took it up on opening: it runs there
            view = erasure_service.show(ctx, view["id"])
    with ctx.sessions.begin() as session:
        audit.append(
            session,
            "retention.run",
            {
                "erasure": view["id"],
                "photos": len(photos),
                "rules": [f"{r['kind']}:{r['name']}:{r['days']}d" for r in rules if r["expired"]],
            },
            actor=ctx.actor,
            at=instant,
        )
    result["plan"], result["erasure"] = view["plan"], view
    return result
