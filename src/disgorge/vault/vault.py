"""The vault: per-subject data keys, sealed blobs and fields, pseudonymous refs.

Each subject has one data-encryption key (DEK). It is stored only wrapped by the KEK,
in the subject's catalog row. Everything personal about the subject (photos, the paths
they came from, consent evidence) is sealed under that DEK, so destroying the wrapped
DEK (:meth:`Vault.shred`) makes every copy unreadable at once (crypto-shredding), even
copies in backups of the blob store.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from ..catalog.models import Subject
from ..errors import KeyDestroyed
from .blobstore import BlobStore
from .crypto import new_key, open_sealed, seal
from .kek import KekProvider

__all__ = ["REF_PATTERN", "Vault"]

#: shape of a pseudonymous subject ref: "sub_" and 32 hex digits (128 bits of HMAC)
REF_PATTERN = re.compile(r"^sub_[0-9a-f]{32}$")


def _dek_aad(ref: str) -> bytes:
    return b"disgorge:dek:" + ref.encode()


class Vault:
    def __init__(self, kek: KekProvider, store: BlobStore, pseudonym_key: bytes) -> None:
        self.kek = kek
        self.store = store
        self._pseudonym_key = pseudonym_key
        self._deks: dict[str, bytes] = {}

    # -- pseudonyms --------------------------------------------------------------------
    def ref(self, external_id: str) -> str:
        """The pseudonymous ref of an external subject id (keyed HMAC-SHA256)."""
        normal = unicodedata.normalize("NFC", external_id.strip())
        digest = hmac.new(self._pseudonym_key, normal.encode("utf-8"), hashlib.sha256)
        return "sub_" + digest.hexdigest()[:32]

    def fingerprint(self, data: bytes, *, domain: str) -> str:
        """A keyed fingerprint: confirms a value only to whoever holds the workspace key."""
        msg = domain.encode() + b"\x00" + data
        return hmac.new(self._pseudonym_key, msg, hashlib.sha256).hexdigest()

    def photo_fingerprint(self, sha256_hex: str) -> str:
        """The keyed fingerprint of a photo (by its sha256) that outlives its erasure and
        blocks its re-ingestion; without the workspace key it confirms nothing."""
        return self.fingerprint(bytes.fromhex(sha256_hex), domain="erased-photo")

    # -- data keys ---------------------------------------------------------------------
    def new_wrapped_dek(self, ref: str) -> bytes:
        dek = new_key()
        self._deks[ref] = dek
        return self.kek.wrap(dek, _dek_aad(ref))

    def dek(self, subject: Subject) -> bytes:
        cached = self._deks.get(subject.ref)
        if cached is not None:
            return cached
        if subject.dek_wrapped is None:
            raise KeyDestroyed(f"subject {subject.ref}: data key destroyed (erased); its data cannot be read")
        dek = self.kek.unwrap(subject.dek_wrapped, _dek_aad(subject.ref))
        self._deks[subject.ref] = dek
        return dek

    def shred(self, subject: Subject) -> None:
        """Destroy the subject's data key: every value sealed under it becomes unreadable.

        The caller commits the change and purges the database's free space
        (``catalog.purge_free_space``) so no copy of the wrapped key survives in free pages
        or the WAL.
        """
        subject.dek_wrapped = None
        self._deks.pop(subject.ref, None)

    # -- sealed values -----------------------------------------------------------------
    def seal(self, subject: Subject, data: bytes, context: str) -> bytes:
        return seal(self.dek(subject), data, context.encode())

    def open(self, subject: Subject, sealed: bytes, context: str) -> bytes:
        return open_sealed(self.dek(subject), sealed, context.encode(), what=context)

    # -- blobs -------------------------------------------------------------------------
    def seal_blob(self, subject: Subject, asset_id: str, data: bytes) -> bytes:
        """The sealed form of an asset's bytes, as :meth:`put_blob` stores it."""
        return self.seal(subject, data, f"asset:{asset_id}")

    def put_blob(self, subject: Subject, asset_id: str, data: bytes) -> str:
        return self.store.put(self.seal_blob(subject, asset_id, data))

    def get_blob(self, subject: Subject, asset_id: str, key: str) -> bytes:
        return self.open(subject, self.store.get(key), f"asset:{asset_id}")
