"""Export bundles: the photos of a transfer and their signed manifest, in one zip file.

Layout::

    photos/<sha256>.<ext>         each photo as it left (decrypted; location metadata
                                  stripped unless the sender chose --keep-metadata)
    disgorge-bundle.json          signed document (type disgorge.bundle-manifest/1)

The manifest lists each item's sha256, the sender's keyed fingerprint (what erasure
requests will name it by), its subject's pseudonymous ref, its source, and its consent
scope as a C2PA/CAWG training-and-mining assertion. ``sha256`` is that of the bytes the
bundle carries (after stripping); the fingerprint is the sender's, of its own stored photo,
so a later erasure request names the photo the way the sender's lineage knows it.
Reading checks the signature, that the bundle was made for this workspace, every photo's
sha256, and that the zip holds exactly the manifest and the photos it lists (no extra
member, no name twice) before anything is ingested: a bundle is taken whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from .documents import BUNDLE_TYPE, verify_document

__all__ = ["MANIFEST_NAME", "cawg_assertion", "is_bundle", "read_bundle", "write_bundle"]

MANIFEST_NAME = "disgorge-bundle.json"
_MANIFEST_MAX = 64 * 1024 * 1024
_PHOTO_PATH = re.compile(r"^photos/[0-9a-f]{64}\.(jpg|jpeg|png|webp|gif|bmp|tif|tiff)$")
#: the CAWG entries, and disgorge's own for what CAWG has no name for
_CAWG = {
    "ai_training": "cawg.ai_training",
    "ai_generative_training": "cawg.ai_generative_training",
    "ai_inference": "cawg.ai_inference",
    "data_mining": "cawg.data_mining",
    "biometric_processing": "disgorge.biometric_processing",
    "third_party_sharing": "disgorge.third_party_sharing",
}
_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif", "image/bmp": "bmp"}


def cawg_assertion(allowed: Iterable[str]) -> dict[str, Any]:
    """A ``cawg.training-mining`` assertion: each purpose allowed or not allowed."""
    ok = set(allowed)
    return {
        "label": "cawg.training-mining",
        "data": {
            "entries": {entry: {"use": "allowed" if p in ok else "notAllowed"} for p, entry in _CAWG.items()}
        },
    }


def allowed_purposes(assertion: dict[str, Any]) -> list[str]:
    """The purposes a ``cawg.training-mining`` assertion allows (``constrained`` is not allowed)."""
    entries = (assertion.get("data") or {}).get("entries") or {}
    return sorted(p for p, entry in _CAWG.items() if (entries.get(entry) or {}).get("use") == "allowed")


def photo_path(sha256: str, media_type: str) -> str:
    return f"photos/{sha256}.{_EXT.get(media_type, 'jpg')}"


def write_bundle(
    path: Path, photos: Iterable[tuple[str, bytes]], manifest: Callable[[], dict[str, Any]]
) -> str:
    """Write the bundle atomically (a temporary file, then rename); return its sha256.

    The photos are written first and the signed manifest last (``manifest`` is called once
    they are all written), so the manifest can describe the bytes that were actually written
    without holding every photo in memory."""
    if path.exists():
        raise InvalidInput(f"{path} already exists; choose another output file")
    tmp = path.with_name(path.name + ".partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, data in photos:
                zf.writestr(name, data)
            zf.writestr(MANIFEST_NAME, json.dumps(manifest(), indent=1, sort_keys=True))
        with open(tmp, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def is_bundle(path: Path) -> bool:
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return MANIFEST_NAME in zf.namelist()


def read_bundle(
    path: Path, *, max_photo_bytes: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, bytes]]:
    """(signed document, its body, photos by sha256), all checked; :class:`InvalidInput` if not."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"{path.name}: not a readable bundle ({exc})") from None
    with zf:
        try:
            info = zf.getinfo(MANIFEST_NAME)
        except KeyError:
            raise InvalidInput(f"{path.name}: not a disgorge bundle (no {MANIFEST_NAME})") from None
        if info.file_size > _MANIFEST_MAX:
            raise InvalidInput(f"{path.name}: the manifest is larger than {_MANIFEST_MAX} bytes")
        try:
            doc = json.loads(zf.read(info))
        except (ValueError, zipfile.BadZipFile) as exc:
            raise InvalidInput(f"{path.name}: the manifest is not valid JSON ({exc})") from None
        body = verify_document(doc, BUNDLE_TYPE)
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise InvalidInput(f"{path.name}: the manifest lists no items")
        _exactly_listed(path.name, zf, items)
        photos: dict[str, bytes] = {}
        for n, item in enumerate(items):
            where = f"{path.name}: item {n}"
            if not isinstance(item, dict) or not isinstance(item.get("sha256"), str):
                raise InvalidInput(f"{where}: no sha256")
            name = item.get("path")
            if not isinstance(name, str) or not _PHOTO_PATH.match(name):
                raise InvalidInput(f"{where}: path {name!r} is not photos/<sha256>.<ext>")
            try:
                member = zf.getinfo(name)
            except KeyError:
                raise InvalidInput(f"{where}: {name} is missing from the bundle") from None
            if member.file_size > max_photo_bytes:
                raise InvalidInput(f"{where}: {member.file_size} bytes, over the {max_photo_bytes} limit")
            try:
                data = zf.read(member)
            except (zipfile.BadZipFile, OSError) as exc:
                raise InvalidInput(f"{where}: {name} cannot be read ({exc})") from None
            if hashlib.sha256(data).hexdigest() != item["sha256"]:
                raise InvalidInput(
                    f"{where}: {name} does not match its sha256 in the signed manifest "
                    "(the photo was altered after signing); nothing was ingested"
                )
            photos[item["sha256"]] = data
    return doc, body, photos


def _exactly_listed(name: str, zf: zipfile.ZipFile, items: list[Any]) -> None:
    """The zip holds the manifest and the listed photos, each once, and nothing else.

    An extra member (``../evil.txt``, a photo the signed manifest does not list) or a name
    twice means the bundle is not what its sender signed: it is refused whole, and the
    message counts the members without printing their names (they are the sender's paths)."""
    names = [info.filename for info in zf.infolist()]
    listed = [i.get("path") for i in items if isinstance(i, dict)]
    shas = [i.get("sha256") for i in items if isinstance(i, dict)]
    if len(set(listed)) != len(listed) or len(set(shas)) != len(shas):
        raise InvalidInput(f"{name}: the manifest lists a photo twice; nothing was ingested")
    if len(set(names)) != len(names):
        raise InvalidInput(f"{name}: the zip holds a member name twice; nothing was ingested")
    extra = set(names) - set(listed) - {MANIFEST_NAME}
    if extra:
        raise InvalidInput(
            f"{name}: {len(extra)} member(s) are not listed in the signed manifest "
            "(a bundle holds its manifest and the photos it lists, nothing else); "
            "the bundle is refused whole, nothing was ingested"
        )
