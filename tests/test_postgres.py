"""A workspace whose catalog is PostgreSQL, against a real server on 127.0.0.1:5432.

Each test gets fresh databases with random names (dropped at the end of the module). With
no server answering there the module is skipped, saying so, unless
``DISGORGE_REQUIRE_POSTGRES`` is set: then it fails (CI sets it where a server must run).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from conftest import (
    DENIED,
    DISGORGE,
    Syn,
    add_source_with_policy,
    cli,
    cli_env,
    fill_syn_workspace,
    import_consent_csv,
    run_cli_many,
    sha,
    tiny_photos,
    write_people,
)
from disgorge import Workspace
from disgorge.catalog import (
    SCHEMA_HEAD,
    Base,
    current_revision,
    make_engine,
    make_sessionmaker,
    purge_free_space,
    upgrade,
)
from disgorge.catalog.db import _alembic_config
from disgorge.catalog.postgres import NOT_REACHED, server_files
from disgorge.erasure.forensics import scan_tree
from disgorge.errors import WorkspaceError
from disgorge.signing import verify_certificate

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is the postgres extra (pip install disgorge[postgres])"
)

SERVER = "postgres@127.0.0.1:5432"
ADMIN = f"postgresql://{SERVER}/postgres"

NewDb = Callable[[], str]


def _admin(statement: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


@pytest.fixture(scope="module")
def new_db() -> Iterator[NewDb]:
    """A factory of fresh, empty databases on the server (their URLs); all dropped after."""
    try:
        _admin("SELECT 1")
    except psycopg.Error as exc:
        why = f"no PostgreSQL server answers on {SERVER} ({str(exc).strip().splitlines()[0]})"
        if os.environ.get("DISGORGE_REQUIRE_POSTGRES"):
            pytest.fail(f"DISGORGE_REQUIRE_POSTGRES is set, but {why}")
        pytest.skip(why)
    made: list[str] = []

    def make() -> str:
        name = "disgorge_test_" + secrets.token_hex(6)
        _admin(f"CREATE DATABASE {name}")
        made.append(name)
        return f"postgresql+psycopg://{SERVER}/{name}"

    yield make
    for name in made:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_rows(url: str, statement: str) -> list[tuple]:
    """One statement on the catalog database, from outside disgorge."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def pg_workspace(tmp_path: Path, url: str) -> Workspace:
    """The smoke flow's workspace (conftest.smoke_workspace) with its catalog at ``url``."""
    ws = Workspace.init(tmp_path / "ws", actor="tester", at="2013-01-01", catalog=url)
    add_source_with_policy(ws, "lfw", text=b"p")
    report = ws.ingest(
        write_people(tmp_path / "photos", 2), source="lfw", subject_from="dirname", at="2013-06-01"
    )
    assert report.ok and report.ingested == 6, report.to_dict()
    import_consent_csv(
        ws, tmp_path / "consent.csv", [f"{DENIED},ai_training,denied,2013-07-01"], at="2013-07-01"
    )
    return ws


# -- init, the URL and the database -----------------------------------------------------------
def test_init_keeps_the_url_runs_the_migrations_and_reopens(new_db: NewDb, tmp_path: Path) -> None:
    url = new_db()
    out = cli("init", tmp_path / "ws", "--json", env={"DISGORGE_CATALOG": url.replace("+psycopg", "")})
    assert out.returncode == 0, out.stderr
    config = (tmp_path / "ws" / ".disgorge" / "config.toml").read_text()
    assert f'url = "{url}"' in config  # the bare postgresql:// is kept as the psycopg driver's
    assert not (tmp_path / "ws" / ".disgorge" / "catalog.sqlite").exists()
    engine = make_engine(url)
    try:
        assert current_revision(engine) == SCHEMA_HEAD
    finally:
        engine.dispose()
    out = cli("status", "--json", "-w", tmp_path / "ws")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["schema"] == SCHEMA_HEAD and status["catalog"] == url and status["audit_events"] == 1


def test_a_url_with_a_password_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres:hunter2secret@127.0.0.1:5432/{'x' * 8}"
    for bad in (url, "postgresql://postgres@127.0.0.1/db?password=hunter2secret"):
        out = cli("init", tmp_path / "ws", "--catalog", bad)
        assert out.returncode != 0
        assert "password" in out.stderr and "PGPASSWORD" in out.stderr and "pgpass" in out.stderr
        assert "hunter2secret" not in out.stdout + out.stderr
        assert not (tmp_path / "ws" / ".disgorge").exists()


