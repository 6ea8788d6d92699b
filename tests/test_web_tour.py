"""Every page of the web UI on the demo's data, in a real browser: the tour of docs/ui.md.

``disgorge demo`` builds its two workspaces (the dating app and the vision vendor: a
source, a recipient, a completed erasure that reached the vendor, datasets, a retired
model). Both are served here on loopback as ``disgorge demo --serve`` serves them, with a
principal per role; the app gets two cases, a legal hold and a source erasure waiting for
a second officer. Each page of the tour then opens as a privacy officer (a viewer for the
refused page) and must show who is logged in, no console error, a label on every
control and no id twice; the graph must be drawn.

With ``DISGORGE_UI_SCREENSHOTS=1`` each page is saved to ``docs/ui/NAME.png`` (the files
docs/ui.md shows); without it nothing in the tree changes. The last test checks that the
tour and the folder agree.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest

from conftest import (
    DUPLICATE_IDS,
    PEOPLE,
    ROLE_USERS,
    ROOT,
    UI_PASSWORD,
    UNLABELLED,
    Api,
    add_role_tokens,
    browsing,
    console_errors,
    ui_login,
)
from disgorge import Workspace
from disgorge._time import utcnow
from disgorge.demo import APP, VENDOR, run_demo

pytest.importorskip("selenium")
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

LITIGATION = "litigation 2026-044: keep until the court rules"
OFFICER, VIEWER = ROLE_USERS["privacy_officer"], ROLE_USERS["viewer"]
SHOTS = ROOT / "docs" / "ui"
TOUR = ROOT / "docs" / "ui.md"


@dataclass
class Served:
    """Both demo workspaces served, and the ids the tour's pages need."""

    app: Api
    vendor: Api
    ids: dict[str, str]


def tour() -> list[str]:
    """The screenshots docs/ui.md's tour shows, in its order."""
    return re.findall(r"\]\(ui/([\w-]+)\.png\)", TOUR.read_text(encoding="utf-8"))


