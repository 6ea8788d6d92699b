"""Erasure documents carried by hand, for recipients and senders without an endpoint.

A recipient that cannot be reached over HTTP gets its signed request as a document
(``GET .../recipients/{name}/request``), and its signed answer is brought back
(``POST /v1/erasures/answers``); one that never answers is closed by hand with a reason.
A sender's request that arrived as a file is handed in here too
(``POST /v1/inbox/documents``), and answered with this workspace's signed response.
"""

from typing import Any

from pydantic import BaseModel, Field

from ...erasure import service
from ...erasure.service import AckResult
from ...sharing import inbox
from ...sharing.inbox import ErasureResponse
from ...sharing.outbox import NoticeClosed
from ..deps import Ctx
from ..table import Resource

__all__ = ["resource"]

resource = Resource("hand-carried", "Signed erasure documents delivered by hand.")


class Document(BaseModel):
    #: a signed disgorge document (body, signature, algorithm)
    document: dict[str, Any]


class Closing(BaseModel):
    reason: str = Field(min_length=3, max_length=2000)


@resource.get(
    "/v1/erasures/{request_id}/recipients/{recipient}/request",
    scope="erasure:approve",
    summary="The signed request to a recipient without an endpoint, to deliver by hand",
    response_model=dict[str, Any],
)
def request_document(ctx: Ctx, request_id: str, recipient: str) -> dict[str, Any]:
    return service.request_document(ctx, request_id, recipient)


@resource.post(
    "/v1/erasures/answers",
    scope="erasure:approve",
    summary="Import a recipient's signed answer delivered by hand, and go on with its erasure",
    response_model=AckResult,
)
def import_answer(ctx: Ctx, body: Document) -> AckResult:
    return service.ack(ctx, body.document)


@resource.post(
    "/v1/erasures/{request_id}/recipients/{recipient}/close",
    scope="erasure:approve",
    summary="Close a recipient's part by hand (it never answered), with a reason",
    response_model=NoticeClosed,
)
def close_recipient(ctx: Ctx, request_id: str, recipient: str, body: Closing) -> NoticeClosed:
    return service.close_recipient(ctx, request_id, recipient, reason=body.reason)


@resource.post(
    "/v1/inbox/documents",
    scope="erasure:approve",
    summary="Hand in a sender's signed erasure request that arrived as a file; its signed answer",
    response_model=ErasureResponse,
)
def receive_document(ctx: Ctx, body: Document) -> ErasureResponse:
    return inbox.receive_file(ctx, body.document, wait=0)
