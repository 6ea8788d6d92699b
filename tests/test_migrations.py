"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from disgorge.catalog import SCHEMA_HEAD, Base, current_revision, head_revision, make_engine, upgrade


def test_migrations_match_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine) == SCHEMA_HEAD
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ; add an Alembic revision: {diff}"
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    engine.dispose()


def test_sqlite_is_configured_for_erasure(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_outdated_schema_is_refused_with_the_fix(tmp_path: Path) -> None:
    import pytest

    from disgorge import Workspace, WorkspaceError

    Workspace.init(tmp_path / "ws").close()
    engine = make_engine(f"sqlite:///{tmp_path / 'ws' / '.disgorge' / 'catalog.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    engine.dispose()
    with pytest.raises(WorkspaceError, match="disgorge migrate"):
        Workspace.open(tmp_path / "ws")


def test_0006_keeps_every_membership_when_it_turns_the_table_into_a_view(tmp_path: Path) -> None:
    """A catalog built before 0006 (membership a table) reads the same members after it."""
    from alembic import command
    from sqlalchemy import text

    from disgorge import Workspace
    from disgorge.catalog.db import _alembic_config
    from disgorge.samples import synthetic_photo

    ws = Workspace.init(tmp_path / "ws", actor="tester")
    ws.add_source("app")
    ws.add_policy("app", "2013", text=b"p", effective_from="2013-01-01", allows=["ai_training"])
    folder = tmp_path / "photos"
    for p in range(3):
        (folder / f"s{p}").mkdir(parents=True)
        (folder / f"s{p}" / "1.jpg").write_bytes(synthetic_photo(p, 1, size=64))
    ws.ingest(folder, source="app", subject_from="dirname", at="2013-02-01")
    ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
    url = ws.engine.url
    ws.close()
    engine = make_engine(str(url))
    query = text("SELECT dataset_id, asset_id FROM dataset_members ORDER BY 1, 2")
    with engine.connect() as conn:
        before = conn.execute(query).all()
    assert len(before) == 3
    command.downgrade(_alembic_config(engine), "0005")
    with engine.connect() as conn:
        assert "dataset_members" in inspect(conn).get_table_names()  # a table again
        assert conn.execute(query).all() == before
    upgrade(engine)
    with engine.connect() as conn:
        assert "dataset_members" not in inspect(conn).get_table_names()  # a view now
        assert conn.execute(query).all() == before
    engine.dispose()
