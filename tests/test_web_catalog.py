"""The catalog and violations pages of the web UI over HTTP (real uvicorn, cookies), and once
in a real browser.

The workspace is the smoke flow's plus: two versions of a dataset (the second leaves out
the subject who withdrew consent), a run recorded after the withdrawal under an override
(a violation), a retired model, a scraped source whose name looks like a spreadsheet
formula (a second violation), a dataset whose name needs percent-encoding, a recipient
with a backfilled transfer and an erasure request waiting for it. Every number a page
shows is compared with the API's answer for the same thing (``/v1/...`` with a token of
the same role); the CSV export is parsed and compared with the page and the API.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from conftest import (
    DUPLICATE_IDS,
    PEOPLE,
    ROLE_USERS,
    UI_PASSWORD,
    UNLABELLED,
    UiSite,
    assert_scopes_decide,
    console_errors,
    serve_api,
    smoke_workspace,
    tiny_photos,
    ui_login,
)
from disgorge import Workspace
from disgorge.access.roles import ROLES
from disgorge.web.pages.violations import LATEST

pytest.importorskip("argon2")
pytest.importorskip("jinja2")

ROOT = Path(__file__).resolve().parents[1]
#: a source whose name a spreadsheet would run as a formula
FORMULA = '=HYPERLINK("http://x.invalid","y")'
#: a dataset whose name needs percent-encoding in a URL
ODD = "50% faces #1?"
#: the external ids on any page or CSV would be a leak
SCRAPED_PEOPLE = ["Zed_Formula"]
#: each page (a detail page of the fixture's data) and the scope of the API route showing it
PAGES = {
    "/ui/violations": "violation:read",
    "/ui/violations.csv": "violation:read",
    "/ui/datasets": "dataset:read",
    "/ui/datasets/faces": "dataset:read",
    "/ui/models": "model:read",
    "/ui/models/vendor-face-id": "model:read",
    "/ui/sources": "source:read",
    "/ui/sources/lfw": "source:read",
    "/ui/recipients": "sharing:read",
    "/ui/recipients/vendor": "sharing:read",
}
NAV = {
    "nav-violations": "violation:read",
    "nav-datasets": "dataset:read",
    "nav-models": "model:read",
    "nav-sources": "source:read",
    "nav-recipients": "sharing:read",
}
OFFICER = ROLE_USERS["privacy_officer"]


@dataclass
class Site(UiSite):
    def v1(self, role: str, path: str, **params: Any) -> Any:
        """The API's answer (``GET /v1/...``) with a token of ``role``: what a page must show."""
        answer = self.api.call(role, "GET", path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()


def _populate(ws: Workspace, tmp: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ws.build_dataset("faces", purpose="ai_training", at="2013-06-15")  # before the withdrawal
    ws.build_dataset("faces", purpose="ai_training", at="2013-08-01")  # Alan left out
    ws.build_dataset(ODD, purpose="ai_training", at="2013-08-01")
    ws.record_run(
        "old-train",
        purpose="ai_training",
        inputs=["faces@1.0.0"],
        outputs=[{"kind": "model", "name": "old-model"}],
        at="2013-06-20",
    )
    ws.retire_model("old-model", reason="superseded by the vendor's model")
    ws.record_run(  # after Alan withdrew: a violation, backfilled under an override
        "vendor-train",
        purpose="ai_training",
        inputs=["faces@1.0.0"],
        outputs=[{"kind": "model", "name": "vendor-face-id"}, {"kind": "model", "name": "acme/face-id"}],
        at="2013-08-02",
        override=("legal", "backfilling the 2013 vendor training from contract records"),
    )
    ws.add_source(FORMULA, kind="scrape", at="2013-01-01")
    ws.add_policy(FORMULA, "2013", text=b"we match", effective_from="2013-01-01", allows=["ai_inference"])
    ws.ingest(
        tiny_photos(tmp / "scraped", SCRAPED_PEOPLE, 2),
        source=FORMULA,
        subject_from="dirname",
        at="2013-06-01",
    )
    ws.build_dataset("scraped", purpose="ai_inference", source=FORMULA, at="2013-06-10")
    ws.record_run(
        "scrape-train",
        purpose="ai_training",
        inputs=["scraped@1.0.0"],
        outputs=[{"kind": "model", "name": "scrape-model"}],
        at="2013-09-01",
        override=("legal", "-1+1 a justification that looks like a formula"),
    )
    key = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    ws.add_peer("recipient", "vendor", public_key=key, agreement="DSA-7")
    ws.add_peer(
        "recipient",
        "idle partner",
        public_key=Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
    )
    latest = ws.build_dataset("faces", purpose="ai_training", at="2013-08-01").version
    ws.share(
        f"faces@{latest}",
        to="vendor",
        purposes=["ai_training"],
        at="2013-09-15",
        override=("legal", "backfilling the 2013 vendor transfer from contract records"),
    )
    resting = ws.erase("subject", PEOPLE[0], reason="the subject asked to be erased", wait=0)
    assert resting["state"] == "awaiting_recipients", resting["state"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("webcat")
    ws = smoke_workspace(tmp)
    try:
        _populate(ws, tmp)
    finally:
        ws.close()
    root = tmp / "ws"
    with serve_api(root) as api:
        with Workspace.open(root, actor="tester") as ws:
            for name in ROLE_USERS.values():
                ws.set_password(name, UI_PASSWORD)
        site = Site(api, root)
        try:
            yield site
        finally:
            site.close()


@pytest.fixture(scope="module")
def officer(site: Site) -> httpx.Client:
    return site.login(OFFICER)


def ok(client: httpx.Client, path: str, **params: str) -> str:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])
    assert not re.search(r"|".join(PEOPLE + SCRAPED_PEOPLE), answer.text), f"{path} names a person"
    return answer.text


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert found, f"no #{element_id}"
    return " ".join(unescape(re.sub(r"<[^>]+>", "", found.group(2))).split())


def table_rows(html: str, table_id: str, attribute: str) -> list[str]:
    found = re.search(rf'<table id="{table_id}".*?</table>', html, re.S)
    assert found, f"no table #{table_id}"
    return [unescape(v) for v in re.findall(rf'<tr {attribute}="([^"]*)"', found.group(0))]


def hrefs(html: str) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]+)"', html)]


