"""Erasure certificates: signed JSON anyone can check offline with the public key alone.

The body (schema ``disgorge.erasure-certificate/1``, documented in docs/certificate.md)
holds the scope (pseudonymous refs only), the reason, the timestamps, counts per kind,
the steps, the verification results, recipients' acknowledgements, and a Merkle root
over the erased items. Each item's leaf is ``sha256(salt || sha256(photo))`` with a salt
published in the certificate: whoever holds a photo can prove it is covered
(``--prove-item``), while the leaves reveal nothing to anyone who does not. The
signature is Ed25519 over the canonical JSON of the body. The top-level ``algorithm``
is outside the signed body, so a verifier accepts exactly one value, ``"Ed25519"``: an
unsigned field that could name another algorithm would let whoever edits the file choose
how it is checked.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .._canonical import canonical
from .._merkle import merkle_path, merkle_root, root_from_path
from ..errors import InvalidInput

__all__ = [
    "ALGORITHM",
    "MIN_REASON_CHARS",
    "SCHEMA",
    "CertificateCheck",
    "canonical",
    "check_reason",
    "item_leaf",
    "leaf_from_sha256",
    "load_public_key",
    "prove_item",
    "section_digests",
    "verify_certificate",
]

SCHEMA = "disgorge.erasure-certificate/1"
#: the only signature algorithm a certificate may name
ALGORITHM = "Ed25519"
#: a reason goes on the certificate: "t" or "ab" says nothing to whoever reads it
MIN_REASON_CHARS = 3


def check_reason(reason: str | None) -> str:
    """The reason an erasure is made, stripped; InvalidInput if it is too short to mean anything.

    One rule for every way in (``erase``, ``erase --dry-run``, the Python API), checked
    before anything is planned.
    """
    text = (reason or "").strip()
    if len(text) < MIN_REASON_CHARS:
        raise InvalidInput(
            f"an erasure needs a reason of at least {MIN_REASON_CHARS} characters "
            "(it goes on the certificate), e.g. --reason 'GDPR Art. 17 request 123'"
        )
    return text


def leaf_from_sha256(salt_hex: str, sha256_hex: str) -> str:
    """An item's Merkle leaf: sha256(salt || sha256(photo))."""
    return hashlib.sha256(bytes.fromhex(salt_hex) + bytes.fromhex(sha256_hex)).hexdigest()


def item_leaf(salt_hex: str, photo: bytes) -> str:
    return leaf_from_sha256(salt_hex, hashlib.sha256(photo).hexdigest())


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


def prove_item(certificate: dict[str, Any], photo: bytes) -> dict[str, Any]:
    """Is this photo one of the certificate's erased items? (Offline: salt and leaves are public.)

    ``covered`` is true when the photo's leaf, ``sha256(salt || sha256(photo))``, has an
    inclusion proof (``proof``: the sibling hashes, bottom up) that leads to the signed
    Merkle root; the proof alone, with the leaf and the root, convinces anyone.
    """
    items = certificate["body"]["items"]
    leaf = item_leaf(items["salt"], photo)
    leaves = sorted(set(items["leaves"]))
    path = merkle_path(leaves, leaf)
    return {
        "covered": path is not None and root_from_path(leaf, path) == items["merkle_root"],
        "leaf": leaf,
        "proof": path,
        "merkle_root": items["merkle_root"],
        "items": len(leaves),
    }


def section_digests(body: dict[str, Any]) -> dict[str, str]:
    return {
        k: hashlib.sha256(canonical({"v": v})).hexdigest() for k, v in body.items() if k != "section_digests"
    }
