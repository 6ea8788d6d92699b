"""Lineage queries: everything downstream or upstream of a node.

The graph has two layers, queried differently:

* the *item layer* (subjects, sources, assets, dataset membership) can hold millions of
  rows; it is crossed with set joins over indexed columns (``asset_subjects``,
  ``dataset_members``, ``run_inputs.asset_id``), never walked row by row;
* the *artifact layer* (runs, dataset versions, models, indexes, exports) is small; it is
  walked with one recursive CTE over the edges ``artifact -> run`` (run_inputs) and
  ``run -> artifact`` (artifacts.run_id), directed, depth-capped, and cycle-safe (UNION
  drops rows already seen, and the depth cap bounds anything else).

Node ids as users type them: ``subject:ID`` (external id or ref), ``source:NAME``,
``asset:SHA256``, ``dataset:NAME[@V]``, ``model:NAME[@V]`` (any artifact kind works the
same way), ``artifact:ID``, ``run:ID``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import func, select, text, union
from sqlalchemy.orm import Session

from ..errors import InvalidInput, NotFound
from .models import Artifact, Asset, AssetSubject, DatasetMember, Run, RunInput, Source, Subject

__all__ = ["LineageGraph", "NodeRef", "downstream", "parse_node", "upstream"]

DEFAULT_DEPTH = 50
SAMPLE = 100

# Each step joins the tables themselves, through their indexes (run_inputs.artifact_id,
# artifacts.run_id; upstream run_inputs.run_id, artifacts.id), one LEFT JOIN per edge kind:
# a row of kind 'artifact' only matches run_inputs, one of kind 'run' only artifacts. So a
# call reads what it reaches; a UNION ALL "edges" view was materialised in full (every run
# input and artifact) and given an automatic index on every call. Two recursive SELECTs
# would be simpler, but PostgreSQL allows one recursive reference.
_WALK_DOWN = text(
    """
WITH RECURSIVE
walk(kind, id, depth) AS (
    SELECT kind, id, 0 FROM seeds
    UNION
    SELECT CASE WHEN i.run_id IS NOT NULL THEN 'run' ELSE 'artifact' END,
           COALESCE(i.run_id, a.id), w.depth + 1
    FROM walk AS w
    LEFT JOIN run_inputs AS i ON w.kind = 'artifact' AND i.artifact_id = w.id
    LEFT JOIN artifacts AS a ON w.kind = 'run' AND a.run_id = w.id
    WHERE w.depth < :max_depth AND (i.run_id IS NOT NULL OR a.id IS NOT NULL)
)
SELECT kind, id, MIN(depth) FROM walk GROUP BY kind, id
"""
)

_WALK_UP = text(
    """