def lineage_links(html: str) -> list[dict[str, str]]:
    return [
        {k: v[0] for k, v in parse_qs(urlsplit(h).query).items()}
        for h in hrefs(html)
        if h.startswith("/ui/lineage?")
    ]


# -- who may see what ----------------------------------------------------------------------------
def test_a_stranger_is_sent_to_the_login_page(site: Site) -> None:
    client = site.client()
    for path in [*PAGES, "/ui/datasets/nope", "/ui/recipients/nope"]:
        answer = client.get(path)
        assert (answer.status_code, answer.headers.get("location")) == (303, "/ui/login"), path


@pytest.mark.parametrize("role", sorted(ROLE_USERS))
def test_each_role_sees_the_pages_its_scopes_allow(site: Site, role: str) -> None:
    client = site.login(ROLE_USERS[role])
    assert_scopes_decide(client, role, PAGES)
    overview = ok(client, "/ui/")
    for nav, scope in NAV.items():
        assert (f'id="{nav}"' in overview) == (scope in ROLES[role]), (role, nav)


# -- violations ----------------------------------------------------------------------------------
def test_the_violations_page_shows_what_the_api_answers(site: Site, officer: httpx.Client) -> None:
    html = ok(officer, "/ui/violations")
    api = site.v1("privacy_officer", "/v1/violations", limit=1000)
    summary = api["summary"]
    assert {"vendor-train", "scrape-train"} <= {v.get("job") for v in api["items"]}, api
    assert summary["uses_with_violations"] == len(api["items"]) >= 3  # and the backfilled transfer
    assert int(text_of(html, "uses-checked")) == summary["uses_checked"]
    assert int(text_of(html, "uses-with-violations")) == summary["uses_with_violations"]
    assert int(text_of(html, "violation-items")) == summary["items"]
    assert table_rows(html, "by-source", "data-source") == sorted(summary["by_source"])
    assert table_rows(html, "by-purpose", "data-purpose") == sorted(summary["by_purpose"])
    assert table_rows(html, "violations", "data-use") == [v["use"] for v in api["items"]]
    for v in api["items"]:
        kind, _, ident = v["use"].partition(":")
        assert {"kind": kind, "id": ident, "direction": "downstream", "hops": "3"} in lineage_links(html)
    for control in ("filter-source", "filter-purpose", "filter-as-of"):
        assert f'for="{control}"' in html and f'id="{control}"' in html
    assert 'id="violation-filters"' in html and 'id="violations-csv"' in html


