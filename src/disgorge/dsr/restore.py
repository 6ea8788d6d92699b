"""Restore without resurrection: replay, into a catalog restored from a backup, the
erasures the ledger recorded after that backup was taken.

The erasure ledger (:mod:`disgorge.erasure.ledger`) lives outside the catalog and lists,
signed, what each erasure removed. After a restore, the workspace refuses to open while a
ledger entry is unknown to the catalog; ``disgorge restore-check`` then, for each such
entry, oldest first:

1. finds the photos it erased by their keyed fingerprints (the backup holds them whole),
   the subjects whose keys it destroyed by their refs, and the models it retired;
2. erases them again through the normal erasure path (plan, journal, verification, a
   signed certificate naming the erasure it replays), approved by the workspace: the
   erasure was decided before; legal holds still apply;
3. puts back the re-ingestion fingerprints and the sealed blocklist hashes of every photo
   the entry lists, also those the backup never held, so that neither the photo nor a
   near-copy of it can come back in later;
4. records the replay in the catalog, in the same transaction as step 3.

It also reports whether the audit log was rolled back: an entry names the log's head when
it was written; a restored log that lacks that head has lost events, and certificates
issued meanwhile name a tree head this log can no longer prove.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from typing_extensions import TypedDict

from .. import audit
from ..catalog import in_chunks
from ..catalog.models import Artifact, Asset, AuditEvent, ErasedFingerprint, ErasureRequest, Meta, Subject
from ..context import Context, when
from ..erasure import service as erasure_service
from ..erasure.ledger import entries, missing, replayed_key, unwrap_hashes
from ..vision import blocklist

__all__ = ["AuditRollback", "Replayed", "RestoreReport", "restore_check"]


class Replayed(TypedDict):
    """One ledger entry replayed (or, in a dry run, what replaying it would do)."""

    #: the erasure the ledger recorded
    request: str
    #: the erasure that replayed it (None in a dry run)
    replay: str | None
    #: photos of the entry this catalog still held, and erased again
    photos: int
    subjects: int
    models: int
    #: fingerprints and blocklist hashes put back (every photo the entry lists)
    fingerprints: int
    hashes: int


class AuditRollback(TypedDict):
    #: the last event of this catalog's audit log
    head_seq: int
    #: the newest head the ledger saw
    ledger_head_seq: int | None
    #: this log lacks events the ledger saw (it was restored from an older copy)
    rolled_back: bool


class RestoreReport(TypedDict):
    """What ``disgorge restore-check`` found and did."""

    ledger_entries: int
    missing: int
    replayed: list[Replayed]
    audit: AuditRollback
    dry_run: bool
    #: nothing is missing any more (after a dry run: nothing was missing)
    ok: bool


def _rollback(ctx: Context, bodies: list[dict[str, Any]]) -> AuditRollback:
    heads = [b["audit_head"] for b in bodies if b.get("audit_head")]
    newest = max(heads, key=lambda h: h["seq"]) if heads else None
    with ctx.reader() as session:
        head = session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0
        at_seq = (
            session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == newest["seq"])) if newest else None
        )
    return {
        "head_seq": head,
        "ledger_head_seq": newest["seq"] if newest else None,
        "rolled_back": newest is not None and at_seq != newest["hash"],
    }


def _fingerprints(ctx: Context) -> dict[str, str]:
    """Keyed fingerprint -> id of every photo not erased (what a replay can find)."""
    found: dict[str, str] = {}
    with ctx.reader() as session:
        for asset_id, sha in session.execute(
            select(Asset.id, Asset.sha256).where(Asset.state.in_(("active", "withheld")))
        ):
            found[ctx.vault.photo_fingerprint(sha)] = asset_id
    return found


def restore_check(ctx: Context, *, dry_run: bool = False, at: str | datetime | None = None) -> RestoreReport:
    """Replay every erasure the ledger holds and the catalog does not (see the module);
    ``dry_run`` says what would be replayed and changes nothing."""
    instant = when(at)
    bodies = entries(ctx)
    rollback = _rollback(ctx, bodies)
    todo = missing(ctx)
    by_fingerprint = _fingerprints(ctx) if todo else {}
    replayed: list[Replayed] = []
    for body in todo:
        photos = sorted({by_fingerprint[f] for f in body["fingerprints"] if f in by_fingerprint})
        with ctx.reader() as session:
            subjects = [
                s
                for part in in_chunks(body["subjects"])
                for s in session.scalars(
                    select(Subject.id).where(Subject.ref.in_(part), Subject.state == "active")
                )
            ]
            models = [
                m
                for m in body["models"]
                if session.scalar(select(Artifact.state).where(Artifact.id == m)) in ("active", "withheld")
            ]
        hashes = unwrap_hashes(ctx, body)
        row: Replayed = {
            "request": body["request_id"],
            "replay": None,
            "photos": len(photos),
            "subjects": len(subjects),
            "models": len(models),
            "fingerprints": len(body["fingerprints"]),
            "hashes": len(hashes),
        }
        if not dry_run:
            row["replay"] = _replay(ctx, body, photos, subjects, models, hashes, instant)
        replayed.append(row)
    return {
        "ledger_entries": len(bodies),
        "missing": len(todo),
        "replayed": replayed,
        "audit": rollback,
        "dry_run": dry_run,
        "ok": not todo if dry_run else not missing(ctx),
    }


def _earlier_replay(ctx: Context, original: str) -> str | None:
    """The replay of ``original`` a killed ``restore-check`` left (finished here if it
    was interrupted), or None: a second run finishes the first's instead of planning anew,
    which the open one would block."""
    with ctx.reader() as session:
        row = session.execute(
            select(ErasureRequest.id, ErasureRequest.state)
            .where(
                ErasureRequest.scope_kind == "set",
                ErasureRequest.scope_ref == f"restore:{original}",
                ErasureRequest.state.not_in(("cancelled", "denied")),
            )
            .order_by(ErasureRequest.created_at.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    if row.state == "planned":
        erasure_service.approve(ctx, row.id)
    elif row.state != "completed":
        erasure_service.resume(ctx, row.id)
    return str(row.id)


def _replay(
    ctx: Context,
    body: dict[str, Any],
    photos: list[str],
    subjects: list[int],
    models: list[str],
    hashes: list[bytes],
    at: datetime,
) -> str:
    """Erase what the backup brought back, then put back the entry's fingerprints and
    blocklist hashes and record the replay, in one transaction."""
    original = body["request_id"]
    # an erasure even when the backup held none of it: its fingerprints and hashes need a
    # request to belong to, and its certificate says the replay happened
    members = {
        "assets": photos,
        "subjects": subjects,
        "models": models,
        "why": f"erased by {original}; brought back by a restore",
        "replays": original,
    }
    replay = _earlier_replay(ctx, original)
    if replay is None:
        replay = erasure_service.erase_set(
            ctx,
            f"restore:{original}",
            members,
            reason=f"replay of erasure {original} after a restore from an older backup",
            at=at,
        )["id"]
    with ctx.sessions.begin() as session:
        known = {
            f
            for part in in_chunks(body["fingerprints"])
            for f in session.scalars(
                select(ErasedFingerprint.fingerprint).where(ErasedFingerprint.fingerprint.in_(part))
            )
        }
        new = [f for f in body["fingerprints"] if f not in known]
        if new:
            session.execute(
                insert(ErasedFingerprint),
                [{"fingerprint": f, "request_id": replay, "erased_at": at} for f in new],
            )
        if hashes:
            blocklist.keep(session, ctx.kek, replay, hashes, at=at)
        session.add(Meta(key=replayed_key(original), value=replay.encode()))
        audit.append(
            session,
            "restore.replayed",
            {"request": original, "replay": replay, "recorded_at": body.get("recorded_at")},
            actor=ctx.actor,
            at=at,
        )
    return replay
