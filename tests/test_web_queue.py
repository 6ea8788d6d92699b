"""The erasure queue's bulk decisions, withheld photos' holds, and subject links, over HTTP
on real uvicorn (``disgorge serve``'s app), and one bulk decision in headless Chromium.

Two privacy officers: one asks for large erasures (the two-person rule covers a source),
the second approves them in one submission from the list, and each runs to its end; the
requester's own bulk approval is refused request by request (the others still go); a bulk
denial needs a reason; a POST without the CSRF token, a role without ``erasure:approve``
and a submission over the limit change nothing. A plan whose photos a legal hold keeps
lists the hold with its reason. Subject refs on the cases and erasure pages link to the
subject's page for roles that read subjects.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date

import httpx
import pytest

from conftest import (
    PEOPLE,
    ROLE_USERS,
    UI_PASSWORD,
    UiSite,
    console_errors,
    post_form,
    request_erasure,
    serve_api,
    smoke_workspace,
    ui_login,
)
from disgorge import Workspace
from disgorge.samples import synthetic_photo

pytest.importorskip("argon2")
pytest.importorskip("jinja2")

#: extra sources, each its own photos: erasing a source is large (the two-person rule)
SOURCES = tuple(f"stock-{c}" for c in "abcdefg")  # one planned request per scope at a time
HOLD_REASON = "litigation 2026-77: keep the photos of this subject"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiSite]:
    tmp = tmp_path_factory.mktemp("queue")
    ws = smoke_workspace(tmp)
    try:
        for s, name in enumerate(SOURCES):
            ws.add_source(name, kind="partner", at="2013-01-01")
            folder = tmp / name
            for p, person in enumerate(("Stock_One", "Stock_Two")):
                (folder / person).mkdir(parents=True)
                for i in range(2):  # photos of their own: no other source has these bytes
                    photo = synthetic_photo(10 + 2 * s + p, i, size=64)
                    (folder / person / f"{i}.jpg").write_bytes(photo)
            ws.ingest(folder, source=name, subject_from="dirname", at="2013-06-01")
    finally:
        ws.close()
    root = tmp / "ws"
    with serve_api(root) as api:
        with Workspace.open(root, actor="tester") as ws:
            for name in [*ROLE_USERS.values(), "officer-2"]:
                ws.set_password(name, UI_PASSWORD)
            ws.open_case("access", PEOPLE[0], received_at=date.today().isoformat(), channel="email")
        site = UiSite(api, root)
        try:
            yield site
        finally:
            site.close()


def _state(client: httpx.Client, request_id: str) -> str:
    page = client.get(f"/ui/erasures/{request_id}")
    assert page.status_code == 200, page.text
    found = re.search(r'<strong id="state" class="[^"]*">([a-z_]+)</strong>', page.text)
    assert found, page.text
    return found.group(1)


def _wait(client: httpx.Client, request_id: str, states: tuple[str, ...], timeout: float = 180) -> str:
    give_up = time.monotonic() + timeout
    while (state := _state(client, request_id)) not in states and time.monotonic() < give_up:
        time.sleep(0.2)
    return state


def _outcomes(page: httpx.Response) -> dict[str, str]:
    """Request id -> the outcome's words in the page's ``#bulk-result``."""
    assert page.status_code == 200, page.text
    section = page.text.split('id="bulk-result"')[1].split("</section>")[0]
    rows = re.findall(
        r'<tr data-id="([0-9a-f]+)" class="outcome-[a-z]+">.*?<td class="[^"]*">([^<]*)</td>', section, re.S
    )
    return dict(rows)


