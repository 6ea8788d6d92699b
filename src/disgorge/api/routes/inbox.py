"""The inbox other organisations send erasure requests to (docs/sharing.md).

* ``POST /v1/erasure-requests``: a sender's signed erasure request. Nothing in it is
  trusted before :func:`disgorge.sharing.inbox.receive` has checked it against a
  registered sender's key. ``202`` with the signed ``acknowledged`` answer when there is
  work to do (the inbox worker runs this workspace's erasure), ``200`` with a signed answer
  when it is already done or names nothing held here;
* ``GET /v1/erasure-requests/{nonce}``: the signed state of a request, with this
  workspace's certificate once completed, for the sender that sent it only: the query
  must be signed with that sender's key (:mod:`disgorge.sharing.query`);
* ``GET /v1/public-key`` and ``GET /healthz``: public.

**No accepted request is lost**: a ``202`` is sent only once the request is a committed
row; the worker (:mod:`disgorge.sharing.worker`) runs the pending rows in order, also
after a crash. Bodies are refused from their declared length and share one budget
(:mod:`disgorge.sharing.limits`).
"""

import asyncio
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..._version import __version__
from ...sharing import inbox
from ...sharing.limits import Refused, parse_body
from ...sharing.openapi import DOCUMENT_SCHEMA, REQUEST_SCHEMA, json_answer
from ...sharing.query import SCHEME, check_authorization
from ..table import PUBLIC, SIGNED, Resource

__all__ = ["resource"]

resource = Resource("inbox", "Erasure requests from other organisations, signed with their registered keys.")


@resource.post(
    "/v1/erasure-requests",
    auth=SIGNED,
    scope=None,
    summary="Receive a sender's signed erasure request",
    status_code=202,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": REQUEST_SCHEMA}}}
    },
    responses={
        200: json_answer("Already answered for good (completed, not_found, exception)", DOCUMENT_SCHEMA),
        202: json_answer("Accepted: this workspace is erasing the photos (signed)", DOCUMENT_SCHEMA),
    },
    errors={
        400: "Not JSON, nested too deeply, not signed, or malformed",
        403: "Signed by no registered sender, or addressed to another workspace",
        408: "The body did not arrive in time",
        409: "The nonce was already used for another request (a replay)",
        411: "No Content-Length",
        413: "The body is too large",
    },
)
async def receive_request(request: Request) -> JSONResponse:
    state = request.app.state.disgorge
    limits = state.limits
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise Refused(411, "a request needs a Content-Length")
    size = int(declared)
    if size > limits.max_body_bytes:
        raise Refused(413, f"the request body is larger than {limits.max_body_bytes} bytes")
    with state.budget.reserve(size):
        data = bytearray()
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                async for chunk in request.stream():
                    data += chunk
                    if len(data) > size:
                        raise Refused(413, "the request body is longer than its Content-Length")
        except TimeoutError:
            raise Refused(408, f"the body did not arrive within {limits.body_timeout_s:.0f} s") from None
        except ClientDisconnect:  # nobody to answer; nothing was recorded
            raise Refused(400, "the client went away before sending the whole body") from None
        doc = await run_in_threadpool(parse_body, data)
        status, answer = await state.gate.run(inbox.receive, state.ctx, doc)
    if status == 202:
        state.inbox_worker.wake()
    return JSONResponse(answer, status_code=status)


@resource.get(
    "/v1/erasure-requests/{nonce}",
    auth=SIGNED,
    scope=None,
    summary="The signed state of a sender's request (with the certificate once completed)",
    description=(
        "Only for the sender that sent the request: send `Authorization: Disgorge "
        "<base64url of a disgorge.erasure-query/1 document signed with its key>` (docs/sharing.md)."
    ),
    openapi_extra={
        "parameters": [
            {
                "name": "Authorization",
                "in": "header",
                "required": True,
                "schema": {"type": "string", "pattern": f"^{SCHEME} "},
                "description": "the sender's signed query",
            }
        ]
    },
    responses={
        200: json_answer("Answered for good (completed, not_found, exception)", DOCUMENT_SCHEMA),
        202: json_answer("Still erasing (acknowledged)", DOCUMENT_SCHEMA),
    },
    errors={
        401: "No signed query, or its signature does not verify",
        403: "Signed by no registered sender, or stale",
        404: "No request with this nonce from this sender",
    },
)
async def request_state(nonce: str, request: Request) -> JSONResponse:
    state = request.app.state.disgorge

    def state_of() -> tuple[int, dict[str, Any]]:
        refusal = check_authorization(
            state.ctx, request.headers.get("authorization"), nonce, recipient_key=state.public_hex
        )
        if refusal is not None:
            return refusal[0], {"error": refusal[1]}
        return inbox.answer(state.ctx, nonce)

    status, doc = await state.gate.run(state_of)
    if status >= 400:
        raise Refused(status, doc["error"], {"WWW-Authenticate": SCHEME} if status == 401 else None)
    return JSONResponse(doc, status_code=status)


@resource.get(
    "/v1/public-key",
    auth=PUBLIC,
    scope=None,
    summary="This workspace's Ed25519 public key (PEM)",
    response_class=PlainTextResponse,
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
def public_key(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.app.state.disgorge.public_pem, media_type="application/x-pem-file")


@resource.get(
    "/healthz",
    auth=PUBLIC,
    scope=None,
    summary="Liveness: the server answers and its workers run",
    errors={503: "A worker stopped"},
)
def healthz(request: Request) -> JSONResponse:
    state = request.app.state.disgorge
    if not state.inbox_worker.alive or (state.jobs is not None and not state.jobs.alive):
        raise Refused(503, "a worker of the server is not running; see the server's log")
    return JSONResponse({"ok": True, "version": __version__})
