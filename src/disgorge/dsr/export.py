"""The access export (GDPR Art. 15, CCPA right to know): everything held about one person.

:func:`export_subject` writes a zip a person can open offline:

- ``index.html``: one plain page (no script, inline CSS, every value escaped) with their
  photos, where each came from (source, the policy version in force when it was collected
  and now, the manifest fields the catalog holds), their consent history, every dataset
  version, run, model and recipient their photos fed (with dates and purposes), and the
  erasures concerning them;
- ``export.json``: the same, as a signed document ``{"body", "signature", "algorithm"}``
  over the canonical JSON of the body (schema ``disgorge.subject-export/1``, the
  workspace's Ed25519 key, as erasure certificates are signed); :func:`verify_export`
  checks it offline with the public key alone, and each photo's file against its sha256;
- ``photos/<sha256>.<ext>``: the photos they own, decrypted (checked against the sha256).

Other people's data never appears: a photo that shows others too is listed with how many
other people it shows, never who; a photo someone else owns is listed, not copied (its
copy could affect the others' rights, GDPR Art. 15(4)), and its origin path is theirs.
Who ran what (the staff's names) is left out as well. Every export is audited
(``subject.exported``: the subject's ref and the zip's sha256, never the external id).

The zip holds photos in clear, so it is written outside the workspace only, atomically
(a private temporary file in the target folder, then a rename), mode 0600.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import io
import os
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

from .. import audit
from .._canonical import canonical
from .._time import iso
from ..assets import read_asset
from ..catalog.models import (
    Artifact,
    Asset,
    AssetSource,
    AssetSubject,
    DatasetMember,
    DatasetVersion,
    Peer,
    PolicyVersion,
    Run,
    Source,
    Transfer,
    TransferItem,
)
from ..consent.service import subject_view
from ..context import Context, when
from ..erasure import service as erasure_service
from ..errors import InvalidInput
from ..runs.service import lineage
from ..signing import ALGORITHM, CertificateCheck, SignedDocument, load_public_key
from ..subjects import find_subject
from ..vault.blobstore import wipe_file
from .export_page import render_page

__all__ = ["SCHEMA", "SubjectExport", "export_subject", "verify_export"]

SCHEMA = "disgorge.subject-export/1"

_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif"}


class SubjectExport(TypedDict):
    """What :func:`export_subject` wrote: counts of what the export lists, and the zip."""

    subject: str
    #: photos listed (owned or depicted in), and how many of them are copied into the zip
    photos: int
    photo_files: int
    consent_records: int
    datasets: int
    models: int
    runs: int
    #: distinct organisations the photos were sent to
    recipients: int
    erasures: int
    sha256: str
    path: str


# -- gathering -----------------------------------------------------------------------------
def _policy(p: PolicyVersion | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "version": p.version,
        "effective_from": iso(p.effective_from),
        "effective_to": iso(p.effective_to),
        "allows": sorted(p.allowed_purposes or []),
        "text_sha256": p.text_sha256,
    }


def _in_force(policies: Sequence[PolicyVersion], at: datetime) -> PolicyVersion | None:
    found = None
    for p in policies:  # ordered by effective_from: the latest one that started wins
        if p.effective_from <= at and (p.effective_to is None or at < p.effective_to):
            found = p
    return found


def _photos(ctx: Context, session: Session, subject_id: int, now: datetime) -> list[dict[str, Any]]:
    """The subject's photos, as the export lists them (no bytes yet)."""
    rows = session.execute(
        select(Asset, AssetSubject.role)
        .join(AssetSubject, AssetSubject.asset_id == Asset.id)
        .where(AssetSubject.subject_id == subject_id)
        .order_by(Asset.ingested_at, Asset.sha256)
    ).all()
    ids = [a.id for a, _ in rows]
    others = Counter(
        session.scalars(
            select(AssetSubject.asset_id).where(
                AssetSubject.asset_id.in_(ids), AssetSubject.subject_id != subject_id
            )
        )
    )
    sources = {s.id: s for s in session.scalars(select(Source))}
    policies: dict[int, list[PolicyVersion]] = {}
    for p in session.scalars(select(PolicyVersion).order_by(PolicyVersion.effective_from, PolicyVersion.id)):
        policies.setdefault(p.source_id, []).append(p)
    also: dict[str, list[str]] = {}
    for asset_id, source_id in session.execute(
        select(AssetSource.asset_id, AssetSource.source_id).where(AssetSource.asset_id.in_(ids))
    ):
        also.setdefault(asset_id, []).append(sources[source_id].name)
    received: dict[str, list[dict[str, Any]]] = {}
    for asset_id, transfer_id, at, peer in session.execute(
        select(TransferItem.asset_id, Transfer.id, Transfer.at, Peer.name)
        .join(Transfer, Transfer.id == TransferItem.transfer_id)
        .join(Peer, Peer.id == Transfer.peer_id)
        .where(TransferItem.asset_id.in_(ids), Transfer.direction == "in")
        .order_by(Transfer.at)
    ):
        received.setdefault(asset_id, []).append({"from": peer, "transfer": transfer_id, "at": iso(at)})
    out = []
    for asset, role in rows:
        source = sources[asset.source_id]
        owned = role == "owner"
        origin = None
        if owned and asset.origin_enc and asset.owner.dek_wrapped is not None:
            # the path in the folder it was ingested from: theirs only when they own it
            origin = ctx.vault.open(asset.owner, asset.origin_enc, f"origin:{asset.id}").decode()
        out.append(
            {
                "sha256": asset.sha256,
                "role": role,
                "state": asset.state,
                "media_type": asset.media_type,
                "size": asset.size,
                "width": asset.width,
                "height": asset.height,
                "captured_at": iso(asset.captured_at),
                "collected_at": iso(asset.ingested_at),
                "faces": asset.faces,
                "biometric": bool(asset.biometric),
                "other_people": others.get(asset.id, 0),
                "origin": origin,
                "source": {"name": source.name, "kind": source.kind},
                "also_held_through": sorted(also.get(asset.id, [])),
                "received_from": received.get(asset.id, []),
                "policy_at_collection": _policy(_in_force(policies.get(source.id, []), asset.ingested_at)),
                "policy_now": _policy(_in_force(policies.get(source.id, []), now)),
                "file": None,
                "no_file": None,
                "_id": asset.id,
            }
        )
    return out


