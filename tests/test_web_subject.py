"""The subject pages of the web UI, on real uvicorn with cookies, and once in headless Chromium.

A subject is looked up by external id in a POST body and shown at ``/ui/subjects/{ref}``:
the external id is in no URL, page or audit event. The page shows the consent history as a
timeline (oldest first, decisions in words) and the photos: a role holding ``asset:bytes``
gets real JPEG thumbnails (at most 160 px, each fetch an ``asset.read`` audit event),
blurred until revealed; any other role gets placeholders, no image and no URL of one.
Every look at a subject's page is an audit event too. An erased photo shows "erased".
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import (
    DENIED,
    PEOPLE,
    ROLE_USERS,
    UI_PASSWORD,
    UNLABELLED,
    UiSite,
    console_errors,
    import_consent_csv,
    serve_api,
    smoke_workspace,
    token_of,
    ui_login,
)
from disgorge import Workspace
from disgorge.consent import service as consent_service

pytest.importorskip("argon2")
pytest.importorskip("jinja2")

OFFICER, AUDITOR, VIEWER = ROLE_USERS["privacy_officer"], ROLE_USERS["auditor"], ROLE_USERS["viewer"]
#: who has a consent history of three decisions; whose one photo is erased
HISTORY, ERASED = PEOPLE[0], PEOPLE[2]
REF = re.compile(r"^/ui/subjects/(sub_[0-9a-f]{32})$")
IMG = re.compile(r'<img class="thumb( blurred)?" src="(/ui/assets/[0-9a-f]{64}/thumb)"')


@dataclass
class Site(UiSite):
    refs: dict[str, str]
    erased: str  # the sha256 the erased photo shows under (its tombstone)
    erased_was: str  # its sha256 before

    def events(self, action: str) -> list[dict[str, Any]]:
        """The audit log's events of ``action``, oldest first (read over the API)."""
        answer = self.api.call("auditor", "GET", "/v1/audit/events", params={"action": action, "limit": 1000})
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items


def find(client: httpx.Client, subject: str) -> httpx.Response:
    """POST the lookup form, as a browser would."""
    form = client.get("/ui/subjects")
    assert form.status_code == 200, form.text
    return client.post("/ui/subjects", data={"subject": subject, "csrf_token": token_of(form)})