def test_a_second_officer_approves_several_in_one_go_and_each_runs(site: UiSite) -> None:
    first, second = site.login(ROLE_USERS["privacy_officer"]), site.login("officer-2")
    ids = [request_erasure(first, "source", name, f"the licence of {name} ended") for name in SOURCES[:2]]
    listing = second.get("/ui/erasures").text
    for request_id in ids:
        assert (
            f'<input type="checkbox" id="pick-{request_id}" name="ids" value="{request_id}" form="bulk">'
            in listing
        )
        assert (
            f'<label for="pick-{request_id}" class="visually-hidden">Select erasure {request_id[:8]}</label>'
            in listing
        )
    for needle in (
        '<form id="bulk" method="post"',
        '<label for="bulk-action">',
        '<select id="bulk-action" name="action">',
        '<label for="bulk-reason">',
        'id="bulk-reason"',
        'id="bulk-apply"',
    ):
        assert needle in listing, needle

    # the requester's own approvals do not count (the two-person rule), each refused on its own
    own = post_form(first, "/ui/erasures/bulk", {"action": "approve", "ids": ids, "reason": "mine"})
    outcomes = _outcomes(own)
    assert set(outcomes) == set(ids)
    assert all(
        text.startswith("refused: ") and "other than its requester" in text for text in outcomes.values()
    )
    assert all(_state(first, request_id) == "planned" for request_id in ids)

    approved = post_form(
        second, "/ui/erasures/bulk", {"action": "approve", "ids": ids, "reason": "checked the contracts"}
    )
    assert _outcomes(approved) == {request_id: "approved; queued to run" for request_id in ids}
    for request_id in ids:
        assert _wait(first, request_id, ("completed", "failed")) == "completed"
        page = first.get(f"/ui/erasures/{request_id}").text
        assert "officer-2: <strong>approved</strong>" in page and "checked the contracts" in page
    # nothing planned is left to pick among them
    listing = second.get("/ui/erasures").text
    assert not any(f'id="pick-{request_id}"' in listing for request_id in ids)


def test_bulk_deny_needs_a_reason_and_one_refusal_stops_no_other(site: UiSite) -> None:
    first, second = site.login(ROLE_USERS["privacy_officer"]), site.login("officer-2")
    ids = [request_erasure(first, "source", name, f"ask about {name}") for name in SOURCES[2:4]]
    short = post_form(second, "/ui/erasures/bulk", {"action": "deny", "ids": ids, "reason": "no"})
    assert short.status_code == 422 and "a reason has 3 to 2000 characters" in short.text
    assert [_state(first, i) for i in ids] == ["planned", "planned"]

    once = post_form(
        second, "/ui/erasures/bulk", {"action": "deny", "ids": ids[:1], "reason": "not our data"}
    )
    assert _outcomes(once) == {ids[0]: "denied"}
    # the first is denied already: refused with the reason why; the second still is denied
    both = post_form(
        second, "/ui/erasures/bulk", {"action": "deny", "ids": [*ids, ids[1]], "reason": "not our data"}
    )
    outcomes = _outcomes(both)
    assert list(outcomes) == ids  # each once, in the order picked
    assert (
        outcomes[ids[0]].startswith("refused: ")
        and "only a planned erasure can be denied" in outcomes[ids[0]]
    )
    assert outcomes[ids[1]] == "denied"
    for request_id in ids:
        assert _state(first, request_id) == "denied"
        assert "officer-2: <strong>denied</strong>" in first.get(f"/ui/erasures/{request_id}").text


def test_bulk_posts_that_change_nothing(site: UiSite) -> None:
    from disgorge.web.pages.erasures import BULK_LIMIT  # after the app (the pages import it)

    first, second = site.login(ROLE_USERS["privacy_officer"]), site.login("officer-2")
    request_id = request_erasure(first, "source", SOURCES[4], "kept planned by this test")
    no_token = second.post("/ui/erasures/bulk", data={"action": "approve", "ids": [request_id]})
    assert no_token.status_code == 403 and "CSRF token" in no_token.text
    for role in ("viewer", "auditor", "ml_engineer"):
        client = site.login(ROLE_USERS[role])
        assert 'id="bulk"' not in client.get("/ui/erasures").text
        refused = post_form(client, "/ui/erasures/bulk", {"action": "approve", "ids": [request_id]})
        assert refused.status_code == 403 and 'id="forbidden"' in refused.text, role
    too_many = [request_id] + [f"{n:032x}" for n in range(1, BULK_LIMIT + 1)]
    over = post_form(second, "/ui/erasures/bulk", {"action": "approve", "ids": too_many})
    assert over.status_code == 422
    assert (
        f"{BULK_LIMIT + 1} requests selected: at most {BULK_LIMIT} at a time; nothing was changed"
        in over.text
    )
    for data, message in (
        ({"action": "approve"}, "select at least one request"),
        ({"action": "erase", "ids": [request_id]}, "approve or deny"),
        ({"action": "approve", "ids": [request_id, "not-an-id!"]}, "malformed; nothing was changed"),
    ):
        answer = post_form(second, "/ui/erasures/bulk", data)
        assert answer.status_code == 422 and message in answer.text, data
    assert _state(first, request_id) == "planned"
    missing = post_form(second, "/ui/erasures/bulk", {"action": "approve", "ids": ["0" * 32]})
    assert _outcomes(missing)["0" * 32].startswith("refused: no erasure request")


