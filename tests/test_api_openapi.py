"""The OpenAPI document says how each operation is authenticated, as the route table does."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import serve_api
from disgorge import Workspace
from disgorge.api import endpoints

pytest.importorskip("uvicorn")

EXPECTED = {"token": [{"bearer": []}], "signed": [{"senderSignature": []}], "public": []}


def test_every_operation_declares_its_security_scheme_and_viewers_see_no_server_paths(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws").close()
    with serve_api(tmp_path / "ws") as api:
        document = api.call("viewer", "GET", "/v1/openapi.json").json()
        viewer = api.call("viewer", "GET", "/v1/status").json()
        auditor = api.call("auditor", "GET", "/v1/status").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["senderSignature"]["in"] == "header"
    for endpoint in endpoints():
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        assert operation["security"] == EXPECTED[endpoint.auth], (endpoint.method, endpoint.path)
    # where the server keeps the catalog and the key is for roles that read settings
    assert {viewer[k] for k in ("workspace", "catalog", "store", "kek")} == {"(hidden)"}
    assert auditor["catalog"].startswith("sqlite:") and viewer["assets"] == auditor["assets"]
