"""The vault: KEK providers, per-subject data keys, the encrypted blob store."""

from .blobstore import BlobStore
from .crypto import new_key, open_sealed, seal
from .kek import EnvKek, FileKek, KekProvider, LocalKek, decode_key, encode_key
from .vault import REF_PATTERN, Vault

__all__ = [
    "REF_PATTERN",
    "BlobStore",
    "EnvKek",
    "FileKek",
    "KekProvider",
    "LocalKek",
    "Vault",
    "decode_key",
    "encode_key",
    "new_key",
    "open_sealed",
    "seal",
]
