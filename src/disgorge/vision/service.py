"""Vision as services: analyse photos, and retire the clear face index of older versions.

:func:`~.analyze.run_analyze` takes its sessions, vault and index path as arguments so
that it can be tested and benchmarked alone; these functions read them from a context.
(The searches are in :mod:`.search`.)
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime

from ..assets import find_asset
from ..cluster import connect
from ..context import Context, when
from .analyze import AnalyzeReport, reconcile_index, run_analyze
from .index import FaceIndex, retire_clear_index
from .models import FacesUnavailable
from .search import load_hash_matrix

__all__ = ["analyze", "retire_clear_face_index"]


def analyze(
    ctx: Context,
    *,
    shas: list[str] | None = None,
    asset_ids: list[str] | None = None,
    force: bool = False,
    workers: int | None = None,
    cnn: bool = False,
    embedder: str = "dlib",
    at: str | datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    cluster: str | None = None,
) -> AnalyzeReport:
    """Detect faces, and for photos whose subjects granted ``biometric_processing``
    compute embeddings and crops; PDQ-hash every photo (see :mod:`disgorge.vision`).

    By default only photos not analysed yet; ``force`` redoes them. ``embedder`` is
    ``"dlib"`` (extra ``faces``) or ``"portrait"``: a simple pixel descriptor for the
    drawn sample portraits, not a face recogniser (see :mod:`disgorge.vision.portrait`).
    ``cluster`` (``tcp://HOST:PORT``) runs the batches on a Dask cluster, with the same
    results (:mod:`disgorge.cluster`); it is connected to before anything is written.
    """
    ids = list(asset_ids) if asset_ids is not None else None
    if shas is not None:
        with ctx.reader() as session:
            ids = (ids or []) + [find_asset(session, sha).id for sha in shas]
    with connect(cluster) if cluster else nullcontext() as dask:
        report = run_analyze(
            ctx.sessions,
            ctx.reader,
            ctx.vault,
            ctx.face_index_path,
            actor=ctx.actor,
            at=when(at),
            asset_ids=ids,
            force=force,
            workers=dask.threads if dask else workers,
            cnn=cnn,
            embedder=embedder,
            progress=progress,
            executor=dask.executor if dask else None,
        )
    if report.analyzed:
        # the new hashes go into the PDQ cache now, while few: otherwise the next copy
        # search (or an erasure's verifier) decrypts them all at once
        load_hash_matrix(ctx.reader, ctx.vault, cache=ctx.hash_cache)
    return report


def retire_clear_face_index(ctx: Context) -> None:
    """Older versions kept the face index in clear (``index/faces.faiss``): zero and
    remove it, and rebuild the sealed one from the catalog (when faiss is installed;
    otherwise the next analysis or face search does). The old file is never read."""
    if retire_clear_index(ctx.home / "index"):
        try:
            index = FaceIndex(ctx.face_index_path, ctx.kek)
        except FacesUnavailable:
            return  # no faiss here: the next analysis or face search with it rebuilds it
        reconcile_index(ctx.reader, ctx.vault, index)
