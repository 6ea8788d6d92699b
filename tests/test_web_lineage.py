"""The lineage graph page (``/ui/lineage``) over real uvicorn, and drawn in a real browser.

Over HTTP: the page and its ``graph.json`` need ``lineage:read``, and ``subject:read`` for a
subject (as ``POST /v1/lineage``); an external id typed into the form becomes the ``sub_`` ref
in the URL it redirects to, and no page or URL shows it; ``graph.json`` is the API's answer;
the table under the drawing lists every node without JavaScript; a malformed question is a
``422`` page. In Chromium: the graph is drawn (pixels on the canvas), has as many nodes as the
API answers, a click selects a node and lights the path to it from the node asked about,
"expand" adds what is one step further, the search marks what matches, and a graph of two
thousand nodes is drawn too (the cheaper layout).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import (
    PEOPLE,
    ROLE_USERS,
    UI_PASSWORD,
    UiSite,
    console_errors,
    serve_api,
    smoke_workspace,
    token_of,
    ui_login,
)
from disgorge import Workspace
from disgorge.access.roles import ROLES

pytest.importorskip("jinja2")

#: how many exports the fan-out run wrote (the big graph: downstream of model:vendor@1)
FANOUT = 2000


@dataclass
class Site(UiSite):
    ref: str  # PEOPLE[0]'s sub_ ref

    def lineage(self, kind: str, node: str, direction: str = "downstream", hops: int = 50) -> dict[str, Any]:
        """``POST /v1/lineage``'s answer, as the privacy officer."""
        body = {"kind": kind, "id": node, "direction": direction, "hops": hops}
        answer = self.api.call("privacy_officer", "POST", "/v1/lineage", json=body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


def post(client: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    token = token_of(client.get("/ui/lineage"))
    return client.post(path, data={**data, "csrf_token": token})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The smoke workspace with lineage: dataset faces@1.0.0 -> a recorded training run ->
    model vendor@1 (retired) -> a run writing FANOUT exports; faces -> another run -> an export."""
    tmp = tmp_path_factory.mktemp("lineage")
    with smoke_workspace(tmp) as ws:
        ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
        train = {"kind": "model", "name": "vendor"}
        ws.record_run(
            "vendor-train", purpose="ai_training", inputs=["faces@1.0.0"], outputs=[train], at="2014-03-01"
        )
        dump = {"kind": "export", "name": "dump"}
        ws.record_run(
            "vendor-export", purpose="ai_training", inputs=["faces@1.0.0"], outputs=[dump], at="2014-03-02"
        )
        shards = [{"kind": "export", "name": f"shard-{i:04d}"} for i in range(FANOUT)]
        ws.record_run(
            "shard-export", purpose="ai_training", inputs=["model:vendor@1"], outputs=shards, at="2014-03-05"
        )
        ws.retire_model("vendor", reason="superseded by a newer model", at="2014-04-01")
    root = tmp / "ws"
    with serve_api(root) as api:
        with Workspace.open(root, actor="tester") as ws:
            for name in ROLE_USERS.values():
                ws.set_password(name, UI_PASSWORD)
        answer = api.call("privacy_officer", "POST", "/v1/lineage", json={"kind": "subject", "id": PEOPLE[0]})
        ref = answer.json()["node"].removeprefix("subject:")
        site = Site(api, root, ref)
        try:
            yield site
        finally:
            site.close()


def table_rows(page: str) -> dict[str, str]:
    """``#graph-table``'s rows: node id -> the row's text."""
    body = page.split('<table id="graph-table">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-id="([^"]+)"[^>]*>(.*?)</tr>', body, flags=re.S)
    return {html.unescape(i): re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for i, row in rows}


def no_external_ids(*texts: str) -> None:
    for text in texts:
        for person in PEOPLE:
            assert person not in text


# -- over HTTP ---------------------------------------------------------------------------------
def test_every_role_may_read_lineage_but_a_subjects_needs_subject_read(site: Site) -> None:
    # every role holds lineage:read (roles are fixed): PageRoute's 403 for a missing scope is
    # tests/test_web.py's; here, the subject rule the API has too
    assert all("lineage:read" in scopes for scopes in ROLES.values())
    for role in ROLE_USERS:
        client = site.login(ROLE_USERS[role])
        home = client.get("/ui/")
        assert 'id="nav-lineage"' in home.text
        page = client.get("/ui/lineage")
        assert page.status_code == 200
        for needle in ('id="lineage-form"', 'id="lineage-kind"', 'id="lineage-id"', 'id="lineage-go"'):
            assert needle in page.text
        first = "subject" if "subject:read" in ROLES[role] else "dataset"
        assert f'<option value="{first}" selected>' in page.text
        for control in ("lineage-kind", "lineage-id", "lineage-direction", "lineage-hops"):
            assert f'<label for="{control}">' in page.text
        dataset = client.get("/ui/lineage", params={"kind": "dataset", "id": "faces@1.0.0"})
        assert dataset.status_code == 200
        asked = {"kind": "subject", "id": site.ref}
        api = site.api.call(role, "POST", "/v1/lineage", json=asked)
        for answer in (
            client.get("/ui/lineage", params=asked),
            client.get("/ui/lineage/graph.json", params=asked),
            post(client, "/ui/lineage", {"kind": "subject", "id": PEOPLE[0]}),
        ):
            if "subject:read" in ROLES[role]:
                assert answer.status_code in (200, 303), (role, answer.text)
            else:
                assert answer.status_code == 403 and api.status_code == 403, role
                assert 'id="forbidden"' in answer.text
                assert "subject:read" in answer.text
                no_external_ids(answer.text)


def test_an_external_id_goes_only_in_the_post_body(site: Site) -> None:
    client = site.login(ROLE_USERS["privacy_officer"])
    moved = post(
        client, "/ui/lineage", {"kind": "subject", "id": PEOPLE[0], "direction": "downstream", "hops": "2"}
    )
    assert moved.status_code == 303
    location = moved.headers["location"]
    assert parse_qs(urlsplit(location).query) == {
        "kind": ["subject"],
        "id": [site.ref],
        "direction": ["downstream"],
        "hops": ["2"],
    }
    page = client.get(location)
    assert page.status_code == 200
    graph = client.get(re.search(r'data-src="([^"]+)"', page.text).group(1).replace("&amp;", "&"))  # type: ignore[union-attr]
    assert graph.status_code == 200
    no_external_ids(location, page.text, graph.text)
    # every link the page and graph.json give (each node's page, one step further) holds no id
    for url in [*graph.json()["pages"].values(), *graph.json()["expand"].values()]:
        no_external_ids(url)
        assert client.get(url).status_code == 200, url
    # a subject in a URL is its ref: an external id there is refused without being looked up
    refused = client.get("/ui/lineage", params={"kind": "subject", "id": PEOPLE[0]})
    assert refused.status_code == 422 and 'id="error"' in refused.text
    no_external_ids(refused.text)


@pytest.mark.parametrize(
    ("kind", "node", "direction", "hops"),
    [
        ("subject", "REF", "downstream", 50),
        ("subject", "REF", "downstream", 1),
        ("dataset", "faces@1.0.0", "downstream", 50),
        ("model", "vendor@1", "upstream", 50),
        ("source", "lfw", "downstream", 3),
    ],
)
def test_graph_json_is_the_apis_answer(site: Site, kind: str, node: str, direction: str, hops: int) -> None:
    node = site.ref if node == "REF" else node
    api = site.lineage(kind, node, direction, hops)
    client = site.login(ROLE_USERS["auditor"])
    params = {"kind": kind, "id": node, "direction": direction, "hops": str(hops)}
    graph = client.get("/ui/lineage/graph.json", params=params)
    assert graph.status_code == 200
    assert graph.headers["content-type"] == "application/json"
    answer = graph.json()
    for key in api:
        assert answer[key] == api[key], key
    listed = {n["id"] for n in api["nodes"]}
    assert answer["root_listed"] == (api["node"] in listed)
    assert answer["root"]["id"] == api["node"]
    # the table under the drawing, without JavaScript: every node, the one asked about first
    page = client.get("/ui/lineage", params=params)
    rows = table_rows(page.text)
    assert set(rows) == listed | {api["node"]}
    assert next(iter(rows)) == api["node"]
    assert f"{len(rows)} nodes, {len(api['edges'])} edges" in page.text
    for n in api["nodes"]:
        assert n["label"] in rows[n["id"]] and n["state"] in rows[n["id"]]


def test_the_table_says_each_state_in_words(site: Site) -> None:
    client = site.login(ROLE_USERS["privacy_officer"])
    page = client.get("/ui/lineage", params={"kind": "dataset", "id": "faces", "hops": "2"})
    rows = table_rows(page.text)
    assert "retired" in rows["model:vendor@1"]
    assert "active" in rows["export:dump@1"]
    assert "(asked about)" in rows["dataset:faces@1.0.0"]
    assert "active" in rows["dataset:faces@1.0.0"]
    # the walk leaves out the artifact asked about: its state comes from its own page's service
    upstream = table_rows(client.get("/ui/lineage", params={"kind": "model", "id": "vendor@1"}).text)
    assert "retired" in upstream["model:vendor@1"] and "(asked about)" in upstream["model:vendor@1"]


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "planet", "id": "x"},
        {"kind": "dataset", "id": "faces", "hops": "0"},
        {"kind": "dataset", "id": "faces", "hops": "many"},
        {"kind": "dataset", "id": "faces", "direction": "sideways"},
        {"kind": "dataset", "id": "x" * 600},
        {"kind": "source", "id": "lfw", "direction": "upstream"},  # a root: nothing upstream
    ],
)
def test_a_malformed_question_is_a_422_page(site: Site, params: dict[str, str]) -> None:
    client = site.login(ROLE_USERS["privacy_officer"])
    for path in ("/ui/lineage", "/ui/lineage/graph.json"):
        answer = client.get(path, params=params)
        assert answer.status_code == 422, (path, params, answer.text)
        assert 'id="error"' in answer.text
    # the form redirects a well-formed question; the page then says what is wrong with it
    expected = 303 if params.get("direction") == "upstream" else 422
    assert post(client, "/ui/lineage", params).status_code == expected


