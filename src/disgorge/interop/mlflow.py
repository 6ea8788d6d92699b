"""Import MLflow's lineage: which registered model version was trained on which dataset.

:func:`import_mlflow` reads a *local* MLflow store (``sqlite:///path/mlflow.db`` or a
``file:`` folder; no tracking server, no network) and, for every registered model version
that names its run, records an external run in the workspace (``Workspace.record_run``):
the run's logged dataset inputs (``mlflow.log_input``) that map to disgorge dataset
versions are its inputs, the model version is its output (``model:NAME@VERSION``, an
external model: it can be retired, and retiring cascades, but not unlearned).

**How an MLflow dataset maps to a disgorge dataset version**, first match wins:

1. the input tag ``disgorge.dataset`` = ``NAME@VERSION``
   (``mlflow.log_input(ds, context="training", tags={"disgorge.dataset": "faces@1.0.0"})``);
2. the dataset's name is ``NAME@VERSION`` of a disgorge dataset version;
3. the dataset's name is a disgorge dataset's ``NAME`` and its digest is a prefix (8 hex
   digits or more) of exactly one of that dataset's versions' Merkle roots.

An input that maps to nothing is *reported* (``unmapped_inputs``), never dropped in
silence: it may be data that disgorge does not hold (a public set), or a tag to fix. A
model version none of whose inputs map is not recorded (a run without inputs would be
lineage of nothing) and is listed in ``skipped`` with the reason; so are versions whose
run the consent gate refuses, and versions whose name and number already belong to a
different disgorge model.

Each imported model artifact keeps ``extra["mlflow"]`` (run id, registered model name and
version, source, experiment), which makes the import **idempotent**: a version already
imported from the same MLflow run is counted in ``already_imported`` and recorded again
never. Runs that read disgorge data but registered no model version are listed in
``runs_without_model``: a disgorge run needs an output, so they are reported, not recorded.

The run is recorded at the MLflow run's start time, for the purpose in its tag
``disgorge.purpose`` (else ``purpose``), with the run's params and its
``mlflow.source.git.commit`` as code version. Needs ``pip install 'disgorge[mlflow]'``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from sqlalchemy import select

from ..catalog.models import Artifact, DatasetVersion
from ..context import Context
from ..datasets import DatasetBuild
from ..errors import ConsentDenied, InvalidInput
from ..runs import record_run

__all__ = ["DATASET_TAG", "PURPOSE_TAG", "MlflowImport", "import_mlflow"]

#: input tag naming the disgorge dataset version an MLflow dataset input is
DATASET_TAG = "disgorge.dataset"
#: run tag naming the purpose the run was for (a disgorge purpose, e.g. ai_training)
PURPOSE_TAG = "disgorge.purpose"
_PAGE = 500


@dataclass
class MlflowImport:
    """What an import did; ``to_dict`` is the CLI's ``--json``."""

    tracking_uri: str
    recorded: list[dict[str, Any]] = field(default_factory=list)
    already_imported: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    unmapped_inputs: list[dict[str, str]] = field(default_factory=list)
    runs_without_model: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.tracking_uri,
            "recorded": self.recorded,
            "already_imported": self.already_imported,
            "skipped": self.skipped,
            "unmapped_inputs": self.unmapped_inputs,
            "runs_without_model": self.runs_without_model,
        }


def _local_store(uri: str) -> str:
    """The URI if it names an existing local store; refuses servers and missing stores
    (MLflow would create an empty store there, and the import would find nothing)."""
    parsed = urlparse(uri)
    if parsed.scheme == "":
        path = Path(uri)
        uri = path.resolve().as_uri()
    elif parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "sqlite":
        # sqlite:///relative.db or sqlite:////absolute.db (SQLAlchemy's form)
        path = Path(unquote(uri.removeprefix("sqlite:///")))
    else:
        raise InvalidInput(
            f"MLflow store {uri!r}: import reads a local store only (sqlite:///PATH or a file: "
            "folder), never a tracking server"
        )
    if not path.exists():
        raise InvalidInput(f"MLflow store {uri!r}: {path} does not exist")
    return uri


@contextmanager
def _quiet_mlflow(uri: str) -> Iterator[Any]:
    """MLflow, imported and opened without its log lines and deprecation warnings; a file
    store is allowed for the read (MLflow 3 refuses one unless told)."""
    try:
        import mlflow  # noqa: F401
        from mlflow import MlflowClient
    except ImportError:
        raise InvalidInput("importing from MLflow needs mlflow: pip install 'disgorge[mlflow]'") from None
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    old_env = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        if uri.startswith("file:"):
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        try:
            yield MlflowClient(tracking_uri=uri, registry_uri=uri)
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
            if old_env is None:
                os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
            else:
                os.environ["MLFLOW_ALLOW_FILE_STORE"] = old_env


def _pages(fetch: Any) -> Iterator[Any]:
    token = None
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return


def _datasets(ctx: Context) -> dict[str, list[tuple[str, str]]]:
    """disgorge dataset name -> [(version, merkle root)]."""
    out: dict[str, list[tuple[str, str]]] = {}
    from ..datasets.build import content_root

    with ctx.reader() as session:
        for ds in session.scalars(select(DatasetVersion)):
            out.setdefault(ds.name, []).append((ds.version, content_root(session, ds)))
    return out


