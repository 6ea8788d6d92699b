"""Dask distributed for the heavy work: face analysis batches and SISA shards as tasks.

``disgorge analyze --cluster tcp://HOST:8786`` and ``disgorge train ... --cluster ...``
connect to a running dask.distributed scheduler (extra ``dask``) and run there the same
functions a local run gives its process pool, so the results are the same bytes.

What crosses the wire, and why this way round:

* **Workers never see a key or the catalog.** Every key (the KEK, the subjects' data
  keys, the model key) stays in the client. A face-analysis task carries the decrypted
  bytes of its photos and the consent verdict (embed or not) and returns the analysis;
  a SISA task carries its shard's embeddings and labels (and, when it restarts from a
  checkpoint, that checkpoint's clear bytes) and returns the new checkpoints. The
  alternative, tasks that read sealed blobs from a shared store with a key they carry,
  puts a subject's *data key* on the wire, which opens every photo of that subject, not
  only the ones the task needs; and it needs store credentials on every worker.
* **The client writes everything.** The catalog keeps one writer (this process), the
  sealed checkpoints are sealed and written here as a local run writes them (so
  unlearning's crash order, old checkpoints kept until the new version is recorded,
  holds unchanged), and a failed or lost task leaves nothing behind on the workers.

So a worker is inside the same trust boundary as the client for the data of the tasks
it runs (photos and embeddings in memory): run the scheduler and workers on machines
you would run disgorge on, and use ``tls://`` addresses (dask's ``distributed.comm.tls``
configuration) when the network between them is not private. Workers need disgorge
installed at the same version, with the ``faces`` extra for analysis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import DisgorgeError

__all__ = ["CONNECT_TIMEOUT", "Cluster", "ClusterError", "connect"]

#: seconds to wait for the scheduler to answer before giving up
CONNECT_TIMEOUT = 10.0
SCHEMES = ("tcp://", "tls://")

R = TypeVar("R")


class ClusterError(DisgorgeError):
    """The Dask cluster cannot be used: dask is not installed, or the scheduler does not answer."""

    status = 503


@dataclass
class Cluster:
    """A connected Dask client: ``executor`` for streaming work, ``map`` for a list of tasks."""

    client: Any
    executor: Executor
    #: worker threads in the cluster when connected (how many tasks run at once)
    threads: int

    def map(self, fn: Callable[..., R], calls: Sequence[tuple[Any, ...]]) -> list[R]:
        """``[fn(*args) for args in calls]``, run as tasks on the cluster, in order."""
        futures = [self.executor.submit(fn, *args) for args in calls]
        return [f.result() for f in futures]


@contextlib.contextmanager
def connect(address: str, *, timeout: float = CONNECT_TIMEOUT) -> Iterator[Cluster]:
    """Connect to the scheduler at ``address`` (``tcp://HOST:PORT`` or ``tls://...``).

    Raises :class:`ClusterError` within about ``timeout`` seconds when it does not answer,
    before the caller has written anything. The error names the address (a host and
    port, never personal data)."""
    if not address.startswith(SCHEMES):
        raise ClusterError(f"cluster address {address!r}: expected tcp://HOST:PORT or tls://HOST:PORT")
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError(
            "--cluster needs dask.distributed: pip install 'disgorge[dask]' (here and on the workers)"
        ) from None
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"the Dask scheduler at {address} did not answer within {timeout:g} s ({type(exc).__name__}); "
            "is it running, and reachable from here?"
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            raise ClusterError(
                f"the Dask scheduler at {address} has no workers (waited {timeout:g} s)"
            ) from None
        threads = sum(int(n) for n in client.nthreads().values())
        yield Cluster(client, client.get_executor(pure=False), threads)
    finally:
        client.close()
