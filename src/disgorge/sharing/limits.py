"""What the inbox server takes on at once, and how it refuses the rest (``disgorge serve``).

Every answer is either the real one or a refusal that says when to come back; never a
500 because the server is busy. SQLite takes one writer at a time, so catalog work is
bounded (:class:`Limits`): at most ``catalog_slots`` handlers touch the catalog at once,
each with one session at a time (a handler holding a session never opens a second: that
is what exhausted SQLAlchemy's pool of 15 connections under 20 requests), up to
``max_waiting`` more wait up to ``wait_s`` for a slot (:class:`Gate`), and anything beyond
is answered ``503`` with ``Retry-After`` at once. Bodies are refused from their declared
length before a byte is read, and all bodies being read or parsed at once share
``body_budget_bytes`` (:class:`BodyBudget`), so six 60 MB bodies cost one body's memory,
not six.

Kept apart from :mod:`.server` so that the admission rules read (and are tested) on their
own, without FastAPI's routing around them; nothing here needs the ``server`` extra until a
handler is actually run in the thread pool.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "BodyBudget", "Gate", "Limits", "Refused", "busy", "parse_body"]

#: the largest request body accepted (a request naming a million photos is ~70 MB of hex)
MAX_BODY_BYTES = 64 * 1024 * 1024
#: JSON nested deeper than this is refused (a request is 4 levels deep)
MAX_DEPTH = 16

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """What the server takes on at once; past it, it refuses (413/503) instead of buffering
    or waiting without end. The defaults fit a 2-core machine with a few hundred MB."""

    #: the largest request body (413 above it, from Content-Length, before reading)
    max_body_bytes: int = MAX_BODY_BYTES
    #: all request bodies being read, parsed or checked at once (503 when full)
    body_budget_bytes: int = MAX_BODY_BYTES
    #: handlers doing catalog work at once (each holds at most one session)
    catalog_slots: int = 4
    #: handlers waiting for a slot; one more is answered 503 at once
    max_waiting: int = 256
    #: the longest a handler waits for a slot before answering 503 (under the sender's
    #: 10 s HTTP timeout, so that it hears "come back" rather than nothing)
    wait_s: float = 5.0
    #: what a 503 tells the client to wait (seconds)
    retry_after_s: int = 2
    #: a request's line and headers must arrive within this (slow-header connections)
    header_timeout_s: float = 10.0
    #: and its body within this, once the headers are in
    body_timeout_s: float = 60.0
    #: an idle keep-alive connection is closed after this
    keep_alive_s: int = 5
    #: the request line and headers together (h11 answers 431 above it)
    max_header_bytes: int = 16 * 1024


class Refused(Exception):
    """A request answered with a JSON error (and headers) instead of being served."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def busy(limits: Limits, message: str) -> Refused:
    """A 503 that tells the client when to come back."""
    return Refused(503, message, {"Retry-After": str(limits.retry_after_s)})


class Gate:
    """At most ``catalog_slots`` handlers in the catalog, ``max_waiting`` queued for up to
    ``wait_s``; beyond that :class:`Refused` 503 at once. Used from the event loop only."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.catalog_slots)
        self._waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one catalog slot for the block (503 at once when too many wait)."""
        if self._waiting >= self.limits.max_waiting:
            raise busy(self.limits, "the server is busy: too many requests are waiting; try again later")
        self._waiting += 1
        try:
            async with asyncio.timeout(self.limits.wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise busy(
                self.limits, "the server is busy: no catalog slot came free; try again later"
            ) from None
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the thread pool while holding a slot."""
        from starlette.concurrency import run_in_threadpool

        async with self.slot():
            return await run_in_threadpool(fn, *args)


class BodyBudget:
    """Bytes of request bodies held at once (reserved from Content-Length before reading)."""

    def __init__(self, limits: Limits) -> None:
        self.limits, self.used = limits, 0

    @contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        if self.used and self.used + size > self.limits.body_budget_bytes:
            raise busy(self.limits, "the server is reading other large requests; try again later")
        self.used += size
        try:
            yield
        finally:
            self.used -= size


def _too_deep(doc: Any, limit: int) -> bool:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))
    return False


def parse_body(data: bytearray) -> Any:
    """The JSON document in ``data`` (emptied meanwhile, to hold one copy at a time);
    :class:`Refused` 400 when it is not JSON or is nested deeper than a request can be."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the request body is not JSON (not UTF-8)") from None
    finally:
        data.clear()
    try:
        doc = json.loads(text)
    except RecursionError:
        raise Refused(400, "the request body is nested too deeply") from None
    except ValueError:
        raise Refused(400, "the request body is not JSON") from None
    if _too_deep(doc, MAX_DEPTH):
        raise Refused(400, "the request body is nested too deeply")
    return doc
