"""Runs and artifacts: recording a job's inputs, purpose and outputs, through the gate.

Fail closed, in three ways:

* a run must name at least one input, and every input must exist and be active (an
  erased or retired input cannot feed new work);
* every output is a new node produced by exactly one run, so an output can never be
  registered without its inputs, and no run can produce a node it (transitively) reads:
  the lineage graph cannot get a cycle;
* before the run starts, every photo upstream of its inputs (direct assets, dataset
  members, and the photos behind upstream artifacts) is checked against consent *at the
  run's time* for the declared purpose. If any is not covered the run is refused, unless
  an override gives a role and a justification; overrides are recorded on the run and in
  the audit log, and the violation audit still reports the uncovered items.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, union
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from ..catalog.lineage import NodeRef, parse_node, upstream
from ..catalog.models import Artifact, Asset, DatasetMember, Run, RunInput
from ..consent import ConsentGate, ItemRef, Purpose
from ..errors import ConsentDenied, InvalidInput

__all__ = [
    "ARTIFACT_KINDS",
    "OVERRIDE_ROLES",
    "ConsentCheck",
    "ConsentCheckView",
    "Override",
    "add_output",
    "check_inputs",
    "finish_run",
    "resolve_inputs",
    "start_run",
    "upstream_asset_ids",
]

ARTIFACT_KINDS = (
    "crop",
    "embedding",
    "phash",
    "dataset_version",
    "index",
    "model",
    "export",
    "report",
    "transfer",
)
#: roles allowed to override a consent refusal (recorded with a justification)
OVERRIDE_ROLES = ("privacy_officer", "dpo", "legal")


@dataclass(frozen=True)
class Override:
    role: str
    justification: str

    def __post_init__(self) -> None:
        if self.role not in OVERRIDE_ROLES:
            raise InvalidInput(f"override role {self.role!r}: expected one of {', '.join(OVERRIDE_ROLES)}")
        if len(self.justification.strip()) < 10:
            raise InvalidInput("an override needs a justification (at least 10 characters)")


class ConsentCheckView(TypedDict):
    """What the gate found behind a run's inputs (recorded on the run)."""

    checked: int
    covered: int
    not_covered: int
    by_rule: dict[str, int]


@dataclass(frozen=True)
class ConsentCheck:
    checked: int
    covered: int
    by_rule: dict[str, int]

    @property
    def not_covered(self) -> int:
        return self.checked - self.covered

    def to_dict(self) -> ConsentCheckView:
        return {
            "checked": self.checked,
            "covered": self.covered,
            "not_covered": self.not_covered,
            "by_rule": self.by_rule,
        }


def resolve_inputs(session: Session, specs: list[str], ref_of: Any) -> list[NodeRef]:
    """Resolve input ids (``dataset:NAME@V``, ``NAME@V``, ``model:NAME@V``, ``asset:SHA``...)."""
    if not specs:
        raise InvalidInput("a run needs at least one input (fail closed: no output without its inputs)")
    nodes: list[NodeRef] = []
    for spec in specs:
        text = spec if ":" in spec else f"dataset:{spec}"
        node = parse_node(session, text, ref_of)
        if node.kind not in ("asset", "artifact"):
            raise InvalidInput(
                f"input {spec!r}: a run reads assets, datasets or artifacts, not a {node.kind}"
            )
        row = session.get(Asset, node.key) if node.kind == "asset" else session.get(Artifact, node.key)
        state = row.state if row is not None else "missing"  # parse_node found it
        if state != "active":
            raise InvalidInput(f"input {node.label} is {state}: it cannot feed new work")
        nodes.append(node)
    return nodes


def upstream_asset_ids(session: Session, inputs: list[NodeRef]) -> Any:
    """A subquery of every asset behind the inputs (direct, members, upstream artifacts)."""
    direct = [n.key for n in inputs if n.kind == "asset"]
    artifact_ids: set[str] = set()
    run_ids: set[str] = set()
    for n in inputs:
        if n.kind == "artifact":
            artifact_ids.add(n.key)
            graph = upstream(session, n)
            artifact_ids.update(node["artifact_id"] for node in graph.nodes if "artifact_id" in node)
            run_ids.update(node["id"].removeprefix("run:") for node in graph.nodes if node["kind"] == "run")
    parts = [
        select(Asset.id).where(Asset.id.in_(direct)),
        select(DatasetMember.asset_id).where(DatasetMember.dataset_id.in_(artifact_ids)),
        select(RunInput.asset_id).where(RunInput.run_id.in_(run_ids), RunInput.asset_id.is_not(None)),
    ]
    return union(*parts).subquery()


