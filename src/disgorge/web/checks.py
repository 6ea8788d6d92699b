"""Whole-workspace checks the overview shows, run once for every viewer of a server.

The audit chain's check reads every event again (4 s at 100,000 events) and the violation
audit reads every use's items. The overview asks for both after it is shown (htmx); if each
view ran them, a few officers reloading the overview would keep the server's catalog slots
busy with the same work and the API would answer 503 (benchmarks/ui.py saw it). So a
server keeps the last answer of each check with the audit log's event count when it was
made: while no event has been added since and the answer is younger than :data:`TTL_S`, it
is the answer (the page says how old it is); and only one request runs a check at a time —
another one asking meanwhile is told to ask again shortly (htmx polls) instead of holding a
catalog slot while it waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

__all__ = ["TTL_S", "Answer", "SharedCheck", "check_of"]

#: how long an answer stands while the audit log has no new event (seconds)
TTL_S = 300.0
_MADE = threading.Lock()


@dataclass(frozen=True)
class Answer:
    """A check's result and how many seconds ago it was made."""

    result: dict[str, Any]
    age_s: float


class SharedCheck:
    """One check's last answer, and the lock that lets one request at a time make it."""

    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self._clock = ttl_s, clock
        self._running = threading.Lock()
        self._last: tuple[int, float, dict[str, Any]] | None = None

    def _fresh(self, events: int) -> Answer | None:
        last = self._last
        if last is None or last[0] != events:
            return None
        age = self._clock() - last[1]
        return Answer(last[2], age) if age < self.ttl_s else None

    def answer(
        self, events: int, run: Callable[[], dict[str, Any]], *, wait: bool, reuse: bool = True
    ) -> Answer | None:
        """The answer for a log of ``events`` events: the last one if it still stands (and
        ``reuse``), else ``run()``'s; ``None`` when another request is running it and ``wait``
        is false. A person who asks for the check on its own page gets a new one
        (``reuse=False``), after the one running, if any."""
        fresh = self._fresh(events) if reuse else None
        if fresh is not None:
            return fresh
        if not self._running.acquire(blocking=wait):
            return None
        try:
            fresh = self._fresh(events) if reuse else None  # made by the request this one waited for
            if fresh is not None:
                return fresh
            result = run()
            self._last = (events, self._clock(), result)
            return Answer(result, 0.0)
        finally:
            self._running.release()


def check_of(request: Request, name: str) -> SharedCheck:
    """The server's one :class:`SharedCheck` called ``name`` (made on first use)."""
    state = request.app.state
    with _MADE:
        if not hasattr(state, "ui_checks"):
            state.ui_checks = {}
        checks: dict[str, SharedCheck] = state.ui_checks
        return checks.setdefault(name, SharedCheck())
