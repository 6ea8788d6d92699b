"""restore-check: replay into a restored catalog the erasures the ledger recorded after it."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import DisgorgeError
from ..workspace import Workspace
from ._common import AtOpt, JsonOpt, WorkspaceOpt, console, fail, print_json


def restore_check(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be replayed; change nothing.")
    ] = False,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """After restoring the catalog (or the whole workspace) from a backup: erase again what
    the backup brought back, from the erasure ledger. Until it has run, every other command
    and `disgorge serve` refuse the workspace. Exit code 0 when nothing is left to replay."""
    try:
        ws = Workspace.open(workspace, check_ledger=False)
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    try:
        report = ws.restore_check(dry_run=dry_run, at=at)
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    finally:
        ws.close()
    if json_out:
        print_json(report)
    else:
        lines = [
            f"erasure ledger: {report['ledger_entries']} entries, {report['missing']} unknown to the catalog"
        ]
        for r in report["replayed"]:
            what = f"replayed by erasure {r['replay']}" if r["replay"] else "would be replayed"
            lines.append(
                f"  erasure {r['request']}: {what}: {r['photos']} photo(s), {r['subjects']} subject key(s), "
                f"{r['models']} model(s) erased again; {r['fingerprints']} fingerprint(s), "
                f"{r['hashes']} blocklist hash(es) put back"
            )
        audit = report["audit"]
        if audit["rolled_back"]:
            lines.append(
                f"  audit log: rolled back (head {audit['head_seq']}, "
                f"the ledger saw {audit['ledger_head_seq']}): "
                "certificates issued after the backup name a tree head this log no longer has"
            )
        lines.append("ok: nothing left to replay" if report["ok"] else "NOT DONE: run it without --dry-run")
        console.print("\n".join(lines), markup=False)
    if not report["ok"]:
        raise typer.Exit(1)
