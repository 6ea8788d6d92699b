"""Lineage (everything downstream or upstream of a node) and the violation audit.

A node is named by kind and id in the body: a subject by external id or ``sub_`` ref (the
graph shows its ref only; asking about a subject needs ``subject:read`` as well, so that
``lineage:read`` alone cannot tell whether someone is in the workspace), a source by name,
an asset by sha256, a dataset or model by ``NAME[@VERSION]``, a run or artifact by id.
"""

from typing import Literal, NotRequired

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from ...audit import service as audit_service
from ...audit.violations import ViolationUse
from ...catalog.lineage import DEFAULT_DEPTH
from ...consent import Purpose
from ...errors import Forbidden
from ...runs import lineage as lineage_of
from ..deps import Ctx, Limit, Offset, Page, Who, page
from ..table import Resource

__all__ = ["resource"]

resource = Resource("lineage", "Upstream and downstream of any node; uses that consent did not cover.")

NodeKind = Literal["subject", "source", "asset", "dataset", "model", "transfer", "run", "artifact"]


class LineageQuestion(BaseModel):
    kind: NodeKind
    #: a subject's external id or sub_ ref, a source's name, an asset's sha256, a dataset's
    #: or model's NAME[@VERSION], a run's or artifact's id
    id: str = Field(min_length=1, max_length=512)
    direction: Literal["downstream", "upstream"] = "downstream"
    #: how many run/artifact steps to follow at most
    hops: int = Field(default=DEFAULT_DEPTH, ge=1, le=1000)


class LineageNode(TypedDict):
    #: ``KIND:NAME@VERSION``, ``run:ID``, ``subject:sub_...``: what edges refer to
    id: str
    kind: str
    label: str
    state: str
    #: steps from the node asked about
    depth: int
    artifact_id: NotRequired[str]


LineageEdge = TypedDict("LineageEdge", {"from": str, "to": str})


class Sample(TypedDict):
    count: int
    #: the first 100, sorted
    sample: list[str]


class LineageView(TypedDict):
    """The graph around a node: artifacts and runs as nodes and edges; the photos (and,
    upstream, their subjects and sources) counted, with a sample."""

    node: str
    direction: str
    max_depth: int
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    assets: Sample
    #: upstream only (null downstream)
    subjects: Sample | None
    sources: list[str]


class ViolationSummary(TypedDict):
    as_of: str | None
    uses_checked: int
    uses_with_violations: int
    #: items not covered, in all uses
    items: int
    by_source: dict[str, int]
    by_purpose: dict[str, int]


class ViolationPage(Page[ViolationUse]):
    """The offending uses (filtered, one page), and the audit's totals over all uses."""

    summary: ViolationSummary


@resource.post(
    "/v1/lineage",
    scope="lineage:read",
    summary="Everything downstream or upstream of a node (a subject's needs subject:read too)",
    response_model=LineageView,
    errors={403: "The role lacks lineage:read, or subject:read for a subject"},
)
def lineage(ctx: Ctx, who: Who, body: LineageQuestion) -> LineageView:
    if body.kind == "subject" and not who.may("subject:read"):
        raise Forbidden(f"the role {who.role} does not hold the scope subject:read")
    graph = lineage_of(ctx, f"{body.kind}:{body.id}", direction=body.direction, max_depth=body.hops)
    nodes: list[LineageNode] = graph.nodes  # type: ignore[assignment]  # dicts of this shape
    edges: list[LineageEdge] = graph.edges  # type: ignore[assignment]
    return {
        "node": graph.node,
        "direction": graph.direction,
        "max_depth": graph.max_depth,
        "nodes": nodes,
        "edges": edges,
        "assets": {"count": graph.assets.get("count", 0), "sample": graph.assets.get("sample", [])},
        "subjects": (
            {"count": graph.subjects["count"], "sample": graph.subjects["sample"]} if graph.subjects else None
        ),
        "sources": graph.sources,
    }


@resource.get(
    "/v1/violations",
    scope="violation:read",
    summary="Uses (dataset versions, runs) that touched items their consent did not cover",
    response_model=ViolationPage,
)
def violations(
    ctx: Ctx,
    source: str | None = None,
    purpose: Purpose | None = None,
    as_of: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, object]:
    report = audit_service.violations(ctx, as_of=as_of)
    rows = [
        v
        for v in report["violations"]
        if (source is None or source in v["by_source"]) and (purpose is None or v["purpose"] == purpose.value)
    ]
    summary: ViolationSummary = {
        "as_of": report["as_of"],
        "uses_checked": report["uses_checked"],
        "uses_with_violations": report["uses_with_violations"],
        "items": report["items"],
        "by_source": report["by_source"],
        "by_purpose": report["by_purpose"],
    }
    return {**page(rows, limit, offset), "summary": summary}
