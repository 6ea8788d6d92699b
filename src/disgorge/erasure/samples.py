"""The verifier's samples, and the ``sample`` step that takes them.

Before anything is destroyed, the ``sample`` step takes what the verifier will look for
afterwards: byte windows from the middle of each photo, its sha256 (raw and as hex text),
its decrypted origin, PDQ hashes and embeddings, the ciphertexts sealed under keys that
live on, and the wrapped data keys to be destroyed. It also draws the salt of the
certificate's items and computes one Merkle leaf per photo.

They are kept in a sealed file of their own (``<home>/erasure/<request id>.samples``,
under a fresh key wrapped by the KEK), not in the catalog: they are the erased data, so
they must go once the scan is done, and dropping a file needs no rewrite (VACUUM) of a
catalog of a million photos. The file is overwritten before it is unlinked.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..catalog import in_chunks
from ..catalog.models import Asset, AssetDerivative, ErasureRequest, Subject
from ..context import Context
from ..vault.blobstore import wipe_file
from ..vault.sealed_file import read_sealed_file, write_sealed_file
from ..vision.phash import phash_context
from ._step import Execution, step
from .certificate import leaf_from_sha256

__all__ = [
    "WINDOW",
    "Taken",
    "drop_samples",
    "read_samples",
    "sample",
    "samples_folder",
    "samples_path",
    "windows",
    "write_samples",
]

_SAMPLES_AAD = b"disgorge:erasure-samples"
#: bytes in each window taken from a photo
WINDOW = 48


def samples_folder(home: Path) -> Path:
    """Where erasures keep their sealed samples (``<request id>.samples``) until verified."""
    return home / "erasure"


def samples_path(ctx: Context, request_id: str) -> Path:
    return samples_folder(ctx.home) / f"{request_id}.samples"


def write_samples(ctx: Context, request_id: str, samples: dict[str, Any]) -> None:
    """Seal under a fresh key (wrapped by the KEK, stored alongside); replace atomically."""
    write_sealed_file(samples_path(ctx, request_id), json.dumps(samples).encode(), ctx.kek, _SAMPLES_AAD)


def read_samples(ctx: Context, request_id: str) -> dict[str, Any]:
    """The request's samples; none (no needles) once they were dropped."""
    path = samples_path(ctx, request_id)
    if not path.exists():
        return {"needles": {}}
    samples: dict[str, Any] = json.loads(
        read_sealed_file(path, ctx.kek, _SAMPLES_AAD, what="erasure samples")
    )
    return samples


def drop_samples(ctx: Context, request_id: str) -> None:
    """Overwrite, then unlink (best effort below the file system: see docs/certificate.md)."""
    wipe_file(samples_path(ctx, request_id), unlink=True)


def windows(data: bytes) -> list[bytes]:
    """Byte windows from the middle of the file (headers are shared by many photos)."""
    if len(data) < 4 * WINDOW:
        return [data] if len(data) >= 16 else []
    return [data[int(len(data) * f) : int(len(data) * f) + WINDOW] for f in (0.4, 0.6, 0.8)]


@dataclass
class Taken:
    """What the ``sample`` step takes before anything is destroyed (kept only sealed)."""

    salt: str
    #: label -> hex of the bytes the forensic scan must not find afterwards
    needles: dict[str, str]
    phashes: list[str] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)
    #: one certificate leaf per photo
    leaves: list[str] = field(default_factory=list)
    unreadable: int = 0
    #: on object storage only: the blob keys (photos and crops) whose versions the verifier
    #: lists afterwards (a folder's blobs are read by the forensic scan instead)
    blobs: list[str] = field(default_factory=list)


