"""The batched ingest path: one audit head update per batch, blobs written ahead of the commit.

These pin down what the throughput work must not change: the audit chain (one event per
asset, in order, intact), dedupe across batches, and "no catalog row without its blob"
when a blob write fails part-way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from disgorge import Workspace, audit
from disgorge._time import utcnow
from disgorge.catalog import Asset, AuditEvent, AuditHead
from disgorge.ingest import IngestOptions, run_ingest
from disgorge.vault import BlobStore


def _ingest(ws: Workspace, path: Path, *, batch_size: int, workers: int = 1):
    return run_ingest(
        ws.sessions,
        ws.vault,
        path,
        source="app",
        actor="tester",
        at=utcnow(),
        subject_from="dirname",
        options=IngestOptions(batch_size=batch_size, workers=workers),
    )


def test_append_many_chains_like_append(ws: Workspace) -> None:
    with ws.transaction() as session:
        first = audit.append(session, "test.one", {"n": 1}, actor="tester")
        audit.append_many(session, [], actor="tester")
        audit.append_many(
            session, [("test.many", {"n": 2}), ("test.many", {"n": 3}), ("test.many", {"n": 4})], actor="t"
        )
        last = audit.append(session, "test.one", {"n": 5}, actor="tester")
        first_seq, last_seq, last_hash = first.seq, last.seq, last.hash
    assert ws.verify_audit().ok
    with ws.transaction() as session:
        events = [e for e in audit.iter_events(session) if e.seq >= first_seq]
        head = session.get(AuditHead, 1)
        assert head is not None and (head.seq, head.hash) == (last_seq, last_hash)
    assert [e.seq for e in events] == list(range(first_seq, first_seq + 5))
    assert [e.payload for e in events] == [f'{{"n":{n}}}' for n in range(1, 6)]
    assert [e.actor for e in events] == ["tester", "t", "t", "t", "tester"]
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]


def test_many_batches_store_every_photo_once_with_one_event_each(ws: Workspace, photo_dir: Path) -> None:
    # a second copy of two folders under new names: duplicates that land in later batches
    for name in ("Ada_Lovelace", "Alan_Turing"):
        shutil.copytree(photo_dir / name, photo_dir / f"zz_{name}")
    report = _ingest(ws, photo_dir, batch_size=3)  # 20 files: 7 batches, writer pool from the 2nd
    assert (report.files, report.ingested, report.duplicates, report.rejected) == (20, 12, 8, [])
    assert len(set(report.asset_ids)) == 12
    assert ws.verify_audit().ok
    with ws.transaction() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "asset.ingested").order_by(AuditEvent.seq)
        ).all()
        assert [e.payload.split('"asset":"')[1][:32] for e in events] == report.asset_ids
        rows = session.execute(select(Asset.sha256, Asset.blob_key)).all()
    assert len(rows) == 12
    for sha, key in rows:
        assert key is not None and ws.store.exists(key)
        assert len(ws.read_asset(sha)) > 0
    assert sorted(k for k, _ in ws.store.entries()) == sorted(k for _, k in rows)
    assert list(ws.store.temporaries()) == []
    again = _ingest(ws, photo_dir, batch_size=3)
    assert (again.ingested, again.duplicates) == (0, 20)


def test_process_decoders_and_writers_give_the_same_catalog(ws: Workspace, photo_dir: Path) -> None:
    report = _ingest(ws, photo_dir, batch_size=2, workers=2)
    assert (report.ingested, report.duplicates, report.rejected) == (12, 0, [])
    assert ws.verify_audit().ok
    with ws.transaction() as session:
        keys = session.scalars(select(Asset.blob_key)).all()
    assert all(ws.store.exists(k) for k in keys if k)
    assert list(ws.store.temporaries()) == []


@pytest.mark.parametrize("fail_at", [2, 8])
def test_failed_blob_write_never_leaves_a_row_without_its_blob(
    ws: Workspace, photo_dir: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    """fail_at 2: inside the first batch (written in process); 8: in a later batch (threads)."""
    # the thread route is the one a non-local fsspec store takes; this process can patch it
    monkeypatch.setattr(BlobStore, "local_root", property(lambda self: None))
    real_put = BlobStore.put
    calls = 0

    def flaky_put(self: BlobStore, data: bytes) -> str:
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise OSError(28, "No space left on device")
        return real_put(self, data)

    monkeypatch.setattr(BlobStore, "put", flaky_put)
    with pytest.raises(OSError, match="No space left"):
        _ingest(ws, photo_dir, batch_size=4)
    with ws.transaction() as session:
        keys = session.scalars(select(Asset.blob_key)).all()
        ingested = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "asset.ingested")
        )
    assert len(keys) == ingested == (0 if fail_at <= 4 else 4)
    assert all(k is not None and ws.store.exists(k) for k in keys)
    assert ws.verify_audit().ok
    monkeypatch.setattr(BlobStore, "put", real_put)
    gc = ws.gc(grace_seconds=0)
    assert gc.orphan_blobs == calls - 1 - len(keys)
    assert sorted(k for k, _ in ws.store.entries()) == sorted(k for k in keys if k)
