"""Models: the registry, training and unlearning (background jobs), retiring, the
forgetting audit; and face analysis (a background job).

Training, unlearning and analysis answer ``202`` with the job (:mod:`.jobs`), whose
``done``/``total`` show progress and whose ``result`` is what the CLI prints with
``--json``. Each runs as the principal who asked, so the audit log names them; a
training is checked against consent when it runs. A model is ``NAME`` (its latest
version) or ``NAME@VERSION`` in the path. Subjects to forget or to audit are named by
external id or ``sub_`` ref in the body; a job keeps only their ``sub_`` refs.
"""

from typing import Annotated, Literal

from fastapi import Path, Query, Request
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from ...datasets import service as dataset_service
from ...errors import InvalidInput
from ...jobs import JobView
from ...subjects import ref_of
from ...training import lifecycle
from ...training.lifecycle import ModelAudit, ModelView, RetiredModel
from ..deps import Ctx, Limit, Offset, Page, page, start_job
from ..table import Resource

__all__ = ["resource"]

resource = Resource(
    "models", "The model registry: training, unlearning, retiring, forgetting audits; analysis."
)

ModelRef = Annotated[
    str, Path(min_length=1, max_length=260, description="NAME (the latest version) or NAME@VERSION")
]
ModelState = Literal["active", "retired", "erased"]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
SubjectId = Annotated[str, Field(min_length=1, max_length=512)]


class NewModel(BaseModel):
    #: each training of a name makes a new version
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^@/\s][^@/]*$")
    #: the dataset version to train on, NAME@VERSION (or NAME: its latest when asked)
    dataset: str = Field(min_length=1, max_length=240)
    model: Literal["face-id"] = "face-id"
    #: SISA shards (by subject): forgetting a person retrains one
    shards: int = Field(default=8, ge=1, le=64)
    #: SISA slices per shard (checkpoints to restart from)
    slices: int = Field(default=4, ge=1, le=32)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    code_version: str = Field(default="", max_length=200)


class Forget(BaseModel):
    #: forget every photo of these subjects (external ids or sub_ refs)
    subjects: list[SubjectId] = Field(default_factory=list, max_length=10_000)
    #: forget these photos, by sha256
    shas: list[Sha256] = Field(default_factory=list, max_length=100_000)
    reason: str = Field(default="unlearning request", min_length=3, max_length=2000)


class Retirement(BaseModel):
    reason: str = Field(min_length=3, max_length=2000)


class AuditRequest(BaseModel):
    #: the subjects that should be forgotten (external ids or sub_ refs)
    forgotten: list[SubjectId] = Field(min_length=1, max_length=10_000)


class NewAnalysis(BaseModel):
    #: only these photos (by sha256); every photo not analysed yet when absent
    shas: list[Sha256] | None = Field(default=None, min_length=1, max_length=100_000)
    #: analyse again photos analysed before
    force: bool = False
    #: dlib's CNN detector (slower, finds more faces)
    cnn: bool = False
    #: dlib: faces and dlib's embedding; portrait: a stand-in for drawn sample portraits
    embedder: Literal["dlib", "portrait"] = "dlib"
    #: processes (default: one per core of the server)
    workers: int | None = Field(default=None, ge=1, le=64)


class ModelListed(TypedDict):
    """A model version as listed (``GET /v1/models/{ref}`` shows all of it)."""

    name: str
    version: str
    id: str
    state: str
    type: str
    trained_at: str | None
    run: str
    dataset: str | None
    samples: int
    classes: int
    unlearned_from: str | None


def _listed(view: ModelView) -> ModelListed:
    return {
        "name": view["name"],
        "version": view["version"],
        "id": view["id"],
        "state": view["state"],
        "type": view["type"],
        "trained_at": view["trained_at"],
        "run": view["run"],
        "dataset": view["dataset"],
        "samples": view["samples"],
        "classes": view["classes"],
        "unlearned_from": view["unlearned_from"],
    }


