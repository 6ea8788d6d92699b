"""The API's runner of long-running work: one thread taking queued jobs in order.

Like the inbox's worker (:mod:`disgorge.sharing.worker`) it has a workspace of its own,
opened by the function the app hands it, so it never competes with the handlers for
their sessions; the catalog is its queue (:mod:`disgorge.jobs`), so nothing a ``202``
promised is lost when the server stops.

The kinds (:data:`KINDS`) call the same services the CLI does, acting for the principal
who asked, so the audit log names them. A job found ``running`` when a server starts was
cut off by a crash; what happens to it depends on its kind:

* ``erasure``: queued again; it resumes from its journal (each step runs once);
* ``analysis``: queued again; analysing is idempotent (the photos analysed before the
  crash are skipped, or, with ``force``, analysed again to the same result), and its
  result says ``resumed_after_crash``;
* ``unlearn``: queued again; it unlearns from the model's *latest* version, and finishes
  an unlearning cut short first (:func:`~disgorge.training.lifecycle.finish_unlearning`),
  so photos already forgotten are not forgotten twice (the result then says so, with
  ``resumed_after_crash``);
* ``train``: failed (:data:`NOT_RESUMABLE`), with a message: running it again would train
  a second version. Look at ``GET /v1/models`` and start it again if none was made.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from .. import jobs
from ..access.roles import Principal
from ..catalog.api_models import Principal as PrincipalRow
from ..catalog.models import ErasureRequest
from ..claims import new_claim_id
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


def _throttled(progress: Callable[[int, int | None], None]) -> Callable[[int, int], None]:
    """``progress`` at most every :data:`REPORT_S` seconds (each is a catalog write), and at the end."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= REPORT_S:
            last[0] = now
            progress(done, total)

    return report


def _analysis(
    ctx: Context, params: dict[str, Any], progress: Callable[[int, int | None], None]
) -> dict[str, Any]:
    from ..vision import service

    report = service.analyze(
        ctx,
        shas=params.get("shas"),
        force=bool(params.get("force", False)),
        workers=params.get("workers"),
        cnn=bool(params.get("cnn", False)),
        embedder=str(params.get("embedder", "dlib")),
        progress=_throttled(progress),
    )
    progress(report.photos, report.photos)
    return report.to_dict()


def _train(
    ctx: Context, params: dict[str, Any], progress: Callable[[int, int | None], None]
) -> dict[str, Any]:
    from ..training import lifecycle

    progress(0, 1)
    trained = lifecycle.train_model(
        ctx,
        params["name"],
        dataset=params["dataset"],
        model=params.get("model", "face-id"),
        shards=int(params.get("shards", 8)),
        slices=int(params.get("slices", 4)),
        seed=int(params.get("seed", 0)),
        code_version=str(params.get("code_version", "")),
    )
    progress(1, 1)
    return dict(trained)


def _unlearn(
    ctx: Context, params: dict[str, Any], progress: Callable[[int, int | None], None]
) -> dict[str, Any]:
    from ..training import lifecycle

    progress(0, 1)
    result = lifecycle.unlearn_model(
        ctx,
        params["model"],  # the name: its latest version (see the module's docstring)
        subjects=params.get("subjects") or None,  # sub_ refs: the route never stores external ids
        shas=params.get("shas") or None,
        reason=str(params.get("reason", "unlearning request")),
    )
    progress(1, 1)
    return dict(result)


#: what a job of each kind does
KINDS: dict[str, JobFn] = {"erasure": _erasure, "analysis": _analysis, "train": _train, "unlearn": _unlearn}
#: kinds that are not safe to run twice: failed after a crash instead of requeued
NOT_RESUMABLE: set[str] = {"train"}
POLL_S = 2.0
#: how often an idle runner asks the recipients of erasures awaiting them again
RECIPIENTS_POLL_S = 10.0
#: least seconds between two progress reports of a job
REPORT_S = 0.5


class JobRunner:
    """Runs queued jobs, one at a time, in a thread of its own."""

    def __init__(self, open_workspace: Callable[[], Workspace]) -> None:
        self._open = open_workspace
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: jobs a crash cut off that run again (their result says so)
        self._resumed: set[str] = set()
        self._next_recipients_poll = 0.0
        #: this runner's claim on the job it runs (disgorge.claims)
        self._claim_id = new_claim_id()

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
            self._recover(ws.ctx)
            while not self._stop.is_set():
                if not self._run_one(ws.ctx):
                    self._wake.wait(POLL_S)
                    self._wake.clear()
                    self._recover(ws.ctx)  # a job another server was running when it died
                    self._poll_recipients(ws.ctx)
        except Exception:
            log.exception("the job runner stopped")
        finally:
            ws.close()

    def _poll_recipients(self, ctx: Context) -> None:
        """Move on the erasures requested over the API that rest in ``awaiting_recipients`` (a
        recipient answered since, or its notice is due again): what ``disgorge erasure
        resume`` does by hand. Only the API's own: a request made at the shell is its
        process's to poll (it may be waiting on it right now), and a sender's is the inbox
        worker's."""
        if time.monotonic() < self._next_recipients_poll:
            return
        self._next_recipients_poll = time.monotonic() + RECIPIENTS_POLL_S
        from ..erasure import service

        with ctx.reader() as session:
            waiting = session.scalars(
                select(ErasureRequest.id).where(
                    ErasureRequest.state == "awaiting_recipients", ErasureRequest.principal_id.is_not(None)
                )
            ).all()
        for request_id in waiting:
            if self._stop.is_set():
                return
            try:
                service.resume(ctx, request_id, wait=0)
            except DisgorgeError as exc:
                log.warning("erasure %s: recipients not polled: %s", request_id[:8], exc)
        # a hold release cut off before its follow-up erasure: finished here, as the CLI
        # does on opening the workspace
        from ..dsr.holds import finish_released

        try:
            finish_released(ctx)
        except DisgorgeError as exc:
            log.warning("withheld items not finished: %s", exc)

    def _recover(self, ctx: Context) -> None:
        for job, again in jobs.recover(ctx, NOT_RESUMABLE):
            log.warning(
                "job %s (%s) was cut off by a stop: %s",
                job["id"][:8],
                job["kind"],
                "it runs again" if again else "marked failed",
            )
            if again:
                self._resumed.add(job["id"])

    def _run_one(self, ctx: Context) -> bool:
        claimed = jobs.claim_next(ctx, self._claim_id)
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
            if job["id"] in self._resumed:
                result = {**result, "resumed_after_crash": True}
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
