"""Nothing in a process that holds catalog connections opens the catalog's files another way.

Closing any file descriptor of a database file drops every POSIX lock the process holds on
it (SQLite's "How To Corrupt An SQLite Database File", section 2.2). A process whose locks
are gone looks, to every other process, as if it had no connection at all: the next process
to close its last connection checkpoints and deletes the WAL and the shared-memory file under
it, and writes are lost. The forensic scan reads the database, its WAL and ``-shm`` as raw
bytes; it must do so in a process of its own.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from disgorge import Workspace
from disgorge.erasure.forensics import scan_tree


def _close_a_connection_elsewhere(database: Path) -> None:
    """Another process opens the catalog, reads, and closes its only connection."""
    code = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('PRAGMA journal_mode').fetchone()\n"
        "c.execute('SELECT count(*) FROM audit_events').fetchone()\n"
        "c.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(database)], check=True, timeout=60)


def test_a_scan_keeps_this_process_locks_on_the_catalog(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", actor="tester")
    try:
        ws.add_source("app")
        database = Path(ws.engine.url.database)
        wal = database.with_name(database.name + "-wal")
        with ws.reader() as session:  # a pooled connection: it holds the WAL's shared lock
            session.execute(text("SELECT 1")).scalar()
        assert wal.exists()

        scan_tree(ws.config.home, {"needle": b"no such bytes anywhere 0123456789"})
        _close_a_connection_elsewhere(database)

        # had the scan dropped our locks, the other process would have believed itself the
        # last connection and removed the WAL and -shm from under us
        assert wal.exists(), "another process deleted the WAL while this one was connected"
        ws.add_source("after-the-scan")
        assert {s["name"] for s in ws.sources()} >= {"app", "after-the-scan"}
    finally:
        ws.close()
    reopened = Workspace.open(tmp_path / "ws")
    try:
        assert "after-the-scan" in {s["name"] for s in reopened.sources()}
        assert reopened.verify_audit().ok
    finally:
        reopened.close()


def test_the_scan_still_reads_the_catalog_files(tmp_path: Path) -> None:
    """The scan sees bytes in the database and its WAL (what the erasure verifier relies on)."""
    database = tmp_path / "catalog.sqlite"
    conn = sqlite3.connect(database)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (v BLOB)")
    marker = b"a-needle-that-lives-in-the-wal-0123456789"
    conn.execute("INSERT INTO t VALUES (?)", (marker,))
    conn.commit()
    try:
        hits = scan_tree(tmp_path, {"m": marker})
        assert {h.file for h in hits} & {"catalog.sqlite", "catalog.sqlite-wal"}
    finally:
        conn.close()
