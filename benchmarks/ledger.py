"""What the erasure ledger's check costs every command: opening a workspace with N ledger
entries, beside opening it without the check (the baseline: what `Workspace.open` cost
before the ledger existed).

Usage::

    .venv/bin/python benchmarks/ledger.py                      # 0, 1,000, 10,000 and 50,000 entries
    .venv/bin/python benchmarks/ledger.py --entries 0 1000 --repeat 5 --markdown

For each N it files N completed erasure requests with their ``record_ledger`` step done
(rows written in bulk through the workspace's own engine, as N real erasures would leave
them) and N ledger files named as the step names them, then times ``Workspace.open``
with the check and without it (``check_ledger=False``), alternating, ``--repeat`` times
each after one untimed open of each. The check reads the folder's names and asks the
catalog which it knows (one indexed query per 500 names); it opens an entry only when the
catalog does not know it, which never happens here.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _harness import describe, finish, machine, make_console, make_parser, measure, show, write_json
from rich.table import Table
from sqlalchemy import insert

from disgorge import Workspace
from disgorge.catalog.models import ErasureRequest, ErasureStep
from disgorge.erasure.ledger import ledger_dir


def _fill(root: Path, n: int) -> None:
    """N completed requests with a done record_ledger step, and N ledger files."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [uuid.uuid4().hex for _ in range(n)]
    with Workspace.open(root, actor="bench") as ws:
        folder = ledger_dir(ws.ctx)
        folder.mkdir(parents=True, exist_ok=True)
        plan = {"scope": {"kind": "subject", "ref": "sub_x"}, "assets": [], "counts": {}}
        with ws.ctx.sessions.begin() as session:
            for start in range(0, n, 5000):
                part = ids[start : start + 5000]
                session.execute(
                    insert(ErasureRequest),
                    [
                        {
                            "id": i,
                            "scope_kind": "subject",
                            "scope_ref": f"sub_{i}",
                            "reason": "benchmark",
                            "state": "completed",
                            "created_at": at,
                            "updated_at": at,
                            "plan": plan,
                            "actor": "bench",
                        }
                        for i in part
                    ],
                )
                session.execute(
                    insert(ErasureStep),
                    [
                        {"request_id": i, "seq": 0, "name": "record_ledger", "done_at": at, "summary": {}}
                        for i in part
                    ],
                )
        for i in ids:
            (folder / f"{at:%Y%m%dT%H%M%S}-{i}.json").write_text("{}")


def main() -> None:
    parser = make_parser(__doc__, compare=False)
    parser.add_argument("--entries", type=int, nargs="+", default=[0, 1000, 10000, 50000])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    info = machine()
    out = make_console()
    out.print(describe(info))
    table = Table(title="Workspace.open with the erasure ledger's check, beside without it")
    for column in ("ledger entries", "open, no check p50", "open, with the check p50", "the check adds"):
        table.add_column(column, justify="right")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        Workspace.init(root, actor="bench").close()
        have = 0
        for n in sorted(args.entries):
            _fill(root, n - have)
            have = n

            def open_with(check: bool) -> None:
                Workspace.open(root, check_ledger=check).close()

            without, _ = measure(lambda _k: open_with(False), args.repeat, warmup=1)
            with_check, _ = measure(lambda _k: open_with(True), args.repeat, warmup=1)
            added = with_check.p50 - without.p50
            table.add_row(
                f"{n:,}",
                f"{without.p50 * 1000:.1f} ms",
                f"{with_check.p50 * 1000:.1f} ms",
                f"{added * 1000:+.1f} ms",
            )
            results.append({"entries": n, "without": without.summary(), "with": with_check.summary()})
    show(out, table, args.markdown)
    out.print(finish(info))
    write_json(args.json, {"machine": info, "results": results})
    if args.json is None:
        out.print(
            json.dumps({r["entries"]: round(r["with"]["p50"] - r["without"]["p50"], 4) for r in results})
        )


if __name__ == "__main__":
    main()
