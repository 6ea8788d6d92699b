"""The access export over the API: everything held about a person, as one zip.

``POST /v1/subjects/export`` takes the subject's external id in the body (never in the
URL) and answers with the zip :func:`disgorge.dsr.export.export_subject` writes: the page,
the signed ``export.json`` and the person's photos in clear. So it needs ``asset:bytes``,
like a photo's bytes; the zip is written to a private temporary file outside the workspace
(:mod:`disgorge.uploads`), streamed, then overwritten and unlinked. Every export is an
audited ``subject.exported`` naming the principal.
"""

from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ...dsr import export
from ..deps import Ctx, zip_download
from ..table import Resource

__all__ = ["resource"]

resource = Resource("access-export", "A person's access export (GDPR Art. 15): their data, signed, as a zip.")


class ExportRequest(BaseModel):
    #: the subject's external id (a sub_ ref works too)
    external_id: str = Field(min_length=1, max_length=512)


@resource.post(
    "/v1/subjects/export",
    scope="asset:bytes",
    summary="Everything held about a subject, as a zip: a page, the signed export.json, their photos",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}},
    errors={404: "No such subject (the answer names its ref, never the external id)"},
)
def export_subject(ctx: Ctx, body: ExportRequest) -> FileResponse:
    return zip_download(ctx, lambda path: export.export_subject(ctx, body.external_id, path))
