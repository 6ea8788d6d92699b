"""OpenLineage model objects, built with ``openlineage-python`` (imported only when needed).

Kept apart from :mod:`disgorge.interop.openlineage` so that importing that module (and so
disgorge itself) never needs the optional ``lineage`` extra.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import attr
from openlineage.client.constants import __version__ as client_version
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import RunFacet
from openlineage.client.generated import dataset_version_dataset, job_type_job, processing_engine_run
from openlineage.client.serde import Serde

from .._version import __version__
from . import DISGORGE_IRI, PRODUCER

__all__ = ["PURPOSE_FACET_SCHEMA", "PurposeRunFacet", "build_event", "to_dict"]

#: where the purpose facet's JSON Schema lives (shipped in disgorge/interop/schemas/)
PURPOSE_FACET_SCHEMA = f"{DISGORGE_IRI}openlineage/facets/1-0-0/PurposeRunFacet.json"


@attr.define
class PurposeRunFacet(RunFacet):
    """disgorge's custom run facet: the purpose the consent gate checked the run for."""

    purpose: str
    _additional_skip_redact: ClassVar[list[str]] = ["purpose"]

    @staticmethod
    def _get_schema() -> str:
        return f"{PURPOSE_FACET_SCHEMA}#/$defs/PurposeRunFacet"


def _dataset_facets(name: str) -> dict[str, Any]:
    _, at, version = name.partition("@")
    if not at or not version:
        return {}
    return {
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=version, producer=PRODUCER
        )
    }


def build_event(
    event_type: str,
    *,
    namespace: str,
    run_id: str,
    job: str,
    purpose: str,
    event_time: str,
    inputs: list[str],
    outputs: list[str],
) -> RunEvent:
    """A RunEvent for one transition of one run (START, COMPLETE, FAIL...)."""
    job_type = "DATASET_BUILD" if job.startswith("dataset.build:") else "JOB"
    return RunEvent(
        eventType=RunState(event_type),
        eventTime=event_time,
        producer=PRODUCER,
        run=Run(
            runId=str(uuid.UUID(hex=run_id)),
            facets={
                "disgorge_purpose": PurposeRunFacet(purpose=purpose, producer=PRODUCER),
                "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                    version=__version__,
                    name="disgorge",
                    openlineageAdapterVersion=client_version,
                    producer=PRODUCER,
                ),
            },
        ),
        job=Job(
            namespace=namespace,
            name=job,
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH", integration="DISGORGE", jobType=job_type, producer=PRODUCER
                )
            },
        ),
        inputs=[InputDataset(namespace=namespace, name=n, facets=_dataset_facets(n)) for n in inputs],
        outputs=[OutputDataset(namespace=namespace, name=n, facets=_dataset_facets(n)) for n in outputs],
    )


def to_dict(event: RunEvent) -> dict[str, Any]:
    """The event as the transports serialise it (``Serde.to_json`` is ``json.dumps`` of this)."""
    return Serde.to_dict(event)