def test_a_foreign_or_taken_database_is_refused(new_db: NewDb, tmp_path: Path) -> None:
    url = new_db()
    pg_rows(url, "CREATE TABLE invoices (id int primary key, total numeric)")
    with pytest.raises(
        WorkspaceError, match=r"not empty and is not a disgorge catalog \(1 tables: invoices\)"
    ):
        Workspace.init(tmp_path / "a", catalog=url)
    assert not (tmp_path / "a" / ".disgorge").exists()
    assert pg_rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == [("invoices",)]
    taken = new_db()
    Workspace.init(tmp_path / "b", catalog=taken).close()
    out = cli("init", tmp_path / "c", "--catalog", taken)
    assert out.returncode != 0 and "already holds a disgorge catalog" in out.stderr
    assert not (tmp_path / "c" / ".disgorge").exists()
    with Workspace.open(tmp_path / "b") as ws:  # the first workspace is untouched
        assert ws.verify_audit().ok


def test_the_migrations_build_the_models_schema_and_go_down_and_up_with_data(
    new_db: NewDb, tmp_path: Path
) -> None:
    url = new_db()
    with Workspace.init(tmp_path / "ws", actor="tester", catalog=url) as ws:
        add_source_with_policy(ws, "app", allows=["ai_training"])
        ws.ingest(
            tiny_photos(tmp_path / "photos", ["s0", "s1", "s2"], 1), source="app", subject_from="dirname"
        )
        ws.build_dataset("faces", purpose="ai_training", at="2030-01-01")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations differ on PostgreSQL: {diff}"
        # embedding ids are 62-bit random numbers
        assert pg_rows(
            url,
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'asset_derivatives' AND column_name = 'id'",
        ) == [("bigint",)]
        query = text("SELECT dataset_id, asset_id FROM dataset_members ORDER BY 1, 2")
        with engine.connect() as conn:
            before = conn.execute(query).all()
        assert len(before) == 3
        command.downgrade(_alembic_config(engine), "0005")  # membership a table again
        with engine.connect() as conn:
            assert conn.execute(query).all() == before
        upgrade(engine)
        assert current_revision(engine) == SCHEMA_HEAD
        with engine.connect() as conn:
            assert conn.execute(query).all() == before
    finally:
        engine.dispose()


