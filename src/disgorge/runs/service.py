"""The run lifecycle as a service: open a run through the gate, register its outputs,
close it, and tell OpenLineage.

:func:`running` is the context manager every job that makes something uses (training,
unlearning, sharing, a user's own job through ``Workspace.run``); :func:`record_run` is
the same for a job done elsewhere. Each sends its OpenLineage events through
:meth:`Context.lineage_emitter <disgorge.context.Context.lineage_emitter>` once the
catalog has committed, so a listener never hears of a run a rollback took back.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._time import iso, utcnow
from ..catalog.lineage import LineageGraph, NodeRef, downstream, parse_node, upstream
from ..catalog.models import Artifact, Asset, Run, RunInput
from ..consent import parse_purpose
from ..context import Context, when
from ..errors import DisgorgeError, InvalidInput, NotFound
from ..subjects import ref_of
from .records import ConsentCheckView, Override, add_output, finish_run, resolve_inputs, start_run

__all__ = [
    "NamedVersion",
    "RecordedRun",
    "RunDetail",
    "RunHandle",
    "RunView",
    "close_run",
    "emit_lineage",
    "lineage",
    "list_runs",
    "open_run",
    "record_run",
    "running",
    "show_run",
]

_log = logging.getLogger("disgorge")


@runtime_checkable
class NamedVersion(Protocol):
    """A dataset version given as an object (a :class:`~disgorge.datasets.DatasetBuild`):
    runs take one as an input, without this module depending on how datasets are built."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


class RecordedRun(TypedDict):
    """A run recorded after the fact (:func:`record_run`)."""

    run: str
    job: str
    purpose: str
    inputs: list[str]
    outputs: list[str]
    consent: ConsentCheckView
    override: bool


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


def _input_specs(inputs: Sequence[str | NamedVersion]) -> list[str]:
    return [f"dataset:{i.name}@{i.version}" if isinstance(i, NamedVersion) else str(i) for i in inputs]


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
    inputs: Sequence[str | NamedVersion],
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
    inputs: Sequence[str | NamedVersion],
    parameters: dict[str, Any] | None = None,
    code_version: str = "",
    at: str | datetime | None = None,
    override: tuple[str, str] | None = None,
) -> Iterator[RunHandle]:
    """Run a job through the gate and record its lineage::

        with running(ctx, "train-face-id", purpose="ai_training", inputs=[ds]) as run:
            run.add_output("model", name="face-id", path="model.pkl")

    Refused (:class:`~disgorge.errors.ConsentDenied`) if any photo behind the inputs is not
    covered for ``purpose`` now (or at ``at``), unless ``override=(role, justification)``.
    The run is completed when the block ends, failed (and the exception raised on) when
    it raises; a run given ``at`` ends at that instant too, so a backdated run does not
    end in the present."""
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
    inputs: Sequence[str | NamedVersion],
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


class RunView(TypedDict):
    """A run as listed: what ran, for which purpose, when, by whom, what the gate found."""

    id: str
    job: str
    purpose: str
    #: running, completed or failed
    state: str
    parameters: dict[str, Any]
    code_version: str
    started_at: str
    ended_at: str | None
    #: what the gate found behind its inputs (checked, covered, not_covered, by_rule)
    consent: dict[str, Any]
    #: "ROLE: JUSTIFICATION" when the run went ahead despite uncovered photos
    override: str | None
    actor: str
    #: recorded after the fact (``record_run``), not executed here
    external: bool
    #: how many inputs it read and outputs it produced
    inputs: int
    outputs: int


class RunDetail(RunView):
    """One run with its inputs and outputs as lineage nodes (the first :data:`SHOWN` of each;
    the lineage walk gives them all)."""

    input_nodes: list[str]
    output_nodes: list[str]


#: how many inputs and outputs :func:`show_run` names
SHOWN = 1000


def _run_view(run: Run, inputs: int, outputs: int) -> RunView:
    return {
        "id": run.id,
        "job": run.job,
        "purpose": run.purpose,
        "state": run.state,
        "parameters": dict(run.parameters or {}),
        "code_version": run.code_version,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at) if run.ended_at is not None else None,
        "consent": dict(run.consent_check or {}),
        "override": run.override_justification,
        "actor": run.actor,
        "external": bool(run.external),
        "inputs": inputs,
        "outputs": outputs,
    }


def _artifact_node(kind: str, name: str, version: str, artifact_id: str) -> str:
    if kind == "dataset_version":
        return f"dataset:{name}@{version}"
    if name:
        return f"{kind}:{name}@{version}" if version else f"{kind}:{name}"
    return f"{kind}:{artifact_id}"


def list_runs(
    ctx: Context, *, job: str | None = None, purpose: str | None = None, state: str | None = None
) -> list[RunView]:
    """Runs, newest first, optionally of one job, purpose or state."""
    with ctx.reader() as session:
        query = select(Run).order_by(Run.started_at.desc(), Run.id)
        if job is not None:
            query = query.where(Run.job == job)
        if purpose is not None:
            query = query.where(Run.purpose == parse_purpose(purpose).value)
        if state is not None:
            query = query.where(Run.state == state)
        rows = session.scalars(query).all()
        counts = select(RunInput.run_id, func.count()).group_by(RunInput.run_id)
        inputs: dict[str, int] = {r: n for r, n in session.execute(counts)}
        made = select(Artifact.run_id, func.count()).group_by(Artifact.run_id)
        outputs: dict[str, int] = {r: n for r, n in session.execute(made)}
        return [_run_view(r, inputs.get(r.id, 0), outputs.get(r.id, 0)) for r in rows]


def show_run(ctx: Context, run_id: str) -> RunDetail:
    """One run, with its inputs and outputs as lineage node ids (``dataset:NAME@V``...)."""
    with ctx.reader() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}")
        n_in = session.scalar(select(func.count()).select_from(RunInput).where(RunInput.run_id == run.id))
        n_out = session.scalar(select(func.count()).select_from(Artifact).where(Artifact.run_id == run.id))
        read = session.execute(
            select(Asset.sha256, Artifact.kind, Artifact.name, Artifact.version, Artifact.id)
            .select_from(RunInput)
            .outerjoin(Asset, Asset.id == RunInput.asset_id)
            .outerjoin(Artifact, Artifact.id == RunInput.artifact_id)
            .where(RunInput.run_id == run.id)
            .order_by(RunInput.id)
            .limit(SHOWN)
        )
        inputs = [
            f"asset:{sha}" if kind is None else _artifact_node(kind, name, version, art)
            for sha, kind, name, version, art in read
        ]
        made = session.execute(
            select(Artifact.kind, Artifact.name, Artifact.version, Artifact.id)
            .where(Artifact.run_id == run.id)
            .order_by(Artifact.created_at, Artifact.id)
            .limit(SHOWN)
        )
        outputs = [_artifact_node(*row) for row in made]
        view = _run_view(run, int(n_in or 0), int(n_out or 0))
    return {**view, "input_nodes": inputs, "output_nodes": outputs}
