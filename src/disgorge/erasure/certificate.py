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

Here: the rules a certificate is built by (the reason, the items' leaves, the inclusion
proof of one photo). The check of a certificate, and of a public key, lives in
:mod:`disgorge.signing`, below both erasure and sharing (sharing checks its recipients'
certificates); its names stay importable from here. The certificate step that builds,
signs and stores one is :mod:`disgorge.erasure.certify`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .._canonical import canonical
from .._merkle import merkle_path, root_from_path
from ..errors import InvalidInput
from ..signing import (
    ALGORITHM,
    SCHEMA,
    CertificateCheck,
    load_public_key,
    section_digests,
    verify_certificate,
)

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
