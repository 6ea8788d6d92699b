"""Looking a photo up: stored copies of it, or photos of the same person, and who a model says it is.

The photo to look up is uploaded first (``POST /v1/uploads``) and named here; it is wiped
once answered. Finding a copy (PDQ hashes) needs ``asset:read``. Finding the same
*person* (face embeddings) and asking a face model who is in a photo are face recognition:
they also need ``subject:read``, checked inside (a viewer of models may not identify
people).
"""

from typing import Literal

from pydantic import BaseModel, Field

from ... import uploads
from ...errors import Forbidden
from ...training import lifecycle
from ...training.lifecycle import Prediction
from ...vision import search
from ...vision.search import FindResult
from ..deps import Ctx, Who
from ..table import Resource

__all__ = ["resource"]

resource = Resource("search", "Copies of a photo, the same person, and a model's prediction.")

IDENTIFY = "subject:read"


class FindRequest(BaseModel):
    #: the upload holding the photo to look up
    upload: str = Field(min_length=1, max_length=64)
    by: Literal["copy", "face"] = "copy"
    max_distance: float | None = Field(default=None, ge=0, le=256)


class PredictRequest(BaseModel):
    upload: str = Field(min_length=1, max_length=64)
    min_score: float = Field(default=0.5, ge=0, le=1)


def _identifying(who: Who) -> None:
    if not who.may(IDENTIFY):
        raise Forbidden(f"identifying people needs {IDENTIFY}, which the role {who.role} does not hold")


@resource.post(
    "/v1/find",
    scope="asset:read",
    summary="Stored copies of an uploaded photo, or (by=face, also subject:read) photos of the same person",
    response_model=FindResult,
)
def find(ctx: Ctx, who: Who, body: FindRequest) -> FindResult:
    if body.by == "face":
        _identifying(who)
    data = uploads.path_of(ctx, body.upload).read_bytes()
    try:
        return search.find(ctx, data, by=body.by, max_distance=body.max_distance)
    finally:
        uploads.discard(ctx, body.upload)


@resource.post(
    "/v1/models/{ref}/predict",
    scope="model:read",
    summary="Who is in an uploaded photo, according to a face model (also needs subject:read)",
    response_model=Prediction,
)
def predict(ctx: Ctx, who: Who, ref: str, body: PredictRequest) -> Prediction:
    _identifying(who)
    data = uploads.path_of(ctx, body.upload).read_bytes()
    try:
        return lifecycle.predict(ctx, ref, data, min_score=body.min_score)
    finally:
        uploads.discard(ctx, body.upload)
