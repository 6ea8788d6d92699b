"""The OpenAPI description of the inbox's answers (``/docs``, ``/openapi.json``).

What ``POST /v1/erasure-requests`` accepts and what every route answers, as far as a
schema can say: a request must also verify under a registered sender's key and be
addressed to this workspace, which only :func:`.inbox.receive` can check. Kept apart from
the routes (:mod:`.server`) so that they read as what they do.
"""

from __future__ import annotations

from typing import Any

from .documents import REQUEST_TYPE

__all__ = ["DOCUMENT_SCHEMA", "ERROR_SCHEMA", "REQUEST_SCHEMA", "RETRY_AFTER", "json_answer"]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SIGNATURE = {"type": "string", "description": "base64 Ed25519 signature of the canonical body"}
DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A signed disgorge document: the body names its type and the signer's key.",
    "properties": {
        "body": {"type": "object"},
        "signature": _SIGNATURE,
        "algorithm": {"type": "string", "enum": ["Ed25519"]},
    },
    "required": ["body", "signature"],
}
#: what POST /v1/erasure-requests accepts, as far as a schema can say (the signature must
#: also verify under a registered sender's key, and the request be addressed to us)
REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "A sender's signed erasure request (disgorge.erasure-request/1, docs/sharing.md). "
        "The signature must verify under the key of a sender registered here."
    ),
    "properties": {
        "body": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": [REQUEST_TYPE]},
                "nonce": {"type": "string", "minLength": 16, "maxLength": 64},
                "public_key": {**_HEX64, "description": "the sender's Ed25519 key (hex)"},
                "recipient_key": {**_HEX64, "description": "this workspace's Ed25519 key (hex)"},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id_kind": {"type": "string", "enum": ["fingerprint", "sha256"]},
                            "values": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["values"],
                    },
                },
                "deadline": {"type": "string", "format": "date-time"},
            },
            "required": ["type", "nonce", "public_key", "recipient_key", "items"],
        },
        "signature": _SIGNATURE,
        "algorithm": {"type": "string", "enum": ["Ed25519"]},
    },
    "required": ["body", "signature"],
}
RETRY_AFTER: dict[str, Any] = {
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
}


def json_answer(
    description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One documented answer of a route: what it means, its JSON schema, its headers."""
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer
