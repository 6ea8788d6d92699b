"""The web UI over HTTP, on real uvicorn (``disgorge serve``'s app) with cookies.

Login and logout (the session is revoked on the server: the old cookie no longer works),
the same answer for a wrong password and an unknown user, CSRF on every POST form, the
session cookie's flags and its idle and absolute expiry, each role's pages (the scope of
the API route showing the same data), no external subject id on any page, the vendored
files' sha256, and a second privacy officer approving an erasure the first requested.
The browser's view of the same pages is tests/test_web_browser.py.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from conftest import (
    DENIED,
    PEOPLE,
    ROLE_USERS,
    UI_PASSWORD,
    UiSite,
    assert_scopes_decide,
    post_form,
    request_erasure,
    serve_api,
    smoke_workspace,
    sql,
    token_of,
)
from disgorge import Workspace
from disgorge.errors import InvalidInput, NotFound
from disgorge.web.sessions import cookie_name
from disgorge.web.throttle import MAX_FAILURES, LoginThrottle

pytest.importorskip("argon2")
pytest.importorskip("jinja2")

WEB = Path(__file__).resolve().parents[1] / "src" / "disgorge" / "web"
#: each page, and the scope of the API route that shows the same data
PAGES = {
    "/ui/": "status:read",
    "/ui/cases": "subject:read",
    "/ui/erasures": "erasure:read",
    "/ui/holds": "erasure:read",
    "/ui/audit": "audit:read",
    "/ui/subjects": "subject:read",
    "/ui/lineage": "lineage:read",
    "/ui/violations": "violation:read",
    "/ui/datasets": "dataset:read",
    "/ui/models": "model:read",
    "/ui/sources": "source:read",
    "/ui/recipients": "sharing:read",
}


@dataclass
class Site(UiSite):
    #: the session cookie's name (``disgorge_session_`` and the workspace's id)
    cookie: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web")
    smoke_workspace(tmp).close()
    root = tmp / "ws"
    with serve_api(root) as api:
        with Workspace.open(root, actor="tester") as ws:
            for name in [*ROLE_USERS.values(), "officer-2"]:
                ws.set_password(name, UI_PASSWORD)
            # cases by external id (kept only as refs): one long overdue, one due in a month
            ws.open_case("access", PEOPLE[0], received_at="2013-08-01", channel="email")
            ws.open_case("erasure", PEOPLE[2], received_at=date.today().isoformat(), channel="portal")
        with Workspace.open(root, actor="tester") as ws:
            cookie = cookie_name(ws.workspace_id)
        site = Site(api, root, cookie)
        try:
            yield site
        finally:
            site.close()


# -- logging in and out --------------------------------------------------------------------------
def test_pages_send_a_stranger_to_the_login_page(site: Site) -> None:
    client = site.client()
    for path in PAGES:
        answer = client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/ui/login"
    polled = client.get("/ui/erasures/" + "0" * 32 + "/progress", headers={"HX-Request": "true"})
    assert polled.status_code == 204 and polled.headers["hx-redirect"] == "/ui/login"  # htmx's way
    form = client.get("/ui/login")
    assert form.status_code == 200
    for needle in ('id="login-form"', 'for="username"', 'id="username"', 'for="password"', 'id="login"'):
        assert needle in form.text
    assert re.search(r'<input id="password" name="password" type="password"', form.text)


def test_login_shows_who_is_logged_in_and_logout_ends_the_session_on_the_server(site: Site) -> None:
    client = site.login(ROLE_USERS["privacy_officer"])
    cookie = client.cookies[site.cookie]
    page = client.get("/ui/")
    assert page.status_code == 200
    assert '<span id="whoami" title="logged in as">officer-1 (privacy_officer)</span>' in page.text
    for nav in ("nav-overview", "nav-cases", "nav-erasures", "nav-holds", "nav-audit", "logout-button"):
        assert f'id="{nav}"' in page.text
    with Workspace.open(site.root, actor="tester") as ws:
        [(principal,)] = sql(ws, "SELECT id FROM principals WHERE name = 'officer-1'")
        digest = hashlib.sha256(cookie.encode()).hexdigest()
        # the catalog keeps the cookie's SHA-256, never the cookie
        assert sql(ws, "SELECT principal_id, revoked_at FROM web_sessions WHERE id = ?", digest) == [
            (principal, None)
        ]
        assert sql(ws, "SELECT count(*) FROM web_sessions WHERE id = ?", cookie) == [(0,)]

    out = post_form(client, "/ui/logout")
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert client.get("/ui/").status_code == 303
    # the same cookie, copied before the logout, is dead too: the server revoked it
    copied = site.client()
    copied.cookies.set(site.cookie, cookie, path="/ui")
    answer = copied.get("/ui/")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    with Workspace.open(site.root, actor="tester") as ws:
        [(revoked,)] = sql(ws, "SELECT revoked_at FROM web_sessions WHERE id = ?", digest)
        assert revoked is not None
        actions = [a for (a,) in sql(ws, "SELECT action FROM audit_events WHERE action LIKE 'ui.%'")]
        assert "ui.login" in actions and "ui.logout" in actions


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(site: Site) -> None:
    client = site.client()
    token = token_of(client.get("/ui/login"))
    wrong = client.post(
        "/ui/login", data={"username": "auditor-1", "password": "not the password", "csrf_token": token}
    )
    unknown = client.post(
        "/ui/login", data={"username": "no-such-user", "password": "not the password", "csrf_token": token}
    )
    service = client.post(  # a principal without a password (a service's, or one never set)
        "/ui/login", data={"username": "admin-1", "password": "", "csrf_token": token}
    )
    for answer in (wrong, unknown, service):
        assert answer.status_code == 401
        error = '<p id="error" class="problem" role="alert"><strong>Error:</strong> '
        assert error + "wrong user name or password</p>" in answer.text
        assert "disgorge_session" not in answer.headers.get("set-cookie", "")
    assert wrong.text.replace("auditor-1", "X") == unknown.text.replace("no-such-user", "X")


def test_a_disabled_principal_cannot_log_in_and_its_sessions_end(site: Site) -> None:
    with Workspace.open(site.root, actor="tester") as ws:
        ws.add_principal("leaver", role="auditor")
        ws.set_password("leaver", UI_PASSWORD)
    client = site.login("leaver")
    assert client.get("/ui/").status_code == 200
    with Workspace.open(site.root, actor="tester") as ws:
        ws.disable_principal("leaver")
    assert client.get("/ui/").status_code == 303
    form = site.client()
    token = token_of(form.get("/ui/login"))
    answer = form.post("/ui/login", data={"username": "leaver", "password": UI_PASSWORD, "csrf_token": token})
    assert answer.status_code == 401


def test_setting_a_password_checks_it_and_ends_the_users_sessions(site: Site) -> None:
    with Workspace.open(site.root, actor="tester") as ws:
        ws.add_principal("mover", role="viewer")
        ws.add_principal("robot", role="viewer", kind="service")
        with pytest.raises(InvalidInput, match="at least 12"):
            ws.set_password("mover", "short")
        with pytest.raises(InvalidInput, match="service principal"):
            ws.set_password("robot", UI_PASSWORD)
        with pytest.raises(NotFound):
            ws.set_password("nobody", UI_PASSWORD)
        ws.set_password("mover", UI_PASSWORD)
        [(stored,)] = sql(ws, "SELECT password_hash FROM principals WHERE name = 'mover'")
        assert stored.startswith("$argon2id$") and UI_PASSWORD not in stored
    client = site.login("mover")
    assert client.get("/ui/").status_code == 200
    with Workspace.open(site.root, actor="tester") as ws:
        assert ws.set_password("mover", "another long passphrase")["sessions_ended"] == 1
    assert client.get("/ui/").status_code == 303
    site.login("mover", "another long passphrase")


# -- CSRF, cookies, headers ----------------------------------------------------------------------
def test_a_post_without_the_sessions_csrf_token_is_refused(site: Site) -> None:
    client = site.login(ROLE_USERS["admin"])
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "x" * 43}):
        answer = client.post("/ui/logout", data=data)
        assert answer.status_code == 403, data
        assert "the form&#39;s CSRF token is missing or wrong" in answer.text
    assert client.get("/ui/").status_code == 200, "a refused POST changed nothing: still logged in"
    # another session's token is not this one's
    other = site.login(ROLE_USERS["viewer"])
    answer = client.post("/ui/logout", data={"csrf_token": token_of(other.get("/ui/"))})
    assert answer.status_code == 403
    # the login form: its token must match the pre-session cookie (double submit)
    stranger = site.client()
    stranger.get("/ui/login")
    answer = stranger.post(
        "/ui/login", data={"username": "admin-1", "password": UI_PASSWORD, "csrf_token": "forged" * 8}
    )
    assert answer.status_code == 403
    bare = site.client()  # no cookie at all
    answer = bare.post(
        "/ui/login", data={"username": "admin-1", "password": UI_PASSWORD, "csrf_token": "a" * 43}
    )
    assert answer.status_code == 403


def test_the_session_cookie_is_httponly_strict_and_scoped_to_the_ui(site: Site) -> None:
    client = site.client()
    form = client.get("/ui/login")
    answer = client.post(
        "/ui/login",
        data={"username": ROLE_USERS["auditor"], "password": UI_PASSWORD, "csrf_token": token_of(form)},
    )
    [cookie] = [c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{site.cookie}=")]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/ui"} <= flags
    assert "secure" not in flags  # plain http on loopback; over https the cookie is Secure
    secret = cookie.split(";")[0].split("=", 1)[1]
    assert len(secret) >= 43  # 32 random bytes
    page = client.get("/ui/")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_a_session_ends_after_8_hours_idle_or_12_hours_in_all(site: Site) -> None:
    idle, old = site.login(ROLE_USERS["viewer"]), site.login(ROLE_USERS["viewer"])
    assert idle.get("/ui/").status_code == old.get("/ui/").status_code == 200
    with Workspace.open(site.root, actor="tester") as ws:
        now = datetime.now(UTC).replace(tzinfo=None)
        for client, column, when in (
            (idle, "last_seen_at", now - timedelta(hours=8, minutes=1)),
            (old, "expires_at", now - timedelta(minutes=1)),
        ):
            digest = hashlib.sha256(client.cookies[site.cookie].encode()).hexdigest()
            stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f")
            assert sql(ws, f"UPDATE web_sessions SET {column} = ? WHERE id = ?", stamp, digest) == []
    for client in (idle, old):
        answer = client.get("/ui/")
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"


def test_the_ui_is_not_in_the_openapi_document(site: Site) -> None:
    spec = site.api.call("admin", "GET", "/v1/openapi.json").json()
    assert not [path for path in spec["paths"] if path.startswith("/ui")]


# -- roles ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", list(ROLE_USERS))
def test_each_role_sees_the_pages_its_scopes_allow(site: Site, role: str) -> None:
    assert_scopes_decide(site.login(ROLE_USERS[role]), role, PAGES)


# -- vendored files ------------------------------------------------------------------------------
def test_every_vendored_file_is_listed_with_its_sha256(site: Site) -> None:
    vendor = WEB / "static" / "vendor"
    rows = [line.split() for line in (vendor / "VENDOR").read_text().splitlines() if line and line[0] != "#"]
    listed = {row[0]: row for row in rows}
    files = {p.name for p in vendor.iterdir() if p.name != "VENDOR"}
    assert files == set(listed), "a vendored file without a VENDOR line, or a line without its file"
    for name, (_file, package, version, licence, digest, *source) in listed.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
        assert package and version[0].isdigit() and licence in ("0BSD", "MIT", "BSD-3-Clause") and source
    served = site.client().get("/ui/static/vendor/htmx.min.js")
    assert served.status_code == 200
    assert hashlib.sha256(served.content).hexdigest() == listed["htmx.min.js"][4]
    # nothing from elsewhere: every script and stylesheet the templates load is served here
    for template in (WEB / "templates").glob("*.html"):
        text = template.read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), template.name
    assert site.client().get("/ui/static/../../pyproject.toml").status_code in (403, 404)


# -- no personal data ----------------------------------------------------------------------------
def test_no_page_shows_an_external_subject_id(site: Site) -> None:
    admin, officer = site.login(ROLE_USERS["admin"]), site.login(ROLE_USERS["privacy_officer"])
    seen = []
    for client in (admin, officer):
        for path in PAGES:
            answer = client.get(path)
            assert answer.status_code == 200
            seen.append((path, answer.text))
    assert DENIED in PEOPLE
    for path, text in seen:
        for person in PEOPLE:
            assert person not in text, f"{path} shows the external id {person}"


def test_overdue_cases_say_so_in_words_not_only_in_colour(site: Site) -> None:
    client = site.login(ROLE_USERS["auditor"])
    for path in ("/ui/", "/ui/cases?status=open"):
        page = client.get(path).text
        rows = re.findall(r"<tr data-id=\"[^\"]+\"( class=\"overdue\")?>(.*?)</tr>", page, re.S)
        assert len(rows) == 2, path
        assert sorted(bool(cls) for cls, _ in rows) == [False, True]
        for cls, row in rows:
            assert ("OVERDUE" in row) == bool(cls)
            assert re.search(r"<code>sub_[0-9a-z]+</code>", row)
    late = client.get("/ui/cases?overdue=1").text
    assert late.count("OVERDUE") == 1 and 'id="case-filters"' in late


def test_the_overview_checks_the_audit_chain_after_the_page_and_on_a_page_of_its_own(site: Site) -> None:
    auditor = site.login(ROLE_USERS["auditor"])
    overview = auditor.get("/ui/").text
    # the page does not wait for the check: htmx asks for it once shown; without JS, a link
    assert 'hx-get="/ui/audit/verify"' in overview and 'id="audit-verify-link"' in overview
    assert 'id="audit-state"' not in overview
    events = site.api.call("auditor", "GET", "/v1/audit/verify").json()
    assert events["ok"] is True
    page = auditor.get("/ui/audit/verify")
    assert page.status_code == 200 and 'id="whoami"' in page.text
    assert re.search(r'id="audit-state" class="state-ok">[^<]*audit log verifies \(\d+ events\)', page.text)
    fragment = auditor.get("/ui/audit/verify", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and fragment.text.lstrip().startswith('<p id="audit-state"')
    assert "<html" not in fragment.text
    viewer = site.login(ROLE_USERS["viewer"])
    assert "audit/verify" not in viewer.get("/ui/").text
    refused = viewer.get("/ui/audit/verify")
    assert refused.status_code == 403 and 'id="forbidden"' in refused.text


def test_holds_are_placed_and_released_from_the_page_by_ref(site: Site) -> None:
    officer, viewer = site.login(ROLE_USERS["privacy_officer"]), site.login(ROLE_USERS["viewer"])
    placed = post_form(
        officer, "/ui/holds", {"kind": "subject", "name": PEOPLE[1], "reason": "litigation matter 2026-4"}
    )
    assert placed.status_code == 303 and placed.headers["location"] == "/ui/holds"
    page = officer.get("/ui/holds").text
    assert PEOPLE[1] not in page
    [hold] = re.findall(r'<tr data-id="([^"]+)" class="active">', page)
    assert re.search(r"subject <code>sub_[0-9a-z]+</code>", page) and "ACTIVE" in page
    assert 'id="add-hold"' in page and f'<label for="release-reason-{hold}">' in page
    # a viewer reads holds but places and releases none
    seen = viewer.get("/ui/holds").text
    assert hold in seen and 'id="add-hold"' not in seen and "release-reason" not in seen
    refused = post_form(viewer, f"/ui/holds/{hold}/release", {"reason": "not mine to release"})
    assert refused.status_code == 403 and 'id="forbidden"' in refused.text
    short = post_form(officer, f"/ui/holds/{hold}/release", {"reason": "done"})
    assert short.status_code == 422 and "10 to 2000 characters" in short.text
    released = post_form(officer, f"/ui/holds/{hold}/release", {"reason": "the matter was settled"})
    assert released.status_code == 303
    assert f'<tr data-id="{hold}" class="released">' in officer.get("/ui/holds?").text


def _erasure_page(
    client: httpx.Client, request_id: str, states: tuple[str, ...], timeout: float = 180
) -> str:
    give_up = time.monotonic() + timeout
    while True:
        page = client.get(f"/ui/erasures/{request_id}")
        assert page.status_code == 200, page.text
        state = re.search(r'<strong id="state" class="[^"]*">([a-z_]+)</strong>', page.text)
        assert state, page.text
        if state.group(1) in states or time.monotonic() > give_up:
            return page.text
        time.sleep(0.2)


def test_a_subjects_erasure_from_the_form_shows_only_its_ref(site: Site) -> None:
    officer = site.login(ROLE_USERS["privacy_officer"])
    request_id = request_erasure(officer, "subject", PEOPLE[0], "GDPR Art. 17 request 2026-9")
    page = _erasure_page(officer, request_id, ("completed", "failed"))
    assert re.search(r"Scope: subject <code>sub_[0-9a-z]+</code>", page)
    assert ">completed</strong>" in page, page
    for path in (f"/ui/erasures/{request_id}", "/ui/erasures", "/ui/", "/ui/audit", "/ui/cases", "/ui/holds"):
        text = officer.get(path).text
        for person in PEOPLE:
            assert person not in text, f"{path} shows the external id {person}"


def test_a_second_officer_approves_and_the_certificate_verifies_from_the_page(site: Site) -> None:
    first, second = site.login(ROLE_USERS["privacy_officer"]), site.login("officer-2")
    viewer, ml = site.login(ROLE_USERS["viewer"]), site.login(ROLE_USERS["ml_engineer"])
    listing = first.get("/ui/erasures").text
    assert 'id="new-erasure"' in listing and '<label for="scope-id">' in listing
    assert 'id="new-erasure"' not in viewer.get("/ui/erasures").text
    refused = post_form(
        ml, "/ui/erasures/new", {"kind": "source", "scope_id": "lfw", "reason": "not allowed"}
    )
    assert refused.status_code == 403 and 'id="forbidden"' in refused.text

    # one deny ends a request
    denied = request_erasure(first, "source", "lfw", "the source's licence ended")
    assert post_form(second, f"/ui/erasures/{denied}/deny", {"reason": "no"}).status_code == 422  # too short
    assert post_form(second, f"/ui/erasures/{denied}/deny", {"reason": "keep it for now"}).status_code == 303
    assert ">denied</strong>" in _erasure_page(first, denied, ("denied",))

    request_id = request_erasure(first, "source", "lfw", "the source's licence ended")
    page = _erasure_page(first, request_id, ("planned",))
    assert 'id="approvals-needed">1 more approval(s) needed' in page
    assert 'form id="approve"' in page and 'form id="deny"' in page
    assert 'form id="approve"' not in viewer.get(f"/ui/erasures/{request_id}").text
    plan = page.split('<table id="plan">')[1].split("</table>")[0]
    assert 'class="empty"' not in plan and re.search(r"<td>photos</td><td>[1-9]\d*</td>", plan)
    # the requester's own approval does not count: the two-person rule
    own = post_form(first, f"/ui/erasures/{request_id}/approve", {"reason": "mine"})
    assert own.status_code == 403 and "other than its requester" in own.text
    viewed = post_form(viewer, f"/ui/erasures/{request_id}/approve", {"reason": "mine"})
    assert viewed.status_code == 403 and 'id="forbidden"' in viewed.text
    approved = post_form(second, f"/ui/erasures/{request_id}/approve", {"reason": "checked the contract"})
    assert approved.status_code == 303 and approved.headers["location"] == f"/ui/erasures/{request_id}"

    page = _erasure_page(first, request_id, ("completed", "failed", "awaiting_recipients"))
    assert ">completed</strong>" in page, page
    assert "officer-2: <strong>approved</strong>" in page
    assert 'class="pending"' not in page.split('id="steps"')[1].split("</ol>")[0]
    assert 'hx-trigger="every 2s"' not in page
    assert "HX-Refresh".lower() in {
        k.lower() for k in first.get(f"/ui/erasures/{request_id}/progress").headers
    }
    download = first.get(f"/ui/erasures/{request_id}/certificate")
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    assert {"body", "signature"} <= set(download.json())
    checked = post_form(first, f"/ui/erasures/{request_id}/verify-certificate")
    assert checked.status_code == 200
    assert '<p id="certificate-check" role="status" aria-live="polite">valid</p>' in checked.text
    # a viewer sees the request but not its certificate (certificate:read)
    seen = viewer.get(f"/ui/erasures/{request_id}")
    assert seen.status_code == 200 and 'id="certificate-download"' not in seen.text
    assert viewer.get(f"/ui/erasures/{request_id}/certificate").status_code == 403
    malformed = first.get("/ui/erasures/not-an-id!")
    assert malformed.status_code == 422 and 'id="error"' in malformed.text
    missing = first.get("/ui/erasures/" + "0" * 32)
    assert missing.status_code == 404 and 'id="error"' in missing.text


def test_failed_logins_make_the_name_wait_right_password_or_not(site: Site) -> None:
    """Five wrong passwords for one name: the sixth attempt is refused before the password
    is checked (429, Retry-After), even with the right one; another name is not affected."""
    with Workspace.open(site.root, actor="tester") as ws:
        ws.add_principal("guessed", role="viewer")
        ws.set_password("guessed", UI_PASSWORD)
    client = site.client()
    token = token_of(client.get("/ui/login"))
    for _ in range(MAX_FAILURES):
        wrong = client.post(
            "/ui/login", data={"username": "guessed", "password": "nope nope nope", "csrf_token": token}
        )
        assert wrong.status_code == 401
    right = client.post(
        "/ui/login", data={"username": "guessed", "password": UI_PASSWORD, "csrf_token": token}
    )
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
    assert "too many failed logins" in right.text and "disgorge_session" not in right.headers.get(
        "set-cookie", ""
    )
    site.login("viewer-1")  # other names log in as before


def test_the_throttle_forgets_failures_after_its_window_and_a_good_login_clears_them() -> None:
    now = [0.0]
    throttle = LoginThrottle(max_failures=2, window_s=60, clock=lambda: now[0])
    keys = throttle.keys("Someone ")
    assert keys == throttle.keys("someone")  # one name, however typed
    throttle.failed(keys)
    throttle.failed(keys)
    assert throttle.wait_s(keys) == 60
    now[0] = 59.5
    assert throttle.wait_s(keys) == pytest.approx(0.5)
    now[0] = 60.0
    assert throttle.wait_s(keys) == 0
    throttle.failed(keys)
    throttle.succeeded(keys)
    throttle.failed(keys)
    assert throttle.wait_s(keys) == 0  # one failure since the good login


def test_a_whole_workspace_check_runs_once_for_every_viewer_until_the_log_grows() -> None:
    """The overview's audit-chain and violation checks (disgorge.web.checks): the last answer
    stands while no audit event is added and for TTL_S; one request runs a check at a time."""
    import threading

    from disgorge.web.checks import SharedCheck

    now = [100.0]
    check = SharedCheck(ttl_s=300, clock=lambda: now[0])
    runs: list[int] = []

    def run() -> dict[str, object]:
        runs.append(1)
        return {"ok": True, "n": len(runs)}

    first = check.answer(10, run, wait=False)
    assert first is not None and first.result["n"] == 1 and first.age_s == 0
    now[0] += 42
    again = check.answer(10, run, wait=False)
    assert again is not None and again.result["n"] == 1 and again.age_s == 42  # reused, and how old
    fresh = check.answer(10, run, wait=True, reuse=False)  # asked for on its own page: checked again
    assert fresh is not None and fresh.result["n"] == 2
    grown = check.answer(11, run, wait=False)  # an event was added since
    assert grown is not None and grown.result["n"] == 3
    now[0] += 301
    stale = check.answer(11, run, wait=False)
    assert stale is not None and stale.result["n"] == 4
    # while one request runs the check, another is told to ask again, not made to wait
    started, release = threading.Event(), threading.Event()

    def slow() -> dict[str, object]:
        started.set()
        release.wait(30)
        return {"ok": True}

    worker = threading.Thread(target=check.answer, args=(12, slow), kwargs={"wait": False})
    worker.start()
    assert started.wait(30)
    assert check.answer(12, run, wait=False) is None
    release.set()
    worker.join(30)
    assert check.answer(12, run, wait=False) is not None and len(runs) == 4  # the slow one's answer