def test_the_overview_shows_the_latest_violations_after_the_page(site: Site, officer: httpx.Client) -> None:
    overview = ok(officer, "/ui/")
    # the audit reads every use's items: the overview asks for it once shown (htmx)
    assert 'hx-get="/ui/violations/latest"' in overview and 'id="violations-latest-link"' in overview
    api = site.v1("privacy_officer", "/v1/violations", limit=1000)
    newest = sorted(api["items"], key=lambda v: v["at"], reverse=True)[:LATEST]
    for asked in ({"HX-Request": "true"}, {}):  # the fragment, and the page without JavaScript
        answer = officer.get("/ui/violations/latest", headers=asked)
        assert answer.status_code == 200, answer.text
        assert ("<html" in answer.text) == (not asked)
        assert table_rows(answer.text, "violations-latest", "data-use") == [v["use"] for v in newest]
        state = text_of(answer.text, "violations-state")
        summary = api["summary"]
        assert state.startswith(f"{summary['uses_with_violations']} of {summary['uses_checked']} uses")
    viewer = site.login(ROLE_USERS["viewer"])
    assert "violations/latest" not in viewer.get("/ui/").text
    refused = viewer.get("/ui/violations/latest")
    assert refused.status_code == 403 and 'id="forbidden"' in refused.text


def _csv(client: httpx.Client, **params: str) -> list[dict[str, str]]:
    answer = client.get("/ui/violations.csv", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert not re.search("|".join(PEOPLE + SCRAPED_PEOPLE), answer.text)
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0][:6] == ["use", "kind", "purpose", "at", "items_checked", "items_not_covered"]
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_the_csv_has_the_page_s_rows_and_no_formula(site: Site, officer: httpx.Client) -> None:
    html = ok(officer, "/ui/violations")
    rows = _csv(officer)
    api = site.v1("privacy_officer", "/v1/violations", limit=1000)["items"]
    assert [r["use"] for r in rows] == table_rows(html, "violations", "data-use") == [v["use"] for v in api]
    for row, v in zip(rows, api, strict=True):
        assert (row["purpose"], row["at"]) == (v["purpose"], v["at"])
        assert (int(row["items_checked"]), int(row["items_not_covered"])) == (v["checked"], v["items"])
    scraped = next(r for r in rows if r["job"] == "scrape-train")
    assert scraped["by_source"] == f"'{FORMULA}: 2"  # a spreadsheet shows it as text
    assert scraped["override"].startswith("'legal") or scraped["override"].startswith("legal")
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    href = next(h for h in hrefs(html) if h.startswith("/ui/violations.csv"))
    assert href == "/ui/violations.csv"


def test_the_filters_narrow_the_page_and_the_csv_as_the_api(site: Site, officer: httpx.Client) -> None:
    for params in (
        {"source": "lfw"},
        {"source": FORMULA},
        {"purpose": "ai_inference"},
        {"as_of": "2013-08-15"},
    ):
        html = ok(officer, "/ui/violations", **params)
        api = site.v1("privacy_officer", "/v1/violations", limit=1000, **params)
        uses = [v["use"] for v in api["items"]]
        assert table_rows(html, "violations", "data-use") == uses, params
        assert [r["use"] for r in _csv(officer, **params)] == uses, params
        assert int(text_of(html, "uses-checked")) == api["summary"]["uses_checked"], params
        [csv_link] = [h for h in hrefs(html) if h.startswith("/ui/violations.csv")]
        assert {k: v[0] for k, v in parse_qs(urlsplit(csv_link).query).items()} == params
    assert len(site.v1("privacy_officer", "/v1/violations", source=FORMULA)["items"]) == 1
    assert (
        site.v1("privacy_officer", "/v1/violations", as_of="2013-08-15")["summary"]["uses_with_violations"]
        == 1
    )
    assert officer.get("/ui/violations", params={"purpose": "gossip"}).status_code == 422
    assert officer.get("/ui/violations.csv", params={"as_of": "not a date"}).status_code == 422


def test_a_cell_a_spreadsheet_would_run_is_text() -> None:
    from disgorge.web.pages.violations import neutralise

    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert neutralise(cell) == "'" + cell
    for cell in ("dataset:faces@1.0.0", "2013-08-02T00:00:00Z", "4", ""):
        assert neutralise(cell) == cell
    assert neutralise(None) == "" and neutralise(3) == "3"


def test_a_model_state_is_said_in_words() -> None:
    from disgorge.web.pages.catalog import model_state

    assert model_state({"state": "retired", "unlearned_from": None}) == "retired"
    said = model_state({"state": "active", "unlearned_from": "2"})
    assert said.startswith("active, unlearned") and "version 2" in said