WITH RECURSIVE
walk(kind, id, depth) AS (
    SELECT kind, id, 0 FROM seeds
    UNION
    SELECT CASE WHEN i.artifact_id IS NOT NULL THEN 'artifact' ELSE 'run' END,
           COALESCE(i.artifact_id, a.run_id), w.depth + 1
    FROM walk AS w
    LEFT JOIN run_inputs AS i ON w.kind = 'run' AND i.run_id = w.id AND i.artifact_id IS NOT NULL
    LEFT JOIN artifacts AS a ON w.kind = 'artifact' AND a.id = w.id
    WHERE w.depth < :max_depth AND (i.artifact_id IS NOT NULL OR a.run_id IS NOT NULL)
)
SELECT kind, id, MIN(depth) FROM walk GROUP BY kind, id
"""
)


@dataclass(frozen=True)
class NodeRef:
    """A parsed node id: kind is subject, source, asset, artifact or run; key its catalog key."""

    kind: str
    key: str
    label: str


@dataclass
class LineageGraph:
    node: str
    direction: str
    max_depth: int
    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, str]] = field(default_factory=list)
    assets: dict[str, Any] = field(default_factory=dict)
    subjects: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "direction": self.direction,
            "max_depth": self.max_depth,
            "nodes": self.nodes,
            "edges": self.edges,
            "assets": self.assets,
            "subjects": self.subjects,
            "sources": self.sources,
        }

    def labels(self) -> set[str]:
        return {n["id"] for n in self.nodes}

    def to_dot(self) -> str:
        lines = ["digraph lineage {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
        for n in self.nodes:
            style = ", style=dashed" if n.get("state") not in (None, "active", "completed") else ""
            lines.append(f'  "{n["id"]}" [label="{n["label"]}"{style}];')
        for e in self.edges:
            lines.append(f'  "{e["from"]}" -> "{e["to"]}";')
        lines.append("}")
        return "\n".join(lines) + "\n"


def _artifact_label(a: Any) -> str:
    """``a``: an Artifact, or a row with its id, kind, name and version."""
    if a.kind == "dataset_version":
        return f"dataset:{a.name}@{a.version}"
    if a.name:
        return f"{a.kind}:{a.name}@{a.version}" if a.version else f"{a.kind}:{a.name}"
    return f"{a.kind}:{a.id}"


def _find_artifact(session: Session, kind: str, ref: str) -> Artifact:
    name, _, version = ref.partition("@")
    if kind == "dataset":
        query = select(Artifact).where(Artifact.kind == "dataset_version", Artifact.name == name)
    else:
        query = select(Artifact).where(Artifact.kind == kind, Artifact.name == name)
    if version:
        query = query.where(Artifact.version == version)
    rows = session.scalars(query.order_by(Artifact.created_at.desc())).all()
    if not rows:
        raise NotFound(f"no {kind} {ref!r} in the catalog")
    return rows[0]


def parse_node(session: Session, node: str, ref_of: Any) -> NodeRef:
    """Resolve a node id typed by a user. ``ref_of`` maps an external subject id to its ref."""
    kind, sep, rest = node.partition(":")
    if not sep or not rest:
        raise InvalidInput(
            f"node {node!r}: expected KIND:ID, e.g. subject:ID, source:NAME, asset:SHA256, "
            "dataset:NAME@V, model:NAME@V, run:ID"
        )
    if kind == "subject":
        ref = ref_of(rest)
        subject = session.scalar(select(Subject).where(Subject.ref == ref))
        if subject is None:
            raise NotFound(f"no subject {ref} in this workspace")
        return NodeRef("subject", str(subject.id), f"subject:{ref}")
    if kind == "source":
        src = session.scalar(select(Source).where(Source.name == rest))
        if src is None:
            raise NotFound(f"no source named {rest!r}")
        return NodeRef("source", str(src.id), f"source:{rest}")
    if kind == "asset":
        asset = session.scalar(select(Asset).where(Asset.sha256 == rest.lower()))
        if asset is None:
            raise NotFound(f"no asset with sha256 {rest}")
        return NodeRef("asset", asset.id, f"asset:{asset.sha256}")
    if kind == "run":
        run = session.get(Run, rest)
        if run is None:
            raise NotFound(f"no run {rest}")
        return NodeRef("run", run.id, f"run:{run.id}")
    if kind == "artifact":
        artifact = session.get(Artifact, rest)
        if artifact is None:
            raise NotFound(f"no artifact {rest}")
        return NodeRef("artifact", artifact.id, _artifact_label(artifact))
    artifact = _find_artifact(session, kind, rest)
    return NodeRef("artifact", artifact.id, _artifact_label(artifact))


def _seed_assets(node: NodeRef) -> Any:
    """The asset ids a subject/source/asset node stands for (a subquery or a list)."""
    if node.kind == "subject":
        return select(AssetSubject.asset_id).where(AssetSubject.subject_id == int(node.key)).scalar_subquery()
    if node.kind == "source":
        return select(Asset.id).where(Asset.source_id == int(node.key)).scalar_subquery()
    if node.kind == "asset":
        return [node.key]
    return None


def _walk(
    session: Session, sql: Any, seeds: list[tuple[str, str]], max_depth: int
) -> dict[tuple[str, str], int]:
    if not seeds:
        return {}
    values = " UNION ALL ".join(f"SELECT :k{i} AS kind, :i{i} AS id" for i in range(len(seeds)))
    params: dict[str, Any] = {"max_depth": max_depth}
    for i, (k, v) in enumerate(seeds):
        params[f"k{i}"], params[f"i{i}"] = k, v
    statement = text(
        f"WITH RECURSIVE seeds(kind, id) AS ({values}),\n" + sql.text.strip().removeprefix("WITH RECURSIVE")
    )
    return {(k, i): d for k, i, d in session.execute(statement, params).all()}


def downstream(session: Session, node: NodeRef, *, max_depth: int = DEFAULT_DEPTH) -> LineageGraph:
    """Everything derived from ``node``: dataset versions, runs, models, exports..."""
    graph = LineageGraph(node.label, "downstream", max_depth)
    seeds: list[tuple[str, str]] = []
    first_edges: list[tuple[str, str, str, str]] = []  # (from kind, from id, to kind, to id)
    asset_ids = _seed_assets(node)
    if asset_ids is not None:
        # which datasets and runs, not how many rows each: DISTINCT rather than a GROUP BY that
        # sorts every membership row (millions for a source); sorted here, in the order of ids
        member_of = sorted(
            session.scalars(
                select(DatasetMember.dataset_id).distinct().where(DatasetMember.asset_id.in_(asset_ids))
            )
        )
        used_by = sorted(
            session.scalars(select(RunInput.run_id).distinct().where(RunInput.asset_id.in_(asset_ids)))
        )
        seeds += [("artifact", d) for d in member_of] + [("run", r) for r in used_by]
        first_edges += [("seed", node.label, "artifact", d) for d in member_of]
        first_edges += [("seed", node.label, "run", r) for r in used_by]
        # a source's assets by their indexed column, not `id IN (ids of the source)`
        of_seed = Asset.source_id == int(node.key) if node.kind == "source" else Asset.id.in_(asset_ids)
        count = session.scalar(select(func.count()).select_from(Asset).where(of_seed))
        sample = session.scalars(select(Asset.sha256).where(of_seed).order_by(Asset.sha256).limit(SAMPLE))
        graph.assets = {"count": int(count or 0), "sample": list(sample)}
    elif node.kind == "artifact":
        seeds.append(("artifact", node.key))
    elif node.kind == "run":
        seeds.append(("run", node.key))
    found = _walk(session, _WALK_DOWN, seeds, max_depth)
    if node.kind in ("subject", "source", "asset"):
        seed = {"id": node.label, "kind": node.kind, "label": node.label, "state": "active", "depth": 0}
        graph.nodes.append(seed)
    _fill(
        session,
        graph,
        found,
        first_edges,
        exclude_seed=(node.kind in ("artifact", "run")) and (node.kind, node.key),
    )
    return graph


def upstream(session: Session, node: NodeRef, *, max_depth: int = DEFAULT_DEPTH) -> LineageGraph:
    """Everything ``node`` was derived from, down to the photos, their subjects and sources."""
    graph = LineageGraph(node.label, "upstream", max_depth)
    if node.kind in ("subject", "source"):
        raise InvalidInput(
            f"{node.label} is a root of the lineage: nothing is upstream of it (try --downstream)"
        )
    if node.kind == "asset":
        asset_ids: Any = [node.key]
        found: dict[tuple[str, str], int] = {}
    else:
        found = _walk(session, _WALK_UP, [(node.kind, node.key)], max_depth)
        artifact_ids = [i for (k, i) in found if k == "artifact"]
        run_ids = [i for (k, i) in found if k == "run"]
        members = select(DatasetMember.asset_id).where(DatasetMember.dataset_id.in_(artifact_ids))
        direct = select(RunInput.asset_id).where(RunInput.run_id.in_(run_ids), RunInput.asset_id.is_not(None))
        asset_ids = union(members, direct).scalar_subquery()
    count = session.scalar(select(func.count()).select_from(Asset).where(Asset.id.in_(asset_ids)))
    sample = session.scalars(
        select(Asset.sha256).where(Asset.id.in_(asset_ids)).order_by(Asset.sha256).limit(SAMPLE)
    )
    graph.assets = {"count": int(count or 0), "sample": list(sample)}
    subjects = select(AssetSubject.subject_id).distinct().where(AssetSubject.asset_id.in_(asset_ids))
    subject_count = session.scalar(select(func.count()).select_from(subjects.subquery()))
    subject_sample = session.scalars(
        select(Subject.ref)
        .where(Subject.id.in_(subjects.scalar_subquery()))
        .order_by(Subject.ref)
        .limit(SAMPLE)
    )
    graph.subjects = {"count": int(subject_count or 0), "sample": list(subject_sample)}
    graph.sources = list(
        session.scalars(
            select(Source.name)
            .where(
                Source.id.in_(
                    select(Asset.source_id).distinct().where(Asset.id.in_(asset_ids)).scalar_subquery()
                )
            )
            .order_by(Source.name)
        )
    )
    _fill(session, graph, found, [], exclude_seed=(node.kind, node.key) if node.kind != "asset" else False)
    return graph


class _ArtifactRow(NamedTuple):
    """The columns of an artifact that ``_fill`` reads, in the order it selects them."""

    id: str
    kind: str
    name: str
    version: str
    state: str
    run_id: str


class _RunRow(NamedTuple):
    id: str
    job: str
    purpose: str
    state: str


def _fill(
    session: Session,
    graph: LineageGraph,
    found: dict[tuple[str, str], int],
    first_edges: list[tuple[str, str, str, str]],
    *,
    exclude_seed: Any,
) -> None:
    artifact_ids = [i for (k, i) in found if k == "artifact"]
    run_ids = [i for (k, i) in found if k == "run"]
    labels: dict[tuple[str, str], str] = {}
    # plain tuples of the columns used below, not ORM entities: loading a whole artifact layer
    # as entities (JSON columns decoded, identity map) cost more than all the SQL of a query,
    # and a NamedTuple's attributes read ~10x faster than a SQLAlchemy Row's
    artifacts = (
        [
            _ArtifactRow(*row)
            for row in session.execute(
                select(
                    Artifact.id,
                    Artifact.kind,
                    Artifact.name,
                    Artifact.version,
                    Artifact.state,
                    Artifact.run_id,
                ).where(Artifact.id.in_(artifact_ids))
            )
        ]
        if artifact_ids
        else []
    )
    runs = (
        [
            _RunRow(*row)
            for row in session.execute(
                select(Run.id, Run.job, Run.purpose, Run.state).where(Run.id.in_(run_ids))
            )
        ]
        if run_ids
        else []
    )
    for a in artifacts:
        labels[("artifact", a.id)] = _artifact_label(a)
    for r in runs:
        labels[("run", r.id)] = f"run:{r.id}"
    for a in sorted(artifacts, key=lambda a: (found[("artifact", a.id)], labels[("artifact", a.id)])):
        if exclude_seed == ("artifact", a.id):
            continue
        graph.nodes.append(
            {
                "id": labels[("artifact", a.id)],
                "kind": a.kind,
                "label": labels[("artifact", a.id)],
                "state": a.state,
                "depth": found[("artifact", a.id)],
                "artifact_id": a.id,
            }
        )
    for r in sorted(runs, key=lambda r: (found[("run", r.id)], r.job)):
        if exclude_seed == ("run", r.id):
            continue
        graph.nodes.append(
            {
                "id": labels[("run", r.id)],
                "kind": "run",
                "label": f"{r.job} ({r.purpose})",
                "state": r.state,
                "depth": found[("run", r.id)],
            }
        )
    for _fk, fid, tk, tid in first_edges:
        if (tk, tid) in labels:
            graph.edges.append({"from": fid, "to": labels[(tk, tid)]})
    if run_ids:
        for run_id, artifact_id in session.execute(
            select(RunInput.run_id, RunInput.artifact_id).where(
                RunInput.run_id.in_(run_ids), RunInput.artifact_id.is_not(None)
            )
        ):
            # the query leaves out the NULLs; the test tells the type checker
            if artifact_id is not None and ("artifact", artifact_id) in labels:
                graph.edges.append({"from": labels[("artifact", artifact_id)], "to": labels[("run", run_id)]})
    for a in artifacts:
        if ("run", a.run_id) in labels:
            graph.edges.append({"from": labels[("run", a.run_id)], "to": labels[("artifact", a.id)]})
    if not graph.assets:
        graph.assets = {"count": 0, "sample": []}
