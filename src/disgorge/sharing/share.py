"""Sending a dataset version to a recipient, and receiving what a sender sent.

``share`` checks every item through the consent gate for ``third_party_sharing`` and
for each purpose the recipient declared, ships only what is covered (the rest is
reported by rule), writes a signed bundle, and records the transfer as a run whose
output is an artifact of kind ``transfer`` (so lineage reaches it) with one row per
item. Each photo leaves without its location metadata (EXIF GPS, XMP, IPTC: see
``metadata.py``) unless ``keep_metadata``; the manifest gives the sha256 of the bytes that
left, and the transfer row keeps the sender's fingerprint of its own stored photo, which is
what later erasure requests name. A backfilled transfer (``at`` in the past, no bundle)
records a legacy export as it happened: every member, under an override when the gate
would not have allowed it.

``receive_bundle`` is the recipient's side: the bundle is checked whole (registered
sender, addressed to this workspace, signature, every photo's sha256), then ingested
into a source of its own whose policy allows exactly the declared purposes, and each
item's scope is recorded as per-photo consent *scoped to this transfer*
(``ConsentRecord.transfer_id``), so this workspace's gate applies the sender's terms to
what came through this transfer only: a photo shared for ``ai_inference`` cannot be
trained on here, and a bundle that carries bytes this workspace already held from
elsewhere adds a provenance with its own terms instead of relabelling the photo (the gate
requires every provenance to allow a use: design note 19).
"""

from __future__ import annotations

import csv
import hashlib
import tempfile
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from .. import audit
from .._time import iso, parse_instant
from ..catalog.models import Asset, AssetSubject, ConsentRecord, Peer, Source, Subject, Transfer, TransferItem
from ..consent import ConsentGate, ItemRef, Purpose, parse_purpose
from ..errors import ConsentDenied, InvalidInput
from .bundle import allowed_purposes, cawg_assertion, photo_path, read_bundle, write_bundle
from .documents import BUNDLE_TYPE, sign_document
from .metadata import strip_location
from .peers import find_peer, peer_by_key

__all__ = ["receive_bundle", "receive_legacy", "share", "shared_fingerprint"]


def shared_fingerprint(vault: Any, sha256_hex: str) -> str:
    """How erasure requests name a shared photo: keyed, so a request reveals nothing to
    anyone who does not hold the photo and the bundle's manifest."""
    return vault.fingerprint(bytes.fromhex(sha256_hex), domain="shared-photo")


