"""docs/api.md cannot drift from the API.

- the page is exactly what ``python -m disgorge.api.docs`` prints now (a route, scope, role,
  setting or error class added without regenerating it fails here, naming the command);
- every endpoint of the route table, every scope, role and setting, and every problem type
  has its row;
- the running server agrees: its OpenAPI document lists no operation the page lacks, and
  the problem types it really answers are the ones the page lists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import serve_api
from disgorge import Workspace
from disgorge.access.roles import ROLES, SCOPES
from disgorge.access.settings import DEFAULTS
from disgorge.api import endpoints
from disgorge.api.docs import COMMAND, render

ROOT = Path(__file__).resolve().parents[1]
API_MD = ROOT / "docs" / "api.md"
README = ROOT / "README.md"


def page() -> str:
    return API_MD.read_text(encoding="utf-8")


def test_the_page_is_what_the_generator_prints_now() -> None:
    assert API_MD.exists(), f"docs/api.md is missing: run {COMMAND}"
    assert page() == render(), f"docs/api.md is out of date: run {COMMAND}"


def test_the_module_prints_the_page() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "disgorge.api.docs"], capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout == render()


def test_every_endpoint_has_its_row() -> None:
    text = page()
    missing = [f"{e.method} {e.path}" for e in endpoints() if f"| {e.method} | `{e.path}` |" not in text]
    assert not missing, f"endpoints missing from docs/api.md (run {COMMAND}): {missing}"
    for e in endpoints():
        row = next(line for line in text.splitlines() if line.startswith(f"| {e.method} | `{e.path}` |"))
        assert f"| {e.status} |" in row
        assert f"`{e.scope}`" in row if e.scope else ("any token" in row or e.auth != "token")
        assert " ".join(str(s) for s in sorted(e.errors)) in row


def test_every_scope_role_and_setting_is_explained() -> None:
    text = page()
    for scope, meaning in SCOPES.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{scope}` |"))
        assert meaning in row
        assert row.count("✓") == sum(scope in scopes for scopes in ROLES.values())
    for role in ROLES:
        assert f"| `{role}` |" in text
    for key, default in DEFAULTS.items():
        assert f"| `{key}` | {default} |" in text


def test_the_guide_covers_what_a_deployer_needs() -> None:
    text = page()
    for needle in (
        "disgorge user add",
        "disgorge token create --user NAME --expires 90d",
        "SHA-256",
        "disgorge token revoke",
        "two-person rule",
        "outside the API's access control",
        "next_offset",
        "RFC 9457",
        "/v1/jobs/{id}",
        "/v1/erasure-requests",
        "/v1/openapi.json",
        "--tls-cert",
        "X-Forwarded-For",
    ):
        assert needle in text, needle


def test_the_readme_links_the_page() -> None:
    assert "docs/api.md" in README.read_text(encoding="utf-8")


def test_the_running_server_agrees_with_the_page(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws").close()
    text = page()
    with serve_api(tmp_path / "ws") as api:
        spec = api.call("viewer", "GET", "/v1/openapi.json").json()
        operations = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
        undocumented = sorted(f"{m} {p}" for m, p in operations if f"| {m} | `{p}` |" not in text)
        assert not undocumented, f"served but not in docs/api.md: {undocumented}"
        answers = [
            api.call(None, "GET", "/v1/status"),  # no token
            api.call("viewer", "GET", "/v1/principals"),  # a role without the scope
            api.call("admin", "GET", "/v1/erasures/0123456789abcdef"),  # no such request
            api.call("admin", "GET", "/v1/erasures?limit=0"),  # out of range
            api.call("admin", "DELETE", "/v1/status"),  # no such method
        ]
    documented = set(re.findall(r"^\| `(urn:disgorge:problem:[a-z-]+)` \|", text, re.M))
    for answer in answers:
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["type"] in documented, answer.json()
