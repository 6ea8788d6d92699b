"""The erasure ledger: what each erasure removed, kept outside the catalog, so that
restoring the catalog from a backup cannot bring erased people back.

A backup of the catalog (and of the blob store) taken before an erasure still holds the
photos, their wrapped data keys and their consent; the KEK that opens them lives on. So
every erasure, once its local removal is done (the ``record_ledger`` step, right after
``shred_keys``), writes one signed file into the ledger folder (``[ledger] path`` in the
workspace's ``config.toml``; put it on storage the catalog's backups do not roll back):
the keyed fingerprints of the photos it erased, the sealed PDQ hashes of the sticky
blocklist (wrapped by the KEK, not by a key the catalog holds), the pseudonymous refs of
the subjects whose keys it destroyed, the models it retired, and the audit log's head at
that moment. None of it is a photo or a name.

Opening a workspace compares the ledger with the catalog (:func:`missing`): an entry the
catalog does not know (neither its erasure nor a replay of it) means the catalog was
restored from a backup taken before that erasure, and the workspace refuses to open
until ``disgorge restore-check`` has replayed it (:mod:`disgorge.dsr.restore`).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .._time import iso, utcnow
from ..catalog import in_chunks
from ..catalog.dsr_models import ErasedHashes
from ..catalog.models import AuditEvent, ErasedFingerprint, ErasureRequest, ErasureStep, Meta, Subject
from ..context import Context
from ..errors import IntegrityError
from ..signing import ALGORITHM
from ._step import Execution, step
from .certificate import canonical

__all__ = [
    "LEDGER_SCHEMA",
    "entries",
    "ledger_dir",
    "missing",
    "record_ledger",
    "replayed_key",
    "unwrap_hashes",
]

LEDGER_SCHEMA = "disgorge.erasure-ledger/1"
#: the KEK's associated data for an entry's blocklist hashes (bound to the request)
_HASHES_AAD = b"disgorge:ledger-hashes:"
#: states of an erasure that a resume takes to its end
_IN_FLIGHT = ("approved", "executing", "verifying", "awaiting_recipients", "failed")


def ledger_dir(ctx: Context) -> Path:
    """The ledger folder (``[ledger] path`` of the config, relative to the workspace home)."""
    return ctx.config.resolved_ledger_path()


def replayed_key(request_id: str) -> str:
    """The ``meta`` key that records that a ledger entry was replayed into this catalog."""
    return f"ledger_replayed:{request_id}"


def _hashes(session: Session, ctx: Context, request_id: str) -> list[str]:
    """The request's sticky-blocklist rows, opened and wrapped by the KEK (base64)."""
    from ..vision.blocklist import BLOCKLIST_AAD

    rows = session.scalars(select(ErasedHashes.sealed).where(ErasedHashes.request_id == request_id)).all()
    if not rows:
        return []
    from ..vault import open_sealed

    key_row = session.get(Meta, "blocklist_key")
    assert key_row is not None  # rows are sealed under it
    key = ctx.kek.unwrap(key_row.value, BLOCKLIST_AAD)
    aad = b"disgorge:erased-hashes:" + request_id.encode()
    opened = b"".join(open_sealed(key, sealed, aad, what="erased hashes") for sealed in rows)
    return [base64.b64encode(ctx.kek.wrap(opened, _HASHES_AAD + request_id.encode())).decode()]


def unwrap_hashes(ctx: Context, entry: dict[str, Any]) -> list[bytes]:
    """An entry's blocklist hashes, one 256-byte value per erased photo."""
    photos: list[bytes] = []
    for wrapped in entry.get("blocklist", []):
        data = ctx.kek.unwrap(base64.b64decode(wrapped), _HASHES_AAD + entry["request_id"].encode())
        photos += [data[i : i + 256] for i in range(0, len(data), 256)]
    return photos


