"""The verifier: did the erasure leave anything behind?

At completion (the ``verify`` step) it runs three checks. The forensic scan reads every
file under the workspace as raw bytes and looks for the samples taken before anything was
destroyed (:mod:`disgorge.erasure.samples`); a hit only in the database's files is a stale
copy in a free page, so the catalog is VACUUMed and scanned again. The lineage check finds
any active model with an erased photo upstream. The look-alike search finds photos that
are copies of the erased ones (PDQ) or show the same face (the face index): candidates for
review, not erased automatically.

Later (:func:`reverify`), the samples are gone, so the scan cannot be repeated; what can
be checked again is, and the result says plainly what is not.
"""

from __future__ import annotations

import os
import time
from typing import Any, NotRequired

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .._time import iso, utcnow
from ..catalog import in_chunks, purge_free_space
from ..catalog.lineage import NodeRef, downstream
from ..catalog.models import (
    Artifact,
    Asset,
    AssetDerivative,
    DatasetMember,
    ErasedFingerprint,
    ErasureRequest,
    RunInput,
    Subject,
)
from ..catalog.postgres import NOT_REACHED, server_files
from ..context import Context
from ..vault.s3 import BlobStoreCheck, S3BlobStore
from ..vision import blocklist
from ._step import Execution, fire, step
from .forensics import Hit, TreeStats, scan_tree
from .journal import find_request
from .samples import drop_samples, read_samples

__all__ = [
    "Candidate",
    "Reverification",
    "Verification",
    "active_models_using",
    "for_certificate",
    "reverify",
    "verify",
    "verify_step",
]


class HitView(TypedDict):
    """A sample found on disk: its kind and the file, never its bytes."""

    needle: str
    file: str


class CatalogServerScan(TypedDict):
    """A PostgreSQL catalog's files: whether the scan read them, and what it cannot reach."""

    #: whether the database's folder on the server (``base/<oid>``) was scanned
    scanned: bool
    #: why not (remote server, no right to read ``data_directory`` or the files), or None
    why_not_scanned: str | None
    #: the server's files read (counted in ``files`` and ``bytes`` too)
    files: int
    bytes: int
    #: stores holding catalog data that the purge does not reach and no scan here reads
    not_scanned: list[str]


class ScanView(TypedDict):
    files: int
    bytes: int
    needles: int
    vacuumed_after_scan: bool
    found_before_vacuum: list[HitView]
    seconds: float
    mb_per_second: float | None
    hits: list[HitView]
    #: only for a catalog on PostgreSQL (an SQLite catalog is a file in the workspace)
    catalog_server: NotRequired[CatalogServerScan]
    #: only for blobs on S3-compatible storage (a folder store is in the workspace): the
    #: versions and delete markers left of the erased blobs, listed (none when erased)
    blob_store: NotRequired[BlobStoreCheck]


class Candidate(TypedDict):
    """A photo that looks like an erased one, stored by catalog id for review."""

    asset: str
    owner: str
    distance: float


class Verification(TypedDict):
    ok: bool
    checked_at: str | None
    forensic_scan: ScanView
    active_models_using_erased_items: list[str]
    copy_candidates: list[Candidate]
    face_candidates: list[Candidate]


class CatalogCheck(TypedDict):
    photos: int
    photos_not_tombstoned: int
    derived_values_left: int
    subjects_with_a_key_left: int
    reingestion_fingerprints: int
    #: erased photos whose PDQ hashes are kept, sealed, to refuse their near-copies at ingest
    perceptual_hashes_kept: int


class ScanAtCompletion(TypedDict):
    checked_at: str | None
    needles: int | None
    files: int | None
    hits: int


class ScanNotRepeated(TypedDict):
    performed: bool
    why: str
    at_completion: ScanAtCompletion


class Reverification(TypedDict):
    ok: bool
    checked_at: str | None
    catalog: CatalogCheck
    active_models_using_erased_items: list[str]
    #: analysed photos (those with a PDQ hash) within PDQ distance of a kept hash of an
    #: erased photo: copies to review; not searched when the hashes are not kept
    copy_candidates: list[Candidate]
    forensic_scan: ScanNotRepeated
    #: only for blobs on S3-compatible storage: the erased blobs' versions, listed again
    blob_store: NotRequired[BlobStoreCheck]


