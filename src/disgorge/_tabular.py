"""Read row files (CSV with a header, or JSON Lines) the one way disgorge reads them.

Used for consent files and ingest manifests. Every problem is reported with the file
name and the line number, never with the row's content (it may hold personal data).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import InvalidInput

__all__ = ["MAX_ROW_FILE_BYTES", "read_rows"]

#: row files larger than this are refused rather than read (10 GiB)
MAX_ROW_FILE_BYTES = 10 * 1024**3


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix in {".csv", ".txt"}:
        return "csv"
    raise InvalidInput(f"{path.name}: unknown row-file type {suffix!r}; use .csv or .jsonl")


def read_rows(
    path: Path, required: Sequence[str], optional: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` with every value as a stripped string ('' if absent).

    Raises InvalidInput for a missing file, a missing required column, an unknown column,
    or a line that is not valid JSON / CSV.
    """
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    if path.stat().st_size > MAX_ROW_FILE_BYTES:
        raise InvalidInput(f"{path.name}: larger than {MAX_ROW_FILE_BYTES} bytes")
    known = set(required) | set(optional)
    fmt = _format_of(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path.name}: not UTF-8 text (byte {exc.start})") from None
    if fmt == "csv":
        yield from _csv_rows(path.name, text, required, known)
    else:
        yield from _jsonl_rows(path.name, text, required, known)


def _check_columns(
    name: str, where: str, columns: set[str], required: Sequence[str], known: set[str]
) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise InvalidInput(f"{name}{where}: missing column(s) {', '.join(missing)}")
    unknown = sorted(columns - known)
    if unknown:
        raise InvalidInput(
            f"{name}{where}: unknown column(s) {', '.join(unknown)}; "
            f"expected {', '.join([*required, *sorted(known - set(required))])}"
        )


def _csv_rows(
    name: str, text: str, required: Sequence[str], known: set[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise InvalidInput(f"{name} line 1: malformed CSV header ({exc})") from None
    if not header:
        raise InvalidInput(f"{name}: empty file, expected a header row")
    columns = {h.strip() for h in header}
    _check_columns(name, " (header)", columns, required, known)
    try:
        for row in reader:
            line = reader.line_num
            if None in row:
                raise InvalidInput(f"{name} line {line}: more fields than the header has")
            values = {k.strip(): (v or "").strip() for k, v in row.items()}
            if not any(values.values()):
                continue
            yield line, values
    except csv.Error as exc:
        raise InvalidInput(f"{name} line {reader.line_num}: malformed CSV ({exc})") from None


def _jsonl_rows(
    name: str, text: str, required: Sequence[str], known: set[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{name} line {line}: not valid JSON ({exc.msg})") from None
        except RecursionError:  # a row is a flat object; thousands of nested [ are hostile
            raise InvalidInput(f"{name} line {line}: JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise InvalidInput(f"{name} line {line}: expected a JSON object")
        _check_columns(name, f" line {line}", set(obj), required, known)
        values: dict[str, str] = {}
        for key, value in obj.items():
            if isinstance(value, list):
                if any(isinstance(v, list | dict) for v in value):
                    raise InvalidInput(f"{name} line {line}: field {key!r} must be a flat list")
                values[key] = ";".join(str(v) for v in value)
            elif value is None:
                values[key] = ""
            elif isinstance(value, dict):
                raise InvalidInput(f"{name} line {line}: field {key!r} must not be an object")
            else:
                values[key] = str(value).strip()
        yield line, values
