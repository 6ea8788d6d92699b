"""The workspace's status and maintenance."""

from ...maintenance import StatusView
from ...maintenance import status as workspace_status
from ..deps import Ctx
from ..table import Resource

__all__ = ["resource"]

resource = Resource("status", "The workspace at a glance.")


@resource.get(
    "/v1/status", scope="status:read", summary="Counts of what the workspace holds", response_model=StatusView
)
def status(ctx: Ctx) -> StatusView:
    return workspace_status(ctx)
