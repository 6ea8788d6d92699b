"""The API's own description: its OpenAPI document, for authenticated callers only."""

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ..table import Resource

__all__ = ["resource"]

resource = Resource("meta", "The API's description.")


@resource.get(
    "/v1/openapi.json",
    scope=None,
    summary="This API's OpenAPI 3.1 document (every route, scope, answer and error)",
    response_model=dict[str, Any],
)
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())
