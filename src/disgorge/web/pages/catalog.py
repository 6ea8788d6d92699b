"""The catalog's lists and detail pages: datasets, models, sources, recipients.

Each page needs the scope of the API route that shows the same data and calls the same
service: datasets ``dataset:read`` (``/v1/datasets``, :mod:`disgorge.datasets.service`),
models ``model:read`` (``/v1/models``, :mod:`disgorge.training.lifecycle`), sources
``source:read`` (``/v1/sources``, :mod:`disgorge.sources`), recipients ``sharing:read``
(``/v1/recipients`` and ``/v1/transfers``, :mod:`disgorge.sharing`). A part of a page that
another route shows is there only for a role holding that route's scope too: a source's
retention rule (``erasure:read``, as ``/v1/retention``), the erasure requests sent to a
recipient (``erasure:read``, as ``/v1/erasures/{id}``'s ``recipients``).

Names go into URLs percent-encoded (:func:`page_url`); a name the path cannot hold
(control characters, ``/``, too long) is a ``422`` page, an unknown one the service's
``404``. Every detail page links to the lineage page around what it shows.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Path, Query, Request, Response

from ... import sources as source_service
from ...datasets import service as dataset_service
from ...dsr import retention
from ...erasure import service as erasure_service
from ...erasure.recipients import recipient_states
from ...errors import NotFound
from ...sharing import peers, transfers
from ...training import lifecycle
from ...training.lifecycle import ModelView
from .. import UI_PREFIX
from ..framework import context, needs, page_router, render

__all__ = ["lineage_url", "model_state", "page_url", "router", "transfer_node"]

router = page_router()

#: a name in a path: no ``/`` (it is one segment), no control characters
Name = Annotated[str, Path(min_length=1, max_length=260, pattern=r"^[^/\x00-\x1f\x7f]+$")]
#: a dataset's name, or ``NAME@VERSION`` (what lineage nodes are named); else ``?version=``
DatasetName = Annotated[
    str, Path(min_length=1, max_length=240, pattern=r"^[^@/\x00-\x1f\x7f]+(@\d+\.\d+\.\d+)?$")
]
#: a source's or model's name: the library (and a run's outputs) let it hold ``/``, so the
#: route takes the rest of the path
SlashName = Annotated[str, Path(min_length=1, max_length=260, pattern=r"^[^\x00-\x1f\x7f]+$")]
Version = Annotated[str, Query(max_length=32, pattern=r"^(\d+\.\d+\.\d+)?$")]


def page_url(group: str, name: str, **query: str) -> str:
    """``/ui/GROUP/NAME`` with the name percent-encoded (``@`` kept: ``model@1``)."""
    url = f"{UI_PREFIX}/{group}/{quote(name, safe='@')}"
    return f"{url}?{urlencode(query)}" if query else url


def lineage_url(kind: str, ident: str, *, direction: str = "downstream", hops: int = 3) -> str:
    """The lineage page around a node (H1's ``/ui/lineage`` GET form)."""
    query = urlencode({"kind": kind, "id": ident, "direction": direction, "hops": hops})
    return f"{UI_PREFIX}/lineage?{query}"


def transfer_node(recipient: str, transfer_id: str) -> str:
    """A transfer's lineage id: :func:`disgorge.sharing.share.share` records it as an artifact
    named after the recipient, versioned by the transfer id's first 12 characters."""
    return f"{recipient}@{transfer_id[:12]}"


def model_state(view: dict[str, Any]) -> str:
    """A model version's state in words (never a colour alone)."""
    state = str(view["state"])
    if view.get("unlearned_from"):
        return (
            f"{state}, unlearned (retrained without forgotten photos from version {view['unlearned_from']})"
        )
    return state


# -- datasets --------------------------------------------------------------------------------
@router.get("/datasets", **needs("dataset:read"))
def datasets(request: Request) -> Response:
    rows = [
        {**d, "url": page_url("datasets", d["name"])} for d in dataset_service.list_datasets(context(request))
    ]
    return render(request, "datasets.html", datasets=rows)


@router.get("/datasets/{name}", **needs("dataset:read"))
def dataset(request: Request, name: DatasetName, version: Version = "") -> Response:
    ctx = context(request)
    name, _, in_path = name.partition("@")
    version = version or in_path
    view = dataset_service.show(ctx, f"{name}@{version}" if version else name)
    versions = []
    for v in view["versions"]:
        one = view if v == view["version"] else dataset_service.show(ctx, f"{name}@{v}")
        versions.append({**one, "url": page_url("datasets", name, version=v)})
    diff = None
    at = view["versions"].index(view["version"])
    if at > 0:
        previous = view["versions"][at - 1]
        found = dataset_service.diff(ctx, f"{name}@{previous}", f"{name}@{view['version']}")
        diff = {
            "from": previous,
            "added": len(found["added"]),
            "removed": len(found["removed"]),
            "unchanged": found["unchanged"],
            "purpose": found["purpose"],
        }
    ref = f"{view['name']}@{view['version']}"
    return render(
        request,
        "dataset.html",
        dataset=view,
        versions=versions,
        diff=diff,
        selector=[
            (key, value if isinstance(value, str | int | float) else json.dumps(value, sort_keys=True))
            for key, value in sorted(view["selector"].items())
            if value not in (None, "", [], {})
        ],
        lineage=lineage_url("dataset", ref),
        run_lineage=lineage_url("run", view["run"]) if view["run"] else None,
    )


# -- models ----------------------------------------------------------------------------------
def _dataset_url(ref: str | None) -> str | None:
    if not ref:
        return None
    name, _, version = ref.removeprefix("dataset:").partition("@")
    return page_url("datasets", name, **({"version": version} if version else {}))


def _model_row(m: ModelView) -> dict[str, Any]:
    ref = f"{m['name']}@{m['version']}"
    return {
        **m,
        "ref": ref,
        "url": page_url("models", ref),
        "state_words": model_state(dict(m)),
        "dataset_url": _dataset_url(m["dataset"]),
    }


@router.get("/models", **needs("model:read"))
def models(request: Request) -> Response:
    rows = [_model_row(m) for m in lifecycle.models(context(request))]
    return render(request, "models.html", models=rows)


@router.get("/models/{ref:path}", **needs("model:read"))
def model(request: Request, ref: SlashName) -> Response:
    view = _model_row(lifecycle.model(context(request), ref))
    versions = [{**v, "url": page_url("models", f"{view['name']}@{v['version']}")} for v in view["versions"]]
    return render(
        request,
        "model.html",
        model=view,
        versions=versions,
        audit=[
            (key, value if isinstance(value, str | int | float) else json.dumps(value, sort_keys=True))
            for key, value in sorted((view["forgetting_audit"] or {}).items())
        ],
        lineage=lineage_url("model", view["ref"]),
        run_lineage=lineage_url("run", view["run"]),
    )


# -- sources ---------------------------------------------------------------------------------
@router.get("/sources", **needs("source:read"))
def sources_page(request: Request) -> Response:
    rows = [
        {**s, "url": page_url("sources", s["name"])} for s in source_service.list_sources(context(request))
    ]
    return render(request, "sources.html", sources=rows)


@router.get("/sources/{name:path}", **needs("source:read"))
def source(request: Request, name: SlashName) -> Response:
    ctx = context(request)
    view = source_service.source_view(ctx, name)
    rules = None
    principal = ctx.principal
    if principal is not None and principal.may("erasure:read"):  # as GET /v1/retention
        rules = [r for r in retention.list_retention(ctx) if r["kind"] == "source" and r["name"] == name]
    return render(request, "source.html", source=view, rules=rules, lineage=lineage_url("source", name))


# -- recipients ------------------------------------------------------------------------------
def _recipient(request: Request, name: str) -> dict[str, Any]:
    for peer in peers.list_peers(context(request), "recipient"):
        if peer["name"] == name:
            return dict(peer)
    raise NotFound(f"no recipient named {name!r}")


@router.get("/recipients", **needs("sharing:read"))
def recipients(request: Request) -> Response:
    ctx = context(request)
    sent: dict[str, list[int]] = {}
    for t in transfers.list_transfers(ctx, direction="out"):
        sent.setdefault(t["peer"], []).append(t["items"])
    rows = [
        {
            **p,
            "url": page_url("recipients", p["name"]),
            "transfers": len(sent.get(p["name"], [])),
            "items": sum(sent.get(p["name"], [])),
        }
        for p in peers.list_peers(ctx, "recipient")
    ]
    return render(request, "recipients.html", recipients=rows)


@router.get("/recipients/{name}", **needs("sharing:read"))
def recipient(request: Request, name: Name) -> Response:
    ctx = context(request)
    peer = _recipient(request, name)
    sent = [
        {
            **t,
            "lineage": lineage_url("transfer", transfer_node(name, t["id"])),
            "dataset_url": _dataset_url(t["dataset"]),
        }
        for t in transfers.list_transfers(ctx, direction="out", peer=name)
    ]
    erasures = None
    principal = ctx.principal
    if principal is not None and principal.may("erasure:read"):  # as GET /v1/erasures/{id}
        erasures = []
        for req in erasure_service.list_requests(ctx):
            for state in recipient_states(ctx, req["id"]):
                if state["recipient"] == name:
                    erasures.append({**state, "request": req, "url": f"{UI_PREFIX}/erasures/{req['id']}"})
    return render(
        request,
        "recipient.html",
        recipient=peer,
        transfers=sent,
        erasures=erasures,
        lineage=sent[-1]["lineage"] if sent else None,
    )
