"""``disgorge analyze``: faces, embeddings, crops and PDQ hashes for stored photos.

Computing an embedding is biometric processing, so it happens only for photos whose
owner and depicted subjects have all granted ``biometric_processing`` at the time of the
analysis (the consent gate decides); every other photo gets detection only — its face
count and the biometric flag, nothing that identifies the face — and the report says
how many. Every photo gets a PDQ hash (copy detection needs no consent: it identifies a
photo, not a person).

Consent changes, so a plain analysis (without ``force``) also returns to photos it has
analysed before, and does what consent allows *now*: a photo that got detection only
and whose subjects have all granted ``biometric_processing`` since is analysed again
with embeddings; a photo whose faces were embedded and whose consent was withdrawn (or
expired) loses its face geometry, embeddings and crops (the crop blobs overwritten
before they are unlinked: the owner's key lives on) and their face-index entries. Its
PDQ hashes, face count and biometric flag stay, as for any detection-only photo. The
report and the run's audit event count both (``consent_granted_photos``,
``consent_withdrawn_photos``, ``removed_*``); each stripped photo gets an
``asset.biometrics_removed`` event with counts only.

Results are sealed under the owner's key: the hash, each face's box and landmarks, each
embedding (as ``asset_derivatives`` rows) and each face crop (a sealed blob).
Embeddings also go into the sealed face index (:mod:`disgorge.vision.index`), which is
brought to what the catalog holds (:func:`reconcile_index`) every minute and at the end
of the run: the catalog is the truth, so a crash between the two sides is repaired, and
vectors are only ever added from rows read under the index's lock. Embedding rows get
random 62-bit ids, used as the index ids, so a crash between the index and the catalog
can never make an id point at the wrong face.

The embedder ("dlib", or the "portrait" stand-in for drawn samples, see
:mod:`disgorge.vision.portrait`) is recorded in the run's parameters, so each embedding's
lineage says which made it. Vectors of different embedders are not comparable, so a
workspace holds one kind: analysing with another is refused unless every photo embedded
by the old one is analysed again (``force``). The face index is derived data: when faiss
is not installed it is skipped (the report says so) and rebuilt from the catalog by the
next analysis or search that has faiss.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from .. import audit
from ..catalog.db import in_chunks
from ..catalog.models import Asset, AssetDerivative, ConsentRecord, Run, Subject
from ..consent import ConsentGate, Decision, ItemRef, Purpose
from ..errors import InvalidInput
from ..pool import ordered_map
from ..vault import Vault
from ..vault.blobstore import wipe_file
from .faces import analyze_many, check_embedder
from .index import FaceIndex, embedding_ids
from .models import FacesUnavailable
from .phash import phash_context
from .results import ImageAnalysis

__all__ = ["AnalyzeReport", "embedders_in_use", "embedding_ids", "reconcile_index", "run_analyze"]

BATCH = 16
#: what biometric consent allows beyond detection: removed when it is withdrawn
BIOMETRIC_KINDS = ("face", "embedding", "crop")


@dataclass
class AnalyzeReport:
    photos: int = 0
    analyzed: int = 0
    with_faces: int = 0
    faces: int = 0
    embedded_faces: int = 0
    detection_only_photos: int = 0
    detection_only_reasons: dict[str, int] = field(default_factory=dict)
    upsampled_detections: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    run: str = ""
    embedder: str = "dlib"
    #: photos analysed before with detection only, embedded now that consent allows it
    consent_granted_photos: int = 0
    #: photos whose faces, embeddings and crops were removed: consent no longer allows them
    consent_withdrawn_photos: int = 0
    removed_faces: int = 0
    removed_embeddings: int = 0
    removed_crops: int = 0
    #: "updated", or why the face index was not (it is rebuilt from the catalog later)
    face_index: str = "updated"
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "analyzed": self.analyzed,
            "with_faces": self.with_faces,
            "faces": self.faces,
            "embedded_faces": self.embedded_faces,
            "detection_only_photos": self.detection_only_photos,
            "detection_only_reasons": self.detection_only_reasons,
            "upsampled_detections": self.upsampled_detections,
            "consent_granted_photos": self.consent_granted_photos,
            "consent_withdrawn_photos": self.consent_withdrawn_photos,
            "removed_faces": self.removed_faces,
            "removed_embeddings": self.removed_embeddings,
            "removed_crops": self.removed_crops,
            "errors": self.errors,
            "run": self.run,
            "embedder": self.embedder,
            "face_index": self.face_index,
            "seconds": round(self.seconds, 3),
            "photos_per_second": round(self.analyzed / self.seconds, 2) if self.seconds else 0.0,
        }


@dataclass
class _Job:
    asset_id: str
    sha256: str
    owner: Subject
    embed: bool
    redo: bool  # analysed before: its derivatives are replaced
    data: bytes


def reconcile_index(reader: sessionmaker[Session], vault: Vault, index: FaceIndex) -> tuple[int, int]:
    """Make the index hold exactly the active embedding rows whose owner's data key
    exists; returns (removed, added).

    Holds the index's exclusive lock from reading its file, through reading the catalog,
    to writing the file: an erasure marks its embedding rows erased before it removes
    them from the index, so no vector it removed can come back from a catalog read made
    before (see :mod:`disgorge.vision.index`)."""
    with index.locked():
        index.reload()
        with reader() as session:
            d = AssetDerivative
            catalog = set(
                session.scalars(
                    select(d.id)
                    .join(Asset, Asset.id == AssetDerivative.asset_id)
                    .join(Subject, Subject.id == Asset.owner_id)
                    # a destroyed key guards nothing in an index sealed under the KEK
                    .where(
                        AssetDerivative.kind == "embedding",
                        AssetDerivative.state == "active",
                        Subject.dek_wrapped.is_not(None),
                    )
                )
            )
            in_index = index.ids()
            stale = in_index - catalog
            # only the vectors the index lacks are read and opened (not every row's, every time)
            missing: list[Any] = []  # rows of (id, value_enc, asset_id, owner_id)
            for part in in_chunks(sorted(catalog - in_index)):
                missing += session.execute(
                    select(d.id, d.value_enc, d.asset_id, Asset.owner_id)
                    .join(Asset, Asset.id == AssetDerivative.asset_id)
                    .where(AssetDerivative.id.in_(part))
                    .order_by(AssetDerivative.id)
                ).all()
            vectors = []
            for r in missing:
                owner = session.get_one(Subject, r.owner_id)
                vectors.append(vault.open(owner, r.value_enc, f"embedding:{r.asset_id}:{r.id}"))
        removed = index.remove(stale)
        index.add([r.id for r in missing], vectors)
        if removed or missing or index.changed:
            index.save()
    return removed, len(missing)


def embedders_in_use(session: Session) -> dict[str, set[str]]:
    """Embedder -> ids of the assets whose active embeddings it made (from the runs' parameters)."""
    rows = session.execute(
        select(AssetDerivative.asset_id, Run.parameters)
        .join(Run, Run.id == AssetDerivative.run_id)
        .where(AssetDerivative.kind == "embedding", AssetDerivative.state == "active")
    ).all()
    out: dict[str, set[str]] = {}
    for asset_id, parameters in rows:
        # runs recorded before the option existed were all dlib
        out.setdefault((parameters or {}).get("embedder", "dlib"), set()).add(asset_id)
    return out


def _open_index(index_path: Path, vault: Vault) -> FaceIndex | None:
    try:
        return FaceIndex(index_path, vault.kek)
    except FacesUnavailable:
        return None


def run_analyze(
    sessions: sessionmaker[Session],
    reader: sessionmaker[Session],
    vault: Vault,
    index_path: Path,
    *,
    actor: str,
    at: datetime,
    asset_ids: list[str] | None = None,
    force: bool = False,
    workers: int | None = None,
    cnn: bool = False,
    embedder: str = "dlib",
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> AnalyzeReport:
    """Analyse photos (see the module's docstring). With ``executor`` (a Dask cluster's,
    :mod:`disgorge.cluster`) the batches run there, ``workers`` at a time: each task gets
    its photos' decrypted bytes and the consent verdict, never a key, and everything is
    sealed and written here, as in a local run."""
    started = time.perf_counter()
    check_embedder(embedder)
    report = AnalyzeReport(embedder=embedder)
    index = _open_index(index_path, vault)
    if index is None:
        report.face_index = "skipped: faiss is not installed (pip install 'disgorge[faces]' to build it)"

    with reader() as session:
        rows, withdrawn, redone, verdicts = _select(session, asset_ids, force, at)
        for other, assets in embedders_in_use(session).items():
            kept = len(assets - redone - set(withdrawn))
            if other != embedder and kept:
                raise InvalidInput(
                    f"embedder {embedder!r}: {kept} photo(s) here have {other!r} embeddings, and the two "
                    f"kinds of vector cannot be compared; analyse every photo again with force "
                    f"(disgorge analyze --force --embedder {embedder}) or keep {other!r}"
                )
        owners = {
            s.id: s
            for s in session.scalars(select(Subject).where(Subject.id.in_({r.owner_id for r in rows})))
        }
    report.photos = len(rows)
    report.consent_granted_photos = sum(1 for r in rows if r.analyzed_at is not None) if not force else 0
    embed_count = sum(1 for r in rows if verdicts[r.id].allowed)

    run = Run(
        id=secrets.token_hex(16),
        job="analyze-faces",
        purpose=Purpose.BIOMETRIC_PROCESSING.value,
        state="running",
        parameters={
            "embedder": embedder,
            "detector": "centre" if embedder == "portrait" else ("cnn" if cnn else "hog"),
            "force": force,
        },
        code_version="disgorge",
        started_at=at,
        consent_check={"checked": len(rows), "covered": embed_count, "not_covered": len(rows) - embed_count},
        actor=actor,
    )
    with sessions.begin() as session:
        session.add(run)
        audit.append(
            session,
            "run.started",
            {"run": run.id, "job": run.job, "consent": run.consent_check},
            actor=actor,
            at=at,
        )
    report.run = run.id
    if withdrawn:
        _withdraw(sessions, vault, run, withdrawn, report, actor, at)
        if index is None:  # it cannot be rewritten without faiss: it goes, rebuilt later
            wipe_file(index_path, unlink=True)

    def jobs() -> Iterator[list[_Job]]:
        batch: list[_Job] = []
        for r in rows:
            owner = owners[r.owner_id]
            try:
                data = vault.get_blob(owner, r.id, r.blob_key)
            except Exception as exc:  # noqa: BLE001 - one unreadable photo must not stop the run
                report.errors.append({"sha256": r.sha256, "reason": f"cannot read ({type(exc).__name__})"})
                continue
            batch.append(_Job(r.id, r.sha256, owner, verdicts[r.id].allowed, r.id in redone, data))
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    n_workers = workers or os.cpu_count() or 1
    done = 0
    last_save = time.monotonic()
    for batch, results in ordered_map(
        analyze_many,
        jobs(),
        args=lambda b: ([(j.data, j.embed) for j in b], True, cnn, embedder),
        workers=n_workers,
        inline=len(rows) <= BATCH,
        executor=executor,
    ):
        _store(sessions, vault, run, batch, results, report, verdicts, actor, at)
        done += len(batch)
        if progress:
            progress(done, len(rows))
        if index is not None and time.monotonic() - last_save > 60:
            reconcile_index(reader, vault, index)
            last_save = time.monotonic()
    if index is not None:
        reconcile_index(reader, vault, index)

    report.seconds = time.perf_counter() - started
    with sessions.begin() as session:
        session.execute(update(Run).where(Run.id == run.id).values(state="completed", ended_at=at))
        audit.append(
            session,
            "run.completed",
            {
                "run": run.id,
                "job": run.job,
                "analyzed": report.analyzed,
                "faces": report.faces,
                "embedded_faces": report.embedded_faces,
                "detection_only_photos": report.detection_only_photos,
                "consent_granted_photos": report.consent_granted_photos,
                "consent_withdrawn_photos": report.consent_withdrawn_photos,
                "removed_embeddings": report.removed_embeddings,
                "removed_crops": report.removed_crops,
            },
            actor=actor,
            at=at,
        )
    return report


def _select(
    session: Session, asset_ids: list[str] | None, force: bool, at: datetime
) -> tuple[Sequence[Any], list[str], set[str], dict[str, Any]]:
    """(photos to analyse, photos whose biometric derivatives consent no longer allows,
    ids of the photos to analyse that were analysed before, verdict per photo).

    Without ``force``: the photos never analysed; those analysed with detection only
    whose consent now allows embedding; and (to strip) those embedded whose consent is
    gone. Consent is decided at the time of the analysis, by the gate, for every photo
    with embedded faces (a grant can be withdrawn, a policy can end, a transfer can add a
    provenance that denies). A detection-only photo goes to the gate only if its owner
    has granted ``biometric_processing`` at some time up to ``at``: the gate allows
    biometric processing on an explicit grant only (design note 4), so the others (most
    of them, usually) cannot have become allowed."""
    columns = (Asset.id, Asset.sha256, Asset.source_id, Asset.owner_id, Asset.blob_key, Asset.analyzed_at)
    query = select(*columns).where(Asset.state == "active")
    if asset_ids is not None:
        query = query.where(Asset.id.in_(asset_ids))
    order = (Asset.ingested_at, Asset.sha256)
    if force:
        rows = session.execute(query.order_by(*order)).all()
        return rows, [], {r.id for r in rows}, _verdicts(session, rows, at)
    fresh = session.execute(query.where(Asset.analyzed_at.is_(None)).order_by(*order)).all()
    embedded = exists().where(AssetDerivative.asset_id == Asset.id, AssetDerivative.kind.in_(BIOMETRIC_KINDS))
    owner_granted = exists().where(
        ConsentRecord.subject_id == Asset.owner_id,
        ConsentRecord.purpose == Purpose.BIOMETRIC_PROCESSING.value,
        ConsentRecord.decision == Decision.GRANTED.value,
        ConsentRecord.at <= at,
    )
    seen = query.where(Asset.analyzed_at.is_not(None), Asset.biometric == 1)
    with_faces = session.execute(seen.where(embedded).order_by(*order)).all()
    detected = session.execute(seen.where(~embedded, owner_granted).order_by(*order)).all()
    verdicts = _verdicts(session, [*fresh, *with_faces, *detected], at)
    granted = [r for r in detected if verdicts[r.id].allowed]
    withdrawn = [r.id for r in with_faces if not verdicts[r.id].allowed]
    return [*fresh, *granted], withdrawn, {r.id for r in granted}, verdicts


def _verdicts(session: Session, rows: Sequence[Any], at: datetime) -> dict[str, Any]:
    return ConsentGate(session, Purpose.BIOMETRIC_PROCESSING, at).evaluate(
        [ItemRef(r.id, r.source_id, r.owner_id) for r in rows]
    )


def _withdraw(
    sessions: sessionmaker[Session],
    vault: Vault,
    run: Run,
    asset_ids: list[str],
    report: AnalyzeReport,
    actor: str,
    at: datetime,
) -> None:
    """Remove the faces, embeddings and crops of photos whose biometric consent is gone.

    The crop blobs are overwritten and unlinked inside the transaction that deletes their
    rows (the owner's key lives on, so unlinking alone would leave ciphertext it opens):
    a crash leaves rows whose blobs are gone, and the next analysis removes those rows.
    The face index is brought to the catalog afterwards (:func:`reconcile_index`)."""
    for i in range(0, len(asset_ids), 500):
        chunk = asset_ids[i : i + 500]
        with sessions.begin() as session:
            d = AssetDerivative
            rows = session.execute(
                select(d.id, d.asset_id, d.kind, d.blob_key).where(
                    d.asset_id.in_(chunk), d.kind.in_(BIOMETRIC_KINDS)
                )
            ).all()
            counts: dict[str, dict[str, int]] = {}
            for r in rows:
                if r.blob_key:
                    vault.store.delete(r.blob_key, overwrite=True)
                per = counts.setdefault(r.asset_id, {k: 0 for k in BIOMETRIC_KINDS})
                per[r.kind] += 1
            session.execute(delete(AssetDerivative).where(AssetDerivative.id.in_([r.id for r in rows])))
            audit.append_many(
                session,
                [
                    (
                        "asset.biometrics_removed",
                        {
                            "asset": asset_id,
                            "faces": n["face"],
                            "embeddings": n["embedding"],
                            "crops": n["crop"],
                            "reason": "no_biometric_consent",
                            "run": run.id,
                        },
                    )
                    for asset_id, n in counts.items()
                ],
                actor=actor,
                at=at,
            )
        report.consent_withdrawn_photos += len(counts)
        for n in counts.values():
            report.removed_faces += n["face"]
            report.removed_embeddings += n["embedding"]
            report.removed_crops += n["crop"]


def _store(
    sessions: sessionmaker[Session],
    vault: Vault,
    run: Run,
    batch: list[_Job],
    results: list[ImageAnalysis],
    report: AnalyzeReport,
    verdicts: dict[str, Any],
    actor: str,
    at: datetime,
) -> None:
    crops: list[str] = []
    events: list[tuple[str, dict[str, Any]]] = []
    try:
        with sessions.begin() as session:
            for job, res in zip(batch, results, strict=True):
                if res.error:
                    report.errors.append({"sha256": job.sha256, "reason": res.error})
                    continue
                if job.redo:
                    old = session.execute(
                        select(AssetDerivative.blob_key).where(
                            AssetDerivative.asset_id == job.asset_id, AssetDerivative.blob_key.is_not(None)
                        )
                    ).all()
                    for o in old:  # the owner's key lives on: overwrite, then unlink
                        vault.store.delete(o.blob_key, overwrite=True)
                    session.execute(delete(AssetDerivative).where(AssetDerivative.asset_id == job.asset_id))
                rows: list[AssetDerivative] = []
                if res.phash is not None:
                    for k, value in enumerate([res.phash, *res.phash_crops]):
                        sealed = vault.seal(job.owner, value, phash_context(job.asset_id, k))
                        rows.append(_row(job, "phash", k, sealed, run, at))
                for i, face in enumerate(res.faces):
                    if not job.embed:
                        continue  # detection only: no box, landmarks, crop or embedding is kept
                    geometry = json.dumps({"box": face.box, "landmarks": face.landmarks}).encode()
                    rows.append(
                        _row(
                            job,
                            "face",
                            i,
                            vault.seal(job.owner, geometry, f"face:{job.asset_id}:{i}"),
                            run,
                            at,
                        )
                    )
                    if face.embedding is not None:
                        emb_id = secrets.randbits(62)
                        sealed = vault.seal(job.owner, face.embedding, f"embedding:{job.asset_id}:{emb_id}")
                        row = _row(job, "embedding", i, sealed, run, at)
                        row.id = emb_id
                        rows.append(row)
                    if face.crop is not None:
                        key = vault.store.put(vault.seal(job.owner, face.crop, f"crop:{job.asset_id}:{i}"))
                        crops.append(key)
                        row = _row(job, "crop", i, None, run, at)
                        row.blob_key = key
                        rows.append(row)
                session.add_all(rows)
                session.execute(
                    update(Asset)
                    .where(Asset.id == job.asset_id)
                    .values(faces=len(res.faces), biometric=int(bool(res.faces)), analyzed_at=at)
                )
                report.analyzed += 1
                report.faces += len(res.faces)
                report.with_faces += int(bool(res.faces))
                report.upsampled_detections += int(bool(res.faces) and res.upsample > 1)
                embedded = sum(1 for f in res.faces if f.embedding is not None)
                report.embedded_faces += embedded
                if res.faces and not job.embed:
                    report.detection_only_photos += 1
                    rule = verdicts[job.asset_id].rule
                    report.detection_only_reasons[rule] = report.detection_only_reasons.get(rule, 0) + 1
                events.append(
                    (
                        "asset.analyzed",
                        {"asset": job.asset_id, "faces": len(res.faces), "embedded": embedded, "run": run.id},
                    )
                )
            session.flush()
            audit.append_many(session, events, actor=actor, at=at)
    except BaseException:
        for key in crops:  # the rows were rolled back: their crop blobs must not linger
            vault.store.delete(key, overwrite=True)
        raise


def _row(
    job: _Job, kind: str, face_index: int, value: bytes | None, run: Run, at: datetime
) -> AssetDerivative:
    return AssetDerivative(
        asset_id=job.asset_id,
        kind=kind,
        face_index=face_index,
        value_enc=value,
        run_id=run.id,
        state="active",
        created_at=at,
    )
