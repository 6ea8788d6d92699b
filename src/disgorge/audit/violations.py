"""The violation audit: which uses touched items their consent or policy did not cover?

Every dataset version (a use for its purpose at its build time) and every run (a use for
its declared purpose at its start) is re-checked item by item with the same
:class:`~disgorge.consent.ConsentGate` the gates use. ``as_of`` limits the evidence to
consent records recorded by then ("what did we know on that day"); uses after ``as_of``
are not considered. Results are grouped by use, with counts per source and rule and the
artifacts downstream of each offending use (the models that carry the data on).
"""

from __future__ import annotations

import html
from collections import Counter
from datetime import datetime
from typing import Any, NotRequired

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from .._time import iso
from ..catalog.db import in_chunks
from ..catalog.lineage import NodeRef, downstream
from ..catalog.models import (
    Artifact,
    Asset,
    AssetSubject,
    DatasetMember,
    DatasetVersion,
    Run,
    RunInput,
    Source,
)
from ..consent import ConsentGate, ItemRef
from ..runs import upstream_asset_ids

__all__ = ["ViolationReport", "ViolationUse", "find_violations", "violations_html"]


class ViolationUse(TypedDict):
    """One use (a dataset version or a run) that touched items not covered for its purpose."""

    #: ``dataset:NAME@VERSION`` or ``run:ID``
    use: str
    #: ``dataset_version`` or ``run``
    kind: str
    purpose: str
    at: str
    #: items checked, items not covered, and the subjects of those
    checked: int
    items: int
    subjects: int
    by_source: dict[str, int]
    by_rule: dict[str, int]
    #: the artifacts downstream of the use (the models that carry the data on)
    downstream: list[str]
    #: for a run only: its job, override justification, whether it ran outside, its outputs
    job: NotRequired[str]
    override: NotRequired[str | None]
    external: NotRequired[bool]
    outputs: NotRequired[list[str]]


class ViolationReport(TypedDict):
    """The violation audit (``disgorge audit violations``): every offending use, with totals."""

    as_of: str | None
    uses_checked: int
    uses_with_violations: int
    items: int
    by_source: dict[str, int]
    by_purpose: dict[str, int]
    violations: list[ViolationUse]


def _check(
    session: Session,
    asset_ids: Any,
    purpose: str,
    at: datetime,
    as_of: datetime | None,
    names: dict[int, str],
) -> tuple[int, list[tuple[str, str, int]]]:
    rows = session.execute(
        select(Asset.id, Asset.source_id, Asset.owner_id).where(Asset.id.in_(asset_ids))
    ).all()
    verdicts = ConsentGate(session, purpose, at, known_at=as_of).evaluate(
        [ItemRef(r.id, r.source_id, r.owner_id) for r in rows]
    )
    bad = [(r.id, verdicts[r.id].rule, r.source_id) for r in rows if not verdicts[r.id].allowed]
    return len(rows), [(aid, rule, sid) for aid, rule, sid in bad]


def find_violations(session: Session, *, as_of: datetime | None = None) -> ViolationReport:
    names = dict(session.execute(select(Source.id, Source.name)).all())
    uses: list[ViolationUse] = []
    checked_uses = 0
    datasets = session.scalars(select(DatasetVersion).order_by(DatasetVersion.built_at)).all()
    for ds in datasets:
        if as_of is not None and ds.built_at > as_of:
            continue
        checked_uses += 1
        members = (
            select(DatasetMember.asset_id).where(DatasetMember.dataset_id == ds.artifact_id).scalar_subquery()
        )
        total, bad = _check(session, members, ds.purpose, ds.built_at, as_of, names)
        if bad:
            uses.append(
                _use(
                    session,
                    f"dataset:{ds.name}@{ds.version}",
                    "dataset_version",
                    ds.purpose,
                    ds.built_at,
                    total,
                    bad,
                    names,
                    NodeRef("artifact", ds.artifact_id, ""),
                    None,
                )
            )
    runs = session.scalars(
        select(Run).where(~Run.job.startswith("dataset.build:")).order_by(Run.started_at)
    ).all()
    for run in runs:
        if as_of is not None and run.started_at > as_of:
            continue
        checked_uses += 1
        inputs: list[NodeRef] = []
        for a, f in session.execute(
            select(RunInput.asset_id, RunInput.artifact_id).where(RunInput.run_id == run.id)
        ):  # each input names exactly one of the two
            if a is not None:
                inputs.append(NodeRef("asset", a, ""))
            elif f is not None:
                inputs.append(NodeRef("artifact", f, ""))
        asset_ids = select(upstream_asset_ids(session, inputs).c[0])
        total, bad = _check(session, asset_ids, run.purpose, run.started_at, as_of, names)
        if bad:
            uses.append(
                _use(
                    session,
                    f"run:{run.id}",
                    "run",
                    run.purpose,
                    run.started_at,
                    total,
                    bad,
                    names,
                    NodeRef("run", run.id, ""),
                    run,
                )
            )
    by_source: Counter[str] = Counter()
    by_purpose: Counter[str] = Counter()
    for use in uses:
        by_purpose[use["purpose"]] += use["items"]
        by_source.update(use["by_source"])
    return {
        "as_of": iso(as_of) if as_of else None,
        "uses_checked": checked_uses,
        "uses_with_violations": len(uses),
        "items": sum(u["items"] for u in uses),
        "by_source": dict(by_source.most_common()),
        "by_purpose": dict(by_purpose.most_common()),
        "violations": uses,
    }


