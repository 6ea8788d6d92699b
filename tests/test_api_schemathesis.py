"""Property-based tests of the REST API against its own OpenAPI document (schemathesis).

A real server on loopback serves a small real workspace (a source, six photos, a dataset,
a recorded run and model, a completed and a planned erasure); the document is the one it
serves at ``GET /v1/openapi.json``. Schemathesis generates requests from that document for
every operation that changes nothing: the GETs, and the POSTs whose scope only reads
(``*:read``: lineage, consent checks, certificate checks...) plus the erasure dry run.
Each answer must be no server error, a documented status, of the documented content type,
and valid against the documented schema (problem details included), so a client generated
from the document can trust it.

Generated values mostly name nothing (404s and 422s); a second pass pins the path
parameters to things the workspace holds, so the success answers are checked too. The
examples are derandomised (the same every run) and bounded; requests go to 127.0.0.1 only,
from a session that ignores proxy variables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from conftest import Api, serve_api, smoke_workspace
from disgorge.api import endpoints
from disgorge.api.table import TOKEN, Endpoint

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: what every answer must satisfy
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: invalid requests: refused with a documented status and a problem, never a 500
NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
#: the dry run of an erasure: it plans and records nothing
DRY_RUNS = {("POST", "/v1/erasures/plan")}


def _changes_nothing(e: Endpoint) -> bool:
    if e.method == "GET" or (e.method, e.path) in DRY_RUNS:
        return True
    return e.method == "POST" and e.auth == TOKEN and e.scope is not None and e.scope.endswith(":read")


#: the operations fuzzed, from the route table (the inbox's signed GET included: it must
#: refuse garbage with a documented answer too)
OPERATIONS = [e for e in endpoints() if _changes_nothing(e)]
LABELS = [f"{e.method} {e.path}" for e in OPERATIONS]


@dataclass
class Live:
    api: Api
    schema: Any
    session: requests.Session
    #: path -> path parameters naming things the workspace holds (and required queries)
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: label -> bodies of requests that should succeed
    bodies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def operation(self, label: str) -> Any:
        op = self.schema.find_operation_by_label(label)
        assert op is not None, f"{label} is in the route table but not in the served document"
        return op

    def call(self, case: Any, checks: list[Callable[..., Any]]) -> Any:
        response = case.call(session=self.session, headers=self.api.headers("admin"), timeout=60)
        assert urlsplit(response.request.url).hostname == "127.0.0.1", response.request.url
        case.validate_response(response, checks=checks)
        return response


def _prepare(tmp: Path) -> dict[str, str]:
    """The workspace the fuzzing reads: what it holds, by id."""
    ws = smoke_workspace(tmp)
    try:
        build = ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
        run = ws.record_run(
            "train-1",
            purpose="ai_training",
            inputs=[f"faces@{build.version}"],
            outputs=[{"kind": "model", "name": "vendor"}],
            at="2014-02-01",
        )
        done = ws.erase("subject", "Grace_Hopper", reason="GDPR Art. 17 request 1")
        assert done["state"] == "completed", done["state"]
        planned = ws.erase("subject", "Alan_Turing", reason="GDPR Art. 17 request 2", execute=False)
        assert planned["state"] == "planned"
        return {"run": run["run"], "done": done["id"], "planned": planned["id"]}
    finally:
        ws.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("fuzz")
    held = _prepare(tmp)
    with serve_api(tmp / "ws") as api:
        assert urlsplit(api.url).hostname == "127.0.0.1"
        r = api.call("admin", "GET", "/v1/openapi.json")
        assert r.status_code == 200, r.text
        schema = schemathesis.openapi.from_dict(r.json(), config=SchemathesisConfig())
        schema.config.update(base_url=api.url, headers=api.headers("admin"), request_timeout=60)
        session = requests.Session()
        session.trust_env = False  # no proxy: loopback only
        live = Live(api, schema, session)
        _pin(live, held)
        yield live
        session.close()


def _pin(live: Live, held: dict[str, str]) -> None:
    """Real path parameters and bodies, read from the running API."""
    assets = live.api.call("admin", "GET", "/v1/assets").json()["items"]
    sha = next(a["sha256"] for a in assets if a.get("state", "active") == "active")
    cert = live.api.call("admin", "GET", f"/v1/erasures/{held['done']}/certificate").json()
    live.pins = {
        "/v1/sources/{name}": {"path_parameters": {"name": "lfw"}},
        "/v1/assets/{sha256}": {"path_parameters": {"sha256": sha}},
        "/v1/assets/{sha256}/bytes": {"path_parameters": {"sha256": sha}},
        "/v1/datasets/{name}": {"path_parameters": {"name": "faces"}},
        "/v1/datasets/{name}/croissant": {"path_parameters": {"name": "faces"}},
        "/v1/datasets/{name}/diff": {"path_parameters": {"name": "faces"}, "query": {"from": "1.0.0"}},
        "/v1/runs/{run_id}": {"path_parameters": {"run_id": held["run"]}},
        "/v1/models/{ref}": {"path_parameters": {"ref": "vendor"}},
        "/v1/erasures/{request_id}": {"path_parameters": {"request_id": held["done"]}},
        "/v1/erasures/{request_id}/certificate": {"path_parameters": {"request_id": held["done"]}},
        "/v1/erasures/{request_id}/verify": {"path_parameters": {"request_id": held["done"]}},
    }
    lookup = live.api.call("admin", "POST", "/v1/subjects/lookup", json={"external_id": "Ada_Lovelace"})
    if lookup.status_code == 200 and isinstance(lookup.json().get("ref"), str):
        live.pins["/v1/subjects/{ref}"] = {"path_parameters": {"ref": lookup.json()["ref"]}}
    live.bodies = {
        "POST /v1/erasures/plan": [
            {"kind": "source", "id": "lfw"},
            {"kind": "subject", "id": "Ada_Lovelace"},
            {"kind": "photo", "id": sha},
            {"kind": "model", "id": "vendor"},
        ],
        "POST /v1/certificates/verify": [{"certificate": cert}],
        "POST /v1/subjects/lookup": [{"external_id": "Ada_Lovelace"}],
        "POST /v1/consent/check": [{"subject": "Ada_Lovelace", "purpose": "ai_training"}],
        "POST /v1/lineage": [
            {"kind": "source", "id": "lfw", "direction": "downstream"},
            {"kind": "dataset", "id": "faces", "direction": "upstream"},
        ],
        "POST /v1/audit/prove": [{}],
    }


def _fuzz(
    live: Live, label: str, strategy: Any, checks: list[Callable[..., Any]], examples: int
) -> list[int]:
    statuses: list[int] = []

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        statuses.append(live.call(case, checks).status_code)

    run()
    return statuses


@pytest.mark.parametrize("label", LABELS)
def test_answers_conform_to_the_document(live: Live, label: str) -> None:
    """Valid requests (by the document): documented answers, valid bodies, no 5xx."""
    op = live.operation(label)
    statuses = _fuzz(live, label, op.as_strategy(), CHECKS, 20)
    assert statuses, f"{label}: no example was generated"


@pytest.mark.parametrize("label", LABELS)
def test_invalid_requests_are_refused_cleanly(live: Live, label: str) -> None:
    """Requests the document says are invalid: a documented 4xx problem, never a 5xx."""
    from schemathesis import GenerationMode

    op = live.operation(label)
    if not any(True for _ in op.iter_parameters()) and not list(op.get_request_payload_content_types()):
        pytest.skip(f"{label} takes nothing that could be invalid")
    try:
        _fuzz(live, label, op.as_strategy(GenerationMode.NEGATIVE), NEGATIVE_CHECKS, 10)
    except Unsatisfiable:  # e.g. a path of free strings: no request is invalid by the document
        pytest.skip(f"the document leaves no invalid request to {label}")


PINNED = [
    label
    for label in LABELS
    if "{" in label.split(" ", 1)[1] and not label.startswith("GET /v1/erasure-requests/")
]


@pytest.mark.parametrize("label", PINNED)
def test_real_things_answer_as_documented(live: Live, label: str) -> None:
    """The path names something the workspace holds: its success answer is checked too
    (the query parameters are still generated)."""
    path = label.split(" ", 1)[1]
    if path not in live.pins:
        pytest.skip(f"nothing pinned for {path}: add it to _pin")
    op = live.operation(label)
    statuses = _fuzz(live, label, op.as_strategy(**live.pins[path]), CHECKS, 8)
    assert any(200 <= s < 300 for s in statuses), f"{label}: never a success ({sorted(set(statuses))})"


BODIES = [
    "POST /v1/erasures/plan",
    *(label for label in LABELS if label.startswith("POST ") and "{" not in label),
]


@pytest.mark.parametrize("label", sorted(set(BODIES)))
def test_real_bodies_answer_as_documented(live: Live, label: str) -> None:
    if label not in live.bodies:
        pytest.skip(f"no real body for {label}: add one to _pin")
    op = live.operation(label)
    for body in live.bodies[label]:
        response = live.call(op.Case(body=body, media_type="application/json"), CHECKS)
        assert 200 <= response.status_code < 300, (label, body, response.status_code, response.text[:300])


def test_the_planned_erasure_is_still_planned(live: Live) -> None:
    """Nothing the fuzzing sent changed the workspace's erasures (the dry runs record none)."""
    r = live.api.call("admin", "GET", "/v1/erasures")
    states = sorted(item["state"] for item in r.json()["items"])
    assert states == ["completed", "planned"], states
