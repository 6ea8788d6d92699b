"""disgorge: know what every photo fed, and take it back.

Consent-aware provenance, lineage and verifiable erasure for personal images. The public
Python API is :class:`Workspace`; everything else here is the error tree and the
vocabulary (purposes, decisions) that its methods take and return.
"""

from ._version import __version__
from .consent import Decision, Purpose
from .errors import (
    ConsentDenied,
    DisgorgeError,
    ErasureBlocked,
    IntegrityError,
    InvalidInput,
    KekError,
    KeyDestroyed,
    NotFound,
    WorkspaceError,
)
from .workspace import Workspace

__all__ = [
    "ConsentDenied",
    "Decision",
    "DisgorgeError",
    "ErasureBlocked",
    "IntegrityError",
    "InvalidInput",
    "KekError",
    "KeyDestroyed",
    "NotFound",
    "Purpose",
    "Workspace",
    "WorkspaceError",
    "__version__",
]
