"""Key-encryption-key (KEK) providers.

The KEK wraps every subject's data key and the workspace's own secrets; it never
touches the catalog. A provider only needs ``wrap`` and ``unwrap``, so a cloud KMS
(which never hands out its key) fits the same interface as the local providers here:

* :class:`FileKek`: 32 random bytes in a 0600 file inside the workspace (the default);
* :class:`EnvKek`: the key, base64-encoded, in an environment variable, so the
  workspace directory alone holds nothing that opens the data.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import IntegrityError, KekError
from .crypto import KEY_BYTES, new_key, open_sealed, seal

__all__ = ["EnvKek", "FileKek", "KekProvider", "LocalKek", "decode_key", "encode_key"]


@runtime_checkable
class KekProvider(Protocol):
    """What the vault needs from a KEK: wrap and unwrap small secrets."""

    description: str

    def wrap(self, secret: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes: ...


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str, *, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KekError(f"{where}: not valid base64") from None
    if len(key) != KEY_BYTES:
        raise KekError(f"{where}: a KEK is {KEY_BYTES} bytes, this is {len(key)}")
    return key


class LocalKek:
    """A KEK whose key bytes are in this process (file or environment)."""

    def __init__(self, key: bytes, description: str) -> None:
        self._key = key
        self.description = description

    def wrap(self, secret: bytes, aad: bytes) -> bytes:
        return seal(self._key, secret, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return open_sealed(self._key, wrapped, aad, what="wrapped key")
        except IntegrityError:
            raise KekError(
                f"the key-encryption key ({self.description}) does not open this "
                "workspace's keys: wrong KEK, or the wrapped key was altered"
            ) from None


class FileKek(LocalKek):
    """KEK stored base64 in a file that only its owner may read (mode 0600)."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise KekError(f"KEK file {path} is missing")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KekError(f"KEK file {path} is readable by others (mode {mode:o}); run chmod 600 on it")
        super().__init__(decode_key(path.read_text(), where=str(path)), f"file {path.name}")

    @staticmethod
    def create(path: Path) -> FileKek:
        key = new_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(encode_key(key) + "\n")
        return FileKek(path)


class EnvKek(LocalKek):
    """KEK taken from an environment variable (base64 of 32 bytes)."""

    def __init__(self, variable: str) -> None:
        value = os.environ.get(variable)
        if not value:
            raise KekError(
                f"environment variable {variable} holds no KEK; set it to the workspace's "
                "key (a new one: `disgorge keygen`)"
            )
        super().__init__(decode_key(value, where=f"${variable}"), f"env {variable}")