def _uses(ctx: Context, session: Session, ref: str, asset_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every dataset version, model, run and other artifact downstream of the subject's
    photos (the lineage walk), and every transfer that carried one of them."""
    graph = lineage(ctx, f"subject:{ref}")
    artifact_ids = [n["artifact_id"] for n in graph.nodes if n.get("artifact_id")]
    run_ids = [n["id"].removeprefix("run:") for n in graph.nodes if n.get("kind") == "run"]
    theirs = dict(
        session.execute(
            select(DatasetMember.dataset_id, func.count())
            .where(DatasetMember.dataset_id.in_(artifact_ids), DatasetMember.asset_id.in_(asset_ids))
            .group_by(DatasetMember.dataset_id)
        ).all()
    )
    versions = {
        v.artifact_id: v
        for v in session.scalars(select(DatasetVersion).where(DatasetVersion.artifact_id.in_(artifact_ids)))
    }
    datasets, models, others = [], [], []
    for a in session.scalars(
        select(Artifact).where(Artifact.id.in_(artifact_ids)).order_by(Artifact.created_at, Artifact.id)
    ):
        entry: dict[str, Any] = {
            "kind": a.kind,
            "name": a.name,
            "version": a.version,
            "state": a.state,
            "created_at": iso(a.created_at),
        }
        if a.id in versions:
            v = versions[a.id]
            datasets.append(
                {
                    **entry,
                    "purpose": v.purpose,
                    "built_at": iso(v.built_at),
                    "your_photos": theirs.get(a.id, 0),
                }
            )
        elif a.kind == "model":
            models.append(entry)
        else:
            others.append(entry)
    runs = [
        {
            "id": r.id,
            "job": r.job,
            "purpose": r.purpose,
            "state": r.state,
            "started_at": iso(r.started_at),
            "ended_at": iso(r.ended_at),
            "recorded_afterwards": bool(r.external),
        }
        for r in session.scalars(select(Run).where(Run.id.in_(run_ids)).order_by(Run.started_at, Run.id))
    ]
    transfers = [
        {
            "id": t.id,
            "direction": "sent" if t.direction == "out" else "received",
            "organisation": peer,
            "dataset": t.dataset or None,
            "purposes": list(t.purposes or []),
            "at": iso(t.at),
            "your_photos": int(n),
        }
        for t, peer, n in session.execute(
            select(Transfer, Peer.name, func.count(TransferItem.asset_id))
            .join(TransferItem, TransferItem.transfer_id == Transfer.id)
            .join(Peer, Peer.id == Transfer.peer_id)
            .where(TransferItem.asset_id.in_(asset_ids))
            .group_by(Transfer.id, Peer.name)
            .order_by(Transfer.at, Transfer.id)
        ).all()
    ]
    return {"datasets": datasets, "models": models, "runs": runs, "other": others, "transfers": transfers}


def _erasures(ctx: Context, ref: str, shas: list[str]) -> list[dict[str, Any]]:
    """The erasure requests of this subject, or of one of their photos."""
    theirs = {("subject", ref)} | {("asset", ctx.vault.photo_fingerprint(s)) for s in shas}
    out = []
    for listed in erasure_service.list_requests(ctx):
        if (listed["scope"]["kind"], listed["scope"]["ref"]) not in theirs:
            continue
        view = erasure_service.show(ctx, listed["id"])
        out.append(
            {
                "id": view["id"],
                "of": "you" if view["scope"]["kind"] == "subject" else "a photo of you",
                "reason": view["reason"],
                "state": view["state"],
                "requested_at": view["created_at"],
                "updated_at": view["updated_at"],
                "counts": {k: v for k, v in view["plan"]["counts"].items() if v},
                "certificate": view["certificate"],
            }
        )
    return out


def _consent(ctx: Context, session: Session, ref: str) -> dict[str, Any]:
    view = subject_view(ctx, ref)
    asset_ids = {c["asset"] for c in view["consent"] if c["asset"]}
    shas = dict(session.execute(select(Asset.id, Asset.sha256).where(Asset.id.in_(asset_ids))).all())
    history = [
        {
            "purpose": c["purpose"],
            "decision": c["decision"],
            "at": c["at"],
            "policy_version": c["policy_version"],
            "photo": shas.get(c["asset"]) if c["asset"] else None,
            "evidence_held": c["evidence"],
        }
        for c in view["consent"]
    ]
    subject = {"ref": view["ref"], "state": view["state"], "key": view["key"], "since": view["created_at"]}
    return {"subject": subject, "now": view["consent_now"], "history": history}


# -- writing -------------------------------------------------------------------------------
def _check_out(ctx: Context, out: Path) -> Path:
    target = out.expanduser().resolve()
    for folder in {Path(ctx.root).resolve(), Path(ctx.home).resolve()}:
        if target == folder or folder in target.parents:
            raise InvalidInput("write the export outside the workspace: it holds photos in clear")
    if target.exists():
        raise InvalidInput(f"{out} already exists; choose another output file")
    if not target.parent.is_dir():
        raise InvalidInput(f"{out.parent} is not a folder")
    return target


def export_subject(
    ctx: Context, subject_id: str, out: str | Path, *, at: str | datetime | None = None
) -> SubjectExport:
    """Write everything held about a subject (external id or ref) to the zip ``out``,
    outside the workspace: their photos, consent, provenance, uses and erasures, as a page
    (``index.html``) and a signed document (``export.json``); audited."""
    instant = when(at)
    target = _check_out(ctx, Path(out))
    with ctx.reader() as session:
        subject = find_subject(session, ctx.vault, subject_id)
        ref = subject.ref
        consent = _consent(ctx, session, ref)
        photos = _photos(ctx, session, subject.id, instant)
        uses = _uses(ctx, session, ref, [p.pop("_id") for p in photos])
    erasures = _erasures(ctx, ref, [p["sha256"] for p in photos])
    files: dict[str, bytes] = {}
    for photo in photos:
        if photo["role"] != "owner":
            photo["no_file"] = (
                "someone else provided this photo; it is listed, not copied, as a copy could "
                "affect the rights of the other people in it (GDPR Art. 15(4))"
            )
        elif photo["state"] not in ("active", "withheld") or consent["subject"]["key"] != "active":
            # (a withheld photo is still held, kept by a legal hold: the person gets it)
            photo["no_file"] = f"the photo is no longer held (it is {photo['state']})"
        else:
            name = f"photos/{photo['sha256']}{_EXTENSIONS.get(photo['media_type'], '.bin')}"
            files[name] = read_asset(ctx, photo["sha256"])
            photo["file"] = name
    body: dict[str, Any] = {
        "schema": SCHEMA,
        "workspace_id": ctx.workspace_id,
        "public_key": ctx.public_key().public_bytes_raw().hex(),
        "generated_at": iso(instant),
        "subject": consent["subject"],
        "photos": photos,
        "consent": {"now": consent["now"], "history": consent["history"]},
        "datasets": uses["datasets"],
        "models": uses["models"],
        "runs": uses["runs"],
        "other_outputs": uses["other"],
        "transfers": uses["transfers"],
        "erasures": erasures,
    }
    signature = base64.b64encode(ctx.sign(canonical(body))).decode()
    document = {"body": body, "signature": signature, "algorithm": ALGORITHM}
    sha256 = _write_zip(ctx, target, document, files, instant)
    recipients = {t["organisation"] for t in uses["transfers"] if t["direction"] == "sent"}
    return {
        "subject": ref,
        "photos": len(photos),
        "photo_files": len(files),
        "consent_records": len(consent["history"]),
        "datasets": len(uses["datasets"]),
        "models": len(uses["models"]),
        "runs": len(uses["runs"]),
        "recipients": len(recipients),
        "erasures": len(erasures),
        "sha256": sha256,
        "path": str(target),
    }


def _write_zip(
    ctx: Context, target: Path, document: SignedDocument, files: Mapping[str, bytes], instant: datetime
) -> str:
    """Write the zip beside ``target`` (0600), audit it, then rename it into place."""
    stamp = (
        max(instant.year, 1980),
        instant.month,
        instant.day,
        instant.hour,
        instant.minute,
        instant.second,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:

        def put(name: str, data: bytes, method: int) -> None:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = method
            info.external_attr = 0o600 << 16
            archive.writestr(info, data)

        put("index.html", render_page(document["body"]).encode("utf-8"), zipfile.ZIP_DEFLATED)
        put("export.json", canonical(document) + b"\n", zipfile.ZIP_DEFLATED)
        for name, data in sorted(files.items()):
            put(name, data, zipfile.ZIP_STORED)
    data = buffer.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    with _placing(target.parent):
        if target.exists():  # checked again: another export may have taken the name meanwhile
            raise InvalidInput(f"{target} already exists; choose another output file")
        if fcntl is not None:  # under the lock no export is writing: a part file is a killed one's
            for stale in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
                wipe_file(str(stale), unlink=True)  # it holds photos in clear
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            with ctx.sessions.begin() as session:
                audit.append(
                    session,
                    "subject.exported",
                    {"subject": document["body"]["subject"]["ref"], "sha256": sha256},
                    actor=ctx.actor,
                    at=instant,
                )
            os.replace(temp, target)
        except BaseException:
            wipe_file(temp, unlink=True)
            raise
    return sha256


@contextmanager
def _placing(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` (released by the kernel if the process
    dies): exports into one folder check, audit and rename their files one at a time, so two
    at once to one name never both succeed with one replacing the other."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- checking ------------------------------------------------------------------------------
def verify_export(
    document: Mapping[str, Any], public_key: bytes, *, files: Mapping[str, bytes] | None = None
) -> CertificateCheck:
    """Check an export's ``export.json`` offline: the algorithm, the schema and the
    signature under ``public_key`` (PEM or 64 hex digits); with ``files`` (the zip's
    members, name -> bytes), also that each listed photo's file has its sha256."""
    body = document.get("body")
    signature = document.get("signature")
    if not isinstance(body, dict) or not isinstance(signature, str):
        return CertificateCheck(False, "not a disgorge export (no body or signature)", "top level")
    if document.get("algorithm") != ALGORITHM:
        return CertificateCheck(False, "unsupported signature algorithm (only Ed25519)", "algorithm")
    if body.get("schema") != SCHEMA:
        return CertificateCheck(False, f"unknown schema {body.get('schema')!r}", "body.schema")
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        return CertificateCheck(False, "signature is not base64", "signature")
    try:
        load_public_key(public_key).verify(raw, canonical(body))
    except InvalidSignature:
        return CertificateCheck(
            False, "signature does not match: the export was altered or signed by another key", "signature"
        )
    for i, photo in enumerate(body.get("photos") or []):
        name = photo.get("file")
        if files is None or not name:
            continue
        data = files.get(name)
        if data is None or hashlib.sha256(data).hexdigest() != photo.get("sha256"):
            return CertificateCheck(False, f"photo file {name} is missing or altered", f"body.photos[{i}]")
    checked = "; every photo file matches its sha256" if files is not None else ""
    return CertificateCheck(True, "signature valid" + checked)