def test_the_plan_lists_the_holds_that_withhold_photos_with_their_reasons(site: UiSite) -> None:
    with Workspace.open(site.root, actor="tester") as ws:
        hold = ws.add_hold("subject", PEOPLE[0], reason=HOLD_REASON)
    officer = site.login(ROLE_USERS["privacy_officer"])
    request_id = request_erasure(officer, "source", "lfw", "the licence of lfw ended")
    page = officer.get(f"/ui/erasures/{request_id}").text
    table = page.split('<table id="withheld">')[1].split("</table>")[0]
    row = re.search(rf'<tr data-id="{hold["id"]}">(.*?)</tr>', table, re.S)
    assert row, table
    assert f"<code>{hold['id']}</code>" in row.group(1) and HOLD_REASON in row.group(1)
    assert re.search(r'<a href="/ui/subjects/(sub_[0-9a-z]+)"><code>\1</code></a>', row.group(1))
    assert PEOPLE[0] not in page
    viewer = site.login(ROLE_USERS["viewer"]).get(f"/ui/erasures/{request_id}").text
    assert HOLD_REASON in viewer and "/ui/subjects/" not in viewer  # no subject:read: no link


def test_subject_refs_link_to_the_subjects_page(site: UiSite) -> None:
    officer, viewer = site.login(ROLE_USERS["privacy_officer"]), site.login(ROLE_USERS["viewer"])
    cases = officer.get("/ui/cases").text
    assert re.search(r'<td><a href="/ui/subjects/(sub_[0-9a-z]+)"><code>\1</code></a></td>', cases)
    assert '<form id="case-filters" class="filters"' in cases
    request_id = request_erasure(officer, "subject", PEOPLE[1], "GDPR Art. 17 request 2026-12")
    page = officer.get(f"/ui/erasures/{request_id}").text
    assert re.search(
        r'Scope: subject <code>(sub_[0-9a-z]+)</code> \(<a id="scope-subject" href="/ui/subjects/\1">', page
    )
    listing = officer.get("/ui/erasures").text
    assert re.search(r'<td>subject <a href="/ui/subjects/(sub_[0-9a-z]+)"><code>\1</code></a></td>', listing)
    for path in (f"/ui/erasures/{request_id}", "/ui/erasures"):
        text = viewer.get(path).text
        assert "/ui/subjects/" not in text and re.search(r"subject <code>sub_[0-9a-z]+</code>", text)
        assert PEOPLE[1] not in text


def test_bulk_deny_in_the_browser_with_mouse_and_keyboard(site: UiSite, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    first = site.login(ROLE_USERS["privacy_officer"])
    ids = [request_erasure(first, "source", name, f"browser ask about {name}") for name in SOURCES[5:7]]
    ui_login(browser, site.api.url, "officer-2", UI_PASSWORD)
    browser.get(f"{site.api.url}/ui/erasures?state=planned")
    browser.find_element(By.ID, f"pick-{ids[0]}").click()  # the mouse
    ticked = browser.find_element(By.ID, f"pick-{ids[1]}")
    browser.execute_script("arguments[0].focus()", ticked)
    ticked.send_keys(Keys.SPACE)  # the keyboard
    assert all(browser.find_element(By.ID, f"pick-{i}").is_selected() for i in ids)
    Select(browser.find_element(By.ID, "bulk-action")).select_by_value("deny")
    browser.find_element(By.ID, "bulk-reason").send_keys("a duplicate of an earlier request")
    browser.find_element(By.ID, "bulk-apply").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "bulk-result"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#bulk-results tbody tr")
    assert {r.get_attribute("data-id"): r.find_elements(By.TAG_NAME, "td")[2].text for r in rows} == {
        i: "denied" for i in ids
    }
    assert all(_state(first, i) == "denied" for i in ids)
    assert console_errors(browser) == []
