"""The web UI in a real browser: headless Chromium (Debian's chromium through chromium-driver,
driven by Selenium) against the real server on loopback.

What a privacy office does with it, clicked through: each role logs in and sees only what
its scopes allow (the same scopes as the API's routes); one privacy officer starts the
erasure of a whole source, a second one approves it, the page shows the steps as they run
and the certificate verifies from the page; a POST without the form's CSRF token is
refused; logging out ends the session on the server. Accessibility basics are checked in
the browser: every control has a label, the keyboard reaches every control in document
order, and an overdue case says "OVERDUE" in words, not only in red.

The screenshots of docs/ui.md's tour are taken on the demo's data by tests/test_web_tour.py.
"""

from __future__ import annotations

import contextlib
import html
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import (
    DUPLICATE_IDS,
    FOCUSABLE,
    PEOPLE,
    ROLE_USERS,
    UI_PASSWORD,
    UNLABELLED,
    Api,
    UiSite,
    add_role_tokens,
    console_errors,
    new_browser,
    smoke_workspace,
    ui_login,
)
from disgorge import Workspace
from disgorge._time import utcnow
from disgorge.access.roles import ROLES
from disgorge.erasure.steps import inject
from disgorge.web.sessions import cookie_name

OFFICER, OFFICER_2 = ROLE_USERS["privacy_officer"], "officer-2"
REASON = "GDPR Art. 17 request 2024-117"

#: page -> (path, the scope the API route showing the same data needs, the element it shows)
PAGES = {
    "overview": ("/ui/", "status:read", "counts"),
    "cases": ("/ui/cases", "subject:read", "cases"),
    "erasures": ("/ui/erasures", "erasure:read", "erasures"),
    "holds": ("/ui/holds", "erasure:read", "holds"),
    "audit": ("/ui/audit", "audit:read", "audit"),
    "subjects": ("/ui/subjects", "subject:read", "subject-lookup"),
    "lineage": ("/ui/lineage", "lineage:read", "lineage-form"),
    "violations": ("/ui/violations", "violation:read", "violations"),
    "datasets": ("/ui/datasets", "dataset:read", "datasets"),
    "models": ("/ui/models", "model:read", "models"),
    "sources": ("/ui/sources", "source:read", "sources"),
    "recipients": ("/ui/recipients", "sharing:read", "recipients"),
}


# -- the workspace and the server ------------------------------------------------------------
@dataclass
class Site(UiSite):
    #: the session cookie's name (``disgorge_session_`` and the workspace's id)
    cookie: str
    #: the erasure a privacy officer asked for over the API, waiting for a second officer
    waiting: str = ""
    #: an erasure finished at the shell, with its certificate
    done: str = ""


@contextlib.contextmanager
def serve_ui(root: Path) -> Iterator[Site]:
    """The workspace at ``root`` served on 127.0.0.1 (real uvicorn), a principal per role
    plus a second privacy officer, each with a token and the password :data:`UI_PASSWORD`."""
    from disgorge.api import running_server

    tokens = add_role_tokens(root)
    with Workspace.open(root, actor="tester") as ws:
        for name in (*ROLE_USERS.values(), OFFICER_2):
            ws.set_password(name, UI_PASSWORD)
        cookie = cookie_name(ws.workspace_id)
    with running_server(root, actor="api-server") as url:
        yield Site(Api(url, tokens), root, cookie)


