"""Dataset versions (built through the consent gate), their diffs and Croissant exports; runs.

A build checks every selected photo against consent for the purpose, now: photos not
covered are left out and listed with the rule that did (``excluded_items``); when none is
covered nothing is built and the answer is ``403``. Subjects are chosen by external id or
``sub_`` ref in the body, never in a URL; a version records only how many were named.

A run is recorded after the fact (``POST /v1/runs``), through the same gate: a run whose
inputs' photos were not covered for its purpose at its time is refused (``403``). Only
an admin may override that, naming the role that decided and why (both are recorded).
"""

from typing import Annotated, Any, Literal

from fastapi import Path, Query, Response
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from ... import runs
from ...consent import Purpose
from ...datasets import service as dataset_service
from ...datasets.build import DatasetDiff, DatasetView, ExcludedItem
from ...errors import Forbidden
from ...interop.croissant import CroissantDocument, croissant_document
from ...runs.service import RecordedRun, RunDetail, RunView, list_runs, show_run
from ..deps import Ctx, Limit, Offset, Page, page
from ..table import Resource

__all__ = ["resource"]

resource = Resource(
    "datasets", "Dataset versions built through the consent gate, their diffs and Croissant; runs."
)

#: a new dataset's name (no ``@``: versions are numbered; no ``/``: it is a path segment)
DatasetName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^@/\s][^@/]*$")]
Version = Annotated[
    str | None,
    Query(max_length=32, pattern=r"^\d+\.\d+\.\d+$", description="a version; the latest when absent"),
]
PathName = Annotated[str, Path(min_length=1, max_length=200, description="the dataset's name")]
RunState = Literal["running", "completed", "failed"]
ArtifactKind = Literal["crop", "embedding", "phash", "index", "model", "export", "report", "transfer"]


class NewDataset(BaseModel):
    name: DatasetName
    purpose: Purpose
    #: only photos from this source
    source: str | None = Field(default=None, min_length=1, max_length=200)
    #: only photos of these subjects: external ids or sub_ refs
    subjects: list[Annotated[str, Field(min_length=1, max_length=512)]] | None = Field(
        default=None, min_length=1, max_length=100_000
    )


class DatasetBuildView(TypedDict):
    """What a build made (``created``: false when the members were the latest version's)."""

    name: str
    version: str
    purpose: str
    members: int
    excluded: int
    excluded_by_rule: dict[str, int]
    excluded_items: list[ExcludedItem]
    merkle_root: str
    created: bool
    previous: str | None
    #: the run that built it (null when nothing new was built)
    run: str | None


class Output(BaseModel):
    """An artifact the run produced (no file is read: give its ``uri``)."""

    kind: ArtifactKind
    name: str = Field(default="", max_length=200, pattern=r"^[^@]*$")
    #: numbered automatically when absent
    version: str = Field(default="", max_length=64)
    uri: str = Field(default="", max_length=2000)
    extra: dict[str, Any] | None = None


class RunOverride(BaseModel):
    role: Literal["privacy_officer", "dpo", "legal"]
    justification: str = Field(min_length=10, max_length=2000)


