"""Receiving what a sender sent: a bundle, or the record of a legacy transfer.

``receive_bundle`` is the recipient's side of :mod:`.share`: the bundle is checked whole
(registered sender, addressed to this workspace, signature, every photo's sha256), then
ingested into a source of its own whose policy allows exactly the declared purposes, and
each item's scope is recorded as per-photo consent *scoped to this transfer*
(``ConsentRecord.transfer_id``), so this workspace's gate applies the sender's terms to
what came through this transfer only: a photo shared for ``ai_inference`` cannot be
trained on here, and a bundle that carries bytes this workspace already held from
elsewhere adds a provenance with its own terms instead of relabelling the photo (the gate
requires every provenance to allow a use: design note 19).

``receive_legacy`` records that photos ingested here as a source of our own came from a
registered sender outside disgorge, so that the sender's erasure requests reach them.
"""

from __future__ import annotations

import csv
import hashlib
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, NotRequired

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._time import parse_instant
from ..catalog.models import Asset, AssetSubject, ConsentRecord, Peer, Source, Transfer, TransferItem
from ..consent import parse_purpose
from ..context import Context, when
from ..errors import InvalidInput
from ..ingest.service import ingest
from ..sources import add_policy, add_source
from .bundle import allowed_purposes, read_bundle
from .peers import find_peer, peer_by_key

__all__ = ["BundleReceived", "LegacyTransfer", "RejectedFile", "receive_bundle", "receive_legacy"]


class RejectedFile(TypedDict):
    path: str
    reason: str


class BundleReceived(TypedDict):
    """What :func:`receive_bundle` did; a bundle received before gives only the keys
    that are not marked ``NotRequired`` (``already_received``: true)."""

    transfer: str
    sender: str
    source: NotRequired[str]
    purposes: NotRequired[list[str]]
    items: int
    ingested: int
    duplicates: NotRequired[int]
    rejected: list[RejectedFile]
    consent_grants: NotRequired[int]
    already_received: bool


class LegacyTransfer(TypedDict):
    """What :func:`receive_legacy` recorded."""

    transfer: str
    sender: str
    source: str
    items: int
    added: int


def receive_bundle(ctx: Context, path: str | Path, *, at: str | datetime | None = None) -> BundleReceived:
    """Check a bundle from a registered sender whole, then ingest it under its terms (as a
    transfer from its sender); ``at``: when it was received (default: when it was shared)."""
    path = Path(path)
    _doc, body, photos = read_bundle(path, max_photo_bytes=ctx.config.max_file_bytes)
    with ctx.reader() as session:
        sender = peer_by_key(session, "sender", body["public_key"])
        if sender is None:
            raise InvalidInput(
                f"{path.name} is signed by a key no registered sender holds "
                f"({body['public_key'][:16]}...); register the sender with `disgorge sender add`"
            )
        if body.get("recipient_key") != ctx.public_key().public_bytes_raw().hex():
            raise InvalidInput(
                f"{path.name} was made for another workspace (recipient {body.get('recipient')!r})"
            )
        transfer_id = str(body.get("transfer", ""))
        if len(transfer_id) != 32:
            raise InvalidInput(f"{path.name}: the manifest names no transfer id")
        earlier = session.get(Transfer, transfer_id)
        if earlier is not None:
            return {
                "transfer": transfer_id,
                "sender": sender.name,
                "already_received": True,
                "items": earlier.items,
                "ingested": 0,
                "rejected": [],
            }
    shared_at = parse_instant(body.get("shared_at", ""), what="shared_at")
    recorded_at = when(at) if at is not None else shared_at
    purposes = sorted({parse_purpose(p).value for p in body.get("purposes", [])})
    source_name = f"{sender.name}/{transfer_id[:12]}"
    _ensure_source(ctx, source_name, sender, transfer_id, purposes, shared_at, recorded_at)

    items = body["items"]
    with tempfile.TemporaryDirectory(prefix="disgorge-bundle-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        manifest = Path(tmp) / "manifest.csv"
        with manifest.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "subject", "depicted", "captured_at"])
            for item in items:
                name = item["path"].removeprefix("photos/")
                (folder / name).write_bytes(photos[item["sha256"]])
                writer.writerow(
                    [
                        name,
                        _external(sender, item.get("subject")),
                        ";".join(_external(sender, d) for d in item.get("depicted", [])),
                        item.get("captured_at") or "",
                    ]
                )
        report = ingest(ctx, folder, source=source_name, manifest=manifest, at=recorded_at, workers=1)

    with ctx.sessions.begin() as session:
        by_sha = dict(
            session.execute(
                select(Asset.sha256, Asset.id).where(Asset.sha256.in_([i["sha256"] for i in items]))
            ).all()
        )
        received = [i for i in items if i["sha256"] in by_sha]
        session.add(
            Transfer(
                id=transfer_id,
                direction="in",
                peer_id=sender.id,
                dataset=str(body.get("dataset", "")),
                source_id=session.scalar(select(Source.id).where(Source.name == source_name)),
                purposes=purposes,
                at=shared_at,
                items=len(received),
                bundle_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                id_kind="fingerprint",
            )
        )
        session.flush()
        grants = 0
        for item in received:
            asset_id = by_sha[item["sha256"]]
            session.add(
                TransferItem(transfer_id=transfer_id, asset_id=asset_id, fingerprint=item["fingerprint"])
            )
            allowed = set(purposes)
            for assertion in item.get("assertions", []):
                if assertion.get("label") == "cawg.training-mining":
                    allowed &= set(allowed_purposes(assertion))
            subject_ids = session.scalars(
                select(AssetSubject.subject_id).where(AssetSubject.asset_id == asset_id)
            )
            for subject_id in subject_ids:
                for purpose in purposes:  # what the item's own assertion narrows is denied for it
                    decision = "granted" if purpose in allowed else "denied"
                    grants += _grant(
                        session, subject_id, asset_id, purpose, decision, shared_at, transfer_id, recorded_at
                    )
        audit.append(
            session,
            "transfer.received",
            {
                "transfer": transfer_id,
                "sender": sender.name,
                "source": source_name,
                "purposes": purposes,
                "items": len(received),
                "rejected": len(report.rejected),
            },
            actor=ctx.actor,
            at=recorded_at,
        )
    return {
        "transfer": transfer_id,
        "sender": sender.name,
        "source": source_name,
        "purposes": purposes,
        "items": len(received),
        "ingested": report.ingested,
        "duplicates": report.duplicates,
        "rejected": [{"path": r.path, "reason": r.reason} for r in report.rejected],
        "consent_grants": grants,
        "already_received": False,
    }


