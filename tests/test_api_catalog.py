"""The catalog and lineage routes of the REST API, against a real workspace on a real server.

One small workspace (the smoke flow's: source lfw, three people with two photos each, Alan
Turing refusing ai_training), with a dataset, an external run and model built on it, and a
refusal of Ada Lovelace's learnt after the build (so the build is a violation). What the
Workspace says about it is written down before the server starts: a test must not open
the catalog's files in the server's process while it serves (closing them would drop the
server's locks).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import DENIED, PEOPLE, ROLE_USERS, Api, cli, serve_api, smoke_workspace
from disgorge import Workspace, uploads

ADA, GRACE = "Ada_Lovelace", "Grace_Hopper"


@dataclass
class World:
    api: Api
    root: Path
    photos: dict[str, bytes]  # sha256 -> bytes
    refs: dict[str, str]  # person -> sub_ ref
    dataset: str  # faces@VERSION
    lineage_ada: dict[str, Any]  # ws.lineage("subject:Ada_Lovelace").to_dict()
    upstream_vendor: dict[str, Any]  # ws.lineage("model:vendor", direction="upstream")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("catalog")
    with smoke_workspace(tmp) as ws:
        ds = ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
        dataset = f"faces@{ds.version}"
        ws.record_run(
            "vendor-train",
            purpose="ai_training",
            inputs=[dataset],
            outputs=[{"kind": "model", "name": "vendor"}],
            at="2014-03-01",
        )
        late = tmp / "late.csv"
        late.write_text(f"subject,purpose,decision,at\n{ADA},ai_training,denied,2013-12-01\n")
        ws.import_consent(late, at="2020-01-01")
        refs = {p: ws.subject_ref(p) for p in PEOPLE}
        lineage_ada = ws.lineage(f"subject:{ADA}").to_dict()
        upstream_vendor = ws.lineage("model:vendor", direction="upstream").to_dict()
    photos = {
        hashlib.sha256(f.read_bytes()).hexdigest(): f.read_bytes() for f in (tmp / "photos").rglob("*.jpg")
    }
    with serve_api(tmp / "ws") as api:
        yield World(api, tmp / "ws", photos, refs, dataset, lineage_ada, upstream_vendor)


def _no_people(text: str) -> None:
    for person in PEOPLE:
        assert person not in text


# -- sources -------------------------------------------------------------------------------------
def test_sources_list_show_add_and_policies(world: World) -> None:
    api = world.api
    r = api.call("viewer", "GET", "/v1/sources")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 1 and body["next_offset"] is None
    [lfw] = body["items"]
    assert lfw["name"] == "lfw" and lfw["assets"] == 6 and lfw["policies"][0]["version"] == "2013"

    assert api.call("viewer", "GET", "/v1/sources/lfw").json() == lfw
    assert api.call("viewer", "GET", "/v1/sources/nope").status_code == 404

    new = {"name": "partner-feed", "kind": "partner", "description": "photos from a partner"}
    assert api.call("viewer", "POST", "/v1/sources", json=new).status_code == 403
    r = api.call("privacy_officer", "POST", "/v1/sources", json=new)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "partner-feed" and r.json()["kind"] == "partner" and r.json()["assets"] == 0
    assert api.call("privacy_officer", "POST", "/v1/sources", json=new).status_code == 422  # exists
    assert api.call("privacy_officer", "POST", "/v1/sources", json={"kind": "app"}).status_code == 422
    assert (
        api.call("privacy_officer", "POST", "/v1/sources", json={**new, "kind": "cloud"}).status_code == 422
    )
    listed = api.call("viewer", "GET", "/v1/sources", params={"kind": "partner"}).json()
    assert [s["name"] for s in listed["items"]] == ["partner-feed"]

    policy = {
        "version": "2024-05",
        "text": "we share your photos with partners",
        "effective_from": "2024-05-01",
        "allows": ["third_party_sharing", "ai_inference"],
    }
    r = api.call("privacy_officer", "POST", "/v1/sources/partner-feed/policies", json=policy)
    assert r.status_code == 201, r.text
    [p] = r.json()["policies"]
    assert p["text_sha256"] == hashlib.sha256(policy["text"].encode()).hexdigest()
    assert p["allows"] == ["ai_inference", "third_party_sharing"]
    assert p["effective_from"].startswith("2024-05-01") and p["effective_to"] is None
    # the same text as base64 (a PDF would be sent so): the same hash
    pdf = {**policy, "version": "2024-06", "effective_from": "2024-06-01", "text": None}
    pdf["text_base64"] = "d2Ugc2hhcmUgeW91ciBwaG90b3Mgd2l0aCBwYXJ0bmVycw=="
    r = api.call("privacy_officer", "POST", "/v1/sources/partner-feed/policies", json=pdf)
    assert r.status_code == 201, r.text
    assert r.json()["policies"][1]["text_sha256"] == p["text_sha256"]
    assert api.call("viewer", "GET", "/v1/sources/partner-feed").json()["policies"] == r.json()["policies"]
    # malformed: both texts, neither, an unknown purpose, an end before the start, no source
    for bad in (
        {**policy, "version": "x", "text_base64": "eA=="},
        {k: v for k, v in policy.items() if k != "text"},
        {**policy, "version": "y", "allows": ["selling"]},
        {**policy, "version": "z", "effective_to": "2020-01-01"},
    ):
        r = api.call("privacy_officer", "POST", "/v1/sources/partner-feed/policies", json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = api.call("privacy_officer", "POST", "/v1/sources/nope/policies", json={**policy, "version": "q"})
    assert r.status_code == 404
    assert len(api.call("viewer", "GET", "/v1/sources/partner-feed").json()["policies"]) == 2


# -- consent ---------------------------------------------------------------------------------------
def _consent(world: World, person: str) -> list[dict[str, Any]]:
    r = world.api.call("auditor", "POST", "/v1/subjects/lookup", json={"external_id": person})
    assert r.status_code == 200, r.text
    consent: list[dict[str, Any]] = r.json()["consent"]
    return consent


def test_consent_import_as_json_and_as_csv_then_check(world: World) -> None:
    api = world.api
    csv = f"subject,purpose,decision,at\n{GRACE},data_mining,granted,2013-03-01\n"
    body = {"text": csv}
    assert api.call("auditor", "POST", "/v1/consent/import", json=body).status_code == 403
    r = api.call("privacy_officer", "POST", "/v1/consent/import", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "file": "consent.csv",
        "rows": 1,
        "imported": 1,
        "already_present": 0,
        "subjects_created": 0,
        "conflicts": 0,
    }
    # the same history as text/csv adds nothing; as JSON Lines, nothing either
    r = api.call(
        "privacy_officer", "POST", "/v1/consent/import", content=csv, headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["imported"], r.json()["already_present"]) == (0, 1)
    line = json.dumps({"subject": GRACE, "purpose": "data_mining", "decision": "granted", "at": "2013-03-01"})
    r = api.call("privacy_officer", "POST", "/v1/consent/import", json={"text": line, "format": "jsonl"})
    assert r.status_code == 200, r.text
    assert (r.json()["imported"], r.json()["already_present"]) == (0, 1)
    assert [c["purpose"] for c in _consent(world, GRACE)] == ["data_mining"]
    # nothing of the upload is left, in the workspace or in the uploads folder outside it
    assert not [p for p in world.root.rglob("*") if "consent" in p.name and p.suffix in (".csv", ".jsonl")]
    assert not _uploads_left(world.root)

    # the gate: Alan refused ai_training, Grace's photos are covered by the source's policy
    r = api.call(
        "ml_engineer", "POST", "/v1/consent/check", json={"subject": DENIED, "purpose": "ai_training"}
    )
    assert r.status_code == 200, r.text
    verdict = r.json()
    assert verdict["subject"] == world.refs[DENIED] and verdict["allowed"] is False
    assert verdict["photos"] == 2 and verdict["covered"] == 0
    assert {i["rule"] for i in verdict["items"]} == {"consent_denied"}
    ref = world.refs[GRACE]
    r = api.call("ml_engineer", "POST", "/v1/consent/check", json={"subject": ref, "purpose": "ai_training"})
    assert r.json()["allowed"] is True and r.json()["covered"] == 2
    _no_people(r.text)
    assert (
        api.call(
            "viewer", "POST", "/v1/consent/check", json={"subject": ref, "purpose": "ai_training"}
        ).status_code
        == 403
    )
    bad = {"subject": ref, "purpose": "selling"}
    assert api.call("ml_engineer", "POST", "/v1/consent/check", json=bad).status_code == 422


def test_a_malformed_consent_history_is_a_clear_422_and_imports_nothing(world: World) -> None:
    api = world.api
    before = _consent(world, ADA)
    csv = (
        "subject,purpose,decision,at\n"
        f"{ADA},third_party_sharing,granted,2013-03-01\n"  # a good row: not imported either
        f"{ADA},world_domination,granted,2013-03-01\n"
        f"{ADA},ai_training,maybe,yesterday\n"
    )
    for kw in ({"json": {"text": csv}}, {"content": csv, "headers": {"Content-Type": "text/csv"}}):
        r = api.call("privacy_officer", "POST", "/v1/consent/import", **kw)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        detail = r.json()["detail"]
        assert "2 bad row(s), nothing imported" in detail
        assert "consent.csv line 3" in detail and "consent.csv line 4" in detail
        _no_people(r.text)
    r = api.call("privacy_officer", "POST", "/v1/consent/import", json={"text": "name,when\nx,y\n"})
    assert r.status_code == 422 and "missing column(s)" in r.json()["detail"]
    # malformed bodies: no text, an unknown format, another media type
    assert api.call("privacy_officer", "POST", "/v1/consent/import", json={}).status_code == 422
    r = api.call("privacy_officer", "POST", "/v1/consent/import", json={"text": csv, "format": "xlsx"})
    assert r.status_code == 422 and "format" in r.json()["detail"]
    r = api.call(
        "privacy_officer", "POST", "/v1/consent/import", content=csv, headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415 and r.headers["content-type"].startswith("application/problem+json")
    _no_people(r.text)
    assert _consent(world, ADA) == before
    assert not _uploads_left(world.root)


# -- subjects ---------------------------------------------------------------------------------------
def test_subjects_by_external_id_in_the_body_and_by_ref(world: World) -> None:
    api = world.api
    ref = world.refs[ADA]
    r = api.call("auditor", "POST", "/v1/subjects/lookup", json={"external_id": ADA})
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["ref"] == ref and view["state"] == "active" and view["key"] == "active"
    assert len(view["assets"]) == 2 and {a["role"] for a in view["assets"]} == {"owner"}
    assert view["consent_now"]["ai_training"] == "denied"
    _no_people(r.text)
    assert api.call("auditor", "GET", f"/v1/subjects/{ref}").json() == view
    assert (
        api.call("ml_engineer", "POST", "/v1/subjects/lookup", json={"external_id": ADA}).status_code == 403
    )
    assert api.call("viewer", "GET", f"/v1/subjects/{ref}").status_code == 403

    secret = "Someone_Never_Ingested"
    r = api.call("auditor", "POST", "/v1/subjects/lookup", json={"external_id": secret})
    assert r.status_code == 404
    assert secret not in r.text and "Someone" not in r.text
    # an external id in the URL is refused without being repeated
    r = api.call("auditor", "GET", f"/v1/subjects/{ADA}")
    assert r.status_code == 422 and ADA not in r.text
    assert api.call("auditor", "GET", "/v1/subjects/sub_" + "0" * 32).status_code == 404
    for bad in ({}, {"external_id": ""}, {"external_id": 42}, {"id": ADA}):
        r = api.call("auditor", "POST", "/v1/subjects/lookup", json=bad)
        assert r.status_code == 422, (bad, r.text)
        _no_people(r.text)


# -- assets ------------------------------------------------------------------------------------------
def test_assets_list_pages_filters_and_metadata(world: World) -> None:
    api = world.api
    r = api.call("ml_engineer", "GET", "/v1/assets", params={"limit": 4})
    assert r.status_code == 200, r.text
    first = r.json()
    assert (first["total"], len(first["items"]), first["next_offset"]) == (6, 4, 4)
    rest = api.call("ml_engineer", "GET", "/v1/assets", params={"limit": 4, "offset": 4}).json()
    assert rest["next_offset"] is None and len(rest["items"]) == 2
    items = first["items"] + rest["items"]
    assert {a["sha256"] for a in items} == set(world.photos)
    owners = {a["owner"] for a in items}
    assert owners == set(world.refs.values())
    assert all(
        a["source"] == "lfw" and a["state"] == "active" and a["media_type"] == "image/jpeg" for a in items
    )
    _no_people(r.text)

    assert (
        api.call("auditor", "GET", "/v1/assets", params={"source": "lfw", "state": "active"}).json()["total"]
        == 6
    )
    assert api.call("auditor", "GET", "/v1/assets", params={"state": "erased"}).json()["items"] == []
    assert api.call("auditor", "GET", "/v1/assets", params={"source": "nope"}).status_code == 404
    assert api.call("auditor", "GET", "/v1/assets", params={"state": "lost"}).status_code == 422
    assert api.call("auditor", "GET", "/v1/assets", params={"limit": 0}).status_code == 422
    assert api.call("viewer", "GET", "/v1/assets").status_code == 403

    one = items[0]
    assert api.call("auditor", "GET", f"/v1/assets/{one['sha256']}").json() == one
    assert api.call("auditor", "GET", f"/v1/assets/{one['sha256'][:10]}").json() == one
    assert api.call("auditor", "GET", "/v1/assets/" + "0" * 64).status_code == 404
    assert api.call("auditor", "GET", "/v1/assets/abc").status_code == 422


def test_asset_bytes_are_the_original_for_the_privacy_office_and_each_read_is_audited(world: World) -> None:
    api = world.api
    digest, data = sorted(world.photos.items())[0]
    for role in ("auditor", "ml_engineer", "viewer"):
        assert api.call(role, "GET", f"/v1/assets/{digest}/bytes").status_code == 403
    r = api.call("privacy_officer", "GET", f"/v1/assets/{digest}/bytes")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-type"] == "image/jpeg" and r.headers["cache-control"] == "no-store"
    assert api.call("admin", "GET", f"/v1/assets/{digest[:12]}/bytes").content == data
    assert api.call("privacy_officer", "GET", "/v1/assets/" + "0" * 64 + "/bytes").status_code == 404

    asset_id = api.call("auditor", "GET", f"/v1/assets/{digest}").json()["id"]
    done = cli("audit", "log", "--action", "asset.read", "--json", "-w", world.root)
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)
    # the two reads, by their principals; the refused ones read nothing and are not events
    assert [(e["actor"], e["payload"]) for e in events] == [
        (ROLE_USERS["privacy_officer"], {"asset": asset_id}),
        (ROLE_USERS["admin"], {"asset": asset_id}),
    ]
    _no_people(done.stdout)


# -- lineage and violations ------------------------------------------------------------------------
def test_lineage_of_a_subject_named_in_the_body(world: World) -> None:
    api = world.api
    expected = world.lineage_ada
    assert {n["id"] for n in expected["nodes"]} >= {f"dataset:{world.dataset}", "model:vendor@1"}
    r = api.call("auditor", "POST", "/v1/lineage", json={"kind": "subject", "id": ADA})
    assert r.status_code == 200, r.text
    graph = r.json()
    assert graph["nodes"] == expected["nodes"] and graph["edges"] == expected["edges"]
    assert graph["node"] == f"subject:{world.refs[ADA]}" and graph["direction"] == "downstream"
    assert graph["assets"] == expected["assets"] and graph["subjects"] is None
    _no_people(r.text)
    # by ref, the same graph
    by_ref = api.call("auditor", "POST", "/v1/lineage", json={"kind": "subject", "id": world.refs[ADA]})
    assert by_ref.json() == graph
    # a viewer holds lineage:read, not subject:read: it may not ask whether someone is here
    r = api.call("viewer", "POST", "/v1/lineage", json={"kind": "subject", "id": ADA})
    assert r.status_code == 403 and "subject:read" in r.json()["detail"]
    r = api.call("auditor", "POST", "/v1/lineage", json={"kind": "subject", "id": "Nobody_Here"})
    assert r.status_code == 404 and "Nobody" not in r.text


def test_lineage_upstream_of_a_model_and_malformed_questions(world: World) -> None:
    api = world.api
    up = {"kind": "model", "id": "vendor", "direction": "upstream"}
    r = api.call("viewer", "POST", "/v1/lineage", json=up)
    assert r.status_code == 200, r.text
    graph = r.json()
    expected = world.upstream_vendor
    assert graph["nodes"] == expected["nodes"] and graph["edges"] == expected["edges"]
    assert graph["subjects"] == expected["subjects"] and graph["sources"] == ["lfw"]
    assert world.refs[DENIED] not in graph["subjects"]["sample"]  # the gate left Alan out
    # one hop: the run only, not the dataset behind it
    short = api.call("viewer", "POST", "/v1/lineage", json={**up, "hops": 1}).json()
    assert [n["kind"] for n in short["nodes"]] == ["run"]
    down = api.call("viewer", "POST", "/v1/lineage", json={"kind": "source", "id": "lfw"}).json()
    assert {n["id"] for n in down["nodes"]} >= {"source:lfw", f"dataset:{world.dataset}", "model:vendor@1"}
    for bad in (
        {**up, "direction": "sideways"},
        {**up, "hops": 0},
        {**up, "kind": "planet"},
        {"kind": "model"},
        {"kind": "source", "id": "lfw", "direction": "upstream"},  # a root: nothing upstream
    ):
        r = api.call("viewer", "POST", "/v1/lineage", json=bad)
        assert r.status_code == 422, (bad, r.text)
    assert api.call("viewer", "POST", "/v1/lineage", json={"kind": "model", "id": "nope"}).status_code == 404


def test_violations_paginated_and_filtered(world: World) -> None:
    api = world.api
    assert api.call("viewer", "GET", "/v1/violations").status_code == 403
    r = api.call("auditor", "GET", "/v1/violations")
    assert r.status_code == 200, r.text
    body = r.json()
    uses = {v["use"]: v for v in body["items"]}
    # the build took Ada's photos, which she had refused before it (as learnt later); the
    # run on the dataset used them again
    assert f"dataset:{world.dataset}" in uses
    assert uses[f"dataset:{world.dataset}"]["items"] == 2
    assert uses[f"dataset:{world.dataset}"]["by_rule"] == {"consent_denied": 2}
    assert body["total"] == len(body["items"]) == body["summary"]["uses_with_violations"]
    assert body["summary"]["by_source"] == {"lfw": sum(v["items"] for v in body["items"])}
    _no_people(r.text)
    first = api.call("ml_engineer", "GET", "/v1/violations", params={"limit": 1}).json()
    assert first["items"] == body["items"][:1] and first["next_offset"] == (1 if body["total"] > 1 else None)
    assert (
        api.call("auditor", "GET", "/v1/violations", params={"source": "lfw"}).json()["total"]
        == body["total"]
    )
    assert api.call("auditor", "GET", "/v1/violations", params={"source": "partner-x"}).json()["items"] == []
    none = api.call("auditor", "GET", "/v1/violations", params={"purpose": "data_mining"}).json()
    assert none["items"] == [] and none["summary"] == body["summary"]
    # as known in 2019, before the refusal was learnt, the build was clean
    then = api.call("auditor", "GET", "/v1/violations", params={"as_of": "2019-01-01"}).json()
    assert then["total"] == 0 and then["summary"]["uses_checked"] >= 1
    assert api.call("auditor", "GET", "/v1/violations", params={"purpose": "selling"}).status_code == 422
    assert api.call("auditor", "GET", "/v1/violations", params={"as_of": "someday"}).status_code == 422


def _uploads_left(root: Path) -> list[Path]:
    with Workspace.open(root) as ws:
        folder = uploads.uploads_dir(ws.ctx)
    return sorted(folder.glob("*")) if folder.is_dir() else []