def timeline(page: str) -> list[str]:
    """The text of each item of ``#consent-timeline``, in order, tags stripped."""
    found = re.search(r'<ol id="consent-timeline"[^>]*>(.*?)</ol>', page, re.S)
    assert found, "no #consent-timeline <ol>"
    items = re.findall(r"<li[^>]*>(.*?)</li>", found.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", item).split()) for item in items]


def figures(page: str) -> dict[str, str]:
    """Each ``figure.photo`` of ``#photos``: its sha256 -> its inner HTML."""
    return dict(
        re.findall(r'<figure class="photo[^"]*" data-sha256="([0-9a-f]{64})">(.*?)</figure>', page, re.S)
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web-subject")
    with smoke_workspace(tmp) as ws:
        # out of order in the file: the page sorts by date
        rows = [
            f"{HISTORY},ai_training,revoked,2013-09-01",
            f"{HISTORY},ai_training,granted,2013-05-01",
            f"{HISTORY},biometric_processing,denied,2013-05-02",
        ]
        import_consent_csv(ws, tmp / "history.csv", rows, at="2013-09-02")
        ws.build_dataset("faces", purpose="ai_training", at="2013-08-01")  # what their photos fed
        [first, _second] = consent_service.subject_view(ws.ctx, ERASED)["assets"]
        ws.erase("asset", first["sha256"], reason="a photo sent in by mistake")
        refs = {p: consent_service.subject_view(ws.ctx, p)["ref"] for p in PEOPLE}
        [tombstone] = [
            a["sha256"]
            for a in consent_service.subject_view(ws.ctx, ERASED)["assets"]
            if a["state"] == "erased"
        ]
    root = tmp / "ws"
    with serve_api(root) as api:
        with Workspace.open(root, actor="tester") as ws:
            for name in ROLE_USERS.values():
                ws.set_password(name, UI_PASSWORD)
        site = Site(api, root, refs, tombstone, first["sha256"])
        try:
            yield site
        finally:
            site.close()


# -- looking a subject up ----------------------------------------------------------------------
def test_a_lookup_by_external_id_answers_the_refs_page_and_never_shows_the_id(site: Site) -> None:
    client = site.login(OFFICER)
    form = client.get("/ui/subjects")
    for needle in (
        'id="subject-lookup"',
        'method="post"',
        'action="/ui/subjects"',
        'for="subject-id"',
        'id="subject-find"',
    ):
        assert needle in form.text
    assert 'id="nav-subjects"' in form.text
    answer = find(client, HISTORY)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    ref = REF.match(location)
    assert ref and ref.group(1) == site.refs[HISTORY]
    api = site.api.call("privacy_officer", "POST", "/v1/subjects/lookup", json={"external_id": HISTORY})
    assert api.json()["ref"] == ref.group(1)  # the API's answer for the same id
    page = client.get(location)
    assert page.status_code == 200
    assert f'<code id="subject-ref">{ref.group(1)}</code>' in page.text
    assert HISTORY not in page.text and HISTORY not in location and HISTORY not in answer.text
    assert find(client, ref.group(1)).headers["location"] == location  # a ref works too
    for event in site.events("ui.subject_view") + site.events("asset.read"):
        assert HISTORY not in json.dumps(event)


def test_no_log_line_holds_the_external_id(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """The server runs in this process (a thread): every log record it writes is caught here."""
    caplog.set_level(logging.DEBUG)
    client = site.login(OFFICER)
    typed = "Nobody_Known_Here_Either"
    assert find(client, HISTORY).status_code == 303
    assert find(client, typed).status_code == 404
    client.get(f"/ui/subjects/{site.refs[HISTORY]}")
    server = [r for r in caplog.records if r.name.startswith("disgorge.server")]
    assert server, "the capture does not see the server's access log"
    for needle in (HISTORY, typed):
        assert needle not in caplog.text


def test_an_unknown_subject_gets_a_404_that_does_not_repeat_what_was_typed(site: Site) -> None:
    client = site.login(OFFICER)
    for typed in ("Nobody_Known_Here_At_All", "sub_" + "ab" * 16):
        answer = find(client, typed)
        assert answer.status_code == 404
        assert 'id="not-found"' in answer.text and "no subject with that id or ref" in answer.text
        assert typed not in answer.text
    unknown = client.get("/ui/subjects/sub_" + "cd" * 16)
    assert unknown.status_code == 404 and 'id="not-found"' in unknown.text
    empty = find(client, "   ")
    assert empty.status_code == 422


@pytest.mark.parametrize("bad", ["nobody", "sub_XYZ", "sub_" + "0" * 31, "sub_" + "0" * 33])
def test_a_malformed_ref_is_a_422_page(site: Site, bad: str) -> None:
    answer = site.login(OFFICER).get(f"/ui/subjects/{bad}")
    assert answer.status_code == 422
    assert "<html" in answer.text


def test_a_role_without_subject_read_is_refused(site: Site) -> None:
    client = site.login(VIEWER)
    assert 'id="nav-subjects"' not in client.get("/ui/").text
    for path in ("/ui/subjects", f"/ui/subjects/{site.refs[HISTORY]}"):
        answer = client.get(path)
        assert answer.status_code == 403 and 'id="forbidden"' in answer.text, path
    assert find_as_viewer(client).status_code == 403


def find_as_viewer(client: httpx.Client) -> httpx.Response:
    return client.post("/ui/subjects", data={"subject": HISTORY, "csrf_token": token_of(client.get("/ui/"))})


# -- the subject's page ------------------------------------------------------------------------
def test_the_consent_history_is_a_timeline_oldest_first_in_words(site: Site) -> None:
    page = site.login(AUDITOR).get(f"/ui/subjects/{site.refs[HISTORY]}").text
    assert timeline(page) == [
        "2013-05-01 ai training : granted",
        "2013-05-02 biometric processing : denied",
        "2013-09-01 ai training : withdrawn",
    ]
    assert timeline(site.login(AUDITOR).get(f"/ui/subjects/{site.refs[DENIED]}").text) == [
        "2013-07-01 ai training : denied"
    ]


def test_the_page_embeds_the_lineage_graph_downstream_of_the_subject(site: Site) -> None:
    ref = site.refs[HISTORY]
    page = site.login(AUDITOR).get(f"/ui/subjects/{ref}").text
    src = f"/ui/lineage/graph.json?kind=subject&amp;id={ref}&amp;direction=downstream&amp;hops=3"
    assert f'data-src="{src}"' in page and 'id="graph-table"' in page
    rows = re.search(r'<table id="graph-table">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert rows and "dataset" in rows.group(1)  # the table reads without JavaScript
    api = site.api.call(
        "auditor",
        "POST",
        "/v1/lineage",
        json={"kind": "subject", "id": ref, "direction": "downstream", "hops": 3},
    )
    assert api.status_code == 200, api.text
    assert len(re.findall(r"<tr data-id=", rows.group(1))) >= len(api.json()["nodes"])


def test_each_view_of_the_page_is_audited_with_the_ref_only(site: Site) -> None:
    ref = site.refs[PEOPLE[1]]
    before = site.events("ui.subject_view")
    page = site.login(AUDITOR).get(f"/ui/subjects/{ref}")
    assert page.status_code == 200
    after = site.events("ui.subject_view")
    assert len(after) == len(before) + 1
    assert after[-1]["payload"] == {"subject": ref} and after[-1]["actor"] == AUDITOR


def test_an_officer_sees_blurred_thumbnails_each_fetch_audited(site: Site) -> None:
    client = site.login(OFFICER)
    page = client.get(f"/ui/subjects/{site.refs[HISTORY]}")
    for header in ("Content-Security-Policy", "X-Frame-Options"):
        assert header in page.headers
    images = IMG.findall(page.text)
    assert len(images) == 2 and all(blurred for blurred, _ in images)  # blurred until revealed
    assert 'id="reveal-photos"' in page.text and "/static/subject.js" in page.text
    for _blurred, src in images:
        reads = len(site.events("asset.read"))
        thumb = client.get(src)
        assert thumb.status_code == 200, thumb.text
        assert thumb.headers["content-type"] == "image/jpeg"
        assert thumb.headers["cache-control"] == "no-store"
        assert thumb.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" in thumb.headers
        from PIL import Image

        with Image.open(io.BytesIO(thumb.content)) as image:
            assert image.format == "JPEG"
            assert 0 < max(image.size) <= 160
        assert len(site.events("asset.read")) == reads + 1, src
        assert site.events("asset.read")[-1]["actor"] == OFFICER
    revealed = client.get(f"/ui/subjects/{site.refs[HISTORY]}?reveal=1")  # without JavaScript
    assert [blurred for blurred, _ in IMG.findall(revealed.text)] == ["", ""]


def test_a_role_without_asset_bytes_gets_placeholders_and_no_image(site: Site) -> None:
    client = site.login(AUDITOR)
    page = client.get(f"/ui/subjects/{site.refs[HISTORY]}?reveal=1").text
    assert "<img" not in page and "/thumb" not in page and 'id="reveal-photos"' not in page
    photos = figures(page)
    assert len(photos) == 2
    assert all("hidden: your role cannot see photos" in html and "active" in html for html in photos.values())
    sha = next(iter(photos))
    refused = client.get(f"/ui/assets/{sha}/thumb")
    assert refused.status_code == 403 and 'id="forbidden"' in refused.text


def test_an_erased_photo_says_erased_and_its_thumbnail_is_refused_as_the_api_refuses_its_bytes(
    site: Site,
) -> None:
    client = site.login(OFFICER)
    page = client.get(f"/ui/subjects/{site.refs[ERASED]}").text
    photos = figures(page)
    assert len(photos) == 2
    erased = photos[site.erased]
    assert "erased" in erased and "<img" not in erased and "/thumb" not in erased
    [(_, live)] = IMG.findall(page)  # the other photo still has its thumbnail
    for sha in (site.erased, site.erased_was, "0" * 64):
        api = site.api.call("privacy_officer", "GET", f"/v1/assets/{sha}/bytes").status_code
        assert api in (404, 410)
        assert client.get(f"/ui/assets/{sha}/thumb").status_code == api, sha
    assert client.get(live).status_code == 200
    assert client.get("/ui/assets/not-hex/thumb").status_code == 422


# -- in a browser --------------------------------------------------------------------------------
FILTERS = "return [...document.querySelectorAll('#photos img')].map(i => getComputedStyle(i).filter);"
LOADED = "return [...document.querySelectorAll('#photos img')].every(i => i.complete && i.naturalWidth > 0);"


def test_in_a_browser_thumbnails_stay_blurred_until_revealed(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ui_login(browser, site.url, OFFICER, UI_PASSWORD)
    browser.get(f"{site.url}/ui/subjects")
    browser.find_element(By.ID, "subject-id").send_keys(HISTORY)
    browser.find_element(By.ID, "subject-find").click()
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    wait.until(lambda d: d.find_elements(By.ID, "subject-ref"))
    assert browser.current_url == f"{site.url}/ui/subjects/{site.refs[HISTORY]}"
    assert HISTORY not in browser.page_source
    wait.until(lambda d: d.execute_script(LOADED))
    filters = browser.execute_script(FILTERS)
    assert len(filters) == 2 and all("blur" in f for f in filters), filters
    assert browser.execute_script(UNLABELLED) == []
    wait.until(lambda d: d.find_element(By.ID, "graph").get_attribute("data-ready") == "1")
    assert int(browser.find_element(By.ID, "graph").get_attribute("data-nodes")) > 1
    reveal = browser.find_element(By.ID, "reveal-photos")
    reveal.click()
    wait.until(lambda d: all("blur" not in f for f in d.execute_script(FILTERS)))
    assert reveal.get_attribute("aria-pressed") == "true"
    assert browser.current_url.endswith(site.refs[HISTORY])  # toggled in place, no reload
    reveal.click()
    wait.until(lambda d: all("blur" in f for f in d.execute_script(FILTERS)))
    assert console_errors(browser) == []