def _external(sender: Peer, ref: Any) -> str:
    """The sender's pseudonym, re-keyed here: the two workspaces' refs cannot be linked."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput("a bundle item names no subject")
    return f"{sender.name}/{ref}"


def _ensure_source(
    ctx: Context,
    name: str,
    sender: Peer,
    transfer_id: str,
    purposes: list[str],
    shared_at: datetime,
    recorded_at: datetime,
) -> None:
    with ctx.reader() as session:
        exists = session.scalar(select(Source.id).where(Source.name == name)) is not None
    if exists:  # an earlier receive of this bundle stopped after ingesting: go on
        return
    add_source(ctx, name, kind="transfer", description=f"received from {sender.name}", at=recorded_at)
    add_policy(
        ctx,
        name,
        f"transfer-{transfer_id[:12]}",
        text=f"terms of transfer {transfer_id} from {sender.name}: {', '.join(purposes)}".encode(),
        effective_from=shared_at,
        allows=purposes,
        at=recorded_at,
    )


def _grant(
    session: Session,
    subject_id: int,
    asset_id: str,
    purpose: str,
    decision: str,
    at: datetime,
    transfer_id: str,
    recorded_at: datetime,
) -> int:
    """One per-photo decision from the transfer's terms, scoped to the transfer: it counts
    only when the photo is used through this provenance (design note 19)."""
    row_key = hashlib.sha256(f"transfer|{transfer_id}|{subject_id}|{asset_id}|{purpose}".encode()).hexdigest()
    if session.scalar(select(ConsentRecord.id).where(ConsentRecord.row_key == row_key)) is not None:
        return 0
    session.add(
        ConsentRecord(
            subject_id=subject_id,
            asset_id=asset_id,
            purpose=purpose,
            decision=decision,
            at=at,
            policy_version=f"transfer-{transfer_id[:12]}",
            row_key=row_key,
            recorded_at=recorded_at,
            transfer_id=transfer_id,
        )
    )
    return int(decision == "granted")


def receive_legacy(
    ctx: Context, sender: str, *, source: str, at: str | datetime | None = None
) -> LegacyTransfer:
    """Record a legacy transfer from a sender: the active photos of ``source`` came from it.

    Before bundles, photos travelled without a manifest and were ingested here as a source
    of our own. A sender's erasure request reaches only what that sender sent (its transfer
    items), so without this record its legacy requests (by sha256) reach nothing. One
    transfer per sender and source, with an id derived from both: recording it again adds
    the photos ingested since."""
    instant = when(at)
    transfer_id = hashlib.sha256(f"legacy|{sender}|{source}".encode()).hexdigest()[:32]
    with ctx.sessions.begin() as session:
        peer = find_peer(session, "sender", sender)
        src = session.scalar(select(Source).where(Source.name == source))
        if src is None:
            raise InvalidInput(f"no source named {source!r}; ingest the sender's photos into one first")
        if src.kind == "transfer":
            raise InvalidInput(f"source {source!r} holds a bundle's photos: its transfer is already recorded")
        transfer = session.get(Transfer, transfer_id)
        if transfer is None:
            transfer = Transfer(
                id=transfer_id,
                direction="in",
                peer_id=peer.id,
                dataset="",
                source_id=src.id,
                purposes=[],
                at=instant,
                items=0,
                bundle_sha256="",
                backfilled=1,
                id_kind="sha256",
            )
            session.add(transfer)
            session.flush()
        held = set(
            session.scalars(select(TransferItem.asset_id).where(TransferItem.transfer_id == transfer_id))
        )
        new = [
            a
            for a in session.scalars(
                select(Asset.id).where(Asset.source_id == src.id, Asset.state == "active")
            )
            if a not in held
        ]
        session.add_all(TransferItem(transfer_id=transfer_id, asset_id=a, fingerprint="") for a in new)
        transfer.items = len(held) + len(new)
        audit.append(
            session,
            "transfer.legacy_recorded",
            {"transfer": transfer_id, "sender": peer.name, "source": src.name, "added": len(new)},
            actor=ctx.actor,
            at=instant,
        )
    return {
        "transfer": transfer_id,
        "sender": sender,
        "source": source,
        "items": len(held) + len(new),
        "added": len(new),
    }