def _map_input(dataset_input: Any, known: dict[str, list[tuple[str, str]]]) -> tuple[str | None, str]:
    """(``NAME@VERSION`` or None, why not) for one MLflow dataset input."""
    ds = dataset_input.dataset
    tags = {t.key: t.value for t in dataset_input.tags}
    if DATASET_TAG in tags:
        ref = tags[DATASET_TAG].removeprefix("dataset:")
        name, _, version = ref.partition("@")
        if any(v == version for v, _ in known.get(name, [])):
            return ref, ""
        return None, f"its tag {DATASET_TAG}={tags[DATASET_TAG]!r} names no disgorge dataset version"
    name, _, version = ds.name.partition("@")
    if version:
        if any(v == version for v, _ in known.get(name, [])):
            return ds.name, ""
        return None, f"no disgorge dataset version {ds.name!r}"
    if name in known:
        digest = (ds.digest or "").lower()
        hits = [v for v, root in known[name] if len(digest) >= 8 and root.lower().startswith(digest)]
        if len(hits) == 1:
            return f"{name}@{hits[0]}", ""
        return None, (
            f"disgorge dataset {name!r} has no version whose Merkle root starts with digest {digest!r}; "
            f"name it {name}@VERSION or tag the input {DATASET_TAG}=NAME@VERSION"
        )
    return None, f"not a disgorge dataset; tag the input {DATASET_TAG}=NAME@VERSION if it is one"


def _imported(ctx: Context) -> dict[tuple[str, str], dict[str, Any] | None]:
    """(name, version) of every model artifact -> its MLflow origin (None: not imported)."""
    with ctx.reader() as session:
        rows = session.execute(
            select(Artifact.name, Artifact.version, Artifact.extra).where(Artifact.kind == "model")
        ).all()
    return {(n, v): (extra or {}).get("mlflow") for n, v, extra in rows}


def import_mlflow(ctx: Context, tracking_uri: str, *, purpose: str = "ai_training") -> MlflowImport:
    """Record MLflow's registered model versions and their dataset inputs as lineage
    (``ctx``: a workspace's :attr:`~disgorge.Workspace.ctx`)."""
    uri = _local_store(tracking_uri)
    result = MlflowImport(uri)
    known = _datasets(ctx)
    existing = _imported(ctx)
    with _quiet_mlflow(uri) as client:
        versions = list(_pages(lambda t: client.search_model_versions(max_results=_PAGE, page_token=t)))
        by_run: dict[str, list[Any]] = {}
        for mv in sorted(versions, key=lambda m: (m.name, int(m.version))):
            label = f"model:{mv.name}@{mv.version}"
            if not mv.run_id:
                result.skipped.append({"model": label, "reason": "the model version names no MLflow run"})
                continue
            key = (mv.name, str(mv.version))
            if key in existing:
                origin = existing[key]
                if origin and origin.get("run_id") == mv.run_id:
                    result.already_imported.append(label)
                else:
                    result.skipped.append(
                        {"model": label, "reason": f"{label} already exists in disgorge, not from this run"}
                    )
                continue
            by_run.setdefault(mv.run_id, []).append(mv)
        experiments = {e.experiment_id: e.name for e in client.search_experiments()}
        for run_id, mvs in by_run.items():
            run = client.get_run(run_id)
            _record(ctx, result, run, mvs, experiments, known, purpose)
        registered = {mv.run_id for mv in versions}
        for exp_id in sorted(experiments):
            for run in _pages(lambda t, e=exp_id: client.search_runs([e], max_results=_PAGE, page_token=t)):
                if run.info.run_id in registered:
                    continue
                mapped = [_map_input(d, known)[0] for d in run.inputs.dataset_inputs]
                if any(mapped):
                    result.runs_without_model.append(run.info.run_id)
    return result


def _record(
    ctx: Context,
    result: MlflowImport,
    run: Any,
    mvs: list[Any],
    experiments: dict[str, str],
    known: dict[str, list[tuple[str, str]]],
    purpose: str,
) -> None:
    labels = [f"model:{mv.name}@{mv.version}" for mv in mvs]
    run_id = run.info.run_id
    inputs: list[str | DatasetBuild] = []
    for d in run.inputs.dataset_inputs:
        ref, why = _map_input(d, known)
        if ref is None:
            result.unmapped_inputs.append(
                {"mlflow_run": run_id, "dataset": d.dataset.name, "digest": d.dataset.digest, "reason": why}
            )
        elif ref not in inputs:
            inputs.append(ref)
    if not inputs:
        for label in labels:
            result.skipped.append(
                {
                    "model": label,
                    "reason": f"none of MLflow run {run_id}'s dataset inputs is a disgorge dataset",
                }
            )
        return
    experiment = experiments.get(run.info.experiment_id, run.info.experiment_id)
    run_name = run.info.run_name or run_id
    tags = run.data.tags
    outputs = [
        {
            "kind": "model",
            "name": mv.name,
            "version": str(mv.version),
            "uri": mv.source or "",
            "extra": {
                "mlflow": {
                    "run_id": run_id,
                    "experiment": experiment,
                    "registered_model": mv.name,
                    "version": str(mv.version),
                    "source": mv.source or "",
                }
            },
        }
        for mv in mvs
    ]
    try:
        recorded = record_run(
            ctx,
            f"mlflow:{experiment}/{run_name}",
            purpose=tags.get(PURPOSE_TAG, purpose),
            inputs=inputs,
            outputs=outputs,
            parameters={**run.data.params, "mlflow_run_id": run_id},
            code_version=tags.get("mlflow.source.git.commit", ""),
            at=datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC),
        )
    except (ConsentDenied, InvalidInput) as exc:  # this version cannot be lineage; the rest can
        for label in labels:
            result.skipped.append({"model": label, "reason": str(exc)})
        return
    result.recorded.append(
        {
            "run": recorded["run"],
            "mlflow_run": run_id,
            "inputs": recorded["inputs"],
            "outputs": recorded["outputs"],
        }
    )
