"""Sending a dataset version to a recipient.

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

The recipient's side, receiving a bundle, is :mod:`.receive`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NotRequired

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .. import audit
from .._time import iso
from ..assets import read_asset
from ..catalog.models import Artifact, Asset, AssetSubject, Source, Subject, Transfer, TransferItem
from ..consent import ConsentGate, ItemRef, Purpose, parse_purpose
from ..context import Context, when
from ..datasets import find_dataset
from ..errors import ConsentDenied, InvalidInput
from ..runs import close_run, open_run
from ..training.registry import dataset_members
from ..vault import Vault
from .bundle import cawg_assertion, photo_path, write_bundle
from .documents import BUNDLE_TYPE, sign_document
from .metadata import strip_location
from .peers import find_peer

__all__ = ["ShareReport", "TransferSummary", "share", "shared_fingerprint"]


class TransferSummary(TypedDict):
    """What the audit log records of a transfer (``transfer.shared``)."""

    transfer: str
    recipient: str
    dataset: str
    purposes: list[str]
    items: int
    excluded: int
    backfilled: bool
    #: with a bundle only: ``kept`` or ``stripped``, and how many photos lost their location
    location_metadata: NotRequired[str]
    location_stripped: NotRequired[int]


class ShareReport(TransferSummary):
    """What :func:`share` did (``disgorge share``)."""

    excluded_by_rule: dict[str, int]
    not_covered_at_the_time: int
    bundle: str | None
    bundle_sha256: str | None
    run: str


def shared_fingerprint(vault: Vault, sha256_hex: str) -> str:
    """How erasure requests name a shared photo: keyed, so a request reveals nothing to
    anyone who does not hold the photo and the bundle's manifest."""
    return vault.fingerprint(bytes.fromhex(sha256_hex), domain="shared-photo")


def share(
    ctx: Context,
    dataset: str,
    *,
    to: str,
    purposes: list[str],
    out: str | Path | None = None,
    at: str | datetime | None = None,
    override: tuple[str, str] | None = None,
    keep_metadata: bool = False,
) -> ShareReport:
    """Send a dataset version to a recipient: gate, signed bundle, transfer in the lineage.

    With no ``out``, record a legacy transfer (``at`` in the past) as it happened: every
    member, under ``override`` where the gate would not have allowed it. The bundle's
    photos leave without location metadata unless ``keep_metadata``.
    """
    recipient = to
    out = Path(out) if out is not None else None
    backfill = out is None
    instant = when(at)
    declared = sorted({parse_purpose(p).value for p in purposes})
    if not declared:
        raise InvalidInput("declare at least one purpose the recipient may use the photos for (--purpose)")
    if out is not None and out.exists():
        raise InvalidInput(f"{out} already exists; choose another output file")
    if out is not None and Path(ctx.root).resolve() in out.resolve().parents:
        raise InvalidInput("write the bundle outside the workspace: it holds photos in clear")
    if keep_metadata and out is None:
        raise InvalidInput("--keep-metadata is about the photos of a bundle; a legacy transfer writes none")

    with ctx.reader() as session:
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
            for asset_id, verdict in ConsentGate(session, purpose, instant).evaluate(refs).items():
                if not verdict.allowed:
                    refused[f"{purpose}: {verdict.rule}"] += 1
                    bad.add(asset_id)
    if backfill:
        if bad and override is None:
            raise ConsentDenied(
                f"the transfer of {ds.name}@{ds.version} to {recipient!r} at {iso(instant)}: {len(bad)} of "
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
    fingerprints = {r.id: shared_fingerprint(ctx.vault, r.sha256) for r in shipped}
    summary: TransferSummary = {
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
        subjects = _subjects(ctx, [r.id for r in shipped])
        sent: dict[str, str] = {}  # asset id -> sha256 of the bytes that left
        sent_shas: set[str] = set()  # the same values, to look up in O(1)
        stripped: set[str] = set()

        def photos() -> Iterator[tuple[str, bytes]]:
            for r in shipped:
                data = read_asset(ctx, r.sha256)
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
                ctx,
                {
                    "type": BUNDLE_TYPE,
                    "transfer": transfer_id,
                    "sender_workspace": ctx.workspace_id,
                    "recipient": peer.name,
                    "recipient_key": peer.public_key.hex(),
                    "dataset": f"{ds.name}@{ds.version}",
                    "purposes": declared,
                    "shared_at": iso(instant),
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

    handle = open_run(
        ctx,
        f"share:{peer.name}",
        purpose=Purpose.THIRD_PARTY_SHARING.value,
        inputs=[f"asset:{r.sha256}" for r in shipped],
        parameters={"dataset": f"{ds.name}@{ds.version}", "purposes": declared, "backfilled": backfill},
        at=instant,
        override=override,
        external=backfill,
    )
    try:
        handle.add_output(
            "transfer",
            name=peer.name,
            version=transfer_id[:12],
            extra={"transfer": transfer_id, "purposes": declared, "items": len(shipped)},
        )
        with ctx.sessions.begin() as session:
            artifact_id = _artifact_of(session, handle.id)
            session.add(
                Transfer(
                    id=transfer_id,
                    direction="out",
                    peer_id=peer.id,
                    artifact_id=artifact_id,
                    dataset=f"{ds.name}@{ds.version}",
                    purposes=declared,
                    at=instant,
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
            audit.append(session, "transfer.shared", dict[str, Any](summary), actor=ctx.actor, at=instant)
    except BaseException:
        if out is not None:
            out.unlink(missing_ok=True)
        close_run(ctx, handle, "failed", instant)
        raise
    close_run(ctx, handle, "completed", instant)
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


def _artifact_of(session: Session, run_id: str) -> str:
    return session.execute(
        select(Artifact.id).where(Artifact.run_id == run_id, Artifact.kind == "transfer")
    ).scalar_one()


def _subjects(ctx: Context, asset_ids: list[str]) -> dict[str, tuple[str, list[str], str, str | None]]:
    """asset id -> (owner ref, depicted refs, source name, captured_at) for the manifest."""
    out: dict[str, tuple[str, list[str], str, str | None]] = {}
    with ctx.reader() as session:
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
