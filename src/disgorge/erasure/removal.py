"""The steps that remove the photos from every store: index, derived values, blobs,
catalog rows, keys, and the database's free pages.

Order matters and is the registry's (:mod:`disgorge.erasure.steps`): derived values go
before the blobs, the blobs before their rows lose the keys to them, the rows before the
subjects' keys are destroyed, and the purge last. A photo whose owner's data key lives on
(someone else's photo showing the subject; a source's photo of someone who is elsewhere
too) has its blobs overwritten before they are unlinked: destroying the key is not enough
there.

The two steps whose work is one catalog transaction (``tombstone_assets``,
``shred_keys``) mark themselves done inside it: a crash either keeps both or neither.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from .. import audit
from .._time import utcnow
from ..access.settings import get_settings
from ..catalog import in_chunks, purge_free_space
from ..catalog.models import (
    Asset,
    AssetDerivative,
    ConsentRecord,
    ErasedFingerprint,
    ErasureRequest,
    IncomingRequest,
    Source,
    Subject,
)
from ..context import Context
from ..errors import ErasureBlocked
from ..vault.s3 import NO_OVERWRITE, S3BlobStore
from ..vision import blocklist
from ._step import Execution, fire, step
from .journal import mark_done

__all__ = [
    "VACUUM_AT",
    "delete_blobs",
    "delete_derivatives",
    "purge_database",
    "refuse_locked_store",
    "remove_index",
    "shred_keys",
    "tombstone_assets",
]

#: erasures of at least this many photos VACUUM the catalog at once (their many deletes make
#: stale cells likely, and a second scan with that many samples costs more than the VACUUM)
VACUUM_AT = 1000


@step("remove_index")
def remove_index(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """Embeddings leave the face index, whose file is rewritten; hashes leave the PDQ cache.

    The PDQ cache holds the photos' hashes decrypted (sealed under the KEK, which lives
    on): their rows stop being active first, so that no copy search running meanwhile (it
    reads the catalog under the cache's lock) writes them back before
    ``delete_derivatives`` removes them; then the cache is rewritten without them. The
    embedding rows likewise, so that no index reconciliation (it reads active rows under
    the face index's lock) puts their vectors back into the sealed face index.
    """
    ctx = execution.ctx
    assets = req.plan["assets"]
    with ctx.sessions.begin() as session:
        for part in in_chunks(assets):
            session.execute(
                update(AssetDerivative)
                .where(
                    AssetDerivative.asset_id.in_(part),
                    AssetDerivative.kind.in_(("phash", "embedding")),
                )
                .values(state="erased")
            )
    ctx.hash_cache.drop_assets(assets)
    path = ctx.face_index_path
    if not path.exists():
        return {"removed": 0}
    from ..vision.analyze import embedding_ids
    from ..vision.index import FaceIndex

    with ctx.reader() as session:
        ids = embedding_ids(session, req.plan["assets"])
    index = FaceIndex(path, ctx.kek)
    index.remove(ids)
    index.save()
    # counted from the result, not from this call: a re-run after a crash reports the same
    left = index.ids()
    return {"removed": sum(1 for i in ids if i not in left), "index_entries_left": len(index)}


def _kept_keys(session: Session, req: ErasureRequest) -> set[str]:
    """Ids of the erased photos whose owner's data key is not destroyed by this erasure
    (photos of someone else that show the subject, a source's photos of people who
    are elsewhere too): their blobs are overwritten before they are unlinked."""
    shred = set(req.plan["subjects_to_shred"])
    return {
        asset_id
        for asset_id, owner in session.execute(
            select(Asset.id, Asset.owner_id).where(Asset.id.in_(req.plan["assets"]))
        )
        if owner not in shred
    }


@step("delete_derivatives")
def delete_derivatives(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """Hashes, faces, embeddings and crop blobs."""
    ctx = execution.ctx
    with ctx.sessions.begin() as session:
        kept = _kept_keys(session, req)
        rows = session.execute(
            select(AssetDerivative.kind, AssetDerivative.blob_key, AssetDerivative.asset_id).where(
                AssetDerivative.asset_id.in_(req.plan["assets"])
            )
        ).all()
        for _kind, blob, asset_id in rows:
            if blob:
                ctx.store.delete(blob, overwrite=asset_id in kept)
        session.execute(delete(AssetDerivative).where(AssetDerivative.asset_id.in_(req.plan["assets"])))
        counts: dict[str, int] = {}
        for kind, _, _ in rows:
            counts[kind] = counts.get(kind, 0) + 1
        return {"deleted": counts}


@step("delete_blobs", points=("blob_deleted",))
def delete_blobs(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """The photos' encrypted blobs (point ``blob_deleted``: after each one); first, while
    they can still be read, the PDQ hashes of each photo (its 8 rotations and mirrors) are
    kept sealed, so that ingest refuses near-copies of it (the ``sticky_copies`` setting)."""
    ctx = execution.ctx
    hashes = _keep_hashes(ctx, req)
    with ctx.reader() as session:
        kept = _kept_keys(session, req)
        keys = [
            (k, asset_id in kept)
            for asset_id, k in session.execute(
                select(Asset.id, Asset.blob_key).where(Asset.id.in_(req.plan["assets"]))
            )
            if k
        ]
    summary: dict[str, Any]
    if isinstance(ctx.store, S3BlobStore):
        summary = _delete_object_versions(ctx.store, [k for k, _ in keys])
    else:
        for key, overwrite in keys:
            ctx.store.delete(key, overwrite=overwrite)
            fire("delete_blobs", "blob_deleted")
        summary = {"blobs_deleted": len(keys), "overwritten": sum(1 for _, o in keys if o)}
    if hashes is not None:
        summary["perceptual_hashes_kept"] = hashes
    return summary


def _delete_object_versions(store: S3BlobStore, keys: list[str]) -> dict[str, Any]:
    """On object storage: every version and delete marker of each blob's object (counted
    for this run: a run resumed after a crash finds fewer). Nothing is overwritten: a PUT
    never writes over old bytes, so the summary says so instead of counting."""
    versions = markers = 0
    for key in keys:
        v, m = store.purge(key)
        versions, markers = versions + v, markers + m
        fire("delete_blobs", "blob_deleted")
    return {
        "blobs_deleted": len(keys),
        "object_versions_deleted": versions,
        "delete_markers_deleted": markers,
        "overwritten": 0,
        "overwrite": NO_OVERWRITE,
    }


def refuse_locked_store(ctx: Context, assets: list[str]) -> None:
    """Refuse, before anything is changed, an erasure of photos whose blobs the store
    could not delete (an S3 bucket with Object Lock: :mod:`disgorge.vault.s3`)."""
    if not assets:
        return
    why = ctx.store.erasure_obstacle()
    if why is not None:
        raise ErasureBlocked(why)


def _keep_hashes(ctx: Context, req: ErasureRequest) -> int | None:
    """Keep the sealed PDQ hashes of the photos this request erases (None: the workspace
    keeps none). All in one transaction, before any blob goes: a run resumed after a crash
    finds them kept and keeps nothing twice."""
    if not get_settings(ctx)["sticky_copies"]:
        return None
    with ctx.reader() as session:
        done = blocklist.kept(session, req.id)
        if done:
            return done
        photos: list[bytes] = []
        for part in in_chunks(req.plan["assets"]):
            rows = session.execute(
                select(Asset.id, Asset.blob_key, Subject)
                .join(Subject, Subject.id == Asset.owner_id)
                .where(Asset.id.in_(part), Asset.state != "erased", Asset.blob_key.is_not(None))
                .order_by(Asset.id)
            ).all()
            for asset_id, blob_key, owner in rows:
                if owner.dek_wrapped is None or blob_key is None:
                    continue  # unreadable already: nothing to hash
                try:
                    data = ctx.vault.get_blob(owner, asset_id, blob_key)
                except Exception:  # noqa: BLE001 - a missing blob is nothing to hash
                    continue
                value = blocklist.erased_photo_hashes(data)
                if value is not None:
                    photos.append(value)
    with ctx.sessions.begin() as session:
        kept = blocklist.kept(session, req.id)
        if kept:  # kept meanwhile by a concurrent resume
            return kept
        return blocklist.keep(session, ctx.kek, req.id, photos, at=utcnow())


@step("tombstone_assets", points=("committing",))
def tombstone_assets(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """Catalog rows keep their place in the lineage but lose every personal field; a keyed
    fingerprint of each photo blocks its re-ingestion; photos legal holds keep become
    ``withheld`` (point ``committing``: inside the step's transaction, marked done, not yet
    committed)."""
    ctx = execution.ctx
    at = utcnow()
    ids = req.plan["assets"]
    with ctx.sessions.begin() as session:
        # in bulk (a source may hold 100,000 photos): one UPDATE per row by primary key
        found = 0
        fingerprints: dict[str, str] = {}
        for part in in_chunks(ids):
            for asset_id, sha, state in session.execute(
                select(Asset.id, Asset.sha256, Asset.state).where(Asset.id.in_(part))
            ):
                found += 1
                if state != "erased":
                    fingerprints[asset_id] = ctx.vault.photo_fingerprint(sha)
        known: set[str] = set()
        values = sorted(set(fingerprints.values()))
        for part in in_chunks(values):
            known.update(
                session.scalars(
                    select(ErasedFingerprint.fingerprint).where(ErasedFingerprint.fingerprint.in_(part))
                )
            )
        new = [{"fingerprint": fp, "request_id": req.id, "erased_at": at} for fp in values if fp not in known]
        if new:
            session.execute(insert(ErasedFingerprint), new)
        if fingerprints:
            session.execute(
                update(Asset),
                [
                    # the photo's hash goes; a keyed fingerprint holds its place
                    {
                        "id": asset_id,
                        "sha256": fp,
                        "origin_enc": None,
                        "blob_key": None,
                        "captured_at": None,
                        "faces": None,
                        "state": "erased",
                    }
                    for asset_id, fp in fingerprints.items()
                ],
            )
        for part in in_chunks(ids):
            session.execute(delete(ConsentRecord).where(ConsentRecord.asset_id.in_(part)))
        # photos legal holds keep: untouched, but out of every use until the hold is released
        withheld = (req.plan.get("withheld") or {}).get("assets", [])
        for part in in_chunks(withheld):
            session.execute(
                update(Asset).where(Asset.id.in_(part), Asset.state == "active").values(state="withheld")
            )
        if req.scope_kind == "source":
            session.execute(update(Source).where(Source.id == int(req.plan["key"])).values(state="erased"))
        summary: dict[str, Any] = {"tombstoned": found}
        if withheld:
            summary["withheld"] = len(withheld)
        if req.plan.get("released"):  # a sender's request: photos held through another provenance stay
            from ..sharing.provenance import release_provenance

            incoming = session.get(IncomingRequest, req.plan["key"])
            assert incoming is not None  # the request's scope: its row outlives the erasure
            summary["provenances_released"] = release_provenance(
                session, incoming.peer_id, req.plan["released"]
            )
        mark_done(session, req.id, "tombstone_assets", summary)
        fire("tombstone_assets", "committing")
    return summary


@step("shred_keys", points=("committing",))
def shred_keys(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """The subjects' data keys are destroyed, their consent records deleted (point
    ``committing``: inside the step's transaction, marked done, not yet committed)."""
    ctx = execution.ctx
    with ctx.sessions.begin() as session:
        subjects = session.scalars(select(Subject).where(Subject.id.in_(req.plan["subjects_to_shred"]))).all()
        for subject in subjects:
            ctx.vault.shred(subject)
            subject.state = "erased"
        session.execute(
            delete(ConsentRecord).where(ConsentRecord.subject_id.in_(req.plan["subjects_to_shred"]))
        )
        audit.append(
            session,
            "erasure.keys_destroyed",
            {"request": req.id, "subjects": sorted(s.ref for s in subjects)},
            actor=ctx.actor,
        )
        mark_done(session, req.id, "shred_keys", {"keys_destroyed": len(subjects)})
        fire("shred_keys", "committing")
    return {"keys_destroyed": len(subjects)}


@step("purge_database")
def purge_database(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """WAL checkpoint, and VACUUM for large erasures, so no old page holds any of it (a
    small one VACUUMs only if the verifier's scan finds a stale copy).

    VACUUM rewrites the whole catalog (seconds at a million photos). A small erasure only
    checkpoints: secure_delete has zeroed its rows, and should a stale copy survive in a
    rebuilt page, the verifier's scan finds it and VACUUMs then (design note 16). A
    PostgreSQL catalog always gets ``VACUUM FULL`` of its tables: it has no
    secure_delete, and plain VACUUM leaves dead rows' bytes in place
    (:mod:`disgorge.catalog.postgres`, docs/deploy.md).
    """
    ctx = execution.ctx
    vacuum = len(req.plan["assets"]) >= VACUUM_AT or ctx.engine.dialect.name != "sqlite"
    started = time.perf_counter()
    purge_free_space(ctx.engine, vacuum=vacuum)
    return {"seconds": round(time.perf_counter() - started, 3), "vacuum": vacuum}
