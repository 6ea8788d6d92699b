"""Ingest manifests: which subject owns (and who else is depicted in) each file.

Columns ``path, subject[, depicted][, captured_at]`` as CSV or JSON Lines; ``depicted``
holds further subject ids separated by ``;``. Paths are relative to the ingested folder
or archive root. Format: docs/formats.md.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .._tabular import read_rows
from .._time import parse_instant
from ..errors import InvalidInput

__all__ = ["ManifestEntry", "read_manifest"]


@dataclass(frozen=True)
class ManifestEntry:
    line: int
    owner: str
    depicted: tuple[str, ...]
    captured_at: datetime | None


def read_manifest(path: Path) -> dict[str, ManifestEntry]:
    """Map normalised relative path -> entry. InvalidInput listing every bad row."""
    entries: dict[str, ManifestEntry] = {}
    errors: list[str] = []
    for line, row in read_rows(path, ("path", "subject"), ("depicted", "captured_at")):
        where = f"{path.name} line {line}"
        rel = posixpath.normpath(row["path"].replace("\\", "/")) if row["path"] else ""
        if not rel or rel.startswith(("/", "../")) or rel == "..":
            errors.append(f"{where}: path must be relative to the ingest root")
            continue
        if not row["subject"]:
            errors.append(f"{where}: subject is empty")
            continue
        if rel in entries:
            errors.append(f"{where}: path already listed on line {entries[rel].line}")
            continue
        depicted = tuple(
            d.strip() for d in row.get("depicted", "").split(";") if d.strip() and d.strip() != row["subject"]
        )
        captured = None
        if row.get("captured_at"):
            try:
                captured = parse_instant(row["captured_at"], what=f"{where}: captured_at")
            except InvalidInput as exc:
                errors.append(str(exc))
                continue
        entries[rel] = ManifestEntry(line, row["subject"], depicted, captured)
    if errors:
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise InvalidInput(f"{path.name}: {len(errors)} bad row(s):\n" + "\n".join(errors[:20]) + more)
    return entries
