"""The forensic scan's own process: reads a request on stdin, answers on stdout.

:func:`disgorge.erasure.forensics.scan_tree` starts it so that the raw reads of the
catalog's files happen in a process that holds no SQLite connection (and so no POSIX locks
that closing those files would drop). Request: ``{"root": PATH, "needles": {label: hex}}``;
answer: ``{"hits": [[label, file, offset], ...], "files": N, "bytes": N}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .forensics import TreeStats, scan_tree_in_process


def main() -> None:
    request = json.loads(sys.stdin.buffer.read())
    needles = {label: bytes.fromhex(value) for label, value in request["needles"].items()}
    stats = TreeStats()
    hits = scan_tree_in_process(Path(request["root"]), needles, stats=stats)
    answer = {"hits": [[h.label, h.file, h.offset] for h in hits], "files": stats.files, "bytes": stats.bytes}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
