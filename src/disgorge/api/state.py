"""What the app holds while it serves: the workspace's context and the admission limits."""

from dataclasses import dataclass
from typing import Any

from ..context import Context
from ..sharing.limits import BodyBudget, Gate, Limits
from ..sharing.worker import InboxWorker

__all__ = ["AppState"]


@dataclass
class AppState:
    """``request.app.state.disgorge``: one per app."""

    #: the workspace's context (acting as the server); handlers use it ``acting_as`` their principal
    ctx: Context
    limits: Limits
    gate: Gate
    budget: BodyBudget
    #: runs senders' accepted requests (the inbox), in its own workspace
    inbox_worker: InboxWorker
    #: runs the API's long-running work (approved erasures, analysis, training): see jobs
    jobs: Any = None
    #: this workspace's public key (PEM and hex): read once
    public_pem: bytes = b""
    public_hex: str = ""
