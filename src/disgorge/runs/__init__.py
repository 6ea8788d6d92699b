"""Runs and artifacts: recording a job's inputs, purpose and outputs, through the gate.

- :mod:`.records`: the catalog rows of a run and its outputs, and the consent check of
  its inputs, inside a caller's session (fail closed: see there);
- :mod:`.service`: the run lifecycle taking a :class:`~disgorge.context.Context`
  (:func:`open_run`, :func:`close_run`, :func:`running`, :func:`record_run`), with its
  OpenLineage events, and the lineage graph's walk.
"""

from .records import (
    ARTIFACT_KINDS,
    OVERRIDE_ROLES,
    ConsentCheck,
    ConsentCheckView,
    Override,
    add_output,
    check_inputs,
    finish_run,
    resolve_inputs,
    start_run,
    upstream_asset_ids,
)
from .service import (
    NamedVersion,
    RecordedRun,
    RunHandle,
    close_run,
    emit_lineage,
    lineage,
    open_run,
    record_run,
    running,
)

__all__ = [
    "ARTIFACT_KINDS",
    "OVERRIDE_ROLES",
    "ConsentCheck",
    "ConsentCheckView",
    "NamedVersion",
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
