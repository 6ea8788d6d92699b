"""The erasure's steps, in the order they run, and the hook to inject faults into them.

1. ``sample``: before destroying anything, take what the verifier will look for (byte
   windows of each photo, its hashes, embeddings, the data keys), sealed with a one-off
   key, dropped after the scan;
2. ``notify_recipients``: sign one request per recipient the photos went to;
3. ``unlearn_models``: SISA models forget the photos (new versions, old ones retired);
4. ``retire_models``: other models, and everything derived from them, are retired;
5. ``derive_datasets``: dataset versions holding the photos are marked erased, and the
   latest version of each dataset gets a new MAJOR version without them;
6. ``remove_index``: embeddings leave the face index, whose file is rewritten;
7. ``delete_derivatives``: hashes, faces, embeddings and crop blobs;
8. ``delete_blobs``: the photos' encrypted blobs, once their PDQ hashes are kept sealed
   (``sticky_copies``: ingest refuses near-copies of an erased photo);
9. ``tombstone_assets``: catalog rows keep their place in the lineage but lose every
   personal field; a keyed fingerprint of each photo blocks its re-ingestion;
10. ``shred_keys``: the subjects' data keys are destroyed, their consent records deleted;
11. ``record_ledger``: a signed entry in the erasure ledger, outside the catalog, of what
    was removed (a catalog restored from an older backup is replayed from it);
12. ``purge_database``: WAL checkpoint, and VACUUM for large erasures, so no old page
    holds any of it (a small one VACUUMs only if the verifier's scan finds a stale copy);
13. ``verify``: the forensic scan and the lineage and look-alike checks;
14. ``await_recipients``: wait for the recipients' signed answers;
15. ``certificate``: the signed certificate.

Each step is a :class:`Step` (``run``, ``describe``); :data:`REGISTRY` maps the names the
journal records to them, in order. The journal of every approved request holds exactly
these names in this order (:mod:`disgorge.erasure.journal`): a step added, removed or
renamed here is a change of the journal's format.

Fault injection
---------------
Tests and benchmarks reach into a run through :func:`inject`, never by patching::

    from disgorge.erasure.steps import inject

    def disk_gone() -> None:
        raise OSError("disk went away")

    with inject("delete_blobs", before=disk_gone):
        ws.erase("subject", "Ada_Lovelace", reason="...")  # the step, and the request, fail

    with inject("remove_index", after=kill_myself):  # a crash: done, not yet marked done
        ws.erase(...)

A fault is a callable without arguments, called at its point of the named step while the
``with`` block runs. Every step has the points ``before``, ``after`` and ``marked``
(:data:`RUNNER_POINTS`); some have inner points (``delete_blobs``: ``blob_deleted``;
``tombstone_assets`` and ``shred_keys``: ``committing``; ``verify``: ``verified``), listed
by :func:`describe`. A fault may raise (an ``Exception`` fails the step and the request,
as the step's own error would), kill the process (what the crash tests do), or only
observe (the benchmark's timers). Injecting into an unknown step or point is a
``ValueError``, so a renamed step cannot silently disarm a test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType

from typing_extensions import TypedDict

from ._step import FAULTS, RUNNER_POINTS, AwaitingRecipients, Execution, Fault, Step
from .certify import certify
from .derived import derive_datasets, retire_models, unlearn_models
from .ledger import record_ledger
from .recipients import await_recipients_step, notify_recipients
from .removal import (
    delete_blobs,
    delete_derivatives,
    purge_database,
    remove_index,
    shred_keys,
    tombstone_assets,
)
from .samples import sample
from .verifier import verify_step

__all__ = [
    "REGISTRY",
    "RUNNER_POINTS",
    "STEPS",
    "AwaitingRecipients",
    "Execution",
    "Fault",
    "Step",
    "StepDescription",
    "describe",
    "get",
    "inject",
]

#: the steps by name, in the order they run
REGISTRY: Mapping[str, Step] = MappingProxyType(
    {
        s.name: s
        for s in (
            sample,
            notify_recipients,
            unlearn_models,
            retire_models,
            derive_datasets,
            remove_index,
            delete_derivatives,
            delete_blobs,
            tombstone_assets,
            shred_keys,
            record_ledger,
            purge_database,
            verify_step,
            await_recipients_step,
            certify,
        )
    }
)
#: the names of the steps, in the order they run (the journal's rows)
STEPS: tuple[str, ...] = tuple(REGISTRY)


class StepDescription(TypedDict):
    step: str
    does: str
    points: list[str]


def get(name: str) -> Step:
    """The step of this name; ``ValueError`` for a name that is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"no erasure step {name!r} (steps: {', '.join(STEPS)})") from None


def describe() -> list[StepDescription]:
    """Every step in order: its name, what it does, and the points faults can be injected at."""
    return [{"step": s.name, "does": s.describe(), "points": list(s.points)} for s in REGISTRY.values()]


@contextmanager
def inject(step: str, **faults: Fault) -> Iterator[None]:
    """Arm ``faults`` (point name -> callable) at the points of ``step`` while the block
    runs; disarmed on leaving it, however it is left. Blocks may nest: every fault armed at
    a point runs, in the order armed."""
    points = get(step).points
    unknown = sorted(set(faults) - set(points))
    if unknown:
        raise ValueError(f"step {step!r} has no point {', '.join(unknown)} (points: {', '.join(points)})")
    armed = [((step, point), fault) for point, fault in faults.items()]
    for key, fault in armed:
        FAULTS.setdefault(key, []).append(fault)
    try:
        yield
    finally:
        for key, fault in armed:
            FAULTS[key].remove(fault)
            if not FAULTS[key]:
                del FAULTS[key]