def test_a_server_that_does_not_answer_is_a_clear_error(new_db: NewDb, tmp_path: Path) -> None:
    out = cli("init", tmp_path / "a", "--catalog", "postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    assert out.returncode == 1 and "cannot reach the catalog database" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "a" / ".disgorge").exists()
    url = new_db()
    Workspace.init(tmp_path / "b", catalog=url).close()
    config = tmp_path / "b" / ".disgorge" / "config.toml"
    config.write_text(config.read_text().replace("127.0.0.1:5432", "127.0.0.1:1"))
    out = cli("status", "-w", tmp_path / "b")
    assert out.returncode == 1 and "cannot reach the catalog database" in out.stderr
    assert "Traceback" not in out.stderr


# -- the story on PostgreSQL ------------------------------------------------------------------
def test_ingest_consent_dataset_lineage_and_erasure_with_its_certificate(
    new_db: NewDb, tmp_path: Path
) -> None:
    url = new_db()
    ws = pg_workspace(tmp_path, url)
    try:
        assert ws.status()["assets"] == 6
        photos = {p.name: p.read_bytes() for p in (tmp_path / "photos").rglob("*.jpg")}
        for data in photos.values():
            assert ws.read_asset(sha(data)) == data
        assert ws.subject(DENIED)["consent"]  # the import landed
        build = ws.build_dataset("train", purpose="ai_training", at="2014-01-01")
        assert build.members == 4 and build.excluded_by_rule == {"consent_denied": 2}
        graph = ws.lineage("subject:Ada_Lovelace").to_dict()
        assert any(n["kind"] == "dataset_version" for n in graph["nodes"])

        ada = [sha(d) for n, d in photos.items() if n.startswith("Ada_Lovelace")]
        where = server_files(ws.engine)
        assert where.folder is not None, where.why_not  # root reads the local server's files
        pg_rows(url, "CHECKPOINT")
        before = scan_tree(where.folder, {d: d.encode() for d in ada})
        assert {h.label for h in before} == set(ada)  # the scan sees the catalog's pages

        done = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17")
        assert done["state"] == "completed"
        cert = ws.erasure_certificate(done["id"])
        assert verify_certificate(cert, ws.public_key_pem()).ok
        verification = cert["body"]["verification"]
        assert verification["ok"] and verification["forensic_scan"]["hits"] == []
        server = verification["forensic_scan"]["catalog_server"]
        assert server["scanned"] and server["why_not_scanned"] is None and server["files"] > 0
        assert server["not_scanned"] == NOT_REACHED
        assert any("pg_wal" in s for s in server["not_scanned"])
        assert not scan_tree(where.folder, {d: d.encode() for d in ada})  # gone from the tables' files
        assert ws.status()["assets"] == 4 and ws.subject("Grace_Hopper")["assets"]
        for name, data in photos.items():
            if not name.startswith("Ada_Lovelace"):
                assert ws.read_asset(sha(data)) == data
        again = ws.ingest(tmp_path / "photos" / "Ada_Lovelace", source="lfw", subject_from="dirname")
        assert again.ingested == 0 and len(again.rejected) == 2  # erasure is sticky
        assert ws.verify_audit().ok
    finally:
        ws.close()


def test_plain_vacuum_leaves_deleted_bytes_and_the_purge_removes_them(new_db: NewDb) -> None:
    """Why the purge is VACUUM FULL: after DELETE, VACUUM and CHECKPOINT a deleted row's bytes
    are still in the table's and the index's files (docs/deploy.md)."""
    url = new_db()
    engine = make_engine(url)
    try:
        upgrade(engine)
        folder = server_files(engine).folder
        assert folder is not None
        marker = b"erased-" + secrets.token_hex(12).encode()
        with make_sessionmaker(engine).begin() as session:
            session.execute(
                text("INSERT INTO meta (key, value) VALUES (:k, :v)"), {"k": marker.decode(), "v": marker}
            )
        pg_rows(url, "CHECKPOINT")
        assert scan_tree(folder, {"m": marker})
        pg_rows(url, f"DELETE FROM meta WHERE key = '{marker.decode()}'")
        pg_rows(url, "VACUUM meta")
        pg_rows(url, "CHECKPOINT")
        assert scan_tree(folder, {"m": marker}), "plain VACUUM overwrote the bytes: update docs/deploy.md"
        purge_free_space(engine)
        assert not scan_tree(folder, {"m": marker})
    finally:
        engine.dispose()


def test_the_certificate_says_when_the_server_files_were_not_scanned(new_db: NewDb, tmp_path: Path) -> None:
    """A role without pg_read_all_settings cannot learn where the files are: the certificate
    says the server's files were not scanned, and why."""
    url = new_db()
    role = "disgorge_plain_" + secrets.token_hex(4)
    name = url.rsplit("/", 1)[1]
    _admin(f"CREATE ROLE {role} LOGIN")
    try:
        _admin(f"ALTER DATABASE {name} OWNER TO {role}")
        ws = pg_workspace(tmp_path, url.replace("postgres@", f"{role}@"))
        try:
            done = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17")
            verification = ws.erasure_certificate(done["id"])["body"]["verification"]
        finally:
            ws.close()
        server = verification["forensic_scan"]["catalog_server"]
        assert server["scanned"] is False and server["files"] == 0
        assert "data_directory" in server["why_not_scanned"] and server["not_scanned"] == NOT_REACHED
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _admin(f"DROP ROLE IF EXISTS {role}")


def test_an_sqlite_certificate_has_no_server_entry(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws", actor="tester") as ws:
        add_source_with_policy(ws, "lfw", text=b"p")
        ws.ingest(tiny_photos(tmp_path / "photos", ["Ada_Lovelace"], 2), source="lfw", subject_from="dirname")
        done = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17")
        assert (
            "catalog_server"
            not in ws.erasure_certificate(done["id"])["body"]["verification"]["forensic_scan"]
        )


def test_faces_a_model_and_its_unlearning_on_postgres(new_db: NewDb, syn: Syn, tmp_path: Path) -> None:
    """conftest's synthetic workspace, rebuilt on PostgreSQL: face analysis (64-bit embedding
    ids), a SISA model and an external one, then Ada's erasure unlearns the first and
    retires the second."""
    url = new_db()
    with Workspace.init(tmp_path / "ws", actor="tester", catalog=url) as ws:
        fill_syn_workspace(ws, syn.folder, syn.manifest, tmp_path)
        done = ws.erase("subject", "Ada_Lovelace", reason="GDPR Art. 17")
        verification = ws.erasure_certificate(done["id"])["body"]["verification"]
        assert verification["ok"] and verification["active_models_using_erased_items"] == []
        states = sorted((m["name"], m["state"]) for m in ws.models())
        assert states == [("faceid", "active"), ("faceid", "retired"), ("vendor", "retired")]
        assert ws.verify_erasure(done["id"])["ok"] and ws.verify_audit().ok


# -- many hands -------------------------------------------------------------------------------
def test_writers_take_turns_and_readers_never_wait(new_db: NewDb) -> None:
    engine = make_engine(new_db())
    writer, reader = make_sessionmaker(engine), make_sessionmaker(engine, writer=False)
    second_started = threading.Event()
    waited: list[float] = []

    def second_writer() -> None:
        second_started.set()
        t0 = time.perf_counter()
        with writer.begin() as session:
            session.execute(text("SELECT 1"))
        waited.append(time.perf_counter() - t0)

    try:
        with writer.begin() as session:
            session.execute(text("SELECT 1"))  # holds the writers' lock until commit
            thread = threading.Thread(target=second_writer)
            thread.start()
            second_started.wait()
            t0 = time.perf_counter()
            with reader() as r:
                assert r.execute(text("SHOW transaction_isolation")).scalar() == "repeatable read"
                assert r.execute(text("SHOW transaction_read_only")).scalar() == "on"
            assert time.perf_counter() - t0 < 0.5  # a reader does not wait for the writer
            time.sleep(1.0)
            assert not waited  # the second writer is still waiting
        thread.join(30)
        assert waited and waited[0] >= 0.9
    finally:
        engine.dispose()


def test_two_ingests_at_once_both_land(new_db: NewDb, tmp_path: Path) -> None:
    url = new_db()
    with Workspace.init(tmp_path / "ws", actor="tester", catalog=url) as ws:
        add_source_with_policy(ws, "lfw", text=b"p")
    a = tiny_photos(tmp_path / "a", ["Ada_Lovelace", "Alan_Turing"], 15)
    # other drawings than a's (tiny_photos draws by the person's place in the list)
    b = tiny_photos(tmp_path / "b", ["Skip_0", "Skip_1", "Grace_Hopper", "Edsger_Dijkstra"], 15)
    for skip in ("Skip_0", "Skip_1"):
        shutil.rmtree(b / skip)
    outs = run_cli_many(
        *(
            [
                "ingest",
                folder,
                "-s",
                "lfw",
                "--subject-from",
                "dirname",
                "--workers",
                "1",
                "-w",
                tmp_path / "ws",
            ]
            for folder in (a, b)
        )
    )
    for out in outs:
        assert out.returncode == 0, out.stderr
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.status()["assets"] == 60
        for path in [*a.rglob("*.jpg"), *b.rglob("*.jpg")]:
            assert ws.read_asset(sha(path.read_bytes())) == path.read_bytes()
        assert ws.verify_audit().ok


def test_a_sigkill_mid_ingest_leaves_the_catalog_consistent(new_db: NewDb, tmp_path: Path) -> None:
    url = new_db()
    with Workspace.init(tmp_path / "ws", actor="tester", catalog=url) as ws:
        add_source_with_policy(ws, "lfw", text=b"p")
    folder = tiny_photos(tmp_path / "photos", ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper"], 120)
    argv = [
        DISGORGE,
        "ingest",
        str(folder),
        "-s",
        "lfw",
        "--subject-from",
        "dirname",
        "-w",
        str(tmp_path / "ws"),
    ]
    proc = subprocess.Popen(argv, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if pg_rows(url, "SELECT count(*) FROM assets")[0][0] > 0:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    landed = pg_rows(url, "SELECT count(*) FROM assets")[0][0]
    assert proc.returncode == -signal.SIGKILL and 0 < landed < 360, (proc.returncode, landed)
    # the dead writer's connection is gone, and with it its lock
    time.sleep(0.5)
    assert pg_rows(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
    out = cli("ingest", folder, "-s", "lfw", "--subject-from", "dirname", "-w", tmp_path / "ws")
    assert out.returncode == 0, out.stderr
    assert cli("gc", "-w", tmp_path / "ws").returncode == 0
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.status()["assets"] == 360
        for path in folder.rglob("*.jpg"):
            assert ws.read_asset(sha(path.read_bytes())) == path.read_bytes()
        assert ws.verify_audit().ok