def share(
    ws: Any,
    dataset: str,
    *,
    recipient: str,
    purposes: list[str],
    out: Path | None,
    at: datetime,
    backfill: bool = False,
    override: tuple[str, str] | None = None,
    keep_metadata: bool = False,
) -> dict[str, Any]:
    from ..datasets import find_dataset
    from ..training.registry import dataset_members

    declared = sorted({parse_purpose(p).value for p in purposes})
    if not declared:
        raise InvalidInput("declare at least one purpose the recipient may use the photos for (--purpose)")
    if not backfill and out is None:
        raise InvalidInput("a transfer needs an output file for its bundle (-o BUNDLE.zip)")
    if backfill and out is not None:
        raise InvalidInput("a backfilled transfer records a legacy export: it writes no bundle")
    if out is not None and out.exists():
        raise InvalidInput(f"{out} already exists; choose another output file")
    if out is not None and Path(ws.root).resolve() in out.resolve().parents:
        raise InvalidInput("write the bundle outside the workspace: it holds photos in clear")
    if keep_metadata and out is None:
        raise InvalidInput("--keep-metadata is about the photos of a bundle; a legacy transfer writes none")

    with ws.reader() as session:
        peer = find_peer(session, "recipient", recipient)
        ds = find_dataset(session, dataset)
        members = dataset_members(session, ds.artifact_id)
        rows = session.execute(
            select(Asset.id, Asset.sha256, Asset.source_id, Asset.owner_id, Asset.media_type).where(
                Asset.id.in_(members), Asset.state == "active"
            )
        ).all()
        refs = [ItemRef(r.id, r.source_id, r.owner_id) for r in rows]
        refused: Counter[str] = Counter()
        bad: set[str] = set()
        for purpose in [Purpose.THIRD_PARTY_SHARING.value, *declared]:
            for asset_id, verdict in ConsentGate(session, purpose, at).evaluate(refs).items():
                if not verdict.allowed:
                    refused[f"{purpose}: {verdict.rule}"] += 1
                    bad.add(asset_id)
    if backfill:
        if bad and override is None:
            raise ConsentDenied(
                f"the transfer of {ds.name}@{ds.version} to {recipient!r} at {iso(at)}: {len(bad)} of "
                f"{len(rows)} photos were not covered ({_rules(refused)}); a legacy export is recorded "
                "as it happened, so record it under an override (a role and a justification)"
            )
        shipped = list(rows)
    else:
        if override is not None:
            raise InvalidInput("a transfer with a bundle ships only covered photos: it takes no override")
        shipped = [r for r in rows if r.id not in bad]
        if not shipped:
            raise ConsentDenied(
                f"none of the {len(rows)} photos of {ds.name}@{ds.version} may go to {recipient!r} "
                f"for {', '.join(declared)} ({_rules(refused)})"
            )
    transfer_id = uuid.uuid4().hex
    fingerprints = {r.id: shared_fingerprint(ws.vault, r.sha256) for r in shipped}
    summary = {
        "transfer": transfer_id,
        "recipient": peer.name,
        "dataset": f"{ds.name}@{ds.version}",
        "purposes": declared,
        "items": len(shipped),
        "excluded": 0 if backfill else len(bad),
        "backfilled": backfill,
    }

    bundle_sha256 = ""
    if out is not None:
        subjects = _subjects(ws, [r.id for r in shipped])
        sent: dict[str, str] = {}  # asset id -> sha256 of the bytes that left
        sent_shas: set[str] = set()  # the same values, to look up in O(1)
        stripped: set[str] = set()

        def photos() -> Any:
            for r in shipped:
                data = ws.read_asset(r.sha256)
                if not keep_metadata:
                    clean = strip_location(data, r.media_type)
                    if clean is not data:
                        stripped.add(r.id)
                    data = clean
                sha = hashlib.sha256(data).hexdigest()
                if sha in sent_shas:  # two photos that differed only in their metadata
                    continue
                sent[r.id] = sha
                sent_shas.add(sha)
                yield photo_path(sha, r.media_type), data

        def manifest() -> dict[str, Any]:
            items = []
            for r in shipped:
                if r.id not in sent:
                    continue
                owner, depicted, source, captured = subjects[r.id]
                items.append(
                    {
                        "path": photo_path(sent[r.id], r.media_type),
                        "sha256": sent[r.id],
                        "fingerprint": fingerprints[r.id],
                        "subject": owner,
                        "depicted": depicted,
                        "source": source,
                        "captured_at": captured,
                        "media_type": r.media_type,
                        "metadata": "location_stripped" if r.id in stripped else "as_stored",
                        "assertions": [cawg_assertion(declared)],
                    }
                )
            return sign_document(
                ws,
                {
                    "type": BUNDLE_TYPE,
                    "transfer": transfer_id,
                    "sender_workspace": ws.workspace_id,
                    "recipient": peer.name,
                    "recipient_key": peer.public_key.hex(),
                    "dataset": f"{ds.name}@{ds.version}",
                    "purposes": declared,
                    "shared_at": iso(at),
                    "location_metadata": "kept" if keep_metadata else "stripped",
                    "items": items,
                },
            )

        bundle_sha256 = write_bundle(out, photos(), manifest)
        if len(sent) < len(shipped):
            summary["excluded"] += len(shipped) - len(sent)
            refused["same bytes as another photo once its location metadata was stripped"] += len(
                shipped
            ) - len(sent)
            shipped = [r for r in shipped if r.id in sent]
            summary["items"] = len(shipped)
        summary["location_metadata"] = "kept" if keep_metadata else "stripped"
        summary["location_stripped"] = len(stripped & set(sent))

    handle = ws._start_run(
        f"share:{peer.name}",
        Purpose.THIRD_PARTY_SHARING.value,
        [f"asset:{r.sha256}" for r in shipped],
        {"dataset": f"{ds.name}@{ds.version}", "purposes": declared, "backfilled": backfill},
        "",
        at,
        override,
        external=backfill,
    )
    try:
        handle.add_output(
            "transfer",
            name=peer.name,
            version=transfer_id[:12],
            extra={"transfer": transfer_id, "purposes": declared, "items": len(shipped)},
        )
        with ws.sessions.begin() as session:
            artifact_id = _artifact_of(session, handle.id)
            session.add(
                Transfer(
                    id=transfer_id,
                    direction="out",
                    peer_id=peer.id,
                    artifact_id=artifact_id,
                    dataset=f"{ds.name}@{ds.version}",
                    purposes=declared,
                    at=at,
                    items=len(shipped),
                    bundle_sha256=bundle_sha256,
                    backfilled=int(backfill),
                    id_kind="sha256" if backfill else "fingerprint",
                )
            )
            session.flush()
            session.add_all(
                TransferItem(transfer_id=transfer_id, asset_id=r.id, fingerprint=fingerprints[r.id])
                for r in shipped
            )
            audit.append(session, "transfer.shared", summary, actor=ws.actor, at=at)
    except BaseException:
        if out is not None:
            out.unlink(missing_ok=True)
        ws._finish_run(handle, "failed", at)
        raise
    ws._finish_run(handle, "completed", at)
    return {
        **summary,
        "excluded_by_rule": {} if backfill else dict(refused.most_common()),
        "not_covered_at_the_time": len(bad) if backfill else 0,
        "bundle": str(out) if out is not None else None,
        "bundle_sha256": bundle_sha256 or None,
        "run": handle.id,
    }


