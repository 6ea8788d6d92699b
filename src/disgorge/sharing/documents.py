"""Signed JSON documents: what two workspaces send each other.

A document is ``{"body": {...}, "signature": base64, "algorithm": "Ed25519"}``; the
body names its ``type`` and the signer's ``public_key`` (hex), and the signature is over
the canonical JSON of the body (sorted keys, no spaces: the same encoding certificates
use). A valid signature proves only that the holder of that key wrote the body; whether
that key belongs to someone we deal with is the caller's question (:mod:`.peers`).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .._canonical import canonical
from ..errors import InvalidInput

__all__ = [
    "BUNDLE_TYPE",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "SignatureError",
    "Signer",
    "document_sha256",
    "sign_document",
    "verify_document",
]

BUNDLE_TYPE = "disgorge.bundle-manifest/1"
REQUEST_TYPE = "disgorge.erasure-request/1"
RESPONSE_TYPE = "disgorge.erasure-response/1"


class SignatureError(InvalidInput):
    """A document that is not signed, or not by the key it names, or altered since."""


class Signer(Protocol):
    """What signing a document needs: the workspace's key pair, nothing else.

    A :class:`~disgorge.context.Context` is one (and so is a :class:`~disgorge.Workspace`,
    which tests and benchmarks that forge documents pass): signing needs neither the
    catalog's sessions nor the vault, so it asks for no more."""

    def public_key(self) -> Ed25519PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


def sign_document(signer: Signer, body: dict[str, Any]) -> dict[str, Any]:
    """Sign ``body`` with the workspace's key (its public key is added to the body)."""
    body = {**body, "public_key": signer.public_key().public_bytes_raw().hex()}
    signature = base64.b64encode(signer.sign(canonical(body))).decode()
    return {"body": body, "signature": signature, "algorithm": "Ed25519"}


def verify_document(doc: Any, expected_type: str) -> dict[str, Any]:
    """The body of a correctly signed document of ``expected_type``; :class:`SignatureError` if not."""
    if not isinstance(doc, dict) or not isinstance(doc.get("body"), dict):
        raise SignatureError("not a signed disgorge document (no body)")
    body: dict[str, Any] = doc["body"]
    if body.get("type") != expected_type:
        raise SignatureError(f"expected a {expected_type} document, got {body.get('type')!r}")
    if doc.get("algorithm") != "Ed25519":  # the only one there is: nothing to negotiate
        raise SignatureError(
            f"unsupported signature algorithm {str(doc.get('algorithm'))[:40]!r} (expected Ed25519)"
        )
    signature = doc.get("signature")
    key_hex = body.get("public_key")
    if not isinstance(signature, str) or not isinstance(key_hex, str):
        raise SignatureError("the document has no signature or names no public key")
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
        key.verify(base64.b64decode(signature, validate=True), canonical(body))
    except (ValueError, InvalidSignature):
        raise SignatureError(
            "the signature does not match: the document was altered or signed by another key"
        ) from None
    return body


def document_sha256(doc: dict[str, Any]) -> str:
    """A digest of a whole signed document (to tell a retry from a replay)."""
    return hashlib.sha256(canonical(doc)).hexdigest()
