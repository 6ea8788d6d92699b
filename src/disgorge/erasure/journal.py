"""The erasure journal: a request's row and its steps' rows, read and marked.

Everything the runner resumes from is here, so everything here refuses to guess: a
request whose plan lacks a key, a step row that is missing, unknown, out of order or not
valid JSON is a damaged journal (:func:`damaged`), an error that names the request and
says how to recover, and nothing more is done for it. A step is marked done in its own
transaction (or, for the steps whose work is one transaction, in that one), so a crash
leaves every step either done and marked or to be run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .._time import iso, utcnow
from ..catalog.models import ErasureRequest, ErasureStep
from ..errors import IntegrityError, InvalidInput, NotFound

__all__ = [
    "PLAN_KEYS",
    "StepView",
    "add_steps",
    "check_steps",
    "damaged",
    "find_request",
    "mark_done",
    "step_views",
]

#: what every request's plan holds; one without them cannot be run or shown
PLAN_KEYS = (
    "scope",
    "key",
    "assets",
    "counts",
    "subjects_to_shred",
    "datasets",
    "models_unlearn",
    "models_retire",
    "artifacts_retire",
)


class StepView(TypedDict):
    """One step of a request as ``erasure show`` and the certificate list it."""

    step: str
    done_at: str | None
    summary: dict[str, Any] | None


def damaged(request_id: str, detail: str) -> IntegrityError:
    """The error for a journal that cannot be trusted: what is wrong and how to go on."""
    return IntegrityError(
        f"the journal of erasure {request_id} is damaged: {detail}. Nothing more is done for it; "
        "restore the catalog from a backup (or repair the row) and run `disgorge erasure resume` again"
    )


def find_request(session: Session, request_id: str) -> ErasureRequest:
    """The request with this id or unambiguous id prefix, its plan checked for every key."""
    ids = session.scalars(
        select(ErasureRequest.id).where(ErasureRequest.id.startswith(request_id)).limit(2)
    ).all()
    if not ids:
        raise NotFound(f"no erasure request {request_id}")
    if len(ids) > 1:
        raise InvalidInput(f"erasure id prefix {request_id} is ambiguous")
    try:
        req = session.get(ErasureRequest, ids[0])
    except ValueError as exc:  # a JSON column that does not decode
        raise damaged(ids[0], f"a column is not valid JSON ({exc})") from None
    assert req is not None
    missing = [k for k in PLAN_KEYS if not isinstance(req.plan, dict) or k not in req.plan]
    if missing:
        raise damaged(req.id, f"its plan lacks {', '.join(missing)}")
    return req


def add_steps(session: Session, req: ErasureRequest, names: Sequence[str]) -> None:
    """The journal of an approved request: one row per step, none done."""
    for seq, name in enumerate(names):
        session.add(ErasureStep(request_id=req.id, seq=seq, name=name))


def check_steps(session: Session, req: ErasureRequest, names: Sequence[str]) -> None:
    """The journal must hold exactly the steps ``names``, in order: a missing or unknown
    step is never skipped or guessed at."""
    try:
        rows = session.execute(
            select(ErasureStep.seq, ErasureStep.name, ErasureStep.summary)
            .where(ErasureStep.request_id == req.id)
            .order_by(ErasureStep.seq)
        ).all()
    except ValueError as exc:
        raise damaged(req.id, f"a step summary is not valid JSON ({exc})") from None
    found = [(seq, name) for seq, name, _ in rows]
    if found != list(enumerate(names)):
        missing = [name for name in names if name not in {n for _, n in found}]
        unknown = [name for _, name in found if name not in names]
        detail = "; ".join(
            part
            for part in (
                f"missing step(s) {', '.join(missing)}" if missing else "",
                f"unknown step(s) {', '.join(unknown)}" if unknown else "",
            )
            if part
        )
        raise damaged(req.id, detail or "its steps are out of order")


def mark_done(session: Session, request_id: str, name: str, summary: dict[str, Any]) -> None:
    """Mark a step done with its summary, and renew the request's claim (a heartbeat: a
    claim on another host expires when its runner stops marking steps)."""
    now = utcnow()
    session.execute(
        update(ErasureStep)
        .where(ErasureStep.request_id == request_id, ErasureStep.name == name)
        .values(done_at=now, summary=summary)
    )
    session.execute(update(ErasureRequest).where(ErasureRequest.id == request_id).values(claimed_at=now))


def step_views(session: Session, request_id: str, *, done_only: bool = False) -> list[StepView]:
    """The request's steps in order (only those done, for the certificate)."""
    try:
        rows = session.scalars(
            select(ErasureStep).where(ErasureStep.request_id == request_id).order_by(ErasureStep.seq)
        ).all()
    except ValueError as exc:
        raise damaged(request_id, f"a step summary is not valid JSON ({exc})") from None
    return [
        {"step": s.name, "done_at": iso(s.done_at), "summary": s.summary}
        for s in rows
        if s.done_at or not done_only
    ]
