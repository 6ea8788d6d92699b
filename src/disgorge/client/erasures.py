"""Erasure requests, their certificates, and the jobs long work runs as."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from .base import Transport, seg

if TYPE_CHECKING:
    from ..api.routes.erasures import CertificateCheckView
    from ..erasure.service import ErasureListed, ErasureView, PlanSummary, Reverification
    from ..jobs import JobView

__all__ = ["MOVING_STATES", "ErasureCalls"]

#: states an erasure request passes through on its own (the server's job runner moves it on)
MOVING_STATES = ("approved", "executing", "verifying")
#: states a request stays in until someone acts, or for good
_ENDED = ("completed", "cancelled", "denied", "failed")
#: the API's name for a scope kind where the workspace's differs
_API_KIND = {"asset": "photo"}


class ErasureCalls(Transport):
    def erasure_plan(self, kind: str, ident: str) -> PlanSummary:
        """Dry run: what erasing a ``subject`` (external id or ``sub_`` ref, sent in the body),
        a ``photo`` (``asset``: its sha256), a ``source``, a ``model`` or a ``transfer`` would touch."""
        body = {"kind": _API_KIND.get(kind, kind), "id": ident}
        return cast("PlanSummary", self.request("POST", "/v1/erasures/plan", json=body))

    def erase(self, kind: str, ident: str, *, reason: str, deadline_days: float = 30.0) -> ErasureView:
        """Request an erasure (as :meth:`erasure_plan` names it). It runs in the background
        once approved: at once when the caller may approve and the two-person rule asks no
        one else (``approvals_required`` 0), else once other privacy officers have approved."""
        body = {
            "kind": _API_KIND.get(kind, kind),
            "id": ident,
            "reason": reason,
            "deadline_days": deadline_days,
        }
        return cast("ErasureView", self.request("POST", "/v1/erasures", json=body))

    def erasure(self, request_id: str) -> ErasureView:
        """One request (by id or a unique prefix): plan, approvals, steps, verification."""
        return cast("ErasureView", self.request("GET", f"/v1/erasures/{seg(request_id)}"))

    def iter_erasures(self, *, state: str | None = None, kind: str | None = None) -> Iterator[ErasureListed]:
        """Erasure requests, oldest first."""
        kind = _API_KIND.get(kind, kind) if kind is not None else None
        return cast("Iterator[ErasureListed]", self.pages("/v1/erasures", state=state, kind=kind))

    def _decide(self, request_id: str, verb: str, body: dict[str, Any] | None) -> ErasureView:
        path = f"/v1/erasures/{seg(request_id)}/{verb}"
        return cast("ErasureView", self.request("POST", path, json=body))

    def erasure_approve(self, request_id: str, *, reason: str = "") -> ErasureView:
        """Approve a planned request; it runs in the background once it has the approvals it needs."""
        return self._decide(request_id, "approve", {"reason": reason})

    def erasure_deny(self, request_id: str, *, reason: str) -> ErasureView:
        """Deny a planned request: it ends."""
        return self._decide(request_id, "deny", {"reason": reason})

    def erasure_cancel(self, request_id: str, *, reason: str = "cancelled") -> ErasureView:
        """Cancel a request that has not started running."""
        return self._decide(request_id, "cancel", {"reason": reason})

    def erasure_resume(self, request_id: str) -> ErasureView:
        """Run an interrupted request, or one waiting for its recipients, again."""
        return self._decide(request_id, "resume", None)

    def erasure_certificate(self, request_id: str) -> dict[str, Any]:
        """The signed certificate of a completed erasure."""
        path = f"/v1/erasures/{seg(request_id)}/certificate"
        return cast("dict[str, Any]", self.request("GET", path))

    def verify_erasure(self, request_id: str) -> Reverification:
        """Check a completed erasure again (tombstones, destroyed keys, models)."""
        return cast("Reverification", self.request("POST", f"/v1/erasures/{seg(request_id)}/verify"))

    def verify_certificate(
        self, certificate: Mapping[str, Any], *, public_key: str | bytes | None = None
    ) -> CertificateCheckView:
        """Check a certificate's signature and Merkle root, with the server's key unless
        ``public_key`` (PEM or hex) is given (``disgorge certificate verify`` needs no server)."""
        key = public_key.decode() if isinstance(public_key, bytes) else public_key
        body = {"certificate": dict(certificate), "public_key": key}
        return cast("CertificateCheckView", self.request("POST", "/v1/certificates/verify", json=body))

    def wait_erasure(
        self,
        request_id: str,
        states: Iterable[str] | None = None,
        timeout: float = 600.0,
        *,
        interval: float = 0.5,
    ) -> ErasureView:
        """Poll a request until its state is one of ``states`` (by default any it rests in:
        not one of :data:`MOVING_STATES`) and return it. It returns early when the request
        ends otherwise (completed, cancelled, denied) or fails: check its ``state``.
        :class:`~disgorge.client.WaitTimedOut` after ``timeout`` seconds."""
        wanted = set(states) if states is not None else None

        def done(view: ErasureView) -> bool:
            state = view["state"]
            return state in _ENDED or (state not in MOVING_STATES if wanted is None else state in wanted)

        return self.poll(
            lambda: self.erasure(request_id),
            done,
            lambda view: f"erasure {view['id']} is still {view['state']}",
            timeout,
            interval,
        )

    # -- jobs ------------------------------------------------------------------------------
    def iter_jobs(self, *, state: str | None = None, kind: str | None = None) -> Iterator[JobView]:
        """Long work started over the API (analysis, training, unlearning, erasures), newest first."""
        return cast("Iterator[JobView]", self.pages("/v1/jobs", state=state, kind=kind))

    def job(self, job_id: str) -> JobView:
        """One job: its state, progress (``done`` of ``total``), and result or error."""
        return cast("JobView", self.request("GET", f"/v1/jobs/{seg(job_id)}"))

    def wait_job(self, job_id: str, timeout: float = 600.0, *, interval: float = 0.5) -> JobView:
        """Poll a job until it has ``succeeded`` (its ``result``) or ``failed`` (its
        ``error`` says why) and return it; :class:`~disgorge.client.WaitTimedOut` after
        ``timeout`` seconds."""
        return self.poll(
            lambda: self.job(job_id),
            lambda view: view["state"] in ("succeeded", "failed"),
            lambda view: f"job {view['id']} is still {view['state']}",
            timeout,
            interval,
        )