def test_an_unknown_node_is_a_404_page(site: Site) -> None:
    client = site.login(ROLE_USERS["privacy_officer"])
    answer = client.get("/ui/lineage", params={"kind": "dataset", "id": "nope@9"})
    assert answer.status_code == 404 and 'id="error"' in answer.text


# -- in a browser --------------------------------------------------------------------------------
def wait_drawn(driver: Any, nodes: int | None = None, timeout: float = 60) -> int:
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d: Any) -> Any:
        box = d.find_element("id", "graph")
        if box.get_attribute("data-ready") != "1":
            return False
        count = int(box.get_attribute("data-nodes"))
        return count if nodes is None or count == nodes else False

    drawn: int = WebDriverWait(driver, timeout, poll_frequency=0.1).until(ready)
    return drawn


#: whether some pixel of the graph's canvases is not transparent
PAINTED = """
for (const canvas of document.querySelectorAll('#graph canvas')) {
  if (!canvas.width || !canvas.height) continue;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) return true; }
}
return false;
"""
#: click the node with id arguments[0] where it is drawn (a real click, through Selenium)
WHERE = """
const cy = window.disgorgeGraph, node = cy.getElementById(arguments[0]);
const box = document.getElementById('graph').getBoundingClientRect(), at = node.renderedPosition();
return [at.x - box.width / 2, at.y - box.height / 2];
"""