# -- datasets, models, sources, recipients --------------------------------------------------------
def test_datasets_and_their_versions_match_the_api(site: Site, officer: httpx.Client) -> None:
    html = ok(officer, "/ui/datasets")
    api = site.v1("privacy_officer", "/v1/datasets")["items"]
    assert table_rows(html, "datasets", "data-name") == [d["name"] for d in api]
    assert ODD in [d["name"] for d in api]
    for d in api:
        link = "/ui/datasets/" + _quoted(d["name"])
        assert link in hrefs(html)
        page = ok(officer, link)
        assert int(text_of(page, "dataset-members")) == d["members"]
        assert text_of(page, "dataset-purpose") == d["purpose"]
        assert table_rows(page, "dataset-versions", "data-version") == d["versions"]
        assert {
            "kind": "dataset",
            "id": f"{d['name']}@{d['version']}",
            "direction": "downstream",
            "hops": "3",
        } in (lineage_links(page))
    faces = site.v1("privacy_officer", "/v1/datasets/faces")
    first, second = faces["versions"][:2]
    diff = site.v1("privacy_officer", "/v1/datasets/faces/diff", **{"from": first, "to": second})
    page = ok(officer, "/ui/datasets/faces", version=second)
    assert text_of(page, "dataset-members") == str(
        site.v1("privacy_officer", "/v1/datasets/faces", version=second)["members"]
    )
    said = text_of(page, "dataset-diff")
    assert said.startswith(
        f"{len(diff['added'])} photos added, {len(diff['removed'])} removed, {diff['unchanged']} unchanged"
    )
    assert len(diff["removed"]) == 2  # the two photos of the subject who withdrew
    by_ref = ok(officer, "/ui/datasets/faces@" + second)  # as lineage names a version
    assert text_of(by_ref, "dataset-diff") == said
    assert officer.get("/ui/datasets/nope").status_code == 404
    assert 'id="error"' in officer.get("/ui/datasets/nope").text
    assert officer.get("/ui/datasets/faces", params={"version": "9.9.9"}).status_code == 404
    assert officer.get("/ui/datasets/faces", params={"version": "one"}).status_code == 422
    assert officer.get("/ui/datasets/" + "x" * 300).status_code == 422
    assert officer.get("/ui/datasets/bad%01name").status_code == 422


def _quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="@")


def test_models_match_the_api_with_their_state_in_words(site: Site, officer: httpx.Client) -> None:
    html = ok(officer, "/ui/models")
    api = site.v1("privacy_officer", "/v1/models")["items"]
    refs = [f"{m['name']}@{m['version']}" for m in api]
    assert table_rows(html, "models", "data-ref") == refs
    states = {f"{m['name']}@{m['version']}": m["state"] for m in api}
    assert states["old-model@1"] == "retired"
    assert "acme/face-id@1" in refs  # a recorded model's name may hold "/"
    for ref, view in zip(refs, api, strict=True):
        page = ok(officer, "/ui/models/" + _quoted(ref))
        if "/" not in ref:  # GET /v1/models/{ref} cannot name it (its path takes one segment)
            assert site.v1("privacy_officer", "/v1/models/" + _quoted(ref))["samples"] == view["samples"]
        assert text_of(page, "model-state").startswith(view["state"])
        assert int(text_of(page, "model-samples")) == view["samples"]
        assert f"<code>{view['run']}</code>" in page
        assert {"kind": "model", "id": ref, "direction": "downstream", "hops": "3"} in lineage_links(page)
        assert {"kind": "run", "id": view["run"], "direction": "downstream", "hops": "3"} in lineage_links(
            page
        )
        assert "recorded from elsewhere" in text_of(page, "model-shards")  # none was trained here
    assert ok(officer, "/ui/models/vendor-face-id").count('id="model"') == 1  # NAME: its latest
    assert officer.get("/ui/models/nope").status_code == 404
    assert officer.get("/ui/models/nope%01").status_code == 422
    assert officer.get("/ui/sources/" + "x" * 300).status_code == 422


def test_sources_match_the_api(site: Site, officer: httpx.Client) -> None:
    html = ok(officer, "/ui/sources")
    api = site.v1("privacy_officer", "/v1/sources")["items"]
    assert table_rows(html, "sources", "data-name") == [s["name"] for s in api]
    for s in api:
        link = "/ui/sources/" + _quoted(s["name"])
        assert link in hrefs(html)
        page = ok(officer, link)
        assert int(text_of(page, "source-photos")) == s["assets"]
        assert text_of(page, "source-kind") == s["kind"]
        assert table_rows(page, "source-policies", "data-version") == [p["version"] for p in s["policies"]]
        assert "No retention rule" in text_of(page, "source-retention")  # the officer holds erasure:read
        assert {"kind": "source", "id": s["name"], "direction": "downstream", "hops": "3"} in lineage_links(
            page
        )
    assert "ai_inference" in ok(officer, "/ui/sources/" + _quoted(FORMULA))
    viewer = site.login(ROLE_USERS["viewer"])
    assert 'id="source-retention"' in ok(viewer, "/ui/sources/lfw")  # viewer holds erasure:read too
    assert officer.get("/ui/sources/nope").status_code == 404


