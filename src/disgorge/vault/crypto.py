"""AES-256-GCM sealing, the one cipher of disgorge.

A sealed value is ``version (1 byte) | nonce (12 bytes) | ciphertext+tag``. The
associated data binds a value to where it belongs (an asset id, a subject ref), so a
sealed value copied to another place fails to open instead of being read as the wrong
thing.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import IntegrityError

__all__ = ["KEY_BYTES", "new_key", "open_sealed", "seal"]

KEY_BYTES = 32
_VERSION = b"\x01"
_NONCE = 12


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return _VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes, *, what: str = "value") -> bytes:
    """Decrypt a sealed value; IntegrityError if it was altered or belongs elsewhere."""
    if len(sealed) < 1 + _NONCE + 16 or sealed[:1] != _VERSION:
        raise IntegrityError(f"{what}: not a disgorge sealed value (truncated or unknown format)")
    try:
        return AESGCM(key).decrypt(sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :], aad)
    except InvalidTag:
        raise IntegrityError(
            f"{what}: authentication failed: the data was altered, or it was sealed "
            "for another item or with another key"
        ) from None
