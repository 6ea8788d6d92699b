"""``disgorge analyze``: faces, embeddings, crops and PDQ hashes for stored photos.

Computing an embedding is biometric processing, so it happens only for photos whose
owner and depicted subjects have all granted ``biometric_processing`` at the time of the
analysis (the consent gate decides); every other photo gets detection only — its face
count and the biometric flag, nothing that identifies the face — and the report says
how many. Every photo gets a PDQ hash (copy detection needs no consent: it identifies a
photo, not a person).

Results are sealed under the owner's key: the hash, each face's box and landmarks, each
embedding (as ``asset_derivatives`` rows) and each face crop (a sealed blob).
Embeddings also go into the face index. Embedding rows get random 62-bit ids, used as
the index ids, so a crash between the index and the catalog can never make an id point
at the wrong face; :func:`reconcile_index` repairs either side after a crash.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from .. import audit
from .._pool import ordered_map
from ..catalog.models import Asset, AssetDerivative, Run, Subject
from ..consent import ConsentGate, ItemRef, Purpose
from ..errors import InvalidInput
from ..vault import Vault
from .faces import ImageAnalysis, analyze_many, check_embedder
from .index import FaceIndex
from .models import FacesUnavailable
from .phash import phash_context

__all__ = ["AnalyzeReport", "embedders_in_use", "reconcile_index", "run_analyze"]

BATCH = 16


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
    data: bytes


def reconcile_index(reader: sessionmaker[Session], vault: Vault, index: FaceIndex) -> tuple[int, int]:
    """Make the index hold exactly the active embedding rows; returns (removed, added)."""
    with reader() as session:
        rows = session.execute(
            select(AssetDerivative.id, AssetDerivative.value_enc, AssetDerivative.asset_id, Asset.owner_id)
            .join(Asset, Asset.id == AssetDerivative.asset_id)
            .where(AssetDerivative.kind == "embedding", AssetDerivative.state == "active")
        ).all()
        catalog = {r.id for r in rows}
        in_index = index.ids()
        stale = in_index - catalog
        missing = [r for r in rows if r.id not in in_index]
        vectors = []
        for r in missing:
            owner = session.get(Subject, r.owner_id)
            vectors.append(vault.open(owner, r.value_enc, f"embedding:{r.asset_id}:{r.id}"))
    removed = index.remove(stale)
    index.add([r.id for r in missing], vectors)
    if removed or missing:
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


def _open_index(index_path: Path) -> FaceIndex | None:
    try:
        return FaceIndex(index_path)
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
) -> AnalyzeReport:
    started = time.perf_counter()
    check_embedder(embedder)
    report = AnalyzeReport(embedder=embedder)
    index = _open_index(index_path)
    if index is None:
        report.face_index = "skipped: faiss is not installed (pip install 'disgorge[faces]' to build it)"
    else:
        reconcile_index(reader, vault, index)

    with reader() as session:
        query = select(Asset.id, Asset.sha256, Asset.source_id, Asset.owner_id, Asset.blob_key).where(
            Asset.state == "active"
        )
        if asset_ids is not None:
            query = query.where(Asset.id.in_(asset_ids))
        if not force:
            query = query.where(Asset.analyzed_at.is_(None))
        rows = session.execute(query.order_by(Asset.ingested_at, Asset.sha256)).all()
        redone = {r.id for r in rows} if force else set()
        for other, assets in embedders_in_use(session).items():
            kept = len(assets - redone)
            if other != embedder and kept:
                raise InvalidInput(
                    f"embedder {embedder!r}: {kept} photo(s) here have {other!r} embeddings, and the two "
                    f"kinds of vector cannot be compared; analyse every photo again with force "
                    f"(disgorge analyze --force --embedder {embedder}) or keep {other!r}"
                )
        verdicts = ConsentGate(session, Purpose.BIOMETRIC_PROCESSING, at).evaluate(
            [ItemRef(r.id, r.source_id, r.owner_id) for r in rows]
        )
        owners = {
            s.id: s
            for s in session.scalars(select(Subject).where(Subject.id.in_({r.owner_id for r in rows})))
        }
    report.photos = len(rows)
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

    def jobs() -> Iterator[list[_Job]]:
        batch: list[_Job] = []
        for r in rows:
            owner = owners[r.owner_id]
            try:
                data = vault.get_blob(owner, r.id, r.blob_key)
            except Exception as exc:  # noqa: BLE001 - one unreadable photo must not stop the run
                report.errors.append({"sha256": r.sha256, "reason": f"cannot read ({type(exc).__name__})"})
                continue
            batch.append(_Job(r.id, r.sha256, owner, verdicts[r.id].allowed, data))
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
    ):
        _store(sessions, vault, index, run, batch, results, report, verdicts, actor, at, force)
        done += len(batch)
        if progress:
            progress(done, len(rows))
        if index is not None and time.monotonic() - last_save > 60:
            index.save()
            last_save = time.monotonic()
    if index is not None:
        index.save()

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
            },
            actor=actor,
            at=at,
        )
    return report


def _store(
    sessions: sessionmaker[Session],
    vault: Vault,
    index: FaceIndex | None,
    run: Run,
    batch: list[_Job],
    results: list[ImageAnalysis],
    report: AnalyzeReport,
    verdicts: dict[str, Any],
    actor: str,
    at: datetime,
    force: bool,
) -> None:
    new_vectors: list[tuple[int, bytes]] = []
    old_vectors: list[int] = []
    crops: list[str] = []
    events: list[tuple[str, dict[str, Any]]] = []
    try:
        with sessions.begin() as session:
            for job, res in zip(batch, results, strict=True):
                if res.error:
                    report.errors.append({"sha256": job.sha256, "reason": res.error})
                    continue
                if force:
                    old = session.execute(
                        select(AssetDerivative.id, AssetDerivative.kind, AssetDerivative.blob_key).where(
                            AssetDerivative.asset_id == job.asset_id
                        )
                    ).all()
                    old_vectors += [o.id for o in old if o.kind == "embedding"]
                    for o in old:
                        if o.blob_key:
                            vault.store.delete(o.blob_key)
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
                        new_vectors.append((emb_id, face.embedding))
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
            if index is not None:
                index.remove(old_vectors)
                index.add([i for i, _ in new_vectors], [v for _, v in new_vectors])
    except BaseException:
        for key in crops:  # the rows were rolled back: their crop blobs must not linger
            vault.store.delete(key)
        if index is not None:
            index.remove([i for i, _ in new_vectors])
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
