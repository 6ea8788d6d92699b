"""Legal holds: keep a subject's, a source's, a dataset's or a model's data despite erasures.

A litigation hold or a regulator's preservation order outranks an erasure request for the
data it names. ``disgorge hold add`` records one (what, why, who, when); every erasure
planned or approved while it is active erases the rest of its scope and leaves the held
photos and models ``withheld`` (:mod:`disgorge.holds`), its certificate saying so
with the hold's reason. ``disgorge hold release`` ends it and finishes what it held back:
each erasure with withheld items no other hold keeps gets a follow-up erasure of exactly
those items, approved by the workspace (the first erasure was approved already), with its
own certificate naming the erasure it finishes.

Holds are recorded by pseudonymous ref (a subject's ``sub_`` ref) and id; their reasons
go on certificates, so a reason names a matter, never a person.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._time import iso
from ..catalog import in_chunks
from ..catalog.dsr_models import LegalHold
from ..catalog.models import Artifact, Asset, DatasetVersion, ErasureRequest, Source
from ..context import Context, when
from ..erasure import service as erasure_service
from ..erasure.service import ErasureView
from ..errors import ErasureBlocked, InvalidInput, NotFound
from ..holds import HOLD_KINDS, held_artifacts, held_assets
from ..subjects import find_subject

__all__ = [
    "HOLD_KINDS",
    "HoldReleased",
    "HoldView",
    "add_hold",
    "finish_released",
    "finish_withheld",
    "list_holds",
    "release_hold",
]

#: a hold's reason goes on certificates: long enough to name the matter
MIN_HOLD_REASON = 10
#: erasures past the step that marks withheld items (their withheld items are owed)
_PAST_TOMBSTONE = ("executing", "verifying", "awaiting_recipients", "completed", "failed")


class HoldView(TypedDict):
    """One hold: what it keeps (by ref), why, and whether it is still active."""

    id: str
    kind: str
    #: the subject's ``sub_`` ref, ``source:NAME``, ``dataset:NAME`` or ``model:NAME``
    target: str
    reason: str
    active: bool
    created_at: str
    created_by: str
    released_at: str | None
    released_by: str | None
    release_reason: str | None


class HoldReleased(TypedDict):
    """A released hold, and the erasures that finished what it had held back."""

    hold: HoldView
    #: the follow-up erasures started (each names the erasure it finishes)
    erasures: list[ErasureView]


def _view(hold: LegalHold) -> HoldView:
    return {
        "id": hold.id,
        "kind": hold.target_kind,
        "target": hold.target_ref,
        "reason": hold.reason,
        "active": hold.released_at is None,
        "created_at": iso(hold.created_at) or "",
        "created_by": hold.created_by,
        "released_at": iso(hold.released_at),
        "released_by": hold.released_by,
        "release_reason": hold.release_reason,
    }


def _check_reason(reason: str, what: str) -> str:
    text = (reason or "").strip()
    if len(text) < MIN_HOLD_REASON:
        raise InvalidInput(
            f"{what} needs a reason of at least {MIN_HOLD_REASON} characters (it goes on erasure "
            "certificates; name the matter, not a person), e.g. --reason 'litigation 2026-CV-0142'"
        )
    return text


def _target(ctx: Context, session: Session, kind: str, name: str) -> tuple[str, str]:
    """(key, ref) of what a hold names; NotFound for what the workspace does not hold."""
    if kind == "subject":
        subject = find_subject(session, ctx.vault, name)
        return str(subject.id), subject.ref
    if kind == "source":
        source = session.scalar(select(Source).where(Source.name == name))
        if source is None:
            raise NotFound(f"no source named {name!r}")
        return str(source.id), f"source:{name}"
    if kind == "dataset":
        dataset = name.partition("@")[0]
        if session.scalar(select(DatasetVersion.name).where(DatasetVersion.name == dataset).limit(1)) is None:
            raise NotFound(f"no dataset named {dataset!r}")
        return dataset, f"dataset:{dataset}"
    if kind == "model":
        model = name.partition("@")[0]
        found = select(Artifact.id).where(Artifact.kind == "model", Artifact.name == model).limit(1)
        if session.scalar(found) is None:
            raise NotFound(f"no model named {model!r}")
        return model, f"model:{model}"
    raise InvalidInput(f"a hold names one of {', '.join(HOLD_KINDS)}, not {kind!r}")


def add_hold(
    ctx: Context, kind: str, name: str, *, reason: str, at: str | datetime | None = None
) -> HoldView:
    """Place a legal hold on a subject, a source, a dataset (every version) or a model
    (every version); erasures planned or approved from now on leave what it keeps withheld.

    An erasure already running when the hold is placed was planned without it and goes on."""
    text = _check_reason(reason, "a legal hold")
    instant = when(at)
    with ctx.sessions.begin() as session:
        key, ref = _target(ctx, session, kind, name)
        hold = LegalHold(
            id=uuid.uuid4().hex,
            target_kind=kind,
            target_key=key,
            target_ref=ref,
            reason=text,
            created_at=instant,
            created_by=ctx.actor,
        )
        session.add(hold)
        audit.append(session, "hold.added", {"hold": hold.id, "target": ref}, actor=ctx.actor, at=instant)
        return _view(hold)


def list_holds(ctx: Context, *, active_only: bool = False) -> list[HoldView]:
    """Every hold, oldest first (``active_only``: those not released)."""
    query = select(LegalHold).order_by(LegalHold.created_at, LegalHold.id)
    if active_only:
        query = query.where(LegalHold.released_at.is_(None))
    with ctx.reader() as session:
        return [_view(h) for h in session.scalars(query)]


def _find(session: Session, hold_id: str) -> LegalHold:
    ids = session.scalars(select(LegalHold.id).where(LegalHold.id.startswith(hold_id)).limit(2)).all()
    if not ids:
        raise NotFound(f"no legal hold {hold_id}")
    if len(ids) > 1:
        raise InvalidInput(f"hold id prefix {hold_id} is ambiguous")
    hold = session.get(LegalHold, ids[0])
    assert hold is not None
    return hold


def release_hold(
    ctx: Context, hold_id: str, *, reason: str, at: str | datetime | None = None, run: bool = True
) -> HoldReleased:
    """Release a hold, then finish every erasure it held back (:func:`finish_withheld`);
    without ``run`` the follow-ups wait, approved, for the API's job runner."""
    text = _check_reason(reason, "releasing a legal hold")
    instant = when(at)
    with ctx.sessions.begin() as session:
        hold = _find(session, hold_id)
        if hold.released_at is not None:
            raise InvalidInput(f"legal hold {hold.id} was released on {iso(hold.released_at)}")
        hold.released_at, hold.released_by, hold.release_reason = instant, ctx.actor, text
        audit.append(session, "hold.released", {"hold": hold.id}, actor=ctx.actor, at=instant)
        view = _view(hold)
    return {"hold": view, "erasures": finish_withheld(ctx, at=instant, run=run)}


