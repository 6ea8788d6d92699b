"""The API's runner of long-running work: one thread taking queued jobs in order.

Like the inbox's worker (:mod:`disgorge.sharing.worker`) it has a workspace of its own,
opened by the function the app hands it, so it never competes with the handlers for
their sessions; the catalog is its queue (:mod:`disgorge.jobs`), so nothing a ``202``
promised is lost when the server stops: an erasure resumes from its journal, and an
analysis or training cut off is marked failed and can be started again.

The kinds (:data:`KINDS`) call the same services the CLI does, acting for the principal
who asked, so the audit log names them.
"""

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from .. import jobs
from ..access.roles import Principal
from ..catalog.api_models import Principal as PrincipalRow
from ..context import Context
from ..errors import DisgorgeError
from ..workspace import Workspace

__all__ = ["KINDS", "JobRunner"]

log = logging.getLogger("disgorge.server")

#: (ctx, params, progress) -> result; progress(done, total)
JobFn = Callable[[Context, dict[str, Any], Callable[[int, int | None], None]], dict[str, Any]]


def _erasure(
    ctx: Context, params: dict[str, Any], _progress: Callable[[int, int | None], None]
) -> dict[str, Any]:
    from ..erasure import service

    view = service.resume(ctx, params["request"], wait=float(params.get("wait", 10.0)))
    return {"request": view["id"], "state": view["state"]}


#: what a job of each kind does
KINDS: dict[str, JobFn] = {"erasure": _erasure}
#: kinds that are not safe to run twice: failed after a crash instead of requeued
NOT_RESUMABLE: set[str] = set()
POLL_S = 2.0


class JobRunner:
    """Runs queued jobs, one at a time, in a thread of its own."""

    def __init__(self, open_workspace: Callable[[], Workspace]) -> None:
        self._open = open_workspace
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="disgorge-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(120)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        ws = self._open()
        try:
            jobs.fail_interrupted(ws.ctx, NOT_RESUMABLE)
            while not self._stop.is_set():
                if not self._run_one(ws.ctx):
                    self._wake.wait(POLL_S)
                    self._wake.clear()
        except Exception:
            log.exception("the job runner stopped")
        finally:
            ws.close()

    def _run_one(self, ctx: Context) -> bool:
        claimed = jobs.claim_next(ctx)
        if claimed is None:
            return False
        job, principal_id = claimed
        acting = self._acting(ctx, principal_id)
        kind = KINDS.get(job["kind"])
        try:
            if kind is None:
                raise DisgorgeError(f"unknown job kind {job['kind']!r}")
            result = kind(acting, job["params"], lambda done, total: jobs.report(ctx, job["id"], done, total))
        except DisgorgeError as exc:
            jobs.finish(acting, job["id"], error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a job's failure must not stop the runner
            log.error("job %s (%s) failed: %s", job["id"][:8], job["kind"], type(exc).__name__)
            jobs.finish(
                acting, job["id"], error=f"internal error ({type(exc).__name__}); see the server's log"
            )
        else:
            jobs.finish(acting, job["id"], result=result)
        return True

    @staticmethod
    def _acting(ctx: Context, principal_id: str | None) -> Context:
        if principal_id is None:
            return ctx
        with ctx.reader() as session:
            row = session.execute(
                select(PrincipalRow).where(PrincipalRow.id == principal_id)
            ).scalar_one_or_none()
        if row is None:
            return ctx
        return ctx.acting_as(row.name, Principal(id=row.id, name=row.name, role=row.role, kind=row.kind))
