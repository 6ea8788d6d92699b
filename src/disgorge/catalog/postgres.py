"""A catalog on PostgreSQL: checking its URL and database, purging it, finding its files.

The embedded default is SQLite (:mod:`disgorge.catalog.db`); a workspace may instead keep its
catalog on an existing PostgreSQL server (``disgorge init --catalog
postgresql+psycopg://USER@HOST:5432/DB``). Three things differ and live here:

* **The URL.** It is written to ``config.toml``, so it must never hold a password: libpq
  finds one the usual way (``PGPASSWORD``, ``~/.pgpass``, ``PGPASSFILE``, a service file),
  and a URL with one is refused before anything is written.
* **The database.** ``init`` takes an empty database and refuses one that already holds
  tables: a foreign database must not get disgorge's tables mixed into it, and a disgorge
  catalog belongs to the workspace that created it (its keys are wrapped by that KEK).
* **The physical purge** (invariant 5). Measured on PostgreSQL 15: after ``DELETE`` and a
  plain ``VACUUM`` (and a ``CHECKPOINT``), a deleted row's bytes are still in the table's
  file and its key is still in the index's file: plain VACUUM marks the tuple's line pointer
  unused and the index entry dead and records the space as free, but does not overwrite
  either. ``VACUUM FULL`` writes each table, its TOAST table and its indexes into new files
  holding the live rows only, and the old files are truncated and unlinked (their
  filesystem blocks are freed, not overwritten). So the purge is ``VACUUM (FULL, ANALYZE)``
  of the catalog's tables, then ``VACUUM FULL`` of ``pg_statistic`` (ANALYZE keeps sample
  values of each column there: most-common values and histogram bounds), then a
  ``CHECKPOINT`` (so the old files go at once). What it does not reach: the WAL segments
  in ``pg_wal`` (each insert and full-page image is there until the segment is recycled
  and overwritten), a WAL archive, streaming or logical replicas, base backups and
  dumps, and the freed blocks of the unlinked files on the disk underneath. A row still
  visible to a transaction open elsewhere is copied by VACUUM FULL as well.

The verifier scans the database's own folder (``base/<database oid>`` under the server's
``data_directory``) when this process can read it: a server on this machine, a role
allowed ``SHOW data_directory`` (superuser or ``pg_read_all_settings``), and file
permissions that let this user read the server's files. Otherwise the certificate says
the server's files were not scanned, and why; it always lists what no scan here reaches.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ..errors import WorkspaceError

__all__ = [
    "NOT_REACHED",
    "ServerFiles",
    "check_catalog_url",
    "refuse_non_empty",
    "server_files",
    "vacuum_full",
]

#: what the purge of a PostgreSQL catalog does not reach, and the verifier does not scan
NOT_REACHED = [
    "PostgreSQL WAL segments (pg_wal): kept until recycled and overwritten",
    "WAL archive (archive_command / archive_library), if the server has one",
    "replicas (streaming or logical) and their own WAL",
    "base backups and dumps taken before the erasure",
    "filesystem blocks freed when VACUUM FULL unlinked the old table files",
]

_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
_DATABASE_OID = "SELECT oid FROM pg_database WHERE datname = current_database()"
#: catalog relations outside the database's default tablespace (so outside base/<oid>)
_ELSEWHERE = (
    "SELECT count(*) FROM pg_class WHERE reltablespace <> 0 AND relnamespace = 'public'::regnamespace"
)
_NO_SETTING = "this role may not read the server's data_directory (needs superuser or pg_read_all_settings)"


def check_catalog_url(url: str) -> str:
    """The catalog URL to keep in ``config.toml``, or a :class:`WorkspaceError`.

    SQLite (the default) and PostgreSQL through psycopg 3 are accepted; a bare
    ``postgresql://`` is read as ``postgresql+psycopg://``. A URL holding a password is
    refused (the config is a file on disk): libpq takes it from ``PGPASSWORD`` or
    ``~/.pgpass``. The error never repeats the URL, which may hold that password.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise WorkspaceError(
            "--catalog: not a database URL (e.g. postgresql+psycopg://USER@HOST:5432/DB)"
        ) from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite":
        return url
    if backend != "postgresql":
        raise WorkspaceError(f"--catalog: {backend} is not supported (sqlite or postgresql+psycopg)")
    if parsed.password is not None or "password" in parsed.query:
        raise WorkspaceError(
            "--catalog: the URL holds a password, and the URL is kept in config.toml; remove it "
            "and give the password through PGPASSWORD or ~/.pgpass (libpq reads them)"
        )
    if "+" in parsed.drivername and driver != "psycopg":
        raise WorkspaceError(f"--catalog: driver {driver} is not supported: use postgresql+psycopg://")
    if not parsed.database:
        raise WorkspaceError("--catalog: the URL names no database (postgresql+psycopg://USER@HOST:5432/DB)")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def refuse_non_empty(engine: Engine) -> None:
    """Refuse a database that already holds tables (``init`` needs an empty one)."""
    try:
        with engine.connect() as conn:
            names = sorted(inspect(conn).get_table_names())
    except SQLAlchemyError as exc:
        raise WorkspaceError(f"cannot reach the catalog database: {_first_line(exc)}") from None
    if not names:
        return
    if {"alembic_version", "meta"} <= set(names):
        raise WorkspaceError(
            "the catalog database already holds a disgorge catalog (another workspace's: its keys "
            "are wrapped by that workspace's KEK); give init an empty database"
        )
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise WorkspaceError(
        f"the catalog database is not empty and is not a disgorge catalog ({len(names)} tables: "
        f"{shown}); give init an empty database"
    )


