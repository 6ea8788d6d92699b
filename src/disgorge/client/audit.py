"""The audit log over the API: events, the chain's verification, signed heads and proofs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from .base import Transport, params

if TYPE_CHECKING:
    from ..api.routes.audit import ChainView
    from ..audit.service import AuditEventView, ProofView, TreeHead

__all__ = ["AuditCalls"]

_EVENTS = "/v1/audit/events"


class AuditCalls(Transport):
    def iter_audit_events(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[AuditEventView]:
        """Audit events, oldest first (of one ``action``, one ``actor``; ``since <= at < until``)."""
        found = self.pages(_EVENTS, action=action, actor=actor, since=since, until=until)
        return cast("Iterator[AuditEventView]", found)

    def audit_events(self, limit: int = 50, *, action: str | None = None) -> list[AuditEventView]:
        """The last ``limit`` events (of one ``action``), oldest first, as
        :meth:`disgorge.Workspace.audit_events` gives them."""
        filters = params(action=action)
        total = int(self.request("GET", _EVENTS, params={**filters, "limit": 1, "offset": 0})["total"])
        out: list[AuditEventView] = []
        offset = max(0, total - limit)
        while len(out) < limit and offset < total:
            query = {**filters, "limit": min(1000, limit - len(out)), "offset": offset}
            items = self.request("GET", _EVENTS, params=query)["items"]
            if not items:
                break
            out += items
            offset += len(items)
        return out

    def verify_audit(self) -> ChainView:
        """Check the whole hash chain (``ok`` false names the first bad event)."""
        return cast("ChainView", self.request("GET", "/v1/audit/verify"))

    def audit_checkpoint(self) -> TreeHead:
        """A signed tree head of the log now: keep it outside the workspace."""
        return cast("TreeHead", self.request("POST", "/v1/audit/checkpoints"))

    def audit_prove(self, *, since: Mapping[str, Any] | None = None, event: int | None = None) -> ProofView:
        """A signed head now, with the consistency proof from ``since`` (a head kept before)
        and/or the inclusion proof of event ``event``: what a third party checks offline."""
        body = {"from": dict(since) if since is not None else None, "event": event}
        return cast("ProofView", self.request("POST", "/v1/audit/prove", json=body))
