"""The steps for what was made from the photos: models and dataset versions.

They run before anything personal is destroyed, while the photos can still be read:
unlearning retrains SISA shards without them, and a dataset's new version is derived by
leaving their members out. Each is idempotent: a model version this erasure already made
is found again by the reason recorded on its run, and an artifact already retired or
erased is left as it is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .._time import utcnow
from ..catalog import in_chunks
from ..catalog.models import Artifact, DatasetMember, ErasureRequest, Run
from ..context import Context
from ..errors import NotFound
from ._step import Execution, step

__all__ = ["derive_datasets", "retire_models", "unlearn_models"]


@step("unlearn_models")
def unlearn_models(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """SISA models forget the photos: new versions, the old ones retired."""
    from ..training.lifecycle import unlearn_model
    from ..training.registry import find_model

    ctx = execution.ctx
    results = []
    for m in req.plan["models_unlearn"]:
        with ctx.reader() as session:
            earlier = _unlearned_before(session, req, m)
            if earlier is not None:  # done by a run of this step that was interrupted
                results.append(earlier)
                continue
            try:
                current = find_model(session, m["name"])
            except NotFound:
                continue
            if current.state != "active":
                continue
        try:
            result = unlearn_model(ctx, m["name"], asset_ids=req.plan["assets"], reason=f"erasure {req.id}")
        except NotFound as exc:  # its checkpoints are gone (a catalog restored from a backup)
            results.append(_retire_instead(ctx, req, m, str(exc)))
            continue
        results.append(
            {
                "from": result.get("from"),
                "model": result["model"],
                "forgotten": result["forgotten"],
                "forgetting_audit": result.get("forgetting_audit"),
            }
        )
    return {"unlearned": results}


def _retire_instead(ctx: Context, req: ErasureRequest, m: dict[str, Any], why: str) -> dict[str, Any]:
    """A SISA model that cannot be unlearned (its shards' checkpoints are gone: a catalog
    restored from a backup names a version whose files an erasure destroyed) is retired,
    with everything derived from it, and the summary says so."""
    from ..training.registry import retire_cascade

    with ctx.sessions.begin() as session:
        art = session.get(Artifact, m["id"])
        retired = (
            retire_cascade(session, art, reason=f"erasure {req.id}", actor=ctx.actor, at=utcnow())
            if art is not None and art.state == "active"
            else []
        )
    return {"from": m["model"], "model": None, "forgotten": 0, "retired_instead": retired, "why": why}


def _unlearned_before(session: Session, req: ErasureRequest, m: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a model version this erasure already made from ``m``, if any."""
    rows = session.execute(
        select(Artifact, Run)
        .join(Run, Run.id == Artifact.run_id)
        .where(Artifact.kind == "model", Artifact.name == m["name"])
    ).all()
    for art, run in rows:
        params = run.parameters or {}
        if params.get("reason") == f"erasure {req.id}":
            return {
                "from": f"model:{m['name']}@{params.get('from')}",
                "model": f"model:{art.name}@{art.version}",
                "forgotten": params.get("forgotten"),
                "forgetting_audit": (art.extra or {}).get("forgetting_audit"),
            }
    return None


@step("retire_models")
def retire_models(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """Other models, and everything derived from them, are retired; models and dataset
    versions legal holds keep become ``withheld`` (kept, used by nothing)."""
    from ..training.registry import retire_cascade

    ctx = execution.ctx
    retired: list[str] = []
    at = utcnow()
    with ctx.sessions.begin() as session:
        for m in req.plan["models_retire"]:
            art = session.get(Artifact, m["id"])
            if art is not None and art.state == "withheld":  # its hold was released: retired now
                art.state = "active"
            if art is not None and art.state == "active":
                retired += retire_cascade(session, art, reason=f"erasure {req.id}", actor=ctx.actor, at=at)
        for a in req.plan["artifacts_retire"]:
            art = session.get(Artifact, a["id"])
            if art is not None and art.state in ("active", "withheld"):
                art.state = "retired"
                retired.append(a["artifact"])
        withheld = []
        for m in (req.plan.get("withheld") or {}).get("models", []):
            art = session.get(Artifact, m["id"])
            if art is not None and art.state == "active":
                art.state = "withheld"
            withheld.append(m["model"])
    summary: dict[str, Any] = {"retired": sorted(set(retired))}
    if withheld:
        summary["withheld"] = sorted(withheld)
    return summary


@step("derive_datasets")
def derive_datasets(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """Dataset versions holding the photos are marked erased, and the latest version of
    each dataset gets a new MAJOR version without them."""
    from ..datasets import derive_without
    from ..datasets.build import find_dataset

    ctx = execution.ctx
    assets = set(req.plan["assets"])
    created: list[str] = []
    at = utcnow()
    with ctx.sessions.begin() as session:
        names = set()
        for d in req.plan["datasets"]:
            art = session.get(Artifact, d["id"])
            if art is not None and art.state in ("active", "withheld"):
                art.state = "erased"
            names.add(d["dataset"].partition("@")[0])
        for name in sorted(names):
            latest = find_dataset(session, name)
            held = _held(session, latest.artifact_id, req.plan["assets"])
            if not held:
                continue
            if held >= latest.members:
                _erase_artifact(session, latest.artifact_id)
                continue
            new = derive_without(
                session,
                f"{name}@{latest.version}",
                assets,
                at=at,
                actor=ctx.actor,
                reason=f"erasure {req.id}",
            )
            _erase_artifact(session, latest.artifact_id)
            created.append(f"{new.name}@{new.version}")
    return {"new_versions": created}


def _erase_artifact(session: Session, artifact_id: str) -> None:
    art = session.get(Artifact, artifact_id)
    assert art is not None  # a dataset version is an artifact (same id)
    art.state = "erased"


def _held(session: Session, dataset_id: str, asset_ids: list[str]) -> int:
    """How many of ``asset_ids`` the dataset version holds (by index, not by reading it)."""
    return sum(
        session.scalar(
            select(func.count()).where(
                DatasetMember.dataset_id == dataset_id, DatasetMember.asset_id.in_(part)
            )
        )
        or 0
        for part in in_chunks(asset_ids)
    )