def demo_workspace(tmp_path: Path) -> Path:
    """The smoke workspace (source lfw, three people, one refusing ai_training) with a
    dataset, an overdue access case, a case due in weeks, a legal hold and a finished erasure."""
    ws = smoke_workspace(tmp_path)
    with ws:
        ws.build_dataset("faces", purpose="ai_training", at="2013-08-01")
        now = utcnow()
        ws.open_case("access", PEOPLE[0], received_at="2024-01-02", channel="email")  # long overdue
        ws.open_case("erasure", PEOPLE[2], received_at=now - timedelta(days=2), channel="portal")
        ws.add_hold("subject", PEOPLE[2], reason="litigation 2026-044: keep until the court rules")
        ws.erase("subject", PEOPLE[1], reason=REASON)
    return tmp_path / "ws"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The demo workspace served, with a source erasure waiting for a second officer."""
    root = demo_workspace(tmp_path_factory.mktemp("web"))
    with serve_ui(root) as served:
        api = served.api
        made = api.call(
            "privacy_officer", "POST", "/v1/erasures", json={"kind": "source", "id": "lfw", "reason": REASON}
        )
        assert made.status_code == 202, made.text
        served.waiting = made.json()["id"]
        finished = api.call("auditor", "GET", "/v1/erasures", params={"state": "completed"}).json()["items"]
        served.done = finished[0]["id"]
        yield served


# -- looking at pages ------------------------------------------------------------------------
def found(driver: WebDriver, css: str) -> list[WebElement]:
    return list(driver.find_elements(By.CSS_SELECTOR, css))


def one(driver: WebDriver | WebElement, css: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, css)


def wait_for(driver: WebDriver, what: Callable[[WebDriver], Any], timeout: float = 30) -> Any:
    """Wait until ``what`` is true; an element htmx replaced meanwhile just means try again."""
    again = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=again).until(what)


def login(driver: WebDriver, site: Site, name: str) -> None:
    ui_login(driver, site.url, name, UI_PASSWORD)
    assert not found(driver, "#error"), one(driver, "#error").text


#: what the overview shows until htmx has put in the parts it asks for after the page (the
#: audit chain's check, the latest violations): a page is read once they are in
PENDING = "#audit-verify-link, #violations-latest-link, .checking, .htmx-request"


def open_page(driver: WebDriver, site: Site, path: str) -> None:
    driver.get(site.url + path)
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    wait_for(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, PENDING))


def session_cookie(driver: WebDriver, site: Site) -> str:
    [cookie] = [c for c in driver.get_cookies() if c["name"] == site.cookie]
    assert cookie["httpOnly"] is True
    return str(cookie["value"])


def raw(site: Site, method: str, path: str, cookie: str | None, **kw: Any) -> httpx.Response:
    """One request outside the browser, carrying ``cookie`` as the session cookie."""
    headers = {"Cookie": f"{site.cookie}={cookie}"} if cookie else {}
    return httpx.request(method, site.url + path, headers=headers, follow_redirects=False, timeout=60, **kw)


# -- logging in, per role ----------------------------------------------------------------------
def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(browser: WebDriver, site: Site) -> None:
    answers = []
    for name, password in ((OFFICER, "not the password at all"), ("nobody-here", UI_PASSWORD)):
        ui_login(browser, site.url, name, password)
        assert not found(browser, "#whoami")
        answers.append(one(browser, "#error").text)
    assert answers[0] == answers[1]
    assert "wrong user name or password" in answers[0]
    login(browser, site, OFFICER)
    assert one(browser, "#whoami").text == f"{OFFICER} (privacy_officer)"


@pytest.mark.parametrize("role", sorted(ROLE_USERS))
def test_each_role_sees_only_what_its_scopes_allow(browser: WebDriver, site: Site, role: str) -> None:
    scopes = ROLES[role]
    login(browser, site, ROLE_USERS[role])
    assert browser.current_url == site.url + "/ui/"
    assert one(browser, "header #whoami").text == f"{ROLE_USERS[role]} ({role})"
    for page, (path, scope, shows) in PAGES.items():
        open_page(browser, site, path)
        assert one(browser, "header #whoami").text == f"{ROLE_USERS[role]} ({role})", page
        errors = console_errors(browser)  # a refused page's 403 is one
        if scope in scopes:
            assert errors == [], (role, page)
            assert not found(browser, "#forbidden"), (role, page)
            assert found(browser, f"#{shows}"), (role, page, browser.page_source[:2000])
        else:
            assert found(browser, "#forbidden"), (role, page)
            assert not found(browser, f"#{shows}"), (role, page)

    open_page(browser, site, "/ui/erasures")
    assert bool(found(browser, "form#new-erasure")) == ("erasure:create" in scopes), role
    rows = {r.get_attribute("data-id") for r in found(browser, "table#erasures tr[data-id]")}
    assert {site.waiting, site.done} <= rows
    open_page(browser, site, f"/ui/erasures/{site.waiting}")
    assert found(browser, "#plan") and found(browser, "#approvals") and found(browser, "#state")
    may_approve = "erasure:approve" in scopes
    assert bool(found(browser, "form#approve")) == may_approve, role
    assert bool(found(browser, "form#deny")) == may_approve, role
    if not may_approve:  # no form to click, and the server refuses the POST all the same
        token = one(browser, "form#logout input[name=csrf_token]").get_attribute("value")
        answer = raw(
            site,
            "POST",
            f"/ui/erasures/{site.waiting}/approve",
            session_cookie(browser, site),
            data={"csrf_token": token, "reason": "me too"},
        )
        assert answer.status_code == 403, (role, answer.status_code)
        view = site.api.call("auditor", "GET", f"/v1/erasures/{site.waiting}").json()
        assert view["state"] == "planned" and view["approvals"] == [], role
    open_page(browser, site, "/ui/holds")
    assert bool(found(browser, "form#add-hold")) == may_approve, role
    assert console_errors(browser) == []


# -- the two-person rule, clicked through ----------------------------------------------------
@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Site]:
    smoke_workspace(tmp_path).close()
    with serve_ui(tmp_path / "ws") as served:
        yield served


def test_two_officers_erase_a_source_and_the_certificate_verifies_on_the_page(
    browser: WebDriver, fresh: Site
) -> None:
    login(browser, fresh, OFFICER)
    open_page(browser, fresh, "/ui/erasures")
    form = one(browser, "form#new-erasure")
    Select(one(form, "select")).select_by_value("source")
    one(form, "#scope-id").send_keys("lfw")
    one(form, "#reason").send_keys(REASON)
    one(form, "button[type=submit], button:not([type])").click()
    wait_for(browser, lambda d: found(d, "#approvals"))
    request_id = browser.current_url.rstrip("/").rsplit("/", 1)[-1]
    view = fresh.api.call("auditor", "GET", f"/v1/erasures/{request_id}").json()
    assert view["state"] == "planned" and view["scope"]["kind"] == "source"
    assert "1 more approval" in one(browser, "#approvals").text
    assert one(browser, "#state").text.strip().startswith("planned")
    assert "photo" in one(browser, "#plan").text.lower()

    second = new_browser()
    try:
        login(second, fresh, OFFICER_2)
        open_page(second, fresh, f"/ui/erasures/{request_id}")
        approve = one(second, "form#approve")
        one(approve, "textarea").send_keys("checked the scope with legal")
        # the server runs in this process (a thread): a pause of 2 s in one step, through the
        # erasure's fault-injection hook, keeps the progress visible on however fast a machine
        with inject("purge_database", before=lambda: time.sleep(2)):
            one(approve, "button[type=submit], button:not([type])").click()
            wait_for(second, staleness_of(approve))  # the request's page again, after the redirect
            wait_for(second, lambda d: d.execute_script("return document.readyState") == "complete")
            seen: list[tuple[Any, ...]] = []  # what the page showed, each time it changed

            def finished(d: WebDriver) -> bool:
                now = tuple(d.execute_script(PROGRESS))  # one look: htmx may swap or reload between two
                if not seen or seen[-1] != now:
                    seen.append(now)
                state, _, _, polling, loaded, verify = now
                if loaded and state not in ("", "completed", "failed"):
                    assert polling, f"a running erasure's page does not refresh itself: {now}"
                return loaded and (state == "failed" or (state == "completed" and verify))

            # without a reload of ours: htmx polls the progress, and reloads the page once it ends
            # (a query that meets the reload mid-way is asked again: WebDriverException)
            WebDriverWait(second, 120, poll_frequency=0.1, ignored_exceptions=(WebDriverException,)).until(
                finished
            )
        state, done, steps, *_ = seen[-1]
        assert state == "completed" and done == steps > 0, seen
        first = next(s for s in seen if s[0])
        assert first[0] != "completed" and first[1] < first[2], f"no progress to see: {seen}"
        one(second, "#certificate-verify").click()
        wait_for(
            second, lambda d: found(d, "#certificate-check") and one(d, "#certificate-check").text.strip()
        )
        assert one(second, "#certificate-check").text.strip() == "valid"
        link = one(second, "a#certificate-download").get_attribute("href")
        assert link and link.startswith(fresh.url)
    finally:
        second.quit()

    view = fresh.api.call("auditor", "GET", f"/v1/erasures/{request_id}").json()
    assert view["state"] == "completed"
    officer_2 = fresh.api.call("officer-2", "GET", "/v1/me").json()["id"]
    assert [(a["principal"], a["decision"]) for a in view["approvals"]] == [(officer_2, "approve")]
    photos = fresh.api.call("auditor", "GET", "/v1/assets", params={"state": "active", "limit": 1}).json()
    assert photos["total"] == 0


#: (state, steps done, steps, whether the progress polls, whether the page and htmx are
#: loaded, whether it shows the certificate's verify button)
PROGRESS = """
const steps = [...document.querySelectorAll('#steps li')];
return [
  document.getElementById('state')?.textContent.trim() ?? '',
  steps.filter(li => li.classList.contains('done')).length,
  steps.length,
  !!document.querySelector('#progress[hx-trigger]'),
  document.readyState === 'complete' && !!window.htmx,
  !!document.getElementById('certificate-verify'),
];
"""


# -- CSRF and logout -----------------------------------------------------------------------
def test_a_post_without_the_csrf_token_is_refused(browser: WebDriver, site: Site) -> None:
    login(browser, site, OFFICER)
    cookie = session_cookie(browser, site)
    holds = len(site.api.call("auditor", "GET", "/v1/holds").json()["items"])
    form = {"kind": "source", "name": "lfw", "reason": "the regulator's inquiry 2026-17"}

    # from the page itself: the browser sends its session cookie, the script has no token
    status = browser.execute_script(
        "return fetch('/ui/holds', {method: 'POST', body: new URLSearchParams(arguments[0]),"
        " redirect: 'manual'}).then(r => r.status);",
        form,
    )
    assert status == 403
    refused = raw(site, "POST", "/ui/holds", cookie, data={**form, "csrf_token": "0" * 43})
    assert refused.status_code == 403
    assert "the form's CSRF token is missing or wrong" in html.unescape(refused.text)
    refused = raw(site, "POST", "/ui/logout", cookie, data={})
    assert refused.status_code == 403
    assert len(site.api.call("auditor", "GET", "/v1/holds").json()["items"]) == holds

    # the same form with the page's token is taken: the refusals above were the token's
    open_page(browser, site, "/ui/holds")
    token = one(browser, "form#add-hold input[name=csrf_token]").get_attribute("value")
    taken = raw(site, "POST", "/ui/holds", cookie, data={**form, "csrf_token": token})
    assert taken.status_code in (200, 303), taken.text
    assert len(site.api.call("auditor", "GET", "/v1/holds").json()["items"]) == holds + 1
    open_page(browser, site, "/ui/")
    assert found(browser, "#whoami")  # the refused logout did not end the session


def test_logout_ends_the_session_on_the_server(browser: WebDriver, site: Site) -> None:
    login(browser, site, ROLE_USERS["auditor"])
    cookie = session_cookie(browser, site)
    assert raw(site, "GET", "/ui/", cookie).status_code == 200
    one(browser, "#logout-button").click()
    wait_for(browser, lambda d: d.current_url.startswith(site.url + "/ui/login"))
    assert not found(browser, "#whoami")

    answer = raw(site, "GET", "/ui/", cookie)  # the old cookie, replayed
    assert answer.status_code == 303 and answer.headers["location"].endswith("/ui/login")
    browser.add_cookie({"name": site.cookie, "value": cookie, "path": "/ui"})
    open_page(browser, site, "/ui/audit")
    assert browser.current_url.startswith(site.url + "/ui/login")
    assert not found(browser, "#whoami")


# -- accessibility basics ----------------------------------------------------------------------
def every_page(site: Site) -> list[tuple[str, str]]:
    return [(name, path) for name, (path, _, _) in PAGES.items()] + [
        ("erasure-waiting", f"/ui/erasures/{site.waiting}"),
        ("erasure-completed", f"/ui/erasures/{site.done}"),
    ]


def test_every_control_has_a_label_and_tab_reaches_them_in_order(browser: WebDriver, site: Site) -> None:
    open_page(browser, site, "/ui/login")
    pages = [("login", "/ui/login")]
    login(browser, site, ROLE_USERS["admin"])
    pages += every_page(site)
    for name, path in pages:
        if name == "login":
            browser.delete_all_cookies()
        open_page(browser, site, path)
        assert browser.execute_script(UNLABELLED) == [], name
        assert browser.execute_script(DUPLICATE_IDS) == [], f"{name}: an id used twice breaks its label"
        controls = browser.execute_script(FOCUSABLE)
        assert controls, name
        assert all(int(c.get_attribute("tabIndex")) == 0 for c in controls), f"{name}: a positive tabindex"
        browser.execute_script("arguments[0].focus()", controls[0])  # where Tab starts from
        reached = [browser.switch_to.active_element]
        for _ in controls[1:]:
            for _segment in range(4):  # a date field takes a Tab per part (month, day, year)
                ActionChains(browser).send_keys(Keys.TAB).perform()
                if browser.switch_to.active_element != reached[-1]:
                    break
            reached.append(browser.switch_to.active_element)
        assert reached == controls, (name, [c.get_attribute("outerHTML")[:80] for c in reached])
        if name == "login":
            login(browser, site, ROLE_USERS["admin"])


def test_login_works_with_the_keyboard_alone(browser: WebDriver, site: Site) -> None:
    open_page(browser, site, "/ui/login")
    for _ in range(3):  # the field has the focus (autofocus), or Tab gets there past the skip link
        if browser.switch_to.active_element.get_attribute("id") == "username":
            break
        ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "username"
    ActionChains(browser).send_keys(ROLE_USERS["viewer"], Keys.TAB).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "password"
    ActionChains(browser).send_keys(UI_PASSWORD, Keys.ENTER).perform()
    wait_for(browser, lambda d: found(d, "#whoami"))
    assert one(browser, "#whoami").text == f"{ROLE_USERS['viewer']} (viewer)"


def test_an_overdue_case_says_so_in_words(browser: WebDriver, site: Site) -> None:
    login(browser, site, OFFICER)
    for path, table in (("/ui/", "table#cases-due"), ("/ui/cases", "table#cases")):
        open_page(browser, site, path)
        rows = found(browser, f"{table} tbody tr")
        overdue = [r for r in rows if "overdue" in (r.get_attribute("class") or "").split()]
        on_time = [r for r in rows if r not in overdue]
        assert len(overdue) == 1 and len(on_time) == 1, (path, [r.text for r in rows])
        assert "OVERDUE" in overdue[0].text  # visible text, not only the row's colour
        assert "OVERDUE" not in on_time[0].text
    open_page(browser, site, "/ui/cases?overdue=1")
    assert len(found(browser, "table#cases tbody tr")) == 1


# -- every page renders, and its screenshot -------------------------------------------------
def test_every_page_renders_without_console_errors(browser: WebDriver, site: Site) -> None:
    open_page(browser, site, "/ui/login")
    login(browser, site, OFFICER)
    for name, path in every_page(site):
        open_page(browser, site, path)
        assert found(browser, "#whoami"), name
        assert not found(browser, "#forbidden"), name
        assert console_errors(browser) == [], name
    browser.delete_all_cookies()
    login(browser, site, ROLE_USERS["viewer"])
    open_page(browser, site, "/ui/audit")
    assert found(browser, "#forbidden")
