"""The workspace's status and maintenance."""

from ...maintenance import StatusView
from ...maintenance import status as workspace_status
from ..deps import Ctx, Who
from ..table import Resource

__all__ = ["resource"]

resource = Resource("status", "The workspace at a glance.")

HIDDEN = "(hidden)"


@resource.get(
    "/v1/status",
    scope="status:read",
    summary="Counts of what the workspace holds (its paths only for roles that read settings)",
    response_model=StatusView,
)
def status(ctx: Ctx, who: Who) -> StatusView:
    view = workspace_status(ctx)
    if not who.may("settings:read"):  # where the server keeps things is not every viewer's business
        view["workspace"] = view["catalog"] = view["store"] = view["kek"] = HIDDEN
    return view
