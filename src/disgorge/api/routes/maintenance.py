"""Maintenance over the API: garbage collection (an admin's job)."""

from pydantic import BaseModel, Field

from ... import maintenance
from ...maintenance import GcReportView
from ..deps import Ctx
from ..table import Resource

__all__ = ["resource"]

resource = Resource("maintenance", "Removing what crashes left behind.")


class GcRequest(BaseModel):
    #: only files older than this are touched (an ingest running now keeps its blobs)
    grace_seconds: float = Field(default=maintenance.DEFAULT_GRACE_SECONDS, ge=0, le=10**8)
    dry_run: bool = False
    #: also rewrite the catalog (VACUUM)
    vacuum: bool = False


@resource.post(
    "/v1/gc",
    scope="settings:write",
    summary="Remove orphan blobs, stale temporaries, uploads and samples a crash left",
    response_model=GcReportView,
)
def gc(ctx: Ctx, body: GcRequest) -> GcReportView:
    return maintenance.gc(
        ctx, grace_seconds=body.grace_seconds, dry_run=body.dry_run, vacuum=body.vacuum
    ).to_dict()
