"""The inbox server's worker: one thread running the received erasure requests in order.

**No accepted request is lost.** The server answers ``202`` only once a request is a
committed ``incoming_requests`` row in state ``received``: the catalog is the queue. The
worker, with a workspace of its own (its own sessions, so that it never competes with the
handlers for theirs), runs the pending rows in the order they came, woken by each new
request and looking again every few seconds, so a row recorded just before a crash, or by
a handler that never woke it, is taken up all the same (and on every start). Every step
of an erasure is journaled, so a server killed mid-way resumes it.

The worker does not open the workspace itself: the server (an interface layer, like the
CLI) hands it a function that does, so this module needs nothing above the context.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import select

from ..catalog.models import IncomingRequest
from ..context import Context
from . import inbox

__all__ = ["POLL_S", "RETRY_S", "WAIT_S", "InboxWorker", "Opened"]

log = logging.getLogger("disgorge.server")

#: how long the worker lets this workspace's own erasure wait for *its* recipients, and
#: when it looks again at a request that is still waiting or hit an unexpected error
WAIT_S, RETRY_S = 10.0, 30.0
#: how often the worker looks for pending requests when nothing woke it
POLL_S = 2.0


class Opened(Protocol):
    """An opened workspace, as far as the worker needs one (a :class:`~disgorge.Workspace`)."""

    @property
    def ctx(self) -> Context: ...

    def close(self) -> None: ...


class InboxWorker:
    """One thread running the catalog's pending requests in order, with its own workspace."""

    def __init__(self, open_workspace: Callable[[], Opened]) -> None:
        self._open = open_workspace
        self._later: dict[str, float] = {}  # nonce -> when to look again (monotonic)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        opened = self._open()  # here, so that a failure stops the startup
        self._thread = threading.Thread(target=self._run, args=(opened,), name="disgorge-inbox", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the request under way (its erasure is journaled either way)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """A request was recorded: look at the catalog now rather than at the next poll."""
        self._wake.set()

    @staticmethod
    def _pending(ctx: Context) -> list[str]:
        with ctx.reader() as session:
            return list(
                session.scalars(
                    select(IncomingRequest.nonce)
                    .where(IncomingRequest.state.in_(("received", "executing")))
                    .order_by(IncomingRequest.received_at, IncomingRequest.nonce)
                )
            )

    def _run(self, opened: Opened) -> None:
        try:
            ctx = opened.ctx
            first = True
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    pending = self._pending(ctx)
                except Exception:  # e.g. the catalog busy for a minute: look again
                    log.exception("cannot read the pending erasure requests; will look again")
                    pending = []
                if first and pending:
                    log.info("resuming %d erasure request(s) under way", len(pending))
                first = False
                now = time.monotonic()
                self._later = {n: due for n, due in self._later.items() if n in pending}
                due = [n for n in pending if self._later.get(n, 0.0) <= now]
                if not due:
                    self._wake.wait(POLL_S)
                    continue
                for nonce in due:
                    if self._stop.is_set():
                        break
                    self._process(ctx, nonce)
        finally:
            opened.close()

    def _process(self, ctx: Context, nonce: str) -> None:
        try:
            status, doc = inbox.process(ctx, nonce, wait=WAIT_S)
        except Exception:  # e.g. a full disk: the journal keeps it; try again later
            log.exception("erasure request %s: unexpected error; will retry", nonce[:8])
            status = 202
        else:
            state = doc.get("body", {}).get("state", doc.get("error"))
            log.info("erasure request %s...: %s", nonce[:8], state)
        if status == 202:  # still waiting (on our own recipients): not before RETRY_S
            self._later[nonce] = time.monotonic() + RETRY_S
        else:
            self._later.pop(nonce, None)