def click_node(driver: Any, node_id: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    driver.execute_script("document.getElementById('graph').scrollIntoView({block: 'center'})")
    x, y = driver.execute_script(WHERE, node_id)
    ActionChains(driver).move_to_element_with_offset(
        driver.find_element("id", "graph"), int(x), int(y)
    ).click().perform()


def test_the_graph_is_drawn_clicked_expanded_and_searched(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    ui_login(browser, site.url, ROLE_USERS["privacy_officer"], UI_PASSWORD)
    browser.set_window_size(1280, 1000)
    api = site.lineage("subject", site.ref, hops=1)
    browser.get(f"{site.url}/ui/lineage?kind=subject&id={site.ref}&direction=downstream&hops=1")
    assert wait_drawn(browser) == len(api["nodes"]) == 4  # the subject, faces, two runs
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(PAINTED))  # pixels on the canvas
    assert browser.find_element("id", "graph-count").text == f"4 nodes, {len(api['edges'])} edges"
    assert console_errors(browser) == []  # no script refused by the CSP, no failed request

    assert not browser.find_element("id", "graph-detail").is_displayed()  # nothing selected yet
    run = next(n for n in api["nodes"] if n["label"].startswith("vendor-train"))
    click_node(browser, run["id"])
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element("id", "graph-detail-label").text == "vendor-train (ai_training)"
    )
    assert browser.find_element("id", "graph-detail-kind").text == "run"
    assert browser.find_element("id", "graph-detail-state").text == "completed"
    on_path = browser.execute_script("return window.disgorgeGraph.$('.on-path').map(e => e.id())")
    # the subject -> faces -> the run: three nodes, two edges
    assert {f"subject:{site.ref}", "dataset:faces@1.0.0", run["id"]} <= set(on_path) and len(on_path) == 5

    browser.find_element("id", "graph-expand").click()
    assert wait_drawn(browser, 5) == 5  # model:vendor@1 is one step further
    WebDriverWait(browser, 20).until(lambda d: "1 new node" in d.find_element("id", "graph-status").text)
    assert browser.find_element("id", "graph-count").text == "5 nodes, 4 edges"
    row = browser.find_element("css selector", '#graph-table tr[data-id="model:vendor@1"]')
    assert "retired" in row.text
    label = browser.execute_script(
        "return window.disgorgeGraph.getElementById('model:vendor@1').data('shown')"
    )
    assert label == "model:vendor@1 \u00b7 retired"  # the state in words on the drawing too
    # expanding again adds nothing twice
    click_node(browser, run["id"])
    browser.find_element("id", "graph-expand").click()
    WebDriverWait(browser, 20).until(lambda d: "0 new nodes" in d.find_element("id", "graph-status").text)
    assert wait_drawn(browser) == 5

    search = browser.find_element("id", "graph-search")
    search.send_keys("vendor")
    WebDriverWait(browser, 20).until(lambda d: d.find_element("id", "graph-matches").text == "3 nodes match")
    marked = browser.execute_script("return window.disgorgeGraph.nodes('.match').map(n => n.id())")
    assert set(marked) == {
        run["id"],
        "model:vendor@1",
        next(n["id"] for n in api["nodes"] if "export" in n["label"]),
    }
    assert browser.execute_script("return window.disgorgeGraph.nodes('.dimmed').length") == 2
    search.send_keys(Keys.CONTROL, "a")
    search.send_keys("faces")
    WebDriverWait(browser, 20).until(lambda d: d.find_element("id", "graph-matches").text == "1 node matches")
    search.send_keys(Keys.ENTER)  # the keyboard's way to select a node
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element("id", "graph-detail-label").text == "dataset:faces@1.0.0"
    )
    assert browser.switch_to.active_element.get_attribute("id") == "graph-search"
    search.send_keys(Keys.TAB)  # Tab goes on to the details' buttons
    reached = set()
    for _ in range(6):
        reached.add(browser.switch_to.active_element.get_attribute("id"))
        browser.switch_to.active_element.send_keys(Keys.TAB)
    assert "graph-expand" in reached
    assert console_errors(browser) == []


def test_two_thousand_nodes_are_drawn_with_the_cheaper_layout(browser: Any, site: Site) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    ui_login(browser, site.url, ROLE_USERS["ml_engineer"], UI_PASSWORD)
    api = site.lineage("model", "vendor@1")
    assert len(api["nodes"]) == FANOUT + 1  # the run and its exports; the model asked about is not listed
    browser.get(f"{site.url}/ui/lineage?kind=model&id=vendor@1")
    assert wait_drawn(browser, timeout=120) == FANOUT + 2
    WebDriverWait(browser, 60).until(lambda d: d.execute_script(PAINTED))
    assert len(browser.find_elements("css selector", "#graph-table tbody tr")) == FANOUT + 2
    # columns by depth, not one line of two thousand nodes (breadthfirst's drawing of a fan-out)
    box = browser.execute_script("return window.disgorgeGraph.nodes().boundingBox()")
    assert box["h"] > box["w"] / 4, box
    root = browser.execute_script(
        "return window.disgorgeGraph.getElementById('model:vendor@1').data('shown')"
    )
    assert root == "model:vendor@1 \u00b7 retired"
    assert console_errors(browser) == []