@resource.get(
    "/v1/models",
    scope="model:read",
    summary="Model versions, trained here or recorded from elsewhere, by name",
    response_model=Page[ModelListed],
)
def list_models(
    ctx: Ctx,
    name: Annotated[str | None, Query(max_length=200)] = None,
    state: ModelState | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    rows = [
        _listed(m)
        for m in lifecycle.models(ctx)
        if (name is None or m["name"] == name) and (state is None or m["state"] == state)
    ]
    return page(rows, limit, offset)


@resource.get(
    "/v1/models/{ref}",
    scope="model:read",
    summary="One model version: its run, dataset, shards, state, forgetting audit",
    response_model=ModelView,
)
def show(ctx: Ctx, ref: ModelRef) -> ModelView:
    return lifecycle.model(ctx, ref)


@resource.post(
    "/v1/models",
    scope="model:write",
    summary="Train a SISA face model on a dataset version, through the consent gate (a job)",
    status_code=202,
    response_model=JobView,
)
def train(request: Request, ctx: Ctx, body: NewModel) -> JobView:
    dataset = dataset_service.show(ctx, body.dataset)  # 404 now, not in the job
    # the version asked for, or the latest now: a build meanwhile does not change what is trained
    params = {**body.model_dump(), "dataset": f"{dataset['name']}@{dataset['version']}"}
    view: JobView = start_job(request, ctx, "train", params)
    return view


@resource.post(
    "/v1/models/{ref}/unlearn",
    scope="model:write",
    summary="Make a model forget photos exactly: only the shards that held them retrain (a job)",
    status_code=202,
    response_model=JobView,
    errors={422: "Nothing to forget named, or the model is not the latest active version trained here"},
)
def unlearn(request: Request, ctx: Ctx, ref: ModelRef, body: Forget) -> JobView:
    if not body.subjects and not body.shas:
        raise InvalidInput("say what to forget: subjects and/or shas")
    model = lifecycle.model(ctx, ref)
    label = f"model:{model['name']}@{model['version']}"
    if model["state"] != "active":
        raise InvalidInput(f"{label} is {model['state']}: unlearn its latest active version")
    if model["version"] != model["versions"][-1]["version"]:
        raise InvalidInput(f"{label} is not the latest version of {model['name']}: unlearn that one")
    if model["shards"] is None:
        raise InvalidInput(f"{label} was recorded from elsewhere, not trained here: retire it instead")
    params = {
        "model": model["name"],  # its latest version when the job runs (see api.jobs)
        "requested_version": model["version"],
        "subjects": sorted({ref_of(ctx.vault, s) for s in body.subjects}),
        "shas": sorted({s.lower() for s in body.shas}),
        "reason": body.reason,
    }
    view: JobView = start_job(request, ctx, "unlearn", params)
    return view


@resource.post(
    "/v1/models/{ref}/retire",
    scope="model:write",
    summary="Retire a model version and everything derived from it (external models too)",
    response_model=RetiredModel,
    errors={422: "The model is already retired, or no reason was given"},
)
def retire(ctx: Ctx, ref: ModelRef, body: Retirement) -> RetiredModel:
    return lifecycle.retire_model(ctx, ref, reason=body.reason)


@resource.post(
    "/v1/models/{ref}/audit",
    scope="model:audit",
    summary="Has this model forgotten these subjects? Membership inference and a retrain proof",
    response_model=ModelAudit,
)
def audit(ctx: Ctx, ref: ModelRef, body: AuditRequest) -> ModelAudit:
    return lifecycle.model_audit(ctx, ref, forgotten=list(body.forgotten))


@resource.post(
    "/v1/analysis",
    scope="model:write",
    summary="Detect faces and PDQ-hash photos; embed faces only where biometric consent allows (a job)",
    status_code=202,
    response_model=JobView,
)
def analyze(request: Request, ctx: Ctx, body: NewAnalysis) -> JobView:
    params = body.model_dump()
    if body.shas is not None:
        params["shas"] = sorted({s.lower() for s in body.shas})
    view: JobView = start_job(request, ctx, "analysis", params)
    return view
