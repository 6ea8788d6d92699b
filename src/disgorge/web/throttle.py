"""Failed web logins slow an attacker down: after :data:`MAX_FAILURES` failures within
:data:`WINDOW_S` seconds for one user name, further attempts at that name are refused
(``429``, with ``Retry-After``) until the window has passed, right password or not, so
guessing a password costs real time. A good login clears the name's count.

Per name, not per client address: behind a reverse proxy every client has the proxy's
address, and one attacker would lock everyone out. (An attacker can still delay one
named user's logins by a window; the window is short for that reason.) The counts live in
the server process; the name is kept only as a hash, since people sometimes type their
password into the name field.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["MAX_FAILURES", "WINDOW_S", "LoginThrottle"]

MAX_FAILURES = 5
WINDOW_S = 300.0


class LoginThrottle:
    """Recent failures per user name (``user:<sha256>``), in one process."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window_s, self._clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(username: str) -> list[str]:
        return [f"user:{hashlib.sha256(username.strip().lower().encode()).hexdigest()}"]

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def wait_s(self, keys: list[str]) -> float:
        """Seconds until these keys may try again (0: now)."""
        now = self._clock()
        with self._lock:
            waits = [
                self.window_s - (now - times[0])
                for times in (self._recent(k, now) for k in keys)
                if len(times) >= self.max_failures
            ]
        return max(waits, default=0.0)

    def failed(self, keys: list[str]) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                if key.startswith("user:"):
                    self._failures.pop(key, None)