def check_inputs(session: Session, inputs: list[NodeRef], purpose: str, at: datetime) -> ConsentCheck:
    """Check every photo behind ``inputs`` for ``purpose`` at ``at``."""
    ids = upstream_asset_ids(session, inputs)
    rows = session.execute(
        select(Asset.id, Asset.source_id, Asset.owner_id).where(Asset.id.in_(select(ids.c[0])))
    ).all()
    verdicts = ConsentGate(session, purpose, at).evaluate(
        [ItemRef(r.id, r.source_id, r.owner_id) for r in rows]
    )
    refused = Counter(v.rule for v in verdicts.values() if not v.allowed)
    return ConsentCheck(len(rows), len(rows) - sum(refused.values()), dict(refused.most_common()))


def start_run(
    session: Session,
    *,
    job: str,
    purpose: str,
    inputs: list[NodeRef],
    at: datetime,
    actor: str,
    parameters: dict[str, Any] | None = None,
    code_version: str = "",
    override: Override | None = None,
    external: bool = False,
) -> tuple[Run, ConsentCheck]:
    """Check consent and create the run (state ``running``), in the caller's transaction."""
    if not job.strip():
        raise InvalidInput("a run needs a job name")
    purpose_value = Purpose(purpose).value
    check = check_inputs(session, inputs, purpose_value, at)
    if check.not_covered and override is None:
        rules = ", ".join(f"{rule}: {n}" for rule, n in check.by_rule.items())
        raise ConsentDenied(
            f"run {job!r} for {purpose_value}: {check.not_covered} of {check.checked} photos behind its "
            f"inputs are not covered at that time ({rules}); build a dataset through the gate, or "
            "override with a role and a justification"
        )
    run = Run(
        id=uuid.uuid4().hex,
        job=job,
        purpose=purpose_value,
        state="running",
        parameters=parameters or {},
        code_version=code_version,
        started_at=at,
        consent_check=check.to_dict(),
        override_justification=f"{override.role}: {override.justification}" if override else None,
        actor=actor,
        external=int(external),
    )
    session.add(run)
    session.flush()
    for node in inputs:
        session.add(
            RunInput(
                run_id=run.id,
                asset_id=node.key if node.kind == "asset" else None,
                artifact_id=node.key if node.kind == "artifact" else None,
            )
        )
    session.flush()
    payload: dict[str, Any] = {
        "run": run.id,
        "job": job,
        "purpose": purpose_value,
        "inputs": [n.label if n.kind == "artifact" else "asset" for n in inputs],
        "consent": check.to_dict(),
    }
    if override is not None:
        payload["override"] = {"role": override.role}
    audit.append(session, "run.started", payload, actor=actor, at=at)
    return run, check


def add_output(
    session: Session,
    run: Run,
    kind: str,
    *,
    at: datetime,
    name: str = "",
    version: str = "",
    uri: str = "",
    content_sha256: str = "",
    extra: dict[str, Any] | None = None,
) -> Artifact:
    """Register a new artifact produced by ``run``."""
    if kind not in ARTIFACT_KINDS:
        raise InvalidInput(f"artifact kind {kind!r}: expected one of {', '.join(ARTIFACT_KINDS)}")
    if kind == "dataset_version":
        raise InvalidInput(
            "dataset versions are made by `dataset build` (through the consent gate), not by runs"
        )
    if run.state != "running":
        raise InvalidInput(f"run {run.id} is {run.state}; outputs can only be added while it runs")
    if name and not version:
        count = session.scalar(
            select(func.count()).select_from(Artifact).where(Artifact.kind == kind, Artifact.name == name)
        )
        version = str(int(count or 0) + 1)
    if name:
        existing = session.scalar(
            select(Artifact).where(Artifact.kind == kind, Artifact.name == name, Artifact.version == version)
        )
        if existing is not None:
            read = {
                i for (i,) in session.execute(select(RunInput.artifact_id).where(RunInput.run_id == run.id))
            }
            if existing.id in read:
                raise InvalidInput(
                    f"{kind}:{name}@{version} is an input of this run; producing it again would make a "
                    "cycle in the lineage. Give the output a new version."
                )
            raise InvalidInput(
                f"{kind}:{name}@{version} already exists (run {existing.run_id}); give a new version"
            )
    artifact = Artifact(
        id=uuid.uuid4().hex,
        kind=kind,
        name=name,
        version=version,
        uri=uri,
        content_sha256=content_sha256,
        run_id=run.id,
        state="active",
        created_at=at,
        extra=extra or {},
    )
    session.add(artifact)
    session.flush()
    return artifact


def finish_run(session: Session, run: Run, *, state: str, at: datetime, actor: str) -> None:
    run.state = state
    run.ended_at = at
    outputs = session.scalar(select(func.count()).select_from(Artifact).where(Artifact.run_id == run.id))
    session.add(run)
    audit.append(
        session,
        f"run.{state}",
        {"run": run.id, "job": run.job, "outputs": int(outputs or 0)},
        actor=actor,
        at=at,
    )