def finish_withheld(ctx: Context, *, at: datetime | None = None, run: bool = True) -> list[ErasureView]:
    """Start a follow-up erasure for every erasure whose withheld items no hold keeps any
    more (one already open for an erasure is left to finish what it covers)."""
    instant = when(at)
    pending: list[tuple[str, list[str], list[str]]] = []
    with ctx.reader() as session:
        for req in session.scalars(
            select(ErasureRequest)
            .where(ErasureRequest.state.in_(_PAST_TOMBSTONE))
            .order_by(ErasureRequest.created_at)
        ):
            withheld = (req.plan or {}).get("withheld") or {}
            if not withheld.get("assets") and not withheld.get("models"):
                continue
            photos = [
                a
                for part in in_chunks(withheld.get("assets", []))
                for a in session.scalars(
                    select(Asset.id).where(Asset.id.in_(part), Asset.state == "withheld")
                )
            ]
            models = [
                m["id"]
                for m in withheld.get("models", [])
                if session.scalar(select(Artifact.state).where(Artifact.id == m["id"])) == "withheld"
            ]
            still_photos = held_assets(session, photos) if photos else {}
            still_models = held_artifacts(session, models) if models else {}
            free_photos = [a for a in photos if a not in still_photos]
            free_models = [m for m in models if m not in still_models]
            if free_photos or free_models:
                pending.append((req.id, free_photos, free_models))
    started = []
    for request_id, photos, models in pending:
        why = f"held back from erasure {request_id}; hold released"
        members = {"assets": photos, "models": models, "why": why}
        try:
            # one open follow-up per erasure: its scope ref is the erasure's, and planning
            # refuses a second one while the first is open (checked in the writer
            # transaction that records it, so two releases at once start one)
            view = erasure_service.erase_set(
                ctx,
                f"release:{request_id}",
                members,
                reason=f"finishing erasure {request_id}: the legal hold on part of it was released",
                at=instant,
                run=False,
            )
        except (ErasureBlocked, NotFound):
            continue  # another process's release started (or finished) it meanwhile
        if run:
            try:
                view = erasure_service.resume(ctx, view["id"])
            except ErasureBlocked:  # another command took it up on opening: it runs there
                view = erasure_service.show(ctx, view["id"])
        started.append(view)
    return started


def finish_released(ctx: Context) -> list[ErasureView]:
    """:func:`finish_withheld`, when something withheld may have lost its last hold. Every
    command runs it on opening the workspace, next to resuming interrupted erasures: a
    release killed between its commit and its follow-up must not leave photos withheld
    with no hold keeping them. Items become free only by a release, so a workspace that
    never released a hold pays one query on the (small) holds table and nothing else:
    ``assets.state`` has no index, and this runs before every command."""
    with ctx.reader() as session:
        released = session.scalar(select(LegalHold.id).where(LegalHold.released_at.is_not(None)).limit(1))
        if released is None:
            return []
        photo = session.scalar(select(Asset.id).where(Asset.state == "withheld").limit(1))
        model = session.scalar(select(Artifact.id).where(Artifact.state == "withheld").limit(1))
    return finish_withheld(ctx) if photo or model else []
