"""Dataset versions, built through the consent gate.

A version is immutable: its members are a relation (version, asset), its identity is the
Merkle root of their sha256s, and it records the purpose it was built for and when.
Versions follow semantic versioning as Croissant asks: dropping any item is a MAJOR bump
(a model trained on the old version is not reproducible from the new one), adding items
only is MINOR, and the same members give no new version at all.

The whole build runs in one writer transaction, so two builds of the same name at once
are serialised and the second one sees the first one's version.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NotRequired

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._merkle import merkle_root
from .._time import iso
from ..catalog.db import in_chunks
from ..catalog.models import (
    Artifact,
    Asset,
    AssetSubject,
    DatasetDrop,
    DatasetExclusion,
    DatasetMember,
    DatasetMemberRow,
    DatasetVersion,
    Run,
    Source,
    Subject,
)
from ..consent import ConsentGate, ItemRef, Purpose
from ..errors import ConsentDenied, InvalidInput, NotFound

__all__ = [
    "DatasetBuild",
    "DatasetDiff",
    "DatasetView",
    "ExcludedItem",
    "PurposeChange",
    "build_dataset",
    "bump",
    "dataset_diff",
    "dataset_view",
    "derive_without",
    "find_dataset",
    "parse_dataset_ref",
]


@dataclass
class DatasetBuild:
    name: str
    version: str
    purpose: str
    members: int
    excluded: int
    merkle_root: str
    created: bool
    previous: str | None
    excluded_items: list[dict[str, str]] = field(default_factory=list)
    excluded_by_rule: dict[str, int] = field(default_factory=dict)
    #: the catalog run that built it (None when nothing new was built)
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "purpose": self.purpose,
            "members": self.members,
            "excluded": self.excluded,
            "excluded_by_rule": self.excluded_by_rule,
            "excluded_items": self.excluded_items,
            "merkle_root": self.merkle_root,
            "created": self.created,
            "previous": self.previous,
            "run": self.run_id,
        }


def parse_dataset_ref(ref: str) -> tuple[str, str | None]:
    name, _, version = ref.partition("@")
    if not name:
        raise InvalidInput(f"dataset {ref!r}: expected NAME or NAME@VERSION")
    return name, version or None


def _semver_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def bump(previous: str | None, *, dropped: bool, purpose_changed: bool) -> str:
    if previous is None:
        return "1.0.0"
    major, minor, _patch = _semver_key(previous)
    if dropped or purpose_changed:
        return f"{major + 1}.0.0"
    return f"{major}.{minor + 1}.0"


def find_dataset(session: Session, ref: str) -> DatasetVersion:
    """The version NAME@VERSION, or the latest version of NAME."""
    name, version = parse_dataset_ref(ref)
    rows = session.scalars(select(DatasetVersion).where(DatasetVersion.name == name)).all()
    if not rows:
        raise NotFound(f"no dataset named {name!r}")
    if version is None:
        return max(rows, key=lambda r: _semver_key(r.version))
    for row in rows:
        if row.version == version:
            return row
    known = ", ".join(sorted((r.version for r in rows), key=_semver_key))
    raise NotFound(f"dataset {name!r} has no version {version} (versions: {known})")


def build_dataset(
    session: Session,
    name: str,
    *,
    purpose: str,
    at: datetime,
    actor: str,
    source: str | None = None,
    subject_refs: set[str] | None = None,
) -> DatasetBuild:
    """Build a new version of ``name`` from the active assets the selectors pick."""
    purpose_value = Purpose(purpose).value
    if not name.strip() or "@" in name:
        raise InvalidInput(f"dataset name {name!r}: must be non-empty and contain no '@'")
    query = select(Asset.id, Asset.source_id, Asset.owner_id, Asset.sha256).where(Asset.state == "active")
    selector: dict[str, Any] = {}
    if source is not None:
        src = session.scalar(select(Source).where(Source.name == source))
        if src is None:
            raise NotFound(f"no source named {source!r}")
        query = query.where(Asset.source_id == src.id)
        selector["source"] = source
    if subject_refs is not None:
        subject_ids = select(Subject.id).where(Subject.ref.in_(subject_refs))
        query = query.where(
            Asset.id.in_(select(AssetSubject.asset_id).where(AssetSubject.subject_id.in_(subject_ids)))
        )
        selector["subjects"] = len(subject_refs)
    candidates = session.execute(query.order_by(Asset.sha256)).all()
    if not candidates:
        raise InvalidInput(f"dataset {name!r}: the selection holds no active photos; no version built")

    gate = ConsentGate(session, purpose_value, at)
    verdicts = gate.evaluate([ItemRef(r.id, r.source_id, r.owner_id) for r in candidates])
    members = [r for r in candidates if verdicts[r.id].allowed]
    excluded = [r for r in candidates if not verdicts[r.id].allowed]
    by_rule = dict(Counter(verdicts[r.id].rule for r in excluded).most_common())
    if not members:
        summary = ", ".join(f"{rule}: {n}" for rule, n in by_rule.items())
        raise ConsentDenied(
            f"dataset {name!r}: none of the {len(candidates)} selected photos may be used for "
            f"{purpose_value} at {iso(at)} ({summary}); no version built"
        )

    root = merkle_root(r.sha256 for r in members)
    latest = max(
        session.scalars(select(DatasetVersion).where(DatasetVersion.name == name)).all(),
        key=lambda r: _semver_key(r.version),
        default=None,
    )
    excluded_items = [
        {"sha256": r.sha256, "rule": verdicts[r.id].rule, "reason": verdicts[r.id].reason} for r in excluded
    ]
    if latest is not None and latest.purpose == purpose_value and content_root(session, latest) == root:
        return DatasetBuild(
            name,
            latest.version,
            purpose_value,
            latest.members,
            len(excluded),
            root,
            False,
            latest.version,
            excluded_items,
            by_rule,
        )
    dropped = False
    if latest is not None:
        old = set(
            session.scalars(
                select(DatasetMember.asset_id).where(DatasetMember.dataset_id == latest.artifact_id)
            )
        )
        dropped = bool(old - {r.id for r in members})
    version = bump(
        latest.version if latest else None,
        dropped=dropped,
        purpose_changed=latest is not None and latest.purpose != purpose_value,
    )

    run = Run(
        id=uuid.uuid4().hex,
        job=f"dataset.build:{name}",
        purpose=purpose_value,
        state="completed",
        parameters={"selector": selector},
        code_version="disgorge",
        started_at=at,
        ended_at=at,
        consent_check={"checked": len(candidates), "covered": len(members), "not_covered": len(excluded)},
        actor=actor,
    )
    artifact = Artifact(
        id=uuid.uuid4().hex,
        kind="dataset_version",
        name=name,
        version=version,
        uri=f"disgorge:dataset/{name}@{version}",
        content_sha256=root,
        run_id=run.id,
        state="active",
        created_at=at,
        extra={},
    )
    session.add(run)
    session.flush()
    session.add(artifact)
    session.flush()
    session.add(
        DatasetVersion(
            artifact_id=artifact.id,
            name=name,
            version=version,
            purpose=purpose_value,
            merkle_root=root,
            members=len(members),
            excluded=len(excluded),
            built_at=at,
            selector=selector,
        )
    )
    session.flush()
    session.execute(
        insert(DatasetMemberRow), [{"dataset_id": artifact.id, "asset_id": r.id} for r in members]
    )
    if excluded:
        session.execute(
            insert(DatasetExclusion),
            [
                {
                    "dataset_id": artifact.id,
                    "asset_id": r.id,
                    "rule": verdicts[r.id].rule,
                    "reason": verdicts[r.id].reason,
                }
                for r in excluded
            ],
        )
    audit.append(
        session,
        "dataset.built",
        {
            "dataset": f"{name}@{version}",
            "purpose": purpose_value,
            "members": len(members),
            "excluded": len(excluded),
            "excluded_by_rule": by_rule,
            "merkle_root": root,
            "run": run.id,
        },
        actor=actor,
        at=at,
    )
    return DatasetBuild(
        name,
        version,
        purpose_value,
        len(members),
        len(excluded),
        root,
        True,
        latest.version if latest else None,
        excluded_items,
        by_rule,
        run.id,
    )


def content_root(session: Session, dataset: DatasetVersion) -> str:
    """The version's Merkle root over its members' sha256.

    A derived version does not compute it when it is made (that would read every member:
    seconds for half a million photos, in the middle of an erasure); it is computed here,
    when someone asks. An erased version's members have lost their sha256, so its root is
    what was stored, or "" when none was."""
    if dataset.merkle_root:
        return dataset.merkle_root
    artifact = session.get(Artifact, dataset.artifact_id)
    if artifact is None or artifact.state == "erased":
        return ""
    return merkle_root(_member_shas(session, dataset))


def _member_shas(session: Session, dataset: DatasetVersion) -> set[str]:
    return set(
        session.scalars(
            select(Asset.sha256)
            .join(DatasetMember, DatasetMember.asset_id == Asset.id)
            .where(DatasetMember.dataset_id == dataset.artifact_id)
        )
    )


class ExcludedItem(TypedDict):
    """A photo the gate kept out of a version: the rule that did and its reason."""

    sha256: str
    rule: str
    reason: str


class DatasetView(TypedDict):
    """A dataset version as shown (``disgorge dataset show``); the members only when asked."""

    name: str
    version: str
    id: str
    purpose: str
    built_at: str
    members: int
    excluded: int
    excluded_by_rule: dict[str, int]
    merkle_root: str
    #: how the members were chosen (source, subjects; ``derived_from`` for a derived version)
    selector: dict[str, Any]
    state: str
    run: str | None
    versions: list[str]
    member_sha256: NotRequired[list[str]]
    excluded_items: NotRequired[list[ExcludedItem]]


#: the purposes of the two versions compared (``from`` is a keyword: the functional syntax)
PurposeChange = TypedDict("PurposeChange", {"from": str, "to": str})

#: what changed between two versions: the sha256s added and removed, how many stayed
DatasetDiff = TypedDict(
    "DatasetDiff",
    {
        "from": str,
        "to": str,
        "added": list[str],
        "removed": list[str],
        "unchanged": int,
        "purpose": PurposeChange,
    },
)


def dataset_view(session: Session, ref: str, *, with_members: bool = False) -> DatasetView:
    ds = find_dataset(session, ref)
    artifact = session.get(Artifact, ds.artifact_id)
    rules = dict(
        session.execute(
            select(DatasetExclusion.rule, func.count())
            .where(DatasetExclusion.dataset_id == ds.artifact_id)
            .group_by(DatasetExclusion.rule)
            .order_by(func.count().desc())
        ).all()
    )
    versions = sorted(
        session.scalars(select(DatasetVersion.version).where(DatasetVersion.name == ds.name)), key=_semver_key
    )
    view: DatasetView = {
        "name": ds.name,
        "version": ds.version,
        "id": ds.artifact_id,
        "purpose": ds.purpose,
        "built_at": iso(ds.built_at),
        "members": ds.members,
        "excluded": ds.excluded,
        "excluded_by_rule": rules,
        "merkle_root": content_root(session, ds),
        "selector": ds.selector,
        "state": artifact.state if artifact else "unknown",
        "run": artifact.run_id if artifact else None,
        "versions": versions,
    }
    if with_members:
        view["member_sha256"] = sorted(_member_shas(session, ds))
        view["excluded_items"] = [
            {"sha256": sha, "rule": rule, "reason": reason}
            for sha, rule, reason in session.execute(
                select(Asset.sha256, DatasetExclusion.rule, DatasetExclusion.reason)
                .join(DatasetExclusion, DatasetExclusion.asset_id == Asset.id)
                .where(DatasetExclusion.dataset_id == ds.artifact_id)
                .order_by(Asset.sha256)
            )
        ]
    return view


def dataset_diff(session: Session, a: str, b: str) -> DatasetDiff:
    left, right = find_dataset(session, a), find_dataset(session, b)
    lset, rset = _member_shas(session, left), _member_shas(session, right)
    return {
        "from": f"{left.name}@{left.version}",
        "to": f"{right.name}@{right.version}",
        "added": sorted(rset - lset),
        "removed": sorted(lset - rset),
        "unchanged": len(lset & rset),
        "purpose": {"from": left.purpose, "to": right.purpose},
    }


def derive_without(
    session: Session, ref: str, asset_ids: set[str], *, at: datetime, actor: str, reason: str
) -> DatasetVersion:
    """A new MAJOR version of a dataset without ``asset_ids`` (for unlearning and erasure).

    No consent re-check: it is a subset of a version already built through the gate. If
    none of the items is a member, the version itself is returned unchanged. The new
    version stores no member rows: it reads those of the version the gate built, minus
    its drops (``dataset_drops``), so its cost follows the items dropped, not the members
    kept (design note 17). Its Merkle root is computed when asked for (:func:`content_root`).
    """
    ds = find_dataset(session, ref)
    dropped: set[str] = set()
    wanted = sorted(asset_ids)
    for part in in_chunks(wanted):
        dropped.update(
            session.scalars(
                select(DatasetMember.asset_id).where(
                    DatasetMember.dataset_id == ds.artifact_id,
                    DatasetMember.asset_id.in_(part),
                )
            )
        )
    if not dropped:
        return ds
    if len(dropped) >= ds.members:
        raise InvalidInput(f"dataset {ds.name}@{ds.version} would be left empty; retire it instead")
    base = ds.members_of or ds.artifact_id
    drops = dropped | set(
        session.scalars(select(DatasetDrop.asset_id).where(DatasetDrop.dataset_id == ds.artifact_id))
    )
    drops_digest = hashlib.sha256("\n".join(sorted(drops)).encode()).hexdigest()
    derived_from = f"{ds.name}@{ds.version}"
    # idempotent: a crash after deriving (mid-unlearning, mid-erasure) must not derive it twice
    for prior in session.scalars(
        select(DatasetVersion).where(DatasetVersion.name == ds.name, DatasetVersion.members_of == base)
    ):
        prior_art = session.get(Artifact, prior.artifact_id)
        selector = prior.selector or {}
        if (
            selector.get("derived_from") == derived_from
            and selector.get("drops_sha256") == drops_digest
            and prior_art is not None
            and prior_art.state == "active"
        ):
            return prior
    latest = max(
        session.scalars(select(DatasetVersion).where(DatasetVersion.name == ds.name)).all(),
        key=lambda r: _semver_key(r.version),
    )
    version = bump(latest.version, dropped=True, purpose_changed=False)
    run = Run(
        id=uuid.uuid4().hex,
        job=f"dataset.derive:{ds.name}",
        purpose=ds.purpose,
        state="completed",
        parameters={"from": derived_from, "dropped": len(dropped), "reason": reason},
        code_version="disgorge",
        started_at=at,
        ended_at=at,
        consent_check={"checked": 0, "covered": 0, "not_covered": 0},
        actor=actor,
    )
    artifact = Artifact(
        id=uuid.uuid4().hex,
        kind="dataset_version",
        name=ds.name,
        version=version,
        uri=f"disgorge:dataset/{ds.name}@{version}",
        content_sha256="",
        run_id=run.id,
        state="active",
        created_at=at,
        extra={"derived_from": derived_from},
    )
    session.add(run)
    session.flush()
    session.add(artifact)
    session.flush()
    new = DatasetVersion(
        artifact_id=artifact.id,
        name=ds.name,
        version=version,
        purpose=ds.purpose,
        merkle_root="",
        members=ds.members - len(dropped),
        excluded=ds.excluded,
        built_at=at,
        selector={**ds.selector, "derived_from": derived_from, "drops_sha256": drops_digest},
        members_of=base,
    )
    session.add(new)
    session.flush()
    session.execute(insert(DatasetDrop), [{"dataset_id": artifact.id, "asset_id": a} for a in sorted(drops)])
    audit.append(
        session,
        "dataset.derived",
        {
            "dataset": f"{ds.name}@{version}",
            "from": derived_from,
            "dropped": len(dropped),
            "reason": reason,
        },
        actor=actor,
        at=at,
    )
    return new