@step("record_ledger")
def record_ledger(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """A signed entry in the erasure ledger, outside the catalog: what this erasure removed
    (keyed fingerprints, sealed hashes, subject refs, models), so a restored backup cannot
    bring it back."""
    ctx = execution.ctx
    with ctx.reader() as session:
        fingerprints = sorted(
            session.scalars(
                select(ErasedFingerprint.fingerprint).where(ErasedFingerprint.request_id == req.id)
            )
        )
        subjects = sorted(
            ref
            for part in in_chunks(req.plan["subjects_to_shred"])
            for ref in session.scalars(select(Subject.ref).where(Subject.id.in_(part)))
        )
        head = session.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        ).first()
        blocklist = _hashes(session, ctx, req.id)
    models = [m["id"] for m in req.plan["models_retire"]] if req.scope_kind == "model" else []
    body = {
        "schema": LEDGER_SCHEMA,
        "request_id": req.id,
        "workspace_id": ctx.workspace_id,
        "scope": req.plan["scope"],
        "recorded_at": iso(utcnow()),
        "audit_head": {"seq": head.seq, "hash": head.hash} if head else None,
        "fingerprints": fingerprints,
        "subjects": subjects,
        "models": models,
        "blocklist": blocklist,
    }
    signature = base64.b64encode(ctx.sign(canonical(body))).decode()
    folder = ledger_dir(ctx)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{req.created_at:%Y%m%dT%H%M%S}-{req.id}.json"
    _write_atomically(path, json.dumps({"body": body, "signature": signature, "algorithm": ALGORITHM}))
    # counts only: the summary is the same whichever run of the step wrote the entry
    return {"photos": len(fingerprints), "subjects": len(subjects)}


def _write_atomically(path: Path, text: str) -> None:
    """Write, fsync, rename, fsync the folder: the entry is whole or absent after a crash."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _read(ctx: Context, path: Path) -> dict[str, Any]:
    """One entry's body, its signature checked with the workspace's key (a file that does
    not verify is an :class:`IntegrityError` naming it)."""
    from cryptography.exceptions import InvalidSignature

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        body = document["body"]
        ctx.public_key().verify(base64.b64decode(document["signature"]), canonical(body))
    except (ValueError, KeyError, TypeError, InvalidSignature):
        raise IntegrityError(
            f"erasure ledger entry {path.name} is damaged or not signed by this workspace; "
            "restore it from the ledger's own copy"
        ) from None
    if body.get("schema") != LEDGER_SCHEMA or body.get("workspace_id") != ctx.workspace_id:
        raise IntegrityError(f"erasure ledger entry {path.name} is not this workspace's")
    return dict(body)


def entries(ctx: Context) -> list[dict[str, Any]]:
    """Every ledger entry's body, oldest first, each signature checked."""
    folder = ledger_dir(ctx)
    if not folder.is_dir():
        return []
    return [_read(ctx, path) for path in sorted(folder.glob("*.json"))]


def missing(ctx: Context) -> list[dict[str, Any]]:
    """Ledger entries the catalog knows nothing of: neither their erasure (its
    ``record_ledger`` step done, or in flight) nor a replay of them. Not empty: the catalog
    was restored from a backup taken before those erasures.

    Opening a workspace calls this, so it reads file names first (an entry is named by its
    request's id) and opens, and checks the signature of, only the entries the catalog
    does not know."""
    folder = ledger_dir(ctx)
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".json")]
    except FileNotFoundError:
        return []
    if not names:
        return []
    # plain strings, and one query per kind of knowledge: at 50,000 entries this is a few
    # tens of milliseconds (docs/benchmarks.md), where sorting Paths and a query per 500
    # names took seconds
    named = {n[: -len(".json")].partition("-")[2]: n for n in names}
    with ctx.reader() as session:
        known = set(
            session.scalars(
                select(ErasureStep.request_id).where(
                    ErasureStep.name == "record_ledger", ErasureStep.done_at.is_not(None)
                )
            )
        )
        # in flight (a crash after the entry was written, before its step was marked):
        # the catalog knows it, and resuming it finishes it
        known.update(session.scalars(select(ErasureRequest.id).where(ErasureRequest.state.in_(_IN_FLIGHT))))
        prefix = replayed_key("")
        replayed = session.scalars(select(Meta.key).where(Meta.key.startswith(prefix)))
        known.update(k[len(prefix) :] for k in replayed)
    ids = sorted(set(named) - known)
    unknown = [folder / named[i] for i in ids]
    bodies = [_read(ctx, path) for path in unknown]
    # an entry whose name and body disagree was renamed: never trust the name alone
    for path, body in zip(unknown, bodies, strict=True):
        if path.stem.partition("-")[2] != body["request_id"]:
            raise IntegrityError(f"erasure ledger entry {path.name} names another erasure inside")
    return sorted(bodies, key=lambda b: (b["recorded_at"], b["request_id"]))