def vacuum_full(engine: Engine) -> None:
    """``VACUUM (FULL, ANALYZE)`` of every table of the catalog, ``VACUUM FULL`` of
    ``pg_statistic``, then ``CHECKPOINT`` (see the module's docstring for what that removes
    and what it does not). Runs outside a transaction (VACUUM cannot run in one). The last
    two need the database's owner or a superuser (``CHECKPOINT``: ``pg_checkpoint`` on 15);
    without them PostgreSQL skips them with a warning, and the verifier's scan, where it
    can run, shows what is left."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        names = sorted(inspect(conn).get_table_names())
        preparer = engine.dialect.identifier_preparer
        if names:
            conn.execute(text("VACUUM (FULL, ANALYZE) " + ", ".join(preparer.quote(n) for n in names)))
        conn.execute(text("VACUUM FULL pg_catalog.pg_statistic"))
        # not allowed: the old files go at the server's next checkpoint
        with contextlib.suppress(SQLAlchemyError):
            conn.execute(text("CHECKPOINT"))


@dataclass(frozen=True)
class ServerFiles:
    """The catalog database's folder on this machine, or why it cannot be scanned."""

    folder: Path | None
    why_not: str | None


def server_files(engine: Engine) -> ServerFiles:
    """``<data_directory>/base/<database oid>`` when this process can read it."""
    host = engine.url.host or ""
    if host not in _LOCAL_HOSTS and not host.startswith("/"):
        return ServerFiles(None, "the PostgreSQL server is on another machine")
    try:
        with engine.connect() as conn:
            directory = conn.execute(text("SHOW data_directory")).scalar_one()
            oid = conn.execute(text(_DATABASE_OID)).scalar_one()
            others = conn.execute(text(_ELSEWHERE)).scalar_one()
    except SQLAlchemyError:
        return ServerFiles(None, _NO_SETTING)
    folder = Path(directory) / "base" / str(oid)
    if others:
        return ServerFiles(None, "some catalog tables live in another tablespace")
    if not os.access(folder, os.R_OK | os.X_OK):
        return ServerFiles(None, "this process may not read the server's data directory")
    return ServerFiles(folder, None)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or ["no message"])[0]
