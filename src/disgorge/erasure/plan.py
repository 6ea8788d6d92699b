"""The erasure planner: from a scope to the complete blast radius, from the lineage.

Scopes: a subject (every photo they own *or appear in* — a photo that shows the subject
is their personal data whoever owns it, so it goes, and the plan says so), one photo, a
whole source, or a model. From the photos the plan follows the lineage: their derived
values (PDQ hashes, faces, embeddings, crops), the face-index entries, every dataset
version holding them (each gets a new MAJOR version without them), every model trained
on those versions (SISA models are unlearned, others retired) and every artifact derived
from a retired model (retired in turn).

Fail closed: an artifact the planner cannot handle stops the plan with a message, so
nothing derived from the data is silently left behind.

A sender's request (scope ``request``) reaches only that sender's provenance: a photo it
sent that is also held through another provenance (another sender's transfer, a source of
this workspace's own) is not erased; the plan lists it under ``released`` (catalog ids, for
review) and the ``tombstone_assets`` step removes the sender's transfer items and terms for
it (``sharing/provenance.py``, design note 19).

A ``set`` scope is a list of photos (and, for a restore's replay, subjects and models)
named by whoever made it: a retention run, the release of a legal hold, a restored
backup's replay. Photos and models under a legal hold (:mod:`disgorge.holds`) are split off into
``withheld``: the plan erases the rest, keeps the subjects' keys their withheld photos
need, and the ``tombstone_assets`` and ``retire_models`` steps mark them withheld.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NotRequired, cast

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session, aliased
from typing_extensions import TypedDict

from ..catalog import PARAMS_PER_STATEMENT, in_chunks
from ..catalog.lineage import NodeRef, downstream
from ..catalog.models import (
    Artifact,
    Asset,
    AssetDerivative,
    AssetSubject,
    DatasetMember,
    DatasetVersion,
    ErasureRequest,
    IncomingRequest,
    Subject,
)
from ..errors import ErasureBlocked, IntegrityError, InvalidInput, NotFound
from ..holds import held_artifacts, held_assets, holds_on
from ..runs import ARTIFACT_KINDS
from ..sharing.outbox import recipients_of
from ..sharing.provenance import split_by_provenance

__all__ = ["OPEN_STATES", "SCOPES", "PlanSummary", "make_plan", "scope_assets", "summarize"]

#: ``request``: the photos an erasure request from a sender named (sharing/inbox.py);
#: ``set``: photos named by a retention run, a hold's release or a restore's replay
SCOPES = ("subject", "asset", "source", "model", "transfer", "request", "set")
#: states of a photo an erasure can still reach (``withheld``: kept by a legal hold)
_HELD_OR_ACTIVE = ("active", "withheld")
_RETIRABLE = {"crop", "embedding", "phash", "index", "export", "report"}


def _learned_only_these(session: Session, model: Artifact, in_scope: Any) -> bool:
    """Whether every photo of the dataset version a model was trained on is in the scope
    (then unlearning would leave it nothing: it is retired instead)."""
    ds = session.get(DatasetVersion, (model.extra or {}).get("dataset_id", ""))
    if ds is None:
        return False
    parts = list(in_chunks(in_scope)) if isinstance(in_scope, list) else [in_scope]
    erased = sum(
        session.scalar(
            select(func.count()).where(
                DatasetMember.dataset_id == ds.artifact_id, DatasetMember.asset_id.in_(part)
            )
        )
        or 0
        for part in parts
    )
    return erased >= ds.members


def _keep_keys_of_withheld(
    session: Session, subjects: list[int], held: dict[str, list[str]], assets: list[str]
) -> list[int]:
    """``subjects`` less those who own a photo that stays withheld: one legal holds keep from
    this plan, or one an earlier erasure withheld that this plan does not erase."""
    keep: set[int] = set()
    for held_part in in_chunks(sorted(held)):
        keep.update(session.scalars(select(Asset.owner_id).where(Asset.id.in_(held_part))))
    erased_here = set(assets)
    for part in in_chunks(subjects):
        for owner, asset_id in session.execute(
            select(Asset.owner_id, Asset.id).where(Asset.owner_id.in_(part), Asset.state == "withheld")
        ):
            if asset_id not in erased_here:
                keep.add(owner)
    return [s for s in subjects if s not in keep]


def _split_held_artifacts(
    session: Session,
    models_unlearn: dict[str, dict[str, Any]],
    models_retire: dict[str, dict[str, Any]],
    retire_other: dict[str, str],
) -> dict[tuple[str, str], list[str]]:
    """Take the models and dataset versions legal holds keep out of the plan's lists;
    returns (artifact id, label) -> hold ids."""
    ids = (
        [m["id"] for m in models_unlearn.values()]
        + [m["id"] for m in models_retire.values()]
        + list(retire_other.values())
    )
    held = held_artifacts(session, ids)
    withheld: dict[tuple[str, str], list[str]] = {}
    for table in (models_unlearn, models_retire):
        for label, info in list(table.items()):
            if info["id"] in held:
                withheld[(info["id"], label)] = held[info["id"]]
                del table[label]
    for label, art_id in list(retire_other.items()):
        if art_id in held:
            withheld[(art_id, label)] = held[art_id]
            del retire_other[label]
    return withheld


def _label(a: Artifact) -> str:
    if a.kind == "dataset_version":
        return f"dataset:{a.name}@{a.version}"
    return f"{a.kind}:{a.name}@{a.version}" if a.name else f"{a.kind}:{a.id}"


def _artifact(session: Session, artifact_id: str) -> Artifact:
    """An artifact the lineage names; a name without its row stops the plan (fail closed)."""
    art = session.get(Artifact, artifact_id)
    if art is None:
        raise IntegrityError(f"the lineage names artifact {artifact_id}, which the catalog lacks")
    return art


def scope_assets(session: Session, kind: str, key: str, members: dict[str, Any] | None = None) -> list[str]:
    """Active asset ids a scope covers right now (re-evaluated at execution for sources);
    a ``set`` covers its ``members["assets"]`` that are active or withheld."""
    if kind == "subject":
        subject_id = int(key)
        ids = select(AssetSubject.asset_id).where(AssetSubject.subject_id == subject_id)
        return sorted(session.scalars(select(Asset.id).where(Asset.id.in_(ids), Asset.state == "active")))
    if kind == "asset":
        return [key] if session.scalar(select(Asset.state).where(Asset.id == key)) == "active" else []
    if kind == "source":
        return sorted(
            session.scalars(select(Asset.id).where(Asset.source_id == int(key), Asset.state == "active"))
        )
    if kind == "request":
        incoming = session.get(IncomingRequest, key)
        named = incoming.asset_ids if incoming is not None else []
        return sorted(session.scalars(select(Asset.id).where(Asset.id.in_(named), Asset.state == "active")))
    if kind == "set":
        named = (members or {}).get("assets", [])
        return sorted(
            asset_id
            for part in in_chunks(named)
            for asset_id in session.scalars(
                select(Asset.id).where(Asset.id.in_(part), Asset.state.in_(_HELD_OR_ACTIVE))
            )
        )
    return []  # a transfer: what left is erased at the recipients, not here


#: states of a request that block a new one for the same scope
OPEN_STATES = ("planned", "approved", "executing", "verifying", "awaiting_recipients", "failed")


def make_plan(
    session: Session, kind: str, key: str, scope_ref: str, members: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The plan for a scope; ``key`` is the catalog key (subject id, asset id, source id,
    artifact id); a ``set`` scope names its ``members`` (``assets``, ``subjects`` and
    ``models`` ids, and ``why``; with ``exclusive``, a ref prefix of which one request at a
    time may be open: checked in the caller's writer transaction, so two at once make one)."""
    if kind not in SCOPES:
        raise InvalidInput(f"scope {kind!r}: expected one of {', '.join(SCOPES)}")
    running = session.execute(  # columns only: another request's damaged JSON must not matter here
        select(ErasureRequest.id, ErasureRequest.state).where(
            ErasureRequest.scope_kind == kind,
            ErasureRequest.scope_ref == scope_ref,
            ErasureRequest.state.in_(OPEN_STATES),
        )
    ).first()
    if running is not None:
        if running.state == "failed":  # half done: a second plan would miss what the first removed
            raise ErasureBlocked(
                f"erasure {running.id} of this scope failed part-way; "
                f"finish it with `disgorge erasure resume {running.id}`"
            )
        raise ErasureBlocked(
            f"erasure {running.id} of this scope is already {running.state}; wait for it or cancel it"
        )

    exclusive = (members or {}).get("exclusive")
    if kind == "set" and exclusive:  # e.g. retention runs: one open at a time, whatever their refs
        first = session.execute(
            select(ErasureRequest.id, ErasureRequest.state).where(
                ErasureRequest.scope_kind == "set",
                ErasureRequest.scope_ref.startswith(exclusive),
                ErasureRequest.state.in_(OPEN_STATES),
            )
        ).first()
        if first is not None:
            raise ErasureBlocked(f"erasure {first.id} ({exclusive}...) is still {first.state}; it goes first")
    assets = scope_assets(session, kind, key, members)
    released: list[str] = []
    if kind == "request":
        incoming = session.get(IncomingRequest, key)
        if incoming is not None:
            assets, released = split_by_provenance(session, incoming.peer_id, assets)
    # what the queries below match the photos by: a source's as a subquery on its indexed
    # column (100,000 ids as literal parameters cost seconds to bind and to search), others
    # as the list (a subject's, a request's: few)
    in_scope: Any = (
        select(Asset.id).where(Asset.source_id == int(key), Asset.state == "active")
        if kind == "source"
        else assets
    )
    held = held_assets(session, in_scope) if assets else {}
    if held:  # kept by legal holds: withheld, the rest goes
        assets = [a for a in assets if a not in held]
        in_scope = (
            in_scope.where(Asset.id.not_in(sorted(held)))
            if kind == "source" and len(held) <= PARAMS_PER_STATEMENT
            else assets
        )
    notes: list[str] = []
    plan: dict[str, Any] = {"scope": {"kind": kind, "ref": scope_ref}, "assets": assets}
    if kind == "set":
        plan["set"] = members or {}
    if kind == "request":
        plan["released"] = released
        if released:
            notes.append(
                f"{len(released)} photo(s) the sender sent are also held through another provenance: "
                "they stay; the sender's transfer items and terms for them are removed (listed for review)"
            )

    subjects_to_shred: list[int] = []
    if kind == "subject":
        subject_id = int(key)
        subjects_to_shred = [subject_id]
        others = session.execute(
            select(Asset.id, Subject.ref)
            .join(Subject, Subject.id == Asset.owner_id)
            .where(Asset.id.in_(assets), Asset.owner_id != subject_id)
        ).all()
        if others:
            owners = sorted({ref for _, ref in others})
            notes.append(
                f"{len(others)} photo(s) owned by {', '.join(owners)} show this subject: they are erased too "
                "(a photo of a person is that person's data); their owners' other photos are untouched"
            )
        plan["owned"] = len(assets) - len(others)
        plan["depicting"] = len(others)
    elif kind in ("source", "request", "set"):
        # subjects whose every photo is in the scope lose their key; others keep it (by the
        # owner index: NOT EXISTS a photo of theirs outside the scope)
        mine, other = aliased(Asset), aliased(Asset)
        inside: tuple[ColumnElement[bool], ...]
        if kind == "source":
            inside, outside = (
                (mine.source_id == int(key), mine.state == "active"),
                other.source_id != int(key),
            )
        else:
            inside, outside = (mine.id.in_(assets),), other.id.not_in(assets)
        subjects_to_shred = sorted(
            set(
                session.scalars(
                    select(mine.owner_id)
                    .distinct()
                    .where(
                        *inside,
                        ~exists().where(
                            other.owner_id == mine.owner_id, other.state.in_(_HELD_OR_ACTIVE), outside
                        ),
                    )
                )
            )
            | {
                int(s)
                for s in (members or {}).get("subjects", [])
                if session.scalar(select(Subject.state).where(Subject.id == int(s))) == "active"
            }
        )
    if subjects_to_shred:  # a withheld photo stays readable: its owner keeps the key
        subjects_to_shred = _keep_keys_of_withheld(session, subjects_to_shred, held, assets)
    plan["subjects_to_shred"] = subjects_to_shred
    plan["subject_refs"] = (
        sorted(session.scalars(select(Subject.ref).where(Subject.id.in_(subjects_to_shred))))
        if subjects_to_shred
        else []
    )

    derivative_counts = (
        dict(
            session.execute(
                select(AssetDerivative.kind, func.count())
                .where(AssetDerivative.asset_id.in_(in_scope))
                .group_by(AssetDerivative.kind)
            ).all()
        )
        if assets
        else {}
    )
    plan["derivatives"] = derivative_counts

    # dataset versions holding the photos, and what was trained on them
    datasets = (
        session.execute(
            select(DatasetMember.dataset_id, func.count())
            .where(DatasetMember.asset_id.in_(in_scope))
            .group_by(DatasetMember.dataset_id)
        ).all()
        if assets
        else []
    )
    plan_datasets = []
    models_unlearn: dict[str, dict[str, Any]] = {}
    models_retire: dict[str, dict[str, Any]] = {}
    retire_other: dict[str, str] = {}
    blocked: list[str] = []
    seeds: list[str] = []
    for dataset_id, count in datasets:
        ds = session.get(DatasetVersion, dataset_id)
        art = session.get(Artifact, dataset_id)
        if art is None or ds is None or art.state not in _HELD_OR_ACTIVE:
            continue
        plan_datasets.append({"dataset": f"{ds.name}@{ds.version}", "id": dataset_id, "items": count})
        seeds.append(dataset_id)
    if kind == "model":
        seeds = []
        art = _artifact(session, key)
        models_retire[_label(art)] = {"id": art.id, "why": "the model itself is the scope"}
        seeds.append(art.id)
    for model_id in (members or {}).get("models", []):
        art = _artifact(session, model_id)
        if art.state in _HELD_OR_ACTIVE:
            models_retire[_label(art)] = {"id": art.id, "why": (members or {}).get("why", "named by the set")}
            seeds.append(art.id)
    for seed in seeds:
        graph = downstream(session, NodeRef("artifact", seed, ""))
        for node in graph.nodes:
            if "artifact_id" not in node:
                continue
            art = _artifact(session, node["artifact_id"])
            if art.state not in _HELD_OR_ACTIVE:
                continue
            label = _label(art)
            if art.kind == "model":
                if (art.extra or {}).get("type") in ("face-id",) and kind != "model":
                    if _learned_only_these(session, art, in_scope):
                        models_retire.setdefault(
                            label,
                            {"id": art.id, "why": "every photo it learned from is erased: nothing to keep"},
                        )
                    else:
                        models_unlearn.setdefault(label, {"id": art.id, "name": art.name})
                else:
                    models_retire.setdefault(
                        label, {"id": art.id, "why": "trained outside disgorge: cannot be unlearned"}
                    )
            elif art.kind == "transfer":
                continue  # what left is reached through its items, below
            elif art.kind == "dataset_version" or art.kind in _RETIRABLE:
                retire_other.setdefault(label, art.id)
            elif art.kind not in ARTIFACT_KINDS:
                blocked.append(f"{label}: unknown artifact kind {art.kind!r}")
    # models derived from a model being retired are retired; from one being unlearned, retired too
    # (their training data included what the old version knew)
    for label, info in list(models_unlearn.items()):
        graph = downstream(session, NodeRef("artifact", info["id"], ""))
        for node in graph.nodes:
            if "artifact_id" in node and node["id"] != label:
                art = _artifact(session, node["artifact_id"])
                if art.state == "active" and art.kind != "dataset_version":
                    models_retire.setdefault(_label(art), {"id": art.id, "why": f"derived from {label}"})
    for label in models_retire:
        retire_other.pop(label, None)
    for label in models_unlearn:
        retire_other.pop(label, None)
    withheld_models = _split_held_artifacts(session, models_unlearn, models_retire, retire_other)
    if blocked:
        raise ErasureBlocked("the plan cannot handle: " + "; ".join(blocked))
    recipients = recipients_of(session, assets, key if kind == "transfer" else None)
    # a set naming models, or a restore's replay (it records fingerprints even if no photo is held)
    named_models = bool((members or {}).get("models") or (members or {}).get("replays"))
    if kind not in ("model", "transfer") and not assets and not released and not held and not named_models:
        raise NotFound("the scope holds no active photos: nothing to erase")
    if kind == "transfer" and not recipients:
        raise NotFound("the transfer carried no photo that is still listed: nothing to erase")
    if kind == "transfer":
        notes.append("the photos stay here (they were collected here); the recipient erases its copies")

    plan["datasets"] = plan_datasets
    plan["models_unlearn"] = [{"model": k, **v} for k, v in sorted(models_unlearn.items())]
    plan["models_retire"] = [{"model": k, **v} for k, v in sorted(models_retire.items())]
    plan["artifacts_retire"] = [{"artifact": k, "id": v} for k, v in sorted(retire_other.items())]
    plan["recipients"] = recipients
    hold_ids = sorted({h for ids in [*held.values(), *withheld_models.values()] for h in ids})
    plan["withheld"] = {
        "assets": sorted(held),
        "models": [{"model": label, "id": art_id} for art_id, label in sorted(withheld_models)],
        "holds": holds_on(session, hold_ids),
    }
    if hold_ids:
        notes.append(
            f"{len(held)} photo(s) and {len(withheld_models)} model(s) or dataset version(s) are kept "
            "by legal holds: they are withheld, and erased when the last hold on them is released"
        )
    plan["notes"] = notes
    plan["counts"] = {
        "photos": len(assets),
        "subjects_shredded": len(subjects_to_shred),
        **{f"derived_{k}": v for k, v in sorted(derivative_counts.items())},
        "dataset_versions": len(plan_datasets),
        "models_unlearned": len(models_unlearn),
        "models_retired": len(models_retire),
        "artifacts_retired": len(retire_other),
        "recipients": len({r["recipient"] for r in recipients}),
        "items_at_recipients": sum(r["items"] for r in recipients),
    }
    if hold_ids:  # only when holds met the plan: the counts of every other erasure are as before
        plan["counts"]["withheld_photos"] = len(held)
        plan["counts"]["withheld_models"] = len(withheld_models)
    if kind == "request":
        plan["counts"]["provenances_released"] = len(released)
    return plan