def _use(
    session: Session,
    label: str,
    kind: str,
    purpose: str,
    at: datetime,
    total: int,
    bad: list[tuple[str, str, int]],
    names: dict[int, str],
    node: NodeRef,
    run: Run | None,
) -> ViolationUse:
    bad_ids = [aid for aid, _, _ in bad]
    subjects: set[int] = set()
    for part in in_chunks(bad_ids):
        subjects.update(
            session.scalars(select(AssetSubject.subject_id).where(AssetSubject.asset_id.in_(part)))
        )
    graph = downstream(session, node)
    use: ViolationUse = {
        "use": label,
        "kind": kind,
        "purpose": purpose,
        "at": iso(at),
        "checked": total,
        "items": len(bad),
        "subjects": len(subjects),
        "by_source": dict(Counter(names.get(sid, str(sid)) for _, _, sid in bad).most_common()),
        "by_rule": dict(Counter(rule for _, rule, _ in bad).most_common()),
        "downstream": [n["id"] for n in graph.nodes if n["kind"] != "run"],
    }
    if run is not None:
        use["job"] = run.job
        use["override"] = run.override_justification
        use["external"] = bool(run.external)
        use["outputs"] = [
            f"{a.kind}:{a.name}@{a.version}" if a.name else f"{a.kind}:{a.id}"
            for a in session.scalars(select(Artifact).where(Artifact.run_id == run.id))
        ]
    return use


def violations_html(report: ViolationReport) -> str:
    """A self-contained HTML page of the violation report (no scripts, no external assets)."""
    e = html.escape
    rows = []
    for v in report["violations"]:
        rows.append(
            "<tr>"
            f"<td>{e(v['use'])}<br><small>{e(v.get('job', ''))}</small></td>"
            f"<td>{e(v['purpose'])}</td><td>{e(v['at'])}</td>"
            f"<td>{v['items']} of {v['checked']}</td><td>{v['subjects']}</td>"
            f"<td>{e(', '.join(f'{k}: {n}' for k, n in v['by_source'].items()))}</td>"
            f"<td>{e(', '.join(f'{k}: {n}' for k, n in v['by_rule'].items()))}</td>"
            f"<td>{e(', '.join(v['downstream'] + v.get('outputs', [])))}</td>"
            f"<td>{e(v.get('override') or '')}</td>"
            "</tr>"
        )
    body = "\n".join(rows) or '<tr><td colspan="9">No violations found.</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>disgorge: consent violations</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.4em .6em;vertical-align:top}}th{{background:#f4f4f4}}</style></head>
<body><h1>Consent violations</h1>
<p>As of {e(report["as_of"] or "now")}: {report["uses_with_violations"]} of {report["uses_checked"]} uses
touched {report["items"]} item(s) their consent or policy did not cover.</p>
<table><thead><tr><th>use</th><th>purpose</th><th>at</th><th>items</th><th>subjects</th><th>by source</th>
<th>by rule</th><th>downstream</th><th>override</th></tr></thead>
<tbody>
{body}
</tbody></table></body></html>
"""
