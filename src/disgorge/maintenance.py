"""Upkeep of a workspace: collect what a crash left behind, and say what the workspace holds.

A crash can leave blobs the catalog never registered, temporary files of the blob store,
and erasure sample files (photo bytes, sealed) of a request that was never recorded.
None of them is reachable from the catalog, so nothing else ever removes them: ``gc``
does, after a grace period, so that work still running keeps its files. ``status`` is
the one-screen summary the CLI prints, counts only: no personal data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from typing_extensions import TypedDict

from . import audit, uploads
from .catalog import current_revision, purge_free_space
from .catalog.models import (
    Asset,
    AssetDerivative,
    AuditEvent,
    ConsentRecord,
    ErasureRequest,
    Peer,
    Source,
    Subject,
    Transfer,
)
from .context import Context, meta_value
from .vault.blobstore import wipe_file

__all__ = ["DEFAULT_GRACE_SECONDS", "GcReport", "GcReportView", "StatusView", "gc", "status"]

#: files younger than this are left alone: an ingest or erasure may be about to register them
DEFAULT_GRACE_SECONDS: float = 900


class GcReportView(TypedDict):
    orphan_blobs: int
    temporaries: int
    orphan_samples: int
    vacuumed: bool
    removed: bool


@dataclass
class GcReport:
    orphan_blobs: int
    temporaries: int
    removed: bool
    #: erasure sample files no request needs any more (left by a crash)
    orphan_samples: int = 0
    #: whether the catalog was VACUUMed (``gc(vacuum=True)``)
    vacuumed: bool = False

    def to_dict(self) -> GcReportView:
        return {
            "orphan_blobs": self.orphan_blobs,
            "temporaries": self.temporaries,
            "orphan_samples": self.orphan_samples,
            "vacuumed": self.vacuumed,
            "removed": self.removed,
        }


class StatusView(TypedDict):
    """What ``disgorge status`` shows: where things are, and counts."""

    workspace: str
    workspace_id: str
    catalog: str
    store: str
    kek: str
    schema: str | None
    subjects: int
    subjects_erased: int
    sources: int
    assets: int
    asset_bytes: int
    consent_records: int
    recipients: int
    senders: int
    transfers_out: int
    transfers_in: int
    erasures_awaiting_recipients: int
    audit_events: int
    audit_head: str


def gc(
    ctx: Context, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, dry_run: bool = False, vacuum: bool = False
) -> GcReport:
    """Remove blobs the catalog does not know (left by a crash), stale temp files, and
    erasure sample files no open request needs (a crash between writing one and
    recording its request); with ``vacuum``, also rewrite the catalog (VACUUM), which
    small erasures skip unless their scan asks for it (design note 16).

    Only files older than ``grace_seconds`` are touched, so an ingest running right
    now keeps the blobs it is about to register.
    """
    from .erasure.plan import OPEN_STATES
    from .erasure.samples import samples_folder

    cutoff = time.time() - grace_seconds
    with ctx.reader() as session:
        known = set(session.scalars(select(Asset.blob_key).where(Asset.blob_key.is_not(None))))
        # face crops live in the same store: they are not orphans
        known |= set(
            session.scalars(select(AssetDerivative.blob_key).where(AssetDerivative.blob_key.is_not(None)))
        )
        open_requests = set(
            session.scalars(select(ErasureRequest.id).where(ErasureRequest.state.in_(OPEN_STATES)))
        )
    orphans = [k for k, mtime in ctx.store.entries() if k not in known and mtime <= cutoff]
    temps = [p for p, mtime in ctx.store.temporaries() if mtime <= cutoff]
    unused_uploads = uploads.stale(ctx, cutoff)  # sent to the API and never used
    folder = samples_folder(ctx.home)
    samples = [  # <request id>.samples, or its temporary <request id>.samples.tmp
        p
        for p in (sorted(folder.iterdir()) if folder.is_dir() else [])
        if p.name.split(".")[0] not in open_requests and p.stat().st_mtime <= cutoff
    ]
    if not dry_run:
        for key in orphans:
            ctx.store.delete(key)
        for path in temps:
            ctx.store.remove_path(path)
        for sample in [*samples, *unused_uploads]:  # they hold photo bytes: overwritten, then unlinked
            wipe_file(sample, unlink=True)
        if vacuum:
            purge_free_space(ctx.engine, vacuum=True)
        with ctx.sessions.begin() as session:
            audit.append(
                session,
                "gc.completed",
                {
                    "orphan_blobs": len(orphans),
                    "temporaries": len(temps) + len(unused_uploads),
                    "orphan_samples": len(samples),
                    "vacuumed": vacuum,
                },
                actor=ctx.actor,
            )
    return GcReport(
        len(orphans), len(temps) + len(unused_uploads), not dry_run, len(samples), vacuum and not dry_run
    )


def status(ctx: Context) -> StatusView:
    """Where the workspace's parts are, and how many of each thing it holds."""
    with ctx.reader() as session:

        def count(model: Any, *where: Any) -> int:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        # one scan of the photos for both their number and their size
        assets, size = session.execute(
            select(func.count(), func.coalesce(func.sum(Asset.size), 0)).where(Asset.state == "active")
        ).one()
        last = session.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
        return {
            "workspace": str(ctx.root),
            "workspace_id": meta_value(session, "workspace_id").decode(),
            "catalog": ctx.engine.url.render_as_string(hide_password=True),
            "store": ctx.store.url,
            "kek": ctx.kek.description,
            "schema": current_revision(ctx.engine),
            "subjects": count(Subject),
            "subjects_erased": count(Subject, Subject.dek_wrapped.is_(None)),
            "sources": count(Source),
            "assets": int(assets),
            "asset_bytes": int(size or 0),
            "consent_records": count(ConsentRecord),
            "recipients": count(Peer, Peer.role == "recipient"),
            "senders": count(Peer, Peer.role == "sender"),
            "transfers_out": count(Transfer, Transfer.direction == "out"),
            "transfers_in": count(Transfer, Transfer.direction == "in"),
            "erasures_awaiting_recipients": count(
                ErasureRequest, ErasureRequest.state == "awaiting_recipients"
            ),
            "audit_events": last.seq if last else 0,
            "audit_head": last.hash if last else audit.GENESIS,
        }
