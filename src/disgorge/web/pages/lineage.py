"""The lineage graph (``/ui/lineage``): everything downstream or upstream of a node, drawn.

Why a page of its own: "what was built from this person's photos, and what is it now?" is
the question an erasure starts from, and a table of ids answers it badly. The page asks the
same question as ``POST /v1/lineage`` (:mod:`disgorge.api.routes.lineage`, whose handler it
calls, so the answer is the API's): ``lineage:read``, and ``subject:read`` as well for a
subject (else ``lineage:read`` alone would tell whether someone is in the workspace).

A subject is named in URLs by its ``sub_`` ref only: an external id typed into the form goes
in the POST body and is turned into the ref here (:func:`disgorge.subjects.ref_of`, as the
API does), then ``303`` to the GET URL with the ref. ``/ui/lineage/graph.json`` answers the
API's JSON plus what the drawing needs and the API leaves out: the node asked about when the
walk does not list it (an artifact's or run's own node), and for every node the question
that asks about it (its page, and one step further for "expand"). The page reads without
JavaScript: the same nodes are a table, rendered here (``templates/_graph.html``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import pydantic
from fastapi import Form, Request, Response
from fastapi.responses import JSONResponse

from ...api.routes.lineage import LineageQuestion
from ...api.routes.lineage import lineage as api_lineage
from ...catalog.lineage import DEFAULT_DEPTH
from ...datasets import service as dataset_service
from ...errors import DisgorgeError, InvalidInput
from ...runs.service import show_run
from ...subjects import ref_of
from ...training import lifecycle
from ...vault import REF_PATTERN
from .. import UI_PREFIX
from ..framework import SECURITY_HEADERS, context, error_page, login_of, needs, page_router, redirect, render

__all__ = ["DIRECTIONS", "KINDS", "graph_view", "question", "router", "table_view"]

router = page_router()

#: what the form offers (the API's node kinds)
KINDS = ("subject", "source", "asset", "dataset", "model", "transfer", "run", "artifact")
DIRECTIONS = ("downstream", "upstream")
#: the kinds of node the walk lists whose id after ``KIND:`` is what a question names
_NAMED = ("subject", "source", "asset")
_SUBJECT_IN_URL = "a subject is named in a URL by its sub_ ref only (type its external id in the form)"


def question(kind: str, node: str, direction: str, hops: str | int) -> LineageQuestion:
    """The API's question, or :class:`InvalidInput` (a ``422`` page) saying what is wrong."""
    try:
        values = {"kind": kind, "id": node.strip(), "direction": direction or "downstream"}
        asked = LineageQuestion.model_validate({**values, "hops": hops or DEFAULT_DEPTH})
    except pydantic.ValidationError as exc:
        fields = sorted({str(e["loc"][0]) for e in exc.errors() if e.get("loc")})
        raise InvalidInput(f"the lineage question is malformed: check {', '.join(fields) or 'it'}") from None
    if asked.kind == "subject" and not REF_PATTERN.match(asked.id):
        raise InvalidInput(_SUBJECT_IN_URL)
    return asked


def _query(kind: str, node: str, direction: str, hops: int | None = None) -> str:
    values: dict[str, Any] = {"kind": kind, "id": node, "direction": direction}
    if hops is not None:
        values["hops"] = hops
    return urlencode(values)


def _asks(node: dict[str, Any]) -> tuple[str, str] | None:
    """The (kind, id) of the question about a node of the walk (see catalog.lineage's ids)."""
    if "artifact_id" in node:
        return "artifact", str(node["artifact_id"])
    prefix, _, rest = str(node["id"]).partition(":")
    if prefix == "run" or prefix in _NAMED:
        return prefix, rest
    return None


def _root_kind(kind: str) -> str:
    return "dataset_version" if kind == "dataset" else kind


def _root_state(request: Request, asked: LineageQuestion) -> str:
    """The state of the node asked about when it is a dataset, model or run (the walk leaves
    its own node out), from the service of its own page if the role may see that; else ""."""
    ctx, who = context(request), login_of(request).principal
    try:
        if asked.kind == "dataset" and who.may("dataset:read"):
            return str(dataset_service.show(ctx, asked.id)["state"])
        if asked.kind == "model" and who.may("model:read"):
            return str(lifecycle.model(ctx, asked.id)["state"])
        if asked.kind == "run" and who.may("run:read"):
            return str(show_run(ctx, asked.id)["state"])
    except DisgorgeError:
        pass
    return ""


