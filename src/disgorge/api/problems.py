"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API answers has the same shape: ``type`` (a URN naming the kind of
problem, listed in ``docs/api.md``), ``title``, ``status``, ``detail`` (the one-line
message a :class:`~disgorge.errors.DisgorgeError` carries: ids and what to do next, never
personal data) and, for clients of the inbox written before the problem format,
``error`` (the same text as ``detail``).
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from ..errors import DisgorgeError

__all__ = ["PROBLEM_SCHEMA", "PROBLEM_TYPES", "problem_answer", "problem_body", "problem_type"]

MEDIA_TYPE = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "error": {"type": "string", "description": "the same as detail (older inbox clients read it)"},
    },
    "required": ["type", "title", "status", "detail"],
}

#: the problem types by status, for errors that are not a DisgorgeError (docs/api.md)
PROBLEM_TYPES: dict[int, str] = {
    400: "urn:disgorge:problem:bad-request",
    401: "urn:disgorge:problem:unauthenticated",
    403: "urn:disgorge:problem:forbidden",
    404: "urn:disgorge:problem:not-found",
    405: "urn:disgorge:problem:method-not-allowed",
    408: "urn:disgorge:problem:request-timeout",
    409: "urn:disgorge:problem:conflict",
    411: "urn:disgorge:problem:length-required",
    413: "urn:disgorge:problem:too-large",
    415: "urn:disgorge:problem:unsupported-media-type",
    422: "urn:disgorge:problem:invalid-input",
    503: "urn:disgorge:problem:busy",
    500: "urn:disgorge:problem:internal",
}


def problem_type(status: int, exc: BaseException | None = None) -> str:
    """``urn:disgorge:problem:<kind>``: the error class for a DisgorgeError, else by status."""
    if isinstance(exc, DisgorgeError):
        name = re.sub(r"(?<!^)(?=[A-Z])", "-", type(exc).__name__).lower()
        return f"urn:disgorge:problem:{name}"
    return PROBLEM_TYPES.get(status, "about:blank")


def problem_body(status: int, detail: str, exc: BaseException | None = None) -> dict[str, Any]:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return {
        "type": problem_type(status, exc),
        "title": title,
        "status": status,
        "detail": detail,
        "error": detail,
    }


def problem_answer(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """One documented error answer of a route, for FastAPI's ``responses=``."""
    answer: dict[str, Any] = {"description": description, "content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}}
    if headers:
        answer["headers"] = headers
    return answer
