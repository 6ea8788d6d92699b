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

import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from . import audit
from ._time import utcnow
from .catalog.lineage import LineageGraph, NodeRef, downstream, parse_node, upstream
from .catalog.models import Artifact, Asset, DatasetMember, Run, RunInput
from .consent import ConsentGate, ItemRef, Purpose, parse_purpose
from .context import Context, when
from .datasets import DatasetBuild
from .errors import ConsentDenied, DisgorgeError, InvalidInput
from .subjects import ref_of

__all__ = [
    "ARTIFACT_KINDS",
    "OVERRIDE_ROLES",
    "ConsentCheck",
    "ConsentCheckView",
    "Override",
    "RecordedRun",
    "RunHandle",
    "add_output",
    "check_inputs",
    "close_run",
    "emit_lineage",
    "finish_run",
    "lineage",
    "open_run",
    "record_run",
    "resolve_inputs",
    "running",
    "start_run",
    "upstream_asset_ids",
]

_log = logging.getLogger("disgorge")

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


class RecordedRun(TypedDict):
    """A run recorded after the fact (:func:`record_run`)."""

    run: str
    job: str
    purpose: str
    inputs: list[str]
    outputs: list[str]
    consent: ConsentCheckView
    override: bool


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


# -- the run lifecycle as a service -------------------------------------------------------
class RunHandle:
    """A run in progress (from :func:`open_run` or :func:`running`): register its outputs
    with :meth:`add_output`; :func:`close_run` ends it."""

    def __init__(
        self, ctx: Context, run: Run, at: datetime, inputs: list[str], check: ConsentCheckView
    ) -> None:
        self._ctx = ctx
        self._run = run
        #: the instant the run started (the ``at`` it was opened with, or then)
        self.at = at
        self.id = run.id
        self.job = run.job
        self.purpose = run.purpose
        self.inputs = inputs
        self.consent_check = check
        self.outputs: list[str] = []
        #: dataset-level input names, as OpenLineage events name them
        self.lineage_inputs: list[str] = []

    @property
    def _at(self) -> datetime:
        """The start instant under its former name (kept while callers move to ``at``)."""
        return self.at

    def add_output(
        self,
        kind: str,
        *,
        name: str = "",
        version: str = "",
        path: str | Path | None = None,
        uri: str = "",
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Register an artifact this run produced; returns its lineage id (e.g. ``model:face-id@1``).

        With ``path`` the file's sha256 is recorded (its bytes are not copied).
        """
        content = ""
        if path is not None:
            file = Path(path)
            if not file.is_file():
                raise InvalidInput(f"output {file}: no such file")
            digest = hashlib.sha256()
            with file.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            content = digest.hexdigest()
            uri = uri or file.resolve().as_uri()
        with self._ctx.sessions.begin() as session:
            run = session.merge(self._run)
            artifact = add_output(
                session,
                run,
                kind,
                at=self.at,
                name=name,
                version=version,
                uri=uri,
                content_sha256=content,
                extra=extra,
            )
            label = (
                f"{artifact.kind}:{artifact.name}@{artifact.version}"
                if artifact.name
                else f"{kind}:{artifact.id}"
            )
        self.outputs.append(label)
        return label


def _input_specs(inputs: list[str | DatasetBuild]) -> list[str]:
    return [f"dataset:{i.name}@{i.version}" if isinstance(i, DatasetBuild) else str(i) for i in inputs]


def _dataset_level_inputs(session: Session, nodes: list[NodeRef]) -> list[str]:
    """Input names for OpenLineage: a photo input is named by its source, never by itself."""
    names = set()
    for n in nodes:
        if n.kind == "asset":
            asset = session.get(Asset, n.key)
            assert asset is not None  # resolve_inputs found it
            names.add(f"source:{asset.source.name}")
        else:
            names.add(n.label)
    return sorted(names)


def open_run(
    ctx: Context,
    job: str,
    *,
    purpose: str,
    inputs: list[str | DatasetBuild],
    parameters: dict[str, Any] | None = None,
    code_version: str = "",
    at: str | datetime | None = None,
    override: tuple[str, str] | None = None,
    external: bool = False,
) -> RunHandle:
    """Start a run through the gate (refused when a photo behind ``inputs`` is not
    covered for ``purpose`` at ``at``, unless ``override=(role, justification)``) and
    send its OpenLineage START event. End it with :func:`close_run`; :func:`running`
    does both around a ``with`` block."""
    start = when(at)
    purpose_value = parse_purpose(purpose).value
    ov = Override(*override) if override is not None else None
    with ctx.sessions.begin() as session:
        nodes = resolve_inputs(session, _input_specs(inputs), lambda s: ref_of(ctx.vault, s))
        run, check = start_run(
            session,
            job=job,
            purpose=purpose_value,
            inputs=nodes,
            at=start,
            actor=ctx.actor,
            parameters=parameters,
            code_version=code_version,
            override=ov,
            external=external,
        )
        labels = [n.label for n in nodes]
        dataset_level = _dataset_level_inputs(session, nodes)
    handle = RunHandle(ctx, run, start, labels, check.to_dict())
    handle.lineage_inputs = dataset_level
    emit_lineage(ctx, "START", job, run.id, purpose_value, start, dataset_level, [])
    return handle


def close_run(ctx: Context, handle: RunHandle, state: str, at: datetime | None = None) -> None:
    """End a run (``completed`` or ``failed``) at ``at`` (default: now), and send its
    OpenLineage COMPLETE or FAIL event with the outputs it registered."""
    end = at or utcnow()
    with ctx.sessions.begin() as session:
        run = session.merge(handle._run)
        finish_run(session, run, state=state, at=end, actor=ctx.actor)
    event = "COMPLETE" if state == "completed" else "FAIL"
    emit_lineage(
        ctx, event, handle.job, handle.id, handle.purpose, end, handle.lineage_inputs, handle.outputs
    )


@contextmanager
def running(
    ctx: Context,
    job: str,
    *,
    purpose: str,
    inputs: list[str | DatasetBuild],
    parameters: dict[str, Any] | None = None,
    code_version: str = "",
    at: str | datetime | None = None,
    override: tuple[str, str] | None = None,
) -> Iterator[RunHandle]:
    """A run around a ``with`` block: completed when the block ends, failed (and the
    exception raised on) when it raises. A run given ``at`` ends at that instant too, so
    a backdated run does not end in the present."""
    handle = open_run(
        ctx,
        job,
        purpose=purpose,
        inputs=inputs,
        parameters=parameters,
        code_version=code_version,
        at=at,
        override=override,
    )
    end = None if at is None else handle.at
    try:
        yield handle
    except BaseException:
        close_run(ctx, handle, "failed", end)
        raise
    close_run(ctx, handle, "completed", end)


def record_run(
    ctx: Context,
    job: str,
    *,
    purpose: str,
    inputs: list[str | DatasetBuild],
    outputs: list[dict[str, Any]],
    parameters: dict[str, Any] | None = None,
    code_version: str = "",
    at: str | datetime | None = None,
    override: tuple[str, str] | None = None,
) -> RecordedRun:
    """Record a run done outside disgorge (e.g. a model trained elsewhere), with its outputs.

    ``outputs`` are keyword dicts for :meth:`RunHandle.add_output` (``kind``, ``name``...).
    The gate applies as for a run done here: an external run cannot launder photos.
    """
    if not outputs:
        raise InvalidInput("record a run with at least one output (--output KIND:NAME[@VERSION])")
    handle = open_run(
        ctx,
        job,
        purpose=purpose,
        inputs=inputs,
        parameters=parameters,
        code_version=code_version,
        at=at,
        override=override,
        external=True,
    )
    try:
        for out in outputs:
            handle.add_output(**out)
    except BaseException:
        close_run(ctx, handle, "failed", handle.at)
        raise
    close_run(ctx, handle, "completed", handle.at)
    return {
        "run": handle.id,
        "job": job,
        "purpose": handle.purpose,
        "inputs": handle.inputs,
        "outputs": handle.outputs,
        "consent": handle.consent_check,
        "override": override is not None,
    }


def emit_lineage(
    ctx: Context,
    event_type: str,
    job: str,
    run_id: str | None,
    purpose: str,
    at: datetime,
    inputs: list[str],
    outputs: list[str],
) -> None:
    """Send an OpenLineage run event, if a transport is configured (off by default).

    A misconfiguration (unknown transport, missing extra) raises. A delivery failure
    does not undo or fail the user's work, which the catalog has already recorded:
    it is logged and kept in the audit log as ``openlineage.undelivered``.
    """
    emitter = ctx.lineage_emitter()
    if emitter is None:
        return
    run = run_id or uuid.uuid4().hex
    try:
        emitter.emit(
            event_type,
            run_id=run,
            job=job,
            purpose=purpose,
            event_time=at,
            inputs=inputs,
            outputs=outputs,
        )
    except DisgorgeError as exc:
        _log.warning("OpenLineage event not delivered: %s", exc)
        with ctx.sessions.begin() as session:
            audit.append(
                session,
                "openlineage.undelivered",
                {
                    "event": event_type,
                    "run": run,
                    "job": job,
                    "transport": ctx.config.openlineage_transport,
                },
                actor=ctx.actor,
            )


def lineage(ctx: Context, node: str, *, direction: str = "downstream", max_depth: int = 50) -> LineageGraph:
    """Everything downstream (derived from) or upstream (feeding) a node such as ``subject:ID``."""
    if direction not in ("downstream", "upstream"):
        raise InvalidInput("direction must be downstream or upstream")
    if max_depth < 1:
        raise InvalidInput("max depth must be at least 1")
    with ctx.reader() as session:
        ref = parse_node(session, node, lambda s: ref_of(ctx.vault, s))
        walk = downstream if direction == "downstream" else upstream
        return walk(session, ref, max_depth=max_depth)