def graph_view(request: Request, asked: LineageQuestion) -> dict[str, Any]:
    """``POST /v1/lineage``'s answer for ``asked`` (its handler, so the same), plus ``root``
    (the node asked about), ``root_listed`` (whether the walk lists it), and per node id its
    own lineage page (``pages``) and the graph one step further (``expand``)."""
    who = login_of(request).principal
    view: dict[str, Any] = dict(api_lineage(context(request), who, asked))
    listed = {n["id"]: n for n in view["nodes"]}
    root = listed.get(view["node"]) or {
        "id": view["node"],
        "kind": _root_kind(asked.kind),
        "label": view["node"],
        "state": _root_state(request, asked),
        "depth": 0,
    }
    pages, expand = {}, {}
    for n in [root, *view["nodes"]]:
        asks = (asked.kind, asked.id) if n is root else _asks(n)
        if asks is None:
            continue
        pages[n["id"]] = f"{UI_PREFIX}/lineage?{_query(*asks, asked.direction)}"
        expand[n["id"]] = f"{UI_PREFIX}/lineage/graph.json?{_query(*asks, asked.direction, 1)}"
    return {**view, "root": root, "root_listed": view["node"] in listed, "pages": pages, "expand": expand}


def table_view(view: dict[str, Any]) -> dict[str, Any]:
    """``view`` with ``all_nodes``: what ``_graph.html``'s table lists (the root first)."""
    nodes = view["nodes"] if view["root_listed"] else [view["root"], *view["nodes"]]
    rows = [{**n, "href": view["pages"].get(n["id"])} for n in nodes]
    return {**view, "all_nodes": rows}


def _may_ask(request: Request, kind: str) -> Response | None:
    """The forbidden page when a subject is asked about without ``subject:read``."""
    principal = login_of(request).principal
    if kind == "subject" and not principal.may("subject:read"):
        message = f"the role {principal.role} does not hold the scope subject:read"
        return error_page(request, 403, message, element="forbidden")
    return None


def _page(request: Request, view: dict[str, Any] | None, src: str, asked: dict[str, str]) -> Response:
    return render(
        request, "lineage.html", view=view, src=src, kinds=KINDS, directions=DIRECTIONS, asked=asked
    )


@router.get("/lineage", **needs("lineage:read"))
def lineage(request: Request, kind: str = "", id: str = "", direction: str = "", hops: str = "") -> Response:
    # the form asks about a subject first, if the role may (else a dataset)
    first = "subject" if login_of(request).principal.may("subject:read") else "dataset"
    values = {"kind": kind or first, "id": id, "direction": direction or "downstream", "hops": hops}
    if not id:
        return _page(request, None, "", values)
    if (refused := _may_ask(request, kind)) is not None:
        return refused
    asked = question(kind, id, direction, hops)
    view = table_view(graph_view(request, asked))
    src = f"{UI_PREFIX}/lineage/graph.json?{_query(asked.kind, asked.id, asked.direction, asked.hops)}"
    values["hops"] = str(asked.hops)
    return _page(request, view, src, values)


@router.post("/lineage", **needs("lineage:read"))
def ask(
    request: Request,
    kind: Annotated[str, Form()] = "",
    id: Annotated[str, Form()] = "",
    direction: Annotated[str, Form()] = "downstream",
    hops: Annotated[str, Form()] = "",
) -> Response:
    if (refused := _may_ask(request, kind)) is not None:
        return refused
    node = id.strip()
    if kind == "subject" and node:
        node = ref_of(context(request).vault, node)  # an external id stays in this body
    asked = question(kind, node, direction, hops)
    return redirect(f"{UI_PREFIX}/lineage?{_query(asked.kind, asked.id, asked.direction, asked.hops)}")


@router.get("/lineage/graph.json", **needs("lineage:read"))
def graph_json(
    request: Request, kind: str = "", id: str = "", direction: str = "", hops: str = ""
) -> Response:
    if (refused := _may_ask(request, kind)) is not None:
        return refused
    view = graph_view(request, question(kind, id, direction, hops))
    return JSONResponse(view, headers=SECURITY_HEADERS)