def _rules(counts: Counter[str]) -> str:
    return ", ".join(f"{rule}: {n}" for rule, n in counts.most_common())


def _artifact_of(session: Any, run_id: str) -> str:
    from ..catalog.models import Artifact

    return session.scalar(select(Artifact.id).where(Artifact.run_id == run_id, Artifact.kind == "transfer"))


def _subjects(ws: Any, asset_ids: list[str]) -> dict[str, tuple[str, list[str], str, str | None]]:
    """asset id -> (owner ref, depicted refs, source name, captured_at) for the manifest."""
    out: dict[str, tuple[str, list[str], str, str | None]] = {}
    with ws.reader() as session:
        rows = session.execute(
            select(Asset.id, Subject.ref, Source.name, Asset.captured_at)
            .join(Subject, Subject.id == Asset.owner_id)
            .join(Source, Source.id == Asset.source_id)
            .where(Asset.id.in_(asset_ids))
        ).all()
        depicted: dict[str, list[str]] = {}
        for asset_id, ref in session.execute(
            select(AssetSubject.asset_id, Subject.ref)
            .join(Subject, Subject.id == AssetSubject.subject_id)
            .where(AssetSubject.asset_id.in_(asset_ids), AssetSubject.role == "depicted")
        ):
            depicted.setdefault(asset_id, []).append(ref)
    for asset_id, ref, source, captured in rows:
        out[asset_id] = (ref, sorted(depicted.get(asset_id, [])), source, iso(captured) if captured else None)
    return out


def receive_bundle(ws: Any, path: Path, *, at: datetime | None = None) -> dict[str, Any]:
    """Check a bundle whole, then ingest it as a transfer from its sender."""
    _doc, body, photos = read_bundle(path, max_photo_bytes=ws.config.max_file_bytes)
    with ws.reader() as session:
        sender = peer_by_key(session, "sender", body["public_key"])
        if sender is None:
            raise InvalidInput(
                f"{path.name} is signed by a key no registered sender holds "
                f"({body['public_key'][:16]}...); register the sender with `disgorge sender add`"
            )
        if body.get("recipient_key") != ws.public_key().public_bytes_raw().hex():
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
    when = at or shared_at
    purposes = sorted({parse_purpose(p).value for p in body.get("purposes", [])})
    source_name = f"{sender.name}/{transfer_id[:12]}"
    _ensure_source(ws, source_name, sender, transfer_id, purposes, shared_at, when)

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
        report = ws.ingest(folder, source=source_name, manifest=manifest, at=when, workers=1)

    with ws.sessions.begin() as session:
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
                        session, subject_id, asset_id, purpose, decision, shared_at, transfer_id, when
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
            actor=ws.actor,
            at=when,
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
    ws: Any,
    name: str,
    sender: Peer,
    transfer_id: str,
    purposes: list[str],
    shared_at: datetime,
    when: datetime,
) -> None:
    with ws.reader() as session:
        exists = session.scalar(select(Source.id).where(Source.name == name)) is not None
    if exists:  # an earlier receive of this bundle stopped after ingesting: go on
        return
    ws.add_source(name, kind="transfer", description=f"received from {sender.name}", at=when)
    ws.add_policy(
        name,
        f"transfer-{transfer_id[:12]}",
        text=f"terms of transfer {transfer_id} from {sender.name}: {', '.join(purposes)}".encode(),
        effective_from=shared_at,
        allows=purposes,
        at=when,
    )


def _grant(
    session: Any,
    subject_id: int,
    asset_id: str,
    purpose: str,
    decision: str,
    at: datetime,
    transfer_id: str,
    when: datetime,
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
            recorded_at=when,
            transfer_id=transfer_id,
        )
    )
    return int(decision == "granted")


def receive_legacy(ws: Any, sender_name: str, *, source: str, at: datetime) -> dict[str, Any]:
    """Record a legacy transfer from a sender: the active photos of ``source`` came from it.

    Before bundles, photos travelled without a manifest and were ingested here as a source
    of our own. A sender's erasure request reaches only what that sender sent (its transfer
    items), so without this record its legacy requests (by sha256) reach nothing. One
    transfer per sender and source, with an id derived from both: recording it again adds
    the photos ingested since."""
    transfer_id = hashlib.sha256(f"legacy|{sender_name}|{source}".encode()).hexdigest()[:32]
    with ws.sessions.begin() as session:
        sender = find_peer(session, "sender", sender_name)
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
                peer_id=sender.id,
                dataset="",
                source_id=src.id,
                purposes=[],
                at=at,
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
            {"transfer": transfer_id, "sender": sender.name, "source": src.name, "added": len(new)},
            actor=ws.actor,
            at=at,
        )
    return {
        "transfer": transfer_id,
        "sender": sender_name,
        "source": source,
        "items": len(held) + len(new),
        "added": len(new),
    }
