"""Process pools for CPU-bound work (image decoding, face analysis), used the same way.

:func:`process_pool` gives workers that end when this process does, even by SIGKILL, and
:func:`ordered_map` runs a function over batches a few at a time ahead, yielding results
in input order, so callers can stream millions of items with bounded memory.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, TypeVar

__all__ = ["ordered_map", "process_pool"]

T = TypeVar("T")
R = TypeVar("R")


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[Executor]:
    """A process pool whose workers end when this process does, even by SIGKILL.

    Left alone, the workers of a killed parent live on for ever: each waits on a call
    queue whose write end it holds itself, and they keep the forkserver and the resource
    tracker alive. So every worker gets the read end of a pipe whose only write end stays
    here; when this process is gone the read sees EOF and the worker exits.
    """
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    parent_alive, held_here = ctx.Pipe(duplex=False)
    try:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_exit_with_parent, initargs=(parent_alive,)
        ) as pool:
            yield pool
    finally:  # the pool has shut down: its workers are gone already
        held_here.close()
        parent_alive.close()


def _exit_with_parent(parent_alive: Connection) -> None:
    """Pool initializer (in the worker): exit as soon as the parent process is gone."""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            parent_alive.recv_bytes()  # nothing is ever sent: this returns at EOF
        os._exit(1)

    threading.Thread(target=watch, name="disgorge-parent-watch", daemon=True).start()


def ordered_map(
    fn: Callable[..., R],
    batches: Iterable[T],
    *,
    args: Callable[[T], tuple[Any, ...]],
    workers: int,
    inline: bool = False,
    executor: Executor | None = None,
) -> Iterator[tuple[T, R]]:
    """Yield ``(batch, fn(*args(batch)))`` in order, computing up to ``workers + 1`` ahead.

    With ``inline`` (or one worker) everything runs in this process. With ``executor``
    (a Dask cluster's, see :mod:`disgorge.cluster`) the batches run there, ``workers``
    at a time, and ``inline`` is ignored: the caller asked for the cluster.
    """
    if executor is not None:
        yield from _submit_ahead(executor, fn, batches, args, max(workers, 1))
        return
    if inline or workers <= 1:
        for batch in batches:
            yield batch, fn(*args(batch))
        return
    with process_pool(workers) as pool:
        yield from _submit_ahead(pool, fn, batches, args, workers)


def _submit_ahead(
    pool: Executor,
    fn: Callable[..., R],
    batches: Iterable[T],
    args: Callable[[T], tuple[Any, ...]],
    workers: int,
) -> Iterator[tuple[T, R]]:
    """Submit batches to ``pool`` keeping ``workers + 1`` in flight; yield them in order."""
    pending: deque[tuple[T, Future[R]]] = deque()
    for batch in batches:
        pending.append((batch, pool.submit(fn, *args(batch))))
        if len(pending) > workers + 1:
            done, fut = pending.popleft()
            yield done, fut.result()
    while pending:
        done, fut = pending.popleft()
        yield done, fut.result()