@step("sample")
def sample(execution: Execution, req: ErasureRequest) -> dict[str, Any]:
    """Before destroying anything, take what the verifier will look for (byte windows of
    each photo, its hashes, embeddings, the data keys), sealed with a one-off key and
    dropped after the scan.

    Re-running it (after a crash) keeps the salt and the needles of the request taken so
    far, and takes the rest again.
    """
    ctx = execution.ctx
    plan = req.plan
    before = read_samples(ctx, req.id)
    taken = Taken(salt=before.get("salt") or secrets.token_hex(16), needles=before.get("needles", {}))
    shred = set(plan["subjects_to_shred"])
    ids = plan["assets"]
    with ctx.reader() as session:
        # in chunks, with their owners and derived values read at once (a source may
        # hold 100,000 photos: one query per photo would cost more than the decryption)
        for chunk in in_chunks(ids):
            assets = session.scalars(select(Asset).where(Asset.id.in_(chunk)).order_by(Asset.id)).all()
            owners = {
                s.id: s
                for s in session.scalars(select(Subject).where(Subject.id.in_({a.owner_id for a in assets})))
            }
            derived: dict[str, list[Any]] = {}
            for d in session.execute(
                select(
                    AssetDerivative.asset_id,
                    AssetDerivative.id,
                    AssetDerivative.kind,
                    AssetDerivative.face_index,
                    AssetDerivative.value_enc,
                    AssetDerivative.blob_key,
                )
                .where(AssetDerivative.asset_id.in_(chunk))
                .order_by(AssetDerivative.id)
            ):
                derived.setdefault(d.asset_id, []).append(d)
            if not ctx.store.is_local:
                taken.blobs += [a.blob_key for a in assets if a.blob_key]
                taken.blobs += [d.blob_key for ds in derived.values() for d in ds if d.blob_key]
            for asset in assets:
                owner = owners[asset.owner_id]
                _sample_photo(ctx, taken, asset, owner, derived.get(asset.id, []), owner.id not in shred)
        for subject in session.scalars(select(Subject).where(Subject.id.in_(plan["subjects_to_shred"]))):
            if subject.dek_wrapped:
                taken.needles[f"wrapped-key:{subject.ref}"] = subject.dek_wrapped.hex()
    write_samples(ctx, req.id, asdict(taken))
    return {"photos": len(ids), "needles": len(taken.needles), "unreadable": taken.unreadable}


def _sample_photo(
    ctx: Context, taken: Taken, asset: Asset, owner: Subject, derived: list[Any], keeps_key: bool
) -> None:
    """Add one photo's Merkle leaf and the samples the verifier will look for."""
    vault = ctx.vault
    n = len(taken.leaves)
    taken.leaves.append(leaf_from_sha256(taken.salt, asset.sha256))
    taken.needles[f"sha256-hex:{n}"] = asset.sha256.encode().hex()
    taken.needles[f"sha256:{n}"] = asset.sha256
    if keeps_key:
        # sealed under a key that lives on: its ciphertext must go too (the purge skips
        # VACUUM for small erasures; the scan is what decides)
        # (32 bytes: nonce and ciphertext; as long as a sha256, so the scan needs no extra pass)
        sealed = [asset.origin_enc, *(d.value_enc for d in derived)]
        for k, value in enumerate(v for v in sealed if v and len(v) >= 33):
            taken.needles[f"sealed:{n}:{k}"] = value[1:33].hex()
    if owner.dek_wrapped is None or asset.blob_key is None:
        taken.unreadable += 1
        return
    try:
        data = vault.get_blob(owner, asset.id, asset.blob_key)
    except Exception:  # noqa: BLE001 - a missing blob is simply nothing to sample
        taken.unreadable += 1
        return
    for w, window in enumerate(windows(data)):
        taken.needles[f"photo:{n}:{w}"] = window.hex()
    if asset.origin_enc:
        origin = vault.open(owner, asset.origin_enc, f"origin:{asset.id}")
        if len(origin) >= 12:
            taken.needles[f"origin:{n}"] = origin.hex()
    for d in derived:
        if d.kind == "phash" and d.value_enc:
            value = vault.open(owner, d.value_enc, phash_context(asset.id, d.face_index))
            taken.phashes.append(value.hex())
            taken.needles[f"phash:{n}:{d.face_index}"] = value.hex()
        elif d.kind == "embedding" and d.value_enc:
            value = vault.open(owner, d.value_enc, f"embedding:{asset.id}:{d.id}")
            taken.embeddings.append(value.hex())
            taken.needles[f"embedding:{n}:{d.face_index}"] = value[:64].hex()
