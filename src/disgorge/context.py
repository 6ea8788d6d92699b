"""The context every domain service works in: one opened workspace's infrastructure.

A service (``erasure``, ``sharing``, ``training``, ``runs``, ``sources``...) takes a
:class:`Context` as its first argument instead of the whole :class:`~disgorge.Workspace`:
the catalog's writer and reader sessions, the vault, the blob store, the key provider,
the workspace's signing key and the actor doing the work. It is what fides passes its
tasks as ``TaskResources``: the resources, not the caller.

Why not the Workspace itself? Lower layers that took ``ws: Any`` called back up into the
facade (and into its private methods), which made every layer depend on every other and
left the type checker blind. A service that needs another service imports it and calls it
with the same context; the facade, the CLI, the HTTP API and the web UI all build one
context per opened workspace (or per request, with :meth:`Context.acting_as`) and call the
same services.

Nothing here imports a service: the context sits just above the foundation (catalog,
vault, config, audit) and below everything that does work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ._time import parse_instant, utcnow
from .catalog.models import Meta
from .config import Config
from .errors import WorkspaceError
from .vault import BlobStore, KekProvider, Vault

if TYPE_CHECKING:
    from .access.roles import Principal
    from .vision.hash_cache import HashCache

__all__ = ["KEK_CHECK_AAD", "PSEUDONYM_AAD", "SIGNING_AAD", "Context", "meta_value", "when"]

#: associated data of the wrapped keys kept in the catalog's ``meta`` table
KEK_CHECK_AAD = b"disgorge:kek-check"
PSEUDONYM_AAD = b"disgorge:pseudonym-key"
SIGNING_AAD = b"disgorge:signing-key"


def when(at: str | datetime | None) -> datetime:
    """The instant a user gave (``--at``), or now: every service's ``at=`` goes through here."""
    return utcnow() if at is None else parse_instant(at, what="--at")


def meta_value(session: Session, key: str) -> bytes:
    """A value of the catalog's ``meta`` table; a missing one means a damaged workspace."""
    row = session.get(Meta, key)
    if row is None:
        raise WorkspaceError(f"catalog is missing its {key!r} entry: damaged workspace")
    return row.value


@dataclass(eq=False)
class Context:
    """The infrastructure of one opened workspace, passed to every domain service.

    Build it with :meth:`Workspace.context <disgorge.Workspace.context>` (or
    ``Workspace.ctx``); a service never opens or closes what it holds.
    """

    config: Config
    #: the SQLAlchemy engine of the catalog (the dialect, VACUUM, the file's path)
    engine: Engine
    #: writer sessions (BEGIN IMMEDIATE on SQLite): ``with ctx.sessions.begin() as s``
    sessions: sessionmaker[Session]
    #: reader sessions: a consistent snapshot that never blocks the writer; never write here
    reader: sessionmaker[Session]
    kek: KekProvider
    store: BlobStore
    vault: Vault
    #: who does the work: recorded in the audit log with every change
    actor: str
    #: the authenticated API principal the work is done for (``None``: the workspace's
    #: owner at the shell, who holds the keys and is outside the API's access control)
    principal: Principal | None = None
    #: lazily built, shared by every copy made with :meth:`acting_as`
    _shared: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- where things live ------------------------------------------------------------
    @property
    def home(self) -> Path:
        """The ``.disgorge`` folder."""
        return self.config.home

    @property
    def root(self) -> Path:
        """The workspace directory (the parent of ``.disgorge``)."""
        return self.config.root

    @property
    def face_index_path(self) -> Path:
        """The sealed face index (``index/faces.sealed``, see :mod:`disgorge.vision.index`)."""
        return self.config.home / "index" / "faces.sealed"

    @property
    def hash_cache(self) -> HashCache:
        """The sealed cache of the decrypted PDQ hashes (``index/pdq.sealed``), so a copy
        search does not decrypt every hash (see :mod:`disgorge.vision.hash_cache`)."""
        from .vision.hash_cache import HashCache

        return HashCache(self.config.home / "index" / "pdq.sealed", self.kek)

    # -- who acts -----------------------------------------------------------------------
    def acting_as(self, actor: str, principal: Principal | None = None) -> Context:
        """The same workspace, with another actor (a request's principal, a sender)."""
        return dataclasses.replace(self, actor=actor, principal=principal)

    # -- the workspace's identity and signing key ------------------------------------------
    @property
    def workspace_id(self) -> str:
        cached = self._shared.get("workspace_id")
        if cached is None:
            with self.reader() as session:
                cached = self._shared["workspace_id"] = meta_value(session, "workspace_id").decode()
        return str(cached)

    def public_key(self) -> Ed25519PublicKey:
        with self.reader() as session:
            return Ed25519PublicKey.from_public_bytes(meta_value(session, "signing_public"))

    def public_key_pem(self) -> bytes:
        return self.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        """Sign with the workspace's Ed25519 key (certificates, documents, tree heads).

        The private key is unwrapped for each signature and never kept in memory.
        """
        with self.reader() as session:
            raw = self.kek.unwrap(meta_value(session, "signing_key"), SIGNING_AAD)
        return Ed25519PrivateKey.from_private_bytes(raw).sign(data)

    # -- OpenLineage ----------------------------------------------------------------------
    def lineage_emitter(self) -> Any:
        """The OpenLineage emitter of this workspace (built on first use), or None when
        no transport is configured (the default)."""
        if self.config.openlineage_transport == "none":
            return None
        emitter = self._shared.get("emitter")
        if emitter is None:
            from .interop.openlineage import OpenLineageEmitter

            emitter = OpenLineageEmitter.from_config(self.config, namespace=f"disgorge://{self.workspace_id}")
            self._shared["emitter"] = emitter
        return emitter

    def close(self) -> None:
        """Release what the context built lazily (the emitter's transport)."""
        emitter = self._shared.pop("emitter", None)
        if emitter is not None:
            emitter.close()
