"""Engine set-up and schema migrations for the catalog.

SQLite is the embedded default. Three settings make it fit for the job:

* ``journal_mode=WAL`` so readers do not block the writer;
* ``secure_delete=ON`` so deleted rows are overwritten, not left in free pages
  (invariant 5: erased means unrecoverable);
* every session transaction starts with ``BEGIN IMMEDIATE``: the write lock is taken up front,
  so two processes (two ``ingest`` runs on one folder) serialise instead of failing with
  "database is locked" when a read transaction tries to become a write.

PostgreSQL (``postgresql+psycopg://``) keeps the same contract with its own means:

* every writer transaction first takes one transaction-scoped advisory lock
  (``pg_advisory_xact_lock`` on :data:`WRITER_LOCK_KEY`), so writers still run one at a
  time and every invariant that relies on "checked in the writer transaction that records
  it" (the exclusive erasure check, the audit chain's next link) holds unchanged. The lock
  is released by COMMIT or ROLLBACK, and by the server when a writer's connection dies (a
  SIGKILLed process leaves nothing held). Finer-grained locking (row locks, or one advisory
  key per subject/request) is the next step for more concurrent writers; it needs each
  such invariant re-argued one by one, so it is not done yet;
* reader sessions are ``REPEATABLE READ, READ ONLY``: one snapshot for the whole session,
  never waiting for the writer's lock, like SQLite's readers under WAL;
* ``lock_timeout`` is 60 s, like SQLite's ``busy_timeout``: a writer that waits longer
  fails instead of hanging.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "PARAMS_PER_STATEMENT",
    "SCHEMA_HEAD",
    "WRITER_LOCK_KEY",
    "current_revision",
    "head_revision",
    "in_chunks",
    "make_engine",
    "make_sessionmaker",
    "purge_free_space",
    "upgrade",
]

_MIGRATIONS = Path(__file__).parent / "migrations"

#: the latest Alembic revision; opening a workspace compares against it without loading
#: Alembic (tests/test_migrations.py checks it is the head of migrations/versions)
SCHEMA_HEAD = "0012"


#: values bound in one ``IN (...)`` list: below SQLite's old limit of 999 parameters per
#: statement (3.32 raised it to 32,766, but a build may still be compiled with the old one),
#: leaving room for the statement's other parameters
PARAMS_PER_STATEMENT = 900

_T = TypeVar("_T")

#: the PostgreSQL advisory lock every writer transaction takes first (one writer at a time);
#: a fixed 64-bit key, b"disgorge" read as a big-endian integer
WRITER_LOCK_KEY = int.from_bytes(b"disgorge", "big") - (1 << 63)


def in_chunks(values: Sequence[_T], size: int = PARAMS_PER_STATEMENT) -> Iterator[Sequence[_T]]:
    """``values`` in consecutive slices of at most ``size``, each small enough to bind as one
    ``IN (...)`` list; one way for every query over a list of ids of unknown length."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def make_engine(url: str) -> Engine:
    """Create the catalog engine, with the SQLite settings described above."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["options"] = "-c lock_timeout=60000"
        if url.startswith("postgresql+psycopg:"):
            try:
                import psycopg  # noqa: F401
            except ImportError:
                from ..errors import WorkspaceError

                missing = "the catalog is on PostgreSQL, and its driver is missing"
                raise WorkspaceError(f"{missing}: pip install 'disgorge[postgres]'") from None
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "begin", _postgres_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def _sqlite_on_begin(conn: Any) -> None:
    if conn.get_execution_options().get("disgorge_writer"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def _postgres_on_begin(conn: Any) -> None:
    if conn.get_execution_options().get("disgorge_writer"):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})")


def make_sessionmaker(engine: Engine, *, writer: bool = True) -> sessionmaker[Session]:
    """Sessions for catalog work.

    Writer sessions start with BEGIN IMMEDIATE on SQLite (they take the write lock up
    front), and with the writers' advisory lock on PostgreSQL. Reader sessions
    (``writer=False``) begin deferred: under WAL they read a snapshot and neither wait for
    nor block the writer; on PostgreSQL they are ``REPEATABLE READ, READ ONLY``. A reader
    session must not write.
    """
    bind: Engine
    if writer:
        bind = engine.execution_options(disgorge_writer=True)
    elif engine.dialect.name == "postgresql":
        bind = engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    else:
        bind = engine
    return sessionmaker(bind=bind, expire_on_commit=False)


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the latest by default)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def head_revision(engine: Engine) -> str | None:
    """The head revision of the migration scripts (loads Alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, read straight from ``alembic_version``."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def purge_free_space(engine: Engine, *, vacuum: bool = True) -> None:
    """Physically remove deleted data: checkpoint and truncate the WAL, then VACUUM.

    With ``secure_delete`` deleted cells and freed pages are already zeroed, but that is
    not always enough: a B-tree page rebuilt while rebalancing keeps stale copies of cells
    that moved in its unallocated space (``benchmarks/erasure.py`` found erased photos'
    sha256 there after erasing a 100,000-photo source with a checkpoint and no VACUUM).
    VACUUM rewrites every page; the checkpoints also remove the old page images that the
    WAL still holds. ``vacuum=False`` only checkpoints: the erasure engine does that for
    small erasures and VACUUMs when its forensic scan finds a sample in the database
    files (design note 16). PostgreSQL always gets ``VACUUM FULL`` of the catalog's tables
    (plain VACUUM leaves deleted rows' bytes in place: :mod:`disgorge.catalog.postgres`).
    """
    if engine.dialect.name == "postgresql":
        from .postgres import vacuum_full

        vacuum_full(engine)
        return
    if engine.dialect.name != "sqlite":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM"))
        return
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if vacuum:
            cur.execute("VACUUM")
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cur.close()
    finally:
        raw.close()