class NewRun(BaseModel):
    job: str = Field(min_length=1, max_length=200)
    purpose: Purpose
    #: ``NAME@V`` / ``dataset:NAME@V`` / ``model:NAME@V`` / ``asset:SHA256``
    inputs: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(min_length=1, max_length=1000)
    outputs: list[Output] = Field(min_length=1, max_length=1000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    code_version: str = Field(default="", max_length=200)
    #: ISO 8601: when the run happened (default: now); consent is checked at that time
    at: str | None = Field(default=None, min_length=4, max_length=64)
    #: go ahead despite uncovered photos (admins only; recorded, and a violation)
    override: RunOverride | None = None


def _ref(name: str, version: str | None) -> str:
    return f"{name}@{version}" if version else name


@resource.get(
    "/v1/datasets",
    scope="dataset:read",
    summary="Datasets: the latest version of each, by name",
    response_model=Page[DatasetView],
)
def list_datasets(
    ctx: Ctx, purpose: Purpose | None = None, limit: Limit = 100, offset: Offset = 0
) -> dict[str, object]:
    rows = [d for d in dataset_service.list_datasets(ctx) if purpose is None or d["purpose"] == purpose]
    return page(rows, limit, offset)


@resource.post(
    "/v1/datasets",
    scope="dataset:write",
    summary="Build a dataset version through the consent gate (200 when nothing changed)",
    status_code=201,
    response_model=DatasetBuildView,
    responses={
        200: {
            "description": "The members are the latest version's: nothing new was built",
            "model": DatasetBuildView,
        }
    },
    errors={403: "Consent covers none of the selected photos for the purpose: no version built"},
)
def build(ctx: Ctx, body: NewDataset, response: Response) -> dict[str, Any]:
    made = dataset_service.build(
        ctx, body.name, purpose=body.purpose.value, source=body.source, subjects=body.subjects
    )
    if not made.created:
        response.status_code = 200
    return made.to_dict()


@resource.get(
    "/v1/datasets/{name}",
    scope="dataset:read",
    summary="A dataset version (the latest unless ?version=), with its members' sha256s if asked",
    response_model=DatasetView,
)
def show(ctx: Ctx, name: PathName, version: Version = None, members: bool = False) -> DatasetView:
    return dataset_service.show(ctx, _ref(name, version), members=members)


@resource.get(
    "/v1/datasets/{name}/croissant",
    scope="dataset:read",
    summary="A dataset version as Croissant 1.1 JSON-LD (the export is audited)",
    response_model=dict[str, Any],
)
def croissant(ctx: Ctx, name: PathName, version: Version = None) -> CroissantDocument:
    return croissant_document(ctx, _ref(name, version))


@resource.get(
    "/v1/datasets/{name}/diff",
    scope="dataset:read",
    summary="Photos added and removed between two versions of a dataset",
    response_model=DatasetDiff,
)
def diff(
    ctx: Ctx,
    name: PathName,
    from_version: Annotated[str, Query(alias="from", max_length=32, pattern=r"^\d+\.\d+\.\d+$")],
    to_version: Annotated[str | None, Query(alias="to", max_length=32, pattern=r"^\d+\.\d+\.\d+$")] = None,
) -> DatasetDiff:
    return dataset_service.diff(ctx, _ref(name, from_version), _ref(name, to_version))


@resource.get(
    "/v1/runs",
    scope="run:read",
    summary="Runs, newest first (their inputs and outputs counted)",
    response_model=Page[RunView],
)
def list_all_runs(
    ctx: Ctx,
    job: Annotated[str | None, Query(max_length=200)] = None,
    purpose: Purpose | None = None,
    state: RunState | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    rows = list_runs(ctx, job=job, purpose=purpose.value if purpose else None, state=state)
    return page(rows, limit, offset)


@resource.get(
    "/v1/runs/{run_id}",
    scope="run:read",
    summary="One run: purpose, consent check, inputs and outputs (as lineage nodes)",
    response_model=RunDetail,
)
def show_one_run(ctx: Ctx, run_id: Annotated[str, Path(max_length=64)]) -> RunDetail:
    return show_run(ctx, run_id)


@resource.post(
    "/v1/runs",
    scope="run:write",
    summary="Record a run done elsewhere, with its outputs, through the consent gate",
    status_code=201,
    response_model=RecordedRun,
    errors={403: "The inputs' photos were not covered for the purpose (or an override without admin)"},
)
def record(ctx: Ctx, body: NewRun) -> RecordedRun:
    override = None
    if body.override is not None:
        if ctx.principal is None or ctx.principal.role != "admin":
            raise Forbidden("only an admin may override the consent gate for a run")
        override = (body.override.role, body.override.justification)
    return runs.record_run(
        ctx,
        body.job,
        purpose=body.purpose.value,
        inputs=list(body.inputs),
        outputs=[o.model_dump(exclude_none=True) for o in body.outputs],
        parameters=body.parameters,
        code_version=body.code_version,
        at=body.at,
        override=override,
    )
