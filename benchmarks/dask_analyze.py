"""`analyze` of the same photos: the process pool against a Dask LocalCluster of 2 workers.

Issue #17. Two workspaces ingest the same real photos (``lfw10x10`` by default, every
person granted biometric processing); one is analysed with ``workers=2`` (a process pool,
started and ended by the call, so it loads dlib's models each time), the other with
``cluster=`` a ``LocalCluster(n_workers=2, threads_per_worker=1)`` on 127.0.0.1 (worker
processes that stay: the first run loads the models, a second run with ``force`` finds
them loaded). Timed: the whole ``Workspace.analyze`` call, catalog writes and sealing
included. Checked: every photo's embeddings, face boxes and PDQ hashes are the same bytes.

    python benchmarks/dask_analyze.py [--faces DIR] [--limit N] [--markdown]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent))
from _harness import Clock, describe, finish, machine, make_console, make_parser, show, write_json

from disgorge import Workspace
from disgorge.catalog.models import Asset, AssetDerivative, Subject
from disgorge.vision.phash import phash_context

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "lfw10x10"


def stage(source: Path, root: Path, limit: int | None) -> tuple[Path, list[str]]:
    """Copy PERSON/PHOTO folders (at most ``limit`` photos) to ``root``; the people."""
    photos = sorted(p for p in source.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = photos[:limit] if limit else photos
    for p in photos:
        (root / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / p.parent.name / p.name)
    return root, sorted({p.parent.name for p in photos})


def workspace(path: Path, photos: Path, people: list[str]) -> Workspace:
    ws = Workspace.init(path, actor="bench", at="2013-01-01")
    ws.add_source("photos", kind="app", at="2013-01-01")
    ws.add_policy(
        "photos",
        "v1",
        text=b"p",
        effective_from="2013-01-01",
        allows=["biometric_processing"],
        at="2013-01-01",
    )
    ws.ingest(photos, source="photos", subject_from="dirname", at="2013-02-01")
    consent = path.parent / f"{path.name}-consent.csv"
    consent.write_text(
        "subject,purpose,decision,at\n"
        + "".join(f"{n},biometric_processing,granted,2013-03-01\n" for n in people)
    )
    ws.import_consent(consent, at="2013-03-01")
    return ws


def opened(ws: Workspace) -> dict[tuple[str, str, int], bytes]:
    """(sha256, kind, index) -> opened value, for embeddings, faces and PDQ hashes."""
    out = {}
    with ws.reader() as s:
        rows = s.execute(
            select(AssetDerivative, Asset.sha256, Asset.owner_id)
            .join(Asset, Asset.id == AssetDerivative.asset_id)
            .where(AssetDerivative.kind.in_(["phash", "face", "embedding"]))
        ).all()
        for d, sha, owner_id in rows:
            owner = s.get_one(Subject, owner_id)
            context = {
                "phash": phash_context(d.asset_id, d.face_index),
                "face": f"face:{d.asset_id}:{d.face_index}",
                "embedding": f"embedding:{d.asset_id}:{d.id}",
            }[d.kind]
            out[(sha, d.kind, d.face_index)] = ws.vault.open(owner, d.value_enc, context)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__, compare=False)
    parser.add_argument("--faces", type=Path, default=FACES, help=f"PERSON/PHOTO folder (default {FACES})")
    parser.add_argument("--limit", type=int, default=None, help="analyse only this many photos")
    args = parser.parse_args(argv)
    if not args.faces.exists():
        print(f"{args.faces} not found", file=sys.stderr)
        return 2
    from distributed import LocalCluster

    info = machine()
    print(describe(info))
    out = make_console()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        photos, people = stage(args.faces, Path(tmp) / "photos", args.limit)
        with (
            workspace(Path(tmp) / "pool", photos, people) as a,
            workspace(Path(tmp) / "dask", photos, people) as b,
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP server: loopback
            ) as lc,
        ):
            runs = [
                ("process pool, 2 processes", lambda: a.analyze(workers=2)),
                ("Dask LocalCluster, 2 workers (cold)", lambda: b.analyze(cluster=lc.scheduler_address)),
                (
                    "Dask LocalCluster, 2 workers (warm)",
                    lambda: b.analyze(force=True, cluster=lc.scheduler_address),
                ),
            ]
            for name, call in runs:
                with Clock("process") as clock:
                    report = call()
                rows.append(
                    {
                        "run": name,
                        "photos": report.analyzed,
                        "faces": report.faces,
                        "wall_s": round(clock.wall, 2),
                        "photos_per_s": round(report.analyzed / clock.wall, 2),
                    }
                )
            same = opened(a) == opened(b)
    table = Table(title=f"analyze, {rows[0]['photos']} photos: process pool vs Dask (same results: {same})")
    for col in ("run", "photos", "faces", "wall s", "photos/s"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in rows:
        table.add_row(
            r["run"], str(r["photos"]), str(r["faces"]), f"{r['wall_s']:.1f}", f"{r['photos_per_s']:.2f}"
        )
    show(out, table, args.markdown)
    print(finish(info))
    write_json(args.json, {"machine": info, "runs": rows, "same_results": same})
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