def _first(api: Api, path: str, **params: Any) -> dict[str, Any]:
    answer = api.call("admin", "GET", path, params=params)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    assert items, f"the demo left nothing at {path}"
    return items[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from disgorge.api import running_server

    folder = tmp_path_factory.mktemp("demo")
    summary = run_demo(folder, lambda _line: None)
    assert summary["ok"], summary["checks"]
    tokens = {name: add_role_tokens(folder / name) for name in (APP, VENDOR)}
    for name in (APP, VENDOR):
        with Workspace.open(folder / name, actor="tester") as ws:
            for user in (*ROLE_USERS.values(), "officer-2"):
                ws.set_password(user, UI_PASSWORD)
    with contextlib.ExitStack() as stack:
        app = Api(stack.enter_context(running_server(folder / APP, actor="api-server")), tokens[APP])
        vendor = Api(stack.enter_context(running_server(folder / VENDOR, actor="api-server")), tokens[VENDOR])
        subject = _first(app, "/v1/assets", state="active")["owner"]
        now = utcnow()
        for kind, received in (("access", now - timedelta(days=45)), ("erasure", now - timedelta(days=3))):
            made = app.call(
                "privacy_officer",
                "POST",
                "/v1/cases",
                json={
                    "kind": kind,
                    "subject": subject,
                    "received_at": received.isoformat(),
                    "channel": "email",
                },
            )
            assert made.status_code == 201, made.text
        held = app.call(
            "privacy_officer",
            "POST",
            "/v1/holds",
            json={"kind": "subject", "name": subject, "reason": LITIGATION},
        )
        assert held.status_code == 201, held.text
        waiting = app.call(
            "privacy_officer",
            "POST",
            "/v1/erasures",
            json={"kind": "source", "id": APP, "reason": "the source's contract ended (ticket 2026-311)"},
        )
        assert waiting.status_code == 202, waiting.text
        done = _first(app, "/v1/erasures", state="completed")["id"]
        dataset = _first(vendor, "/v1/datasets")
        ids = {
            "subject": subject,
            "waiting": waiting.json()["id"],
            "done": done,
            "recipient": _first(app, "/v1/recipients")["name"],
            "dataset": dataset["name"],
            "vendor_source": _first(vendor, "/v1/sources")["name"],
            "model": _first(vendor, "/v1/models")["name"],
        }
        yield Served(app, vendor, ids)


# -- the pages of the tour ---------------------------------------------------------------------
#: name -> (which workspace, its path from the ids, what to wait for before it is shown)
def pages(ids: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {
        "overview": (APP, "/ui/"),
        "cases": (APP, "/ui/cases"),
        "erasures": (APP, "/ui/erasures"),
        "erasure-waiting": (APP, f"/ui/erasures/{ids['waiting']}"),
        "erasure-completed": (APP, f"/ui/erasures/{ids['done']}"),
        "holds": (APP, "/ui/holds"),
        "subjects": (APP, "/ui/subjects"),
        "subject": (APP, f"/ui/subjects/{ids['subject']}"),
        "sources": (APP, "/ui/sources"),
        "source": (APP, f"/ui/sources/{quote(APP)}"),
        "recipients": (APP, "/ui/recipients"),
        "recipient": (APP, f"/ui/recipients/{quote(ids['recipient'])}"),
        "datasets": (VENDOR, "/ui/datasets"),
        "dataset": (VENDOR, f"/ui/datasets/{quote(ids['dataset'])}"),
        "models": (VENDOR, "/ui/models"),
        "model": (VENDOR, f"/ui/models/{quote(ids['model'])}"),
        "lineage": (
            VENDOR,
            f"/ui/lineage?kind=source&id={quote(ids['vendor_source'])}&direction=downstream&hops=6",
        ),
        "violations": (VENDOR, "/ui/violations"),
        "audit": (APP, "/ui/audit"),
    }


def wait_for(driver: WebDriver, what: Callable[[WebDriver], Any], timeout: float = 30) -> Any:
    again = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=again).until(what)


def open_page(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    if d_graph := driver.find_elements(By.CSS_SELECTOR, "#graph[data-src]"):
        wait_for(driver, lambda _d: d_graph[0].get_attribute("data-ready") == "1")


def shot(driver: WebDriver, name: str) -> None:
    """Save the page to docs/ui/NAME.png when DISGORGE_UI_SCREENSHOTS is set."""
    assert name in tour(), f"docs/ui.md's tour does not show {name}.png"
    if os.environ.get("DISGORGE_UI_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, max(900, min(int(height) + 140, 2400)))
        assert driver.save_screenshot(str(SHOTS / f"{name}.png"))
        driver.set_window_size(1280, 900)


def check(driver: WebDriver, name: str) -> None:
    """What every page of the tour must be: logged in, allowed, labelled, quiet."""
    assert driver.find_elements(By.ID, "whoami"), name
    assert not driver.find_elements(By.ID, "forbidden"), (name, driver.page_source[:1500])
    assert driver.execute_script(UNLABELLED) == [], name
    assert driver.execute_script(DUPLICATE_IDS) == [], name
    assert console_errors(driver) == [], name


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    with browsing() as browser:
        yield browser


def test_every_page_of_the_tour_on_the_demo_data(driver: WebDriver, served: Served) -> None:
    urls = {APP: served.app.url, VENDOR: served.vendor.url}
    driver.get(f"{served.app.url}/ui/login")
    shot(driver, "login")
    # both servers are on 127.0.0.1 and a browser keeps cookies per host, not per port: each
    # workspace names its cookie, so one browser stays logged in to both at once
    for where in (APP, VENDOR):
        ui_login(driver, urls[where], OFFICER, UI_PASSWORD)
    for name, (where, path) in pages(served.ids).items():
        open_page(driver, urls[where] + path)
        if name == "overview":  # the audit chain's check and the violations come after the page (htmx)
            wait_for(driver, lambda d: "verifies" in d.find_element(By.ID, "audit-state").text)
            wait_for(driver, lambda d: "uses" in d.find_element(By.ID, "violations-state").text)
        check(driver, name)
        for person in PEOPLE:  # the test suite's names: none of the demo's is on a page either
            assert person not in driver.page_source, name
        shot(driver, name)

    # the completed erasure's certificate, checked on its page
    open_page(driver, f"{served.app.url}/ui/erasures/{served.ids['done']}")
    driver.find_element(By.ID, "certificate-verify").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "certificate-check").text.strip())
    assert driver.find_element(By.ID, "certificate-check").text.strip() == "valid"
    check(driver, "erasure-verified")
    shot(driver, "erasure-verified")

    # a role refused a page: a viewer and the audit log
    driver.delete_all_cookies()
    ui_login(driver, served.app.url, VIEWER, UI_PASSWORD)
    open_page(driver, f"{served.app.url}/ui/audit")
    assert driver.find_elements(By.ID, "forbidden")
    shot(driver, "forbidden")


def test_the_demos_lineage_graph_draws_the_apis_nodes(driver: WebDriver, served: Served) -> None:
    ui_login(driver, served.vendor.url, OFFICER, UI_PASSWORD)
    _, path = pages(served.ids)["lineage"]
    open_page(driver, served.vendor.url + path)
    asked = served.vendor.call(
        "privacy_officer",
        "POST",
        "/v1/lineage",
        json={"kind": "source", "id": served.ids["vendor_source"], "direction": "downstream", "hops": 6},
    )
    assert asked.status_code == 200, asked.text
    drawn = int(driver.find_element(By.ID, "graph").get_attribute("data-nodes") or 0)
    walk = asked.json()
    listed = {n["id"] for n in walk["nodes"]}
    assert listed, "the demo's dataset fed nothing"
    # the graph draws the node asked about too, where the walk leaves it out
    assert drawn == len(listed) + (walk["node"] not in listed)


def test_the_tour_shows_every_screenshot() -> None:
    """Each picture docs/ui.md shows is in docs/ui/, a PNG, and no other file is there."""
    names = tour()
    assert len(names) == len(set(names)) >= 20, names
    assert sorted(p.name for p in SHOTS.iterdir()) == sorted(f"{n}.png" for n in names)
    for name in names:
        assert (SHOTS / f"{name}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
