"""Checking signed erasure certificates and Ed25519 public keys, offline.

It sits below both packages that need it: :mod:`disgorge.erasure` signs certificates,
:mod:`disgorge.sharing` checks the certificates its recipients send back and the keys of
the peers it registers. Were the checks kept in ``erasure.certificate``, sharing would
import erasure while erasure imports sharing's outbox (to plan what went to recipients):
a cycle. Nothing here touches a workspace; whoever holds a certificate and a public key
can run it.

The certificate's format (schema ``disgorge.erasure-certificate/1``) is described in
:mod:`disgorge.erasure.certificate` and docs/certificate.md.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from typing_extensions import TypeAliasType

from ._canonical import canonical
from ._merkle import merkle_root
from .errors import InvalidInput

__all__ = [
    "ALGORITHM",
    "SCHEMA",
    "CertificateCheck",
    "SignedDocument",
    "load_public_key",
    "section_digests",
    "verify_certificate",
]

SCHEMA = "disgorge.erasure-certificate/1"
#: the only signature algorithm a certificate may name
ALGORITHM = "Ed25519"

#: A signed JSON document: ``{"body": {...}, "signature": base64, "algorithm": "Ed25519"}``
#: (an erasure certificate, an erasure request to a recipient). It stays a plain dict, not
#: a TypedDict: its schema is the published document format (docs/certificate.md,
#: docs/sharing.md), and the signature covers the body exactly as it was signed, so the
#: document travels as it is, whatever its schema's version holds. A named alias rather
#: than a bare ``dict[str, Any]`` (``type SignedDocument = ...`` once Python 3.12 is the
#: floor): the API's schema, and tests/test_result_types.py, can tell "a signed document,
#: specified elsewhere" from "untyped".
SignedDocument = TypeAliasType("SignedDocument", dict[str, Any])


@dataclass(frozen=True)
class CertificateCheck:
    ok: bool
    reason: str
    where: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "where": self.where}


def load_public_key(public_key: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM or 64 hex digits."""
    try:
        key = serialization.load_pem_public_key(public_key)
    except ValueError:
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key.decode().strip()))
        except ValueError:
            raise InvalidInput("public key: neither a PEM public key nor 64 hex digits") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput("public key: not an Ed25519 key")
    return key


def section_digests(body: dict[str, Any]) -> dict[str, str]:
    """A digest of each section of a certificate's body: when a signature fails, the section
    whose digest no longer matches says where the body was most likely altered."""
    return {
        k: hashlib.sha256(canonical({"v": v})).hexdigest() for k, v in body.items() if k != "section_digests"
    }


def verify_certificate(certificate: dict[str, Any], public_key: bytes) -> CertificateCheck:
    """Check the signature, the schema and that the Merkle root matches the listed items."""
    body = certificate.get("body")
    signature = certificate.get("signature")
    if not isinstance(body, dict) or not isinstance(signature, str):
        return CertificateCheck(False, "not a disgorge certificate (no body or signature)", "top level")
    if certificate.get("algorithm") != ALGORITHM:
        return CertificateCheck(
            False,
            f"unsupported signature algorithm {certificate.get('algorithm')!r} (only Ed25519)",
            "algorithm",
        )
    if body.get("schema") != SCHEMA:
        return CertificateCheck(False, f"unknown schema {body.get('schema')!r}", "body.schema")
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return CertificateCheck(False, "signature is not base64", "signature")
    key = load_public_key(public_key)
    try:
        key.verify(raw, canonical(body))
    except InvalidSignature:
        where = _first_difference_hint(body)
        return CertificateCheck(
            False, "signature does not match: the certificate was altered or signed by another key", where
        )
    items = body.get("items", {})
    if merkle_root(items.get("leaves", [])) != items.get("merkle_root"):
        return CertificateCheck(False, "Merkle root does not match the listed items", "body.items")
    recipients = body.get("recipients") or []
    for i, entry in enumerate(recipients):
        # each recipient's own certificate, under the key this workspace registered for it
        if entry.get("certificate") is None:
            continue
        try:
            inner = verify_certificate(entry["certificate"], str(entry.get("public_key", "")).encode())
        except InvalidInput as exc:
            inner = CertificateCheck(False, str(exc))
        if not inner.ok:
            return CertificateCheck(
                False,
                f"recipient {entry.get('recipient')!r}: its certificate does not verify ({inner.reason})",
                f"body.recipients[{i}].certificate" + (f" ({inner.where})" if inner.where else ""),
            )
    done = sum(1 for e in recipients if e.get("certificate") is not None)
    tail = f"; {done} recipient certificate(s) verified" if recipients else ""
    return CertificateCheck(True, "signature valid; Merkle root matches the items" + tail)


def _first_difference_hint(body: dict[str, Any]) -> str:
    """Where the body is most likely altered: the section whose digest no longer matches."""
    digests = body.get("section_digests", {})
    for name, digest in sorted(digests.items()):
        if name in body and hashlib.sha256(canonical({"v": body[name]})).hexdigest() != digest:
            return f"body.{name}"
    return "body (a field outside the digested sections, or the signature itself)"