class PlanSummary(TypedDict):
    """A plan as ``erase --dry-run --json`` and ``erasure show`` give it: refs, names and
    counts, no internal ids."""

    scope: dict[str, str]
    counts: dict[str, int]
    #: a subject's scope: photos the subject owns, and others' photos showing them
    owned: int | None
    depicting: int | None
    subjects: list[str]
    datasets: list[dict[str, Any]]
    models_unlearn: list[str]
    models_retire: list[dict[str, str]]
    artifacts_retire: list[str]
    recipients: list[dict[str, Any]]
    notes: list[str]
    #: a sender's request: photos also held through another provenance (catalog ids)
    kept_for_review: NotRequired[list[str]]
    #: what legal holds keep: photo count, models, and the holds (id, target, reason)
    withheld: NotRequired[dict[str, Any]]
    by_kind: dict[str, int]


def summarize(plan: dict[str, Any]) -> PlanSummary:
    """The plan without internal ids (what `--dry-run --json` and certificates show)."""
    summary: dict[str, Any] = {
        "scope": plan["scope"],
        "counts": plan["counts"],
        "owned": plan.get("owned"),
        "depicting": plan.get("depicting"),
        "subjects": plan.get("subject_refs", []),
        "datasets": [{"dataset": d["dataset"], "items": d["items"]} for d in plan["datasets"]],
        "models_unlearn": [m["model"] for m in plan["models_unlearn"]],
        "models_retire": [{"model": m["model"], "why": m["why"]} for m in plan["models_retire"]],
        "artifacts_retire": [a["artifact"] for a in plan["artifacts_retire"]],
        "recipients": [
            {k: r[k] for k in ("recipient", "transfer", "items", "backfilled")} for r in plan["recipients"]
        ],
        "notes": plan["notes"],
    }
    if plan.get("released"):
        summary["kept_for_review"] = plan["released"]
    withheld = plan.get("withheld") or {}
    if withheld.get("holds"):
        summary["withheld"] = {
            "photos": len(withheld["assets"]),
            "models": [m["model"] for m in withheld["models"]],
            "holds": withheld["holds"],
        }
    summary["by_kind"] = dict(Counter({k: v for k, v in plan["counts"].items() if v}))
    return cast(PlanSummary, summary)  # built in the order the JSON shows it
