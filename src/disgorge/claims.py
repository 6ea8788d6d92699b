"""Who is running a piece of work: a claim that names the process, and whether it still lives.

An erasure request (:mod:`disgorge.erasure.runner`) and an API job (:mod:`disgorge.jobs`)
are claimed by the process that runs them, so two processes never run the same one and a
process killed mid-way leaves a claim the next one can recognise as dead: on this host
the kernel says whether the pid still runs; a claim from another host expires when its
holder has not touched the work for :data:`CLAIM_TTL`.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

__all__ = ["CLAIM_TTL", "claimant_alive", "new_claim_id"]

CLAIM_TTL = timedelta(seconds=120)


def new_claim_id() -> str:
    """``pid@host:random``: a claim left by a killed process on this machine is taken over at
    once (other hosts' claims expire after :data:`CLAIM_TTL`)."""
    return f"{os.getpid()}@{socket.gethostname()[:30]}:{uuid.uuid4().hex[:16]}"


def claimant_alive(claimed_by: str, claimed_at: datetime | None, now: datetime) -> bool:
    """Is the process that made this claim still running? On this host we ask the kernel (a
    SIGKILLed process leaves its claim behind); elsewhere the claim expires."""
    pid, _, rest = claimed_by.partition("@")
    host = rest.rpartition(":")[0]
    if pid.isdigit() and host == socket.gethostname()[:30]:
        if int(pid) == os.getpid():  # this process, interrupted earlier (e.g. KeyboardInterrupt)
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return claimed_at is not None and now - claimed_at < CLAIM_TTL
