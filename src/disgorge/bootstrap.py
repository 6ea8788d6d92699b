"""Creating and opening a workspace: its folder, its keys, its catalog's first rows.

A workspace is a ``.disgorge`` folder (private: 0700, umask 0o077 for what goes in it)
with a config, a KEK (a key file, or an environment variable), a catalog and a blob
store. Creating one writes four keys into the catalog's ``meta`` table, each wrapped by
the KEK: a check value (so a wrong KEK is refused at once instead of failing later on
some photo), the pseudonym key (external ids to refs), and the Ed25519 signing key
(certificates, documents, tree heads), whose public half is also kept in clear.

These steps live here, below :class:`~disgorge.Workspace`, so that a server or a test can
build a :class:`~disgorge.context.Context` the way the facade does.
"""

from __future__ import annotations

import getpass
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from . import audit
from .catalog import SCHEMA_HEAD, current_revision, upgrade
from .catalog.models import Meta
from .catalog.postgres import check_catalog_url, refuse_non_empty
from .config import MARKER, Config, make_private
from .context import KEK_CHECK_AAD, PSEUDONYM_AAD, SIGNING_AAD, Context, meta_value, when
from .errors import WorkspaceError
from .vault import BlobStore, EnvKek, FileKek, KekProvider, Vault, new_key
from .vault.s3 import check_store

__all__ = ["check_schema", "default_actor", "kek_of", "new_home", "seed_catalog", "unlock"]


def default_actor() -> str:
    """Who acts when nobody said: ``$DISGORGE_ACTOR``, else the login name."""
    actor = os.environ.get("DISGORGE_ACTOR")
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def kek_of(config: Config) -> KekProvider:
    """The KEK provider the config names (a key file, or an environment variable)."""
    if config.kek_source == "env":
        return EnvKek(config.kek_env)
    if config.kek_source == "file":
        return FileKek(config.resolved_kek_path())
    raise WorkspaceError(f"config: unknown kek source {config.kek_source!r} (file or env)")


@contextmanager
def new_home(
    path: str | Path,
    *,
    kek_env: str | None = None,
    at: str | datetime | None = None,
    catalog: str | None = None,
    store: str | None = None,
    store_endpoint: str | None = None,
) -> Iterator[tuple[Config, KekProvider, datetime]]:
    """Make the ``.disgorge`` folder in ``path`` with its config and KEK; yields both, and
    the instant of creation (``at``, or now). ``catalog`` is a database URL for the
    catalog instead of the embedded SQLite file (checked first: a URL holding a password
    is refused before anything is made, see :mod:`disgorge.catalog.postgres`). ``store``
    (``s3://BUCKET/PREFIX``) and ``store_endpoint`` keep the sealed blobs on S3-compatible
    object storage (checked first too: no credentials in either, :mod:`disgorge.vault.s3`).

    Should the ``with`` block fail, the folder goes whole: a half-made workspace would be
    refused by the next ``init`` and opened by nothing.
    """
    root = Path(path).expanduser().resolve()
    home = root / MARKER
    if home.exists():
        raise WorkspaceError(f"{root} already holds a disgorge workspace")
    created = when(at)
    catalog_url = check_catalog_url(catalog) if catalog else None
    if store_endpoint and not store:
        raise WorkspaceError("--store-endpoint needs --store s3://BUCKET/PREFIX")
    store_url = check_store(store, store_endpoint) if store else None
    env_kek = EnvKek(kek_env) if kek_env else None  # a missing variable fails before mkdir
    home.mkdir(parents=True)
    make_private(home)  # before anything is created in it: umask 0o077, folder 0700
    try:
        config = Config(home=home)
        if catalog_url is not None:
            config.catalog_url = catalog_url
        if store_url is not None:
            config.store_url, config.store_endpoint = store_url
        if env_kek is not None:
            config.kek_source, config.kek_env = "env", kek_env or ""
            kek: KekProvider = env_kek
        else:
            kek = FileKek.create(config.resolved_kek_path())
        config.save()
        yield config, kek, created
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise


def seed_catalog(
    engine: Engine,
    sessions: sessionmaker[Session],
    kek: KekProvider,
    *,
    kek_source: str,
    actor: str,
    at: datetime,
) -> None:
    """Create the catalog's tables and its ``meta`` rows (id and keys), and record
    ``workspace.created`` as the audit log's first event. The database must be empty: one
    holding tables (another workspace's catalog, or anything else) is refused."""
    refuse_non_empty(engine)
    upgrade(engine)
    signing = Ed25519PrivateKey.generate()
    public = signing.public_key().public_bytes_raw()
    with sessions.begin() as session:
        session.add_all(
            [
                Meta(key="workspace_id", value=uuid.uuid4().hex.encode()),
                Meta(key="kek_check", value=kek.wrap(new_key(), KEK_CHECK_AAD)),
                Meta(key="pseudonym_key", value=kek.wrap(new_key(), PSEUDONYM_AAD)),
                Meta(key="signing_key", value=kek.wrap(signing.private_bytes_raw(), SIGNING_AAD)),
                Meta(key="signing_public", value=public),
            ]
        )
        session.flush()
        audit.append(
            session,
            "workspace.created",
            {"kek": kek_source, "signing_public": public.hex()},
            actor=actor,
            at=at,
        )


def check_schema(engine: Engine) -> None:
    """Refuse a catalog whose schema is not the one this version expects (or, on a
    database server, one that does not answer)."""
    if engine.dialect.name == "sqlite":
        have = current_revision(engine)
    else:
        try:
            have = current_revision(engine)
        except SQLAlchemyError as exc:
            orig = str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["no message"]
            raise WorkspaceError(f"cannot reach the catalog database: {orig[0]}") from None
    want = SCHEMA_HEAD
    if have != want:
        raise WorkspaceError(
            f"catalog schema is at {have}, this disgorge expects {want}: run `disgorge migrate`"
        )


def unlock(
    config: Config,
    engine: Engine,
    sessions: sessionmaker[Session],
    reader: sessionmaker[Session],
    kek: KekProvider,
    store: BlobStore,
    *,
    actor: str,
) -> Context:
    """Check the KEK against the catalog (a wrong one is refused here), open the vault
    with the pseudonym key, and return the context the services work in."""
    with reader() as session:
        kek.unwrap(meta_value(session, "kek_check"), KEK_CHECK_AAD)
        pseudonym = kek.unwrap(meta_value(session, "pseudonym_key"), PSEUDONYM_AAD)
    return Context(
        config=config,
        engine=engine,
        sessions=sessions,
        reader=reader,
        kek=kek,
        store=store,
        vault=Vault(kek, store, pseudonym),
        actor=actor,
    )
