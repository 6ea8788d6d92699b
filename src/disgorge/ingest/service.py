"""Ingest as a service: the workspace's limits and actor applied to :func:`run_ingest`.

The pipeline (:mod:`disgorge.ingest.pipeline`) takes its sessions, vault and limits as
plain arguments so that it can be tested and benchmarked alone; this is the one place
that reads them from an opened workspace, for the CLI, the API and the web UI alike.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ..context import Context, when
from .pipeline import IngestOptions, IngestReport, ProgressFn, run_ingest

__all__ = ["ingest"]


def ingest(
    ctx: Context,
    path: str | Path,
    *,
    source: str,
    manifest: str | Path | None = None,
    subject_from: str | None = None,
    at: str | datetime | None = None,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Ingest a folder, .zip or .tar(.gz) of photos. Rejected files are reported, not fatal.

    To analyse faces as well, call :func:`disgorge.vision.service.analyze` with
    ``asset_ids=report.asset_ids``.
    """
    options = IngestOptions(
        max_pixels=ctx.config.max_pixels, max_bytes=ctx.config.max_file_bytes, workers=workers
    )
    return run_ingest(
        ctx.sessions,
        ctx.vault,
        Path(path),
        source=source,
        actor=ctx.actor,
        at=when(at),
        manifest=Path(manifest) if manifest is not None else None,
        subject_from=subject_from,
        options=options,
        progress=progress,
    )
