"""The violation audit (``/ui/violations``) and its CSV export (``/ui/violations.csv``).

As ``GET /v1/violations`` (:mod:`disgorge.api.routes.lineage`): needs ``violation:read``,
calls :func:`disgorge.audit.service.violations` and filters its uses by source and purpose
the same way; the summary counts every use the audit checked (as of the date asked), not
only the filtered ones, exactly as the API's ``summary`` does. The page and the CSV show
the same rows, so what an officer sees is what they hand a regulator.

The CSV is for spreadsheets: a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is prefixed with ``'`` so that no spreadsheet runs it as a formula (OWASP
"CSV injection"); a source's name or a run's justification is typed by people. No cell
names a person: a use is a dataset version or a run, its items are counted.
"""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from ...audit import service
from ...audit.violations import ViolationUse
from ...consent import Purpose
from ...errors import InvalidInput
from .. import UI_PREFIX
from ..checks import check_of
from ..framework import SECURITY_HEADERS, context, needs, page_router, render
from .catalog import lineage_url

__all__ = ["COLUMNS", "LATEST", "neutralise", "router"]

router = page_router()

#: the CSV's header row (one row per offending use)
COLUMNS = (
    "use",
    "kind",
    "purpose",
    "at",
    "items_checked",
    "items_not_covered",
    "subjects",
    "by_source",
    "by_rule",
    "downstream",
    "job",
    "override",
)
#: how many uses the overview's "latest violations" shows
LATEST = 5
#: what a spreadsheet would start a formula with
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: object) -> str:
    """The cell as text no spreadsheet evaluates: a leading ``'`` before a formula start."""
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _counts(counts: dict[str, int]) -> str:
    return "; ".join(f"{name}: {n}" for name, n in sorted(counts.items()))


def _filtered(request: Request, source: str, purpose: str, as_of: str) -> dict[str, Any]:
    """The audit's report and the uses that pass the filters (as ``GET /v1/violations``)."""
    if purpose and purpose not in {p.value for p in Purpose}:
        raise InvalidInput(f"purpose {purpose!r}: expected one of {', '.join(p.value for p in Purpose)}")
    report = service.violations(context(request), as_of=as_of or None)
    rows = [
        v
        for v in report["violations"]
        if (not source or source in v["by_source"]) and (not purpose or v["purpose"] == purpose)
    ]
    return {"report": report, "rows": rows}


def _lineage_url(use: str) -> str:
    """The lineage page downstream of a use (``dataset:NAME@V`` or ``run:ID``)."""
    kind, _, ident = use.partition(":")
    return lineage_url(kind, ident)


_Source = Query("", max_length=200)
_Purpose = Query("", max_length=64)
_AsOf = Query("", max_length=64)


@router.get("/violations", **needs("violation:read"))
def violations(
    request: Request, source: str = _Source, purpose: str = _Purpose, as_of: str = _AsOf
) -> Response:
    found = _filtered(request, source, purpose, as_of)
    report = found["report"]
    filters = {k: v for k, v in (("source", source), ("purpose", purpose), ("as_of", as_of)) if v}
    rows = [
        {**v, "lineage": _lineage_url(v["use"]), "sources": _counts(v["by_source"])} for v in found["rows"]
    ]
    return render(
        request,
        "violations.html",
        summary=report,
        rows=rows,
        sources=sorted(set(report["by_source"]) | ({source} if source else set())),
        purposes=[p.value for p in Purpose],
        source=source,
        purpose=purpose,
        as_of=as_of,
        csv_url=f"{UI_PREFIX}/violations.csv" + (f"?{urlencode(filters)}" if filters else ""),
    )


def _csv_row(v: ViolationUse) -> list[str]:
    values: list[object] = [
        v["use"],
        v["kind"],
        v["purpose"],
        v["at"],
        v["checked"],
        v["items"],
        v["subjects"],
        _counts(v["by_source"]),
        _counts(v["by_rule"]),
        " ".join(v["downstream"]),
        v.get("job", ""),
        v.get("override") or "",
    ]
    return [neutralise(cell) for cell in values]


@router.get("/violations.csv", **needs("violation:read"))
def violations_csv(
    request: Request, source: str = _Source, purpose: str = _Purpose, as_of: str = _AsOf
) -> Response:
    rows = _filtered(request, source, purpose, as_of)["rows"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(_csv_row(v) for v in rows)
    headers = {
        **SECURITY_HEADERS,
        "Content-Disposition": 'attachment; filename="disgorge-violations.csv"',
    }
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


@router.get("/violations/latest", **needs("violation:read"))
def latest(request: Request) -> Response:
    """The overview's part: the :data:`LATEST` most recent offending uses and the totals.
    The audit reads every use's items, so the overview asks for it after it is shown (htmx);
    without JavaScript this is a page of its own."""
    ctx = context(request)
    part = bool(request.headers.get("hx-request"))
    events = service.find_events(ctx, limit=1)["total"]  # a new use is audited: a new event
    answer = check_of(request, "violations").answer(
        events, lambda: dict(service.violations(ctx)), wait=not part, reuse=part
    )
    if answer is None:
        return render(request, "_checking.html", url=f"{UI_PREFIX}/violations/latest", what="the violations")
    report = answer.result
    newest = sorted(report["violations"], key=lambda v: v["at"], reverse=True)[:LATEST]
    rows = [{**v, "lineage": _lineage_url(v["use"])} for v in newest]
    template = "_violations_latest.html" if part else "violations_latest.html"
    return render(request, template, summary=report, rows=rows, age_s=int(answer.age_s))