def test_recipients_their_transfers_and_erasure_requests_match_the_api(
    site: Site, officer: httpx.Client
) -> None:
    html = ok(officer, "/ui/recipients")
    api = site.v1("privacy_officer", "/v1/recipients")["items"]
    assert (
        table_rows(html, "recipients", "data-name") == [p["name"] for p in api] == ["idle partner", "vendor"]
    )
    sent = site.v1("privacy_officer", "/v1/transfers", direction="out", peer="vendor")["items"]
    assert len(sent) == 1
    page = ok(officer, "/ui/recipients/vendor")
    [vendor] = [p for p in api if p["name"] == "vendor"]
    assert text_of(page, "recipient-key") == vendor["public_key"]
    assert "by hand" in text_of(page, "recipient-endpoint")
    assert table_rows(page, "recipient-transfers", "data-id") == [t["id"] for t in sent]
    assert {
        "kind": "transfer",
        "id": "vendor@" + sent[0]["id"][:12],
        "direction": "downstream",
        "hops": "3",
    } in lineage_links(page)
    [request] = site.v1("privacy_officer", "/v1/erasures")["items"]
    shown = site.v1("privacy_officer", f"/v1/erasures/{request['id']}")["recipients"]
    assert table_rows(page, "recipient-erasures", "data-request") == [request["id"]]
    [state] = [r["state"] for r in shown if r["recipient"] == "vendor"]
    assert state == "pending" and f"<td>{state}" in page
    idle = ok(officer, "/ui/" + "recipients/idle%20partner")
    assert "Nothing sent." in idle and "No erasure request reached it." in idle
    assert "/ui/recipients/idle%20partner" in hrefs(html)
    assert officer.get("/ui/recipients/nope").status_code == 404


def test_every_lineage_link_opens_the_lineage_page(site: Site, officer: httpx.Client) -> None:
    pages = ["/ui/violations", "/ui/datasets/faces", "/ui/models/vendor-face-id", "/ui/sources/lfw"]
    links = {h for page in [*pages, "/ui/recipients/vendor"] for h in hrefs(ok(officer, page))}
    lineage = sorted(h for h in links if h.startswith("/ui/lineage?"))
    assert len(lineage) >= 6, lineage
    for link in lineage:
        answer = officer.get(link)
        assert answer.status_code == 200, (link, answer.text[:300])
        assert 'id="forbidden"' not in answer.text and 'id="error"' not in answer.text, link


# -- in a real browser -----------------------------------------------------------------------------


def test_each_page_in_a_browser(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    ui_login(browser, site.url, OFFICER, UI_PASSWORD)
    assert browser.find_elements(By.ID, "whoami")
    pages = {
        "violations": ("/ui/violations", "violations"),
        "datasets": ("/ui/datasets", "datasets"),
        "dataset": ("/ui/datasets/faces", "dataset"),
        "models": ("/ui/models", "models"),
        "model": ("/ui/models/vendor-face-id", "model"),
        "sources": ("/ui/sources", "sources"),
        "source": ("/ui/sources/lfw", "source"),
        "recipients": ("/ui/recipients", "recipients"),
        "recipient": ("/ui/recipients/vendor", "recipient"),
    }
    for name, (path, element) in pages.items():
        browser.get(site.url + path)
        assert browser.find_elements(By.ID, element), name
        assert not browser.find_elements(By.ID, "forbidden"), name
        assert browser.execute_script(UNLABELLED) == [], name
        assert browser.execute_script(DUPLICATE_IDS) == [], name
        assert console_errors(browser) == [], name
        assert (
            browser.find_element(By.ID, f"nav-{name if name.endswith('s') else name + 's'}").get_attribute(
                "aria-current"
            )
            == "page"
        )
    # the filter form works in the browser: one source, then the table has its one use
    browser.get(site.url + "/ui/violations")
    Select(browser.find_element(By.ID, "filter-source")).select_by_value(FORMULA)
    browser.find_element(By.ID, "filter").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#violations tbody tr[data-use]")
    assert len(rows) == 1 and "source=%3DHYPERLINK" in browser.current_url
    # a dataset's page links to its lineage, and the link names the version
    browser.get(site.url + "/ui/datasets")
    browser.find_element(By.LINK_TEXT, ODD).click()
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Dataset {ODD}@")
    link = browser.find_element(By.ID, "dataset-lineage").get_attribute("href")
    assert parse_qs(urlsplit(link).query)["id"][0].startswith(f"{ODD}@")
