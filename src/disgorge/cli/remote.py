"""``--server URL --token TOKEN``: a command run against a disgorge server, not a workspace.

The read commands (``status``, ``erasure list/show``, ``lineage``, ``subject show``,
``model list``, ``audit log/verify``) and erasure requests (``erase``, ``erasure
approve/deny``) take ``--server`` and ``--token`` (or ``$DISGORGE_SERVER`` and
``$DISGORGE_TOKEN``). :func:`open_target` hands a command either the workspace, as
before, or a :class:`Remote`: the same methods, answered by the server through
:class:`disgorge.client.Client`, so a command prints the same either way.

The token is never printed: not in a message, not in ``--help``. Over ``http://`` to a
host other than this machine it travels in clear, and the command says so on stderr.
Over ``--server`` an erasure is requested and approved by the server's rules (the
two-person rule); a command that made or approved one waits for it to come to rest.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from ..audit.log import ChainReport
from ..catalog.lineage import LineageGraph
from ..client import Client, TokenInClearWarning, WaitTimedOut
from ..errors import DisgorgeError, InvalidInput
from ._common import err, fail, open_workspace

if TYPE_CHECKING:
    from datetime import datetime

    from ..api.routes.models import ModelListed
    from ..audit.service import AuditEventView
    from ..consent.service import SubjectView
    from ..erasure.service import ErasureListed, ErasureView, PlanSummary
    from ..maintenance import StatusView
    from ..workspace import Workspace

__all__ = ["Remote", "ServerOpt", "TokenOpt", "open_target"]

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="DISGORGE_SERVER",
        help="Ask this disgorge server (https://HOST[:PORT]) instead of opening a workspace.",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="DISGORGE_TOKEN",
        help="The API token for --server; better set $DISGORGE_TOKEN, as other users can see a command line.",
        show_default=False,
    ),
]

#: how long a command that requested or approved an erasure waits for it to come to rest
SETTLE_S = 600.0


class Remote:
    """The workspace's methods that the remote commands call, answered by a server."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _settle(self, view: ErasureView) -> ErasureView:
        try:
            view = self.client.wait_erasure(view["id"], timeout=SETTLE_S)
        except WaitTimedOut as exc:
            err.print(f"{exc}; see `disgorge erasure show {view['id']} --server ...`", markup=False)
            return self.client.erasure(view["id"])
        if view["state"] == "planned":
            needed = view["approvals_required"]
            who = f"{needed} approval(s) by other privacy officers" if needed else "an approval"
            err.print(
                f"erasure {view['id']} waits for {who}: `disgorge erasure approve {view['id']} --server ...`",
                markup=False,
            )
        return view

    @staticmethod
    def _no_backfill(at: str | datetime | None) -> None:
        if at is not None:
            raise InvalidInput("--at (backfill) works on a workspace only, not over --server")

    def status(self) -> StatusView:
        return self.client.status()

    def erasures(self) -> list[ErasureListed]:
        return list(self.client.iter_erasures())

    def erasure(self, request_id: str) -> ErasureView:
        return self.client.erasure(request_id)

    def erasure_plan(self, kind: str, ident: str) -> PlanSummary:
        return self.client.erasure_plan(kind, ident)

    def erase(
        self,
        kind: str,
        ident: str,
        *,
        reason: str,
        execute: bool = True,
        at: str | datetime | None = None,
        wait: float = 30.0,
        deadline_days: float = 30.0,
    ) -> ErasureView:
        """Request the erasure; the server runs it once approved (at once when the rules
        let the caller's own approval do). ``wait`` is the server's to decide."""
        self._no_backfill(at)
        if not execute:
            raise InvalidInput(
                "over --server a request may run as soon as it is made (the server's two-person "
                "rule decides): pass --yes to make it"
            )
        return self._settle(self.client.erase(kind, ident, reason=reason, deadline_days=deadline_days))

    def erasure_approve(self, request_id: str, *, at: str | datetime | None = None) -> ErasureView:
        self._no_backfill(at)
        return self._settle(self.client.erasure_approve(request_id))

    def erasure_deny(self, request_id: str, *, reason: str, at: str | datetime | None = None) -> ErasureView:
        self._no_backfill(at)
        return self.client.erasure_deny(request_id, reason=reason)

    def subject(self, subject: str) -> SubjectView:
        return self.client.subject(subject)

    def lineage(self, node: str, *, direction: str = "downstream", max_depth: int = 50) -> LineageGraph:
        kind, sep, ident = node.partition(":")
        if not sep or not ident:
            raise InvalidInput(
                f"node {node!r}: expected KIND:ID, e.g. subject:ID, source:NAME, asset:SHA256, "
                "dataset:NAME@V, model:NAME@V, run:ID"
            )
        view = self.client.lineage(kind, ident, direction=direction, hops=max_depth)
        nodes: list[dict[str, Any]] = [dict(n) for n in view["nodes"]]
        return LineageGraph(
            view["node"],
            view["direction"],
            view["max_depth"],
            nodes=nodes,
            edges=[{"from": e["from"], "to": e["to"]} for e in view["edges"]],
            assets=dict(view["assets"]),
            subjects=dict(view["subjects"] or {}),
            sources=list(view["sources"]),
        )

    def models(self) -> list[ModelListed]:
        return list(self.client.iter_models())

    def audit_events(self, *, limit: int = 50, action: str | None = None) -> list[AuditEventView]:
        return self.client.audit_events(limit, action=action)

    def verify_audit(self, since: dict[str, Any] | None = None) -> ChainReport:
        if since is not None:
            raise InvalidInput("--since works on a workspace only; over --server use `audit prove --from`")
        view = self.client.verify_audit()
        return ChainReport(
            ok=view["ok"],
            events=view["events"],
            head=view["head"],
            first_bad_seq=view["first_bad_seq"],
            reason=view["reason"],
            anchor=view.get("anchor"),
        )


def connect(server: str, token: str | None) -> Client:
    """A client of ``server``; a one-line error (exit 2) for a missing token or a bad URL.
    The warning that the token would travel in clear goes to stderr."""
    if not token:
        raise fail("--server needs a token: set $DISGORGE_TOKEN (or pass --token)", code=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TokenInClearWarning)
        try:
            client = Client(server, token)
        except DisgorgeError as exc:
            raise fail(str(exc), code=2) from None
    for warning in caught:
        if issubclass(warning.category, TokenInClearWarning):
            err.print(f"[bold yellow]warning:[/] {escape(str(warning.message))}", soft_wrap=True)
    return client


@contextmanager
def open_target(
    workspace: Path | None, server: str | None, token: str | None
) -> Iterator[Workspace | Remote]:
    """The workspace (:func:`~._common.open_workspace`), or with ``server`` the server as a
    :class:`Remote`; a DisgorgeError either way becomes a one-line error, exit 1."""
    if not server:
        with open_workspace(workspace) as ws:
            yield ws
        return
    if workspace is not None:
        raise fail("name --workspace or --server, not both", code=2)
    client = connect(server, token)
    try:
        yield Remote(client)
    except DisgorgeError as exc:
        raise fail(str(exc)) from None
    finally:
        client.close()
