"""disgorge.client and the CLI's --server/--token, against a real server on loopback.

One workspace (three people, two photos each, source ``lfw``) is served for the module by
real uvicorn (conftest's ``serve_api``), with a token per role. The erasures each name
another person, so the tests do not depend on their order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PEOPLE, REASON, ROLE_USERS, Api, cli, free_port, serve_api, smoke_workspace
from disgorge import NotFound
from disgorge.client import (
    ApiError,
    ApiForbidden,
    ApiInvalidInput,
    ApiNotFound,
    ApiUnauthenticated,
    Client,
    TokenInClearWarning,
    WaitTimedOut,
    sends_token_in_clear,
)
from disgorge.errors import Forbidden, InvalidInput, Unauthenticated

ADA, ALAN, GRACE = PEOPLE  # erased by the client, by the CLI; Alan stays


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Path]]:
    tmp = tmp_path_factory.mktemp("client")
    smoke_workspace(tmp).close()
    with serve_api(tmp / "ws") as api:
        yield api, tmp / "ws"


@pytest.fixture
def api(served: tuple[Api, Path]) -> Api:
    return served[0]


def client(api: Api, who: str = "privacy_officer", **kw: object) -> Client:
    return Client(api.url, api.tokens[who], timeout=60, **kw)  # type: ignore[arg-type]


def remote(api: Api, *args: str, who: str = "privacy_officer") -> subprocess.CompletedProcess[str]:
    """The real CLI with --server, the token in $DISGORGE_TOKEN; it never prints the token."""
    proc = cli(*args, "--server", api.url, env={"DISGORGE_TOKEN": api.tokens[who]}, timeout=120)
    assert api.tokens[who] not in proc.stdout + proc.stderr
    return proc


# -- the client -----------------------------------------------------------------------------------
def test_reads_status_and_who_is_calling(api: Api) -> None:
    with client(api) as c:
        status = c.status()
        me = c.me()
        assert api.tokens["privacy_officer"] not in repr(c)
    assert status["assets"] == 6 and status["subjects"] == 3 and status["sources"] == 1
    assert me["name"] == ROLE_USERS["privacy_officer"] and me["role"] == "privacy_officer"
    assert "erasure:create" in me["scopes"]


def test_an_officer_erases_a_subject_and_waits_for_the_certificate(api: Api) -> None:
    with client(api) as c:
        assert c.erasure_plan("subject", ADA)["by_kind"]["photos"] == 2
        made = c.erase("subject", ADA, reason=REASON)
        assert made["approvals_required"] == 0 and made["state"] != "planned"  # asking was approving
        done = c.wait_erasure(made["id"], ["completed"], timeout=120)
        assert done["state"] == "completed" and done["certificate"]
        assert ADA not in json.dumps(done)  # the request shows the subject by its ref only
        assert c.verify_erasure(done["id"])["ok"]
        assert c.verify_certificate(c.erasure_certificate(done["id"]))["ok"]
        assert done["id"] in [r["id"] for r in c.iter_erasures(state="completed")]
        [job] = [j for j in c.iter_jobs(kind="erasure") if j["params"]["request"] == done["id"]]
        assert c.wait_job(job["id"], timeout=60)["state"] == "succeeded"
        gone = c.subject(ADA)
        assert (gone["state"], gone["key"]) == ("erased", "destroyed")
        assert {a["state"] for a in gone["assets"]} == {"erased"}


def test_lists_come_page_after_page(api: Api) -> None:
    with client(api, "admin", page_size=2) as small, client(api, "admin", page_size=1000) as big:
        names = [p["name"] for p in small.iter_principals()]
        assert sorted(names) == sorted([*ROLE_USERS.values(), "officer-2"])
        events = list(small.iter_audit_events())
        assert events == list(big.iter_audit_events())[: len(events)]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # none twice, none missed
        assert small.audit_events(3) == events[-3:]


def test_the_two_person_rule_over_the_api(api: Api) -> None:
    with client(api) as officer, client(api, "officer-2") as other:
        made = officer.erase("source", "lfw", reason=REASON)
        assert made["state"] == "planned" and made["approvals_required"] == 1
        with pytest.raises(WaitTimedOut):
            officer.wait_erasure(made["id"], ["completed"], timeout=0)
        with pytest.raises(ApiForbidden) as refused:
            officer.erasure_approve(made["id"])  # the requester's own approval is not enough
        assert isinstance(refused.value, Forbidden) and refused.value.status == 403
        denied = remote(
            api, "erasure", "deny", made["id"], "--reason", "not an Art. 17 case", who="officer-2"
        )
        assert denied.returncode == 0, denied.stderr
        assert f"erasure {made['id']}: denied" in denied.stdout
        assert other.erasure(made["id"])["state"] == "denied"
        with pytest.raises(ApiError) as twice:
            other.erasure_deny(made["id"], reason="again")
        assert twice.value.status == 409


def test_an_expired_or_revoked_token_is_refused(served: tuple[Api, Path]) -> None:
    api, root = served
    with client(api, "admin") as admin:
        revoked = admin.create_token(ROLE_USERS["viewer"], expires="1d")
        expired = admin.create_token(ROLE_USERS["viewer"], expires="1d")
        with Client(api.url, revoked["token"]) as c:
            assert c.status()["sources"] == 1  # it works, until it is revoked
        admin.revoke_token(revoked["id"])
    # an expiry in the past, set from outside (by a child: this process serves the catalog)
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute(\"UPDATE api_tokens SET expires_at = '2001-01-01 00:00:00.000000' WHERE id = ?\", "
        "(sys.argv[2],)); c.commit()"
    )
    db = root / ".disgorge" / "catalog.sqlite"
    subprocess.run([sys.executable, "-c", script, str(db), expired["id"]], check=True, timeout=60)
    for token in (revoked["token"], expired["token"]):
        with Client(api.url, token) as c, pytest.raises(ApiUnauthenticated) as refused:
            c.status()
        error = refused.value
        assert isinstance(error, Unauthenticated) and error.status == 401
        assert error.type == "urn:disgorge:problem:unauthenticated" and error.detail
        assert token not in str(error)


def test_errors_carry_the_problem_details(api: Api) -> None:
    with client(api, "viewer") as viewer, client(api) as officer:
        with pytest.raises(ApiForbidden):
            viewer.erase("subject", ALAN, reason=REASON)
        with pytest.raises(ApiNotFound) as missing:
            officer.erasure("0" * 32)
        assert isinstance(missing.value, NotFound) and missing.value.type == "urn:disgorge:problem:not-found"
        with pytest.raises(ApiInvalidInput) as bad:
            officer.erase("subject", ALAN, reason="")  # too short a reason: nothing is made
        assert isinstance(bad.value, InvalidInput) and "reason" in bad.value.detail
        assert all(
            r["scope"]["kind"] != "subject" or r["state"] == "completed" for r in officer.iter_erasures()
        )
    with Client(f"http://127.0.0.1:{free_port()}", "dg_x") as nowhere, pytest.raises(ApiError) as down:
        nowhere.status()
    assert down.value.status == 0 and "cannot reach" in str(down.value)


def test_a_token_in_clear_is_warned_about() -> None:
    assert sends_token_in_clear("http://192.0.2.7:8000")
    assert sends_token_in_clear("http://disgorge.example.org")
    assert not sends_token_in_clear("https://disgorge.example.org")
    assert not sends_token_in_clear("http://127.0.0.1:8000")
    assert not sends_token_in_clear("http://[::1]:8000")
    assert not sends_token_in_clear("http://localhost:8000")
    with pytest.warns(TokenInClearWarning):
        Client("http://192.0.2.7:8000", "dg_secret").close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Client("https://192.0.2.7", "dg_secret").close()
    for url, token in (("ftp://host", "dg_x"), ("https://host", ""), ("https://host", "dg x")):
        with pytest.raises(InvalidInput) as refused:
            Client(url, token)
        assert token not in str(refused.value) or not token


# -- the CLI with --server -----------------------------------------------------------------------
def test_status_json_over_the_server_is_the_servers_answer(api: Api) -> None:
    proc = remote(api, "status", "--json", who="viewer")
    assert proc.returncode == 0, proc.stderr
    with client(api, "viewer") as c:
        assert json.loads(proc.stdout) == c.status()


def test_erase_over_the_server_makes_a_request_the_server_shows(api: Api) -> None:
    with client(api) as c:
        before = {r["id"] for r in c.iter_erasures()}
        unconfirmed = remote(api, "erase", "--subject", GRACE, "--reason", REASON)
        assert unconfirmed.returncode == 1 and "pass --yes" in unconfirmed.stderr
        assert {r["id"] for r in c.iter_erasures()} == before  # nothing asked without --yes
        proc = remote(api, "erase", "--subject", GRACE, "--reason", REASON, "--yes", "--json")
        assert proc.returncode == 0, proc.stderr
        shown = json.loads(proc.stdout)
        assert shown["state"] == "completed"  # the command waited for it
        assert c.erasure(shown["id"])["state"] == "completed"
        assert {r["id"] for r in c.iter_erasures()} == before | {shown["id"]}
        events = c.audit_events(200, action="erasure.approved")
    assert any(e["actor"] == ROLE_USERS["privacy_officer"] for e in events)


def test_the_read_commands_print_over_the_server_what_they_print_at_the_workspace(
    served: tuple[Api, Path],
) -> None:
    api, root = served
    with client(api) as c:
        requests = list(c.iter_erasures())
        completed = next(r["id"] for r in requests if r["state"] == "completed")
        photo = c.subject(ALAN)["assets"][0]["sha256"]
    for args in (
        ["erasure", "show", completed],
        ["subject", "show", ALAN],
        ["lineage", f"asset:{photo}", "--upstream"],
        ["audit", "log", "--limit", "5"],
    ):
        over_http = remote(api, *args, "--json")
        local = cli(*args, "--json", "-w", root)
        assert over_http.returncode == local.returncode == 0, (args, over_http.stderr, local.stderr)
        assert json.loads(over_http.stdout) == json.loads(local.stdout), args
    # an error reads the same, with the answer's status
    refused = remote(api, "lineage", "source:lfw", "--upstream")
    local_refusal = cli("lineage", "source:lfw", "--upstream", "-w", root)
    assert refused.returncode == local_refusal.returncode == 1
    assert refused.stderr == local_refusal.stderr.replace("\n", " (HTTP 422)\n")
    # and the others answer as the server does
    listed = remote(api, "erasure", "list", "--json", who="auditor")
    assert listed.returncode == 0 and json.loads(listed.stdout) == requests
    models = remote(api, "model", "list", "--json", who="ml_engineer")
    assert models.returncode == 0 and json.loads(models.stdout) == []
    chain = remote(api, "audit", "verify", who="auditor")
    assert chain.returncode == 0 and chain.stdout.startswith("audit chain intact:")


def test_the_token_is_needed_and_never_shown(api: Api) -> None:
    missing = cli("status", "--server", api.url)
    assert missing.returncode == 2 and "needs a token" in missing.stderr
    both = cli("status", "--server", api.url, "-w", ".", env={"DISGORGE_TOKEN": "dg_whatever"})
    assert both.returncode == 2
    wrong = cli("status", "--server", api.url, "--token", "dg_wrong_secret")
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr and "dg_wrong_secret" not in wrong.stderr
    clear = cli("status", "--server", "http://disgorge.invalid:9", env={"DISGORGE_TOKEN": "dg_clear_secret"})
    assert clear.returncode == 1 and "travels in clear" in clear.stderr
    assert "dg_clear_secret" not in clear.stdout + clear.stderr
    helped = cli("status", "--help", env={"DISGORGE_TOKEN": "dg_help_secret", "DISGORGE_SERVER": api.url})
    assert helped.returncode == 0 and "DISGORGE_TOKEN" in helped.stdout
    assert "dg_help_secret" not in helped.stdout