@step("verify", points=("verified",))
def verify_step(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """The forensic scan and the lineage and look-alike checks; then the samples are
    dropped (point ``verified``: the verification is committed, the samples not yet
    dropped)."""
    ctx = execution.ctx
    if req.verification:
        # verified before a crash: never scan again (the samples may be gone, and a scan
        # without them "verifies" nothing); finish dropping them
        drop_samples(ctx, req.id)
        done = req.verification
        return {"ok": done["ok"], "hits": len(done["forensic_scan"]["hits"])}
    with ctx.sessions.begin() as session:
        find_request(session, req.id).state = "verifying"
    verification = verify(ctx, req)
    with ctx.sessions.begin() as session:
        r = find_request(session, req.id)
        r.verification = dict(verification)
        samples = read_samples(ctx, r.id)
        r.plan = {**r.plan, "leaves": samples.get("leaves", []), "salt": samples.get("salt")}
        if samples.get("blobs"):  # object storage: kept so that a later check lists them again
            r.plan = {**r.plan, "blobs": sorted(set(samples["blobs"]))}
    fire("verify", "verified")
    drop_samples(ctx, req.id)  # the samples are discarded after the scan
    return {"ok": verification["ok"], "hits": len(verification["forensic_scan"]["hits"])}


def _database_files(ctx: Context) -> set[str]:
    """The SQLite catalog's files (database, WAL, shared memory), as absolute paths."""
    database = ctx.engine.url.database
    if ctx.engine.dialect.name != "sqlite" or not database:
        return set()
    path = os.path.realpath(database)
    return {path, path + "-wal", path + "-shm", path + "-journal"}


def _scan_catalog_server(
    ctx: Context, needles: dict[str, bytes]
) -> tuple[CatalogServerScan, list[Hit], list[Hit]]:
    """Scan a PostgreSQL catalog's own folder on the server, when this process can read it
    (:func:`disgorge.catalog.postgres.server_files`); otherwise say why not. A hit there is
    a real hit (the purge VACUUM FULLed every catalog table): one more purge, then one more
    scan, as for SQLite's free pages. Returns the report, the hits, and the hits of the
    first scan when a purge followed it, named ``postgresql:base/<oid>/<file>``."""
    where = server_files(ctx.engine)
    report: CatalogServerScan = {
        "scanned": False,
        "why_not_scanned": where.why_not,
        "files": 0,
        "bytes": 0,
        "not_scanned": list(NOT_REACHED),
    }
    if where.folder is None:
        return report, [], []
    stats = TreeStats()
    stale: list[Hit] = []
    hits = scan_tree(where.folder, needles, stats=stats)
    if hits:
        purge_free_space(ctx.engine, vacuum=True)
        stale, stats = hits, TreeStats()
        hits = scan_tree(where.folder, needles, stats=stats)
    prefix = f"postgresql:base/{where.folder.name}/"
    report["scanned"], report["files"], report["bytes"] = True, stats.files, stats.bytes
    return (
        report,
        [Hit(h.label, prefix + h.file, h.offset) for h in hits],
        [Hit(h.label, prefix + h.file, h.offset) for h in stale],
    )


def verify(ctx: Context, req: ErasureRequest) -> Verification:
    """The forensic scan, the lineage check and the look-alike search."""
    samples = read_samples(ctx, req.id)
    needles = {k: bytes.fromhex(v) for k, v in samples.get("needles", {}).items()}
    home = ctx.home
    started = time.perf_counter()
    stats = TreeStats()
    hits = scan_tree(home, needles, stats=stats)
    stale: list[Hit] = []
    database = _database_files(ctx)
    if hits and database and all(os.path.realpath(home / h.file) in database for h in hits):
        # a stale copy in the database's free space (a page rebuilt while rebalancing):
        # VACUUM rewrites every page; then scan again, from scratch
        purge_free_space(ctx.engine, vacuum=True)
        stale = hits
        stats = TreeStats()
        hits = scan_tree(home, needles, stats=stats)
    server: CatalogServerScan | None = None
    if ctx.engine.dialect.name == "postgresql":
        server, server_hits, server_stale = _scan_catalog_server(ctx, needles)
        hits, stale = hits + server_hits, stale + server_stale
        stats.files += server["files"]
        stats.bytes += server["bytes"]
    blobs: BlobStoreCheck | None = None
    if isinstance(ctx.store, S3BlobStore):
        blobs = ctx.store.check_erased(sorted(set(samples.get("blobs", []))))
    seconds = time.perf_counter() - started
    with ctx.reader() as session:
        still_used = active_models_using(session, req.plan["assets"])
    copies = _lookalikes_by_copy(ctx, samples.get("phashes", []))
    faces = _lookalikes_by_face(ctx, samples.get("embeddings", []))
    scan: ScanView = {
        "files": stats.files,
        "bytes": stats.bytes,
        "needles": len(needles),
        "vacuumed_after_scan": bool(stale),
        "found_before_vacuum": _hits_view(stale),
        "seconds": round(seconds, 3),
        "mb_per_second": round(stats.bytes / 1e6 / seconds, 1) if seconds else None,
        "hits": _hits_view(hits),
    }
    if server is not None:
        scan["catalog_server"] = server
    left = 0
    if blobs is not None:
        scan["blob_store"] = blobs
        left = blobs["versions_left"] + blobs["delete_markers_left"]
    return {
        "ok": not hits and not still_used and not left,
        "checked_at": iso(utcnow()),
        "forensic_scan": scan,
        "active_models_using_erased_items": still_used,
        "copy_candidates": copies,
        "face_candidates": faces,
    }


def reverify(ctx: Context, req: ErasureRequest) -> Reverification:
    """Check a completed erasure again, later: what still can be checked, and a plain
    statement of what cannot.

    The byte samples the completion-time scan looked for were destroyed once it was done
    (keeping them would keep the erased data), so a later forensic scan would have
    nothing to look for: it is not run, and the result says so, quoting the scan made at
    completion. What is checked again: the catalog (every erased photo still a tombstone
    without a blob, no derived value left, every shredded subject without a key, the
    keyed fingerprints that block re-ingestion still there, how many photos' perceptual
    hashes are kept) and the lineage (no active model uses an erased photo); on object
    storage, the erased blobs' versions are listed again (their keys, hashes of deleted
    ciphertexts, are kept in the plan for this); with the
    kept hashes, the analysed photos that are copies of an erased one are listed for
    review (photos not analysed have no hash to compare: they are not searched).
    """
    plan = req.plan
    ids = list(plan["assets"])
    not_tombstoned = derived = 0
    with ctx.reader() as session:
        for chunk in in_chunks(ids):
            not_tombstoned += (
                session.scalar(
                    select(func.count())
                    .select_from(Asset)
                    .where(Asset.id.in_(chunk), (Asset.state != "erased") | Asset.blob_key.is_not(None))
                )
                or 0
            )
            derived += (
                session.scalar(
                    select(func.count())
                    .select_from(AssetDerivative)
                    .where(AssetDerivative.asset_id.in_(chunk))
                )
                or 0
            )
        keys_left = (
            session.scalar(
                select(func.count())
                .select_from(Subject)
                .where(Subject.id.in_(plan["subjects_to_shred"]), Subject.dek_wrapped.is_not(None))
            )
            or 0
        )
        fingerprints = (
            session.scalar(
                select(func.count())
                .select_from(ErasedFingerprint)
                .where(ErasedFingerprint.request_id == req.id)
            )
            or 0
        )
        still_used = active_models_using(session, ids)
        kept = blocklist.load(session, ctx.kek, req.id)
    catalog: CatalogCheck = {
        "photos": len(ids),
        "photos_not_tombstoned": not_tombstoned,
        "derived_values_left": derived,
        "subjects_with_a_key_left": keys_left,
        "reingestion_fingerprints": fingerprints,
        "perceptual_hashes_kept": kept.photos,
    }
    at_completion = (req.verification or {}).get("forensic_scan", {})
    blobs: BlobStoreCheck | None = None
    if isinstance(ctx.store, S3BlobStore) and plan.get("blobs"):
        blobs = ctx.store.check_erased(plan["blobs"])
    left = blobs["versions_left"] + blobs["delete_markers_left"] if blobs else 0
    result: Reverification = {
        "ok": not (not_tombstoned or derived or keys_left or still_used or left),
        "checked_at": iso(utcnow()),
        "catalog": catalog,
        "active_models_using_erased_items": still_used,
        "copy_candidates": _lookalikes_by_copy(ctx, [h.hex() for h in kept.hashes()]),
        "forensic_scan": {
            "performed": False,
            "why": (
                "the byte samples a scan looks for were destroyed when the erasure completed "
                "(keeping them would keep the erased data); the scan made then is quoted here"
            ),
            "at_completion": {
                "checked_at": (req.verification or {}).get("checked_at"),
                "needles": at_completion.get("needles"),
                "files": at_completion.get("files"),
                "hits": len(at_completion.get("hits") or []),
            },
        },
    }
    if blobs is not None:
        result["blob_store"] = blobs
    return result


def _lookalikes_by_copy(ctx: Context, phashes: list[str]) -> list[Candidate]:
    if not phashes:
        return []
    from ..vision import load_hash_matrix

    matrix = load_hash_matrix(ctx.reader, ctx.vault, cache=ctx.hash_cache)
    found: dict[str, float] = {}
    for h in phashes:
        for asset_id, dist in matrix.search([bytes.fromhex(h)]):
            found[asset_id] = min(dist, found.get(asset_id, dist))
    return _candidates(ctx, found)


def _lookalikes_by_face(ctx: Context, embeddings: list[str]) -> list[Candidate]:
    if not embeddings or not ctx.face_index_path.exists():
        return []
    from ..vision.index import FaceIndex

    index = FaceIndex(ctx.face_index_path, ctx.kek)
    best: dict[int, float] = {}
    for e in embeddings:
        for emb_id, dist in index.search(bytes.fromhex(e)):
            best[emb_id] = min(dist, best.get(emb_id, dist))
    with ctx.reader() as session:
        owners: dict[int, str] = (
            {
                emb_id: asset_id
                for emb_id, asset_id in session.execute(
                    select(AssetDerivative.id, AssetDerivative.asset_id).where(
                        AssetDerivative.id.in_(list(best))
                    )
                )
            }
            if best
            else {}
        )
    per_asset: dict[str, float] = {}
    for emb_id, dist in best.items():
        if emb_id in owners:
            per_asset[owners[emb_id]] = min(dist, per_asset.get(owners[emb_id], dist))
    return _candidates(ctx, per_asset)


def _candidates(ctx: Context, found: dict[str, float]) -> list[Candidate]:
    """Candidates for review, stored by catalog id, not by sha256: should one of them be
    erased later, this request must not keep its hash (the view looks it up)."""
    if not found:
        return []
    with ctx.reader() as session:
        rows = session.execute(
            select(Asset.id, Subject.ref)
            .join(Subject, Subject.id == Asset.owner_id)
            .where(Asset.id.in_(list(found)), Asset.state == "active")
        ).all()
    return sorted(
        ({"asset": aid, "owner": ref, "distance": round(float(found[aid]), 4)} for aid, ref in rows),
        key=lambda m: (m["distance"], m["asset"]),
    )


def _hits_view(hits: list[Hit]) -> list[HitView]:
    """Hits as the verification shows them: the kind of sample and the file, no bytes."""
    return [{"needle": h.label.split(":")[0], "file": h.file} for h in hits]


def for_certificate(verification: dict[str, Any]) -> dict[str, Any]:
    """The verification as the certificate shows it: look-alike candidates are other people's
    photos, so it gives how many there were (the request keeps them for review), not which."""
    if not verification:
        return verification
    return {
        **verification,
        "copy_candidates": len(verification.get("copy_candidates") or []),
        "face_candidates": len(verification.get("face_candidates") or []),
    }


def active_models_using(session: Session, asset_ids: list[str]) -> list[str]:
    """Active models with any of ``asset_ids`` upstream (through a dataset version that
    holds them, or a run that read them directly). Walks downstream from what holds the
    photos, so its cost follows the erasure's size, not the number of models."""
    seeds: set[str] = set()
    for chunk in in_chunks(asset_ids):
        seeds.update(
            session.scalars(select(DatasetMember.dataset_id).where(DatasetMember.asset_id.in_(chunk)))
        )
        runs = select(RunInput.run_id).where(RunInput.asset_id.in_(chunk))
        seeds.update(session.scalars(select(Artifact.id).where(Artifact.run_id.in_(runs))))
    found: set[str] = set()
    for seed in sorted(seeds):
        art = session.get(Artifact, seed)
        if art is not None and art.kind == "model" and art.state == "active":
            found.add(f"model:{art.name}@{art.version}")
        for node in downstream(session, NodeRef("artifact", seed, "")).nodes:
            if node["kind"] == "model" and "artifact_id" in node:
                model = session.get(Artifact, node["artifact_id"])
                if model is not None and model.state == "active":
                    found.add(f"model:{model.name}@{model.version}")
    return sorted(found)
