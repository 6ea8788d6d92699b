"""The REST API's audit log and sharing routes, on a real workspace served by real uvicorn.

The workspace is the smoke flow's (3 people x 2 photos, consent, a dataset) with one
recipient registered before the server starts and three legacy transfers to it; a second
real workspace ("vendor") gives the keys that are registered over the API. The tests share
one server and run in file order; each names what it adds, so none depends on another's
writes except through what it reads back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conftest import PEOPLE, ROLE_USERS, Api, serve_api, smoke_workspace
from disgorge import Workspace
from disgorge.audit.transparency import check_tree_head, leaf_hash, verify_inclusion, verify_proof

OFFICER, ADMIN = ROLE_USERS["privacy_officer"], ROLE_USERS["admin"]


@dataclass
class Served:
    api: Api
    key_hex: str  # the served workspace's public key (raw, hex)
    vendor_pem: str  # the second workspace's public key
    vendor_hex: str
    transfers: list[str]  # the ids of the legacy transfers, oldest first


def _pem(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("audit-sharing")
    with Workspace.init(tmp / "vendor", actor="tester") as vendor:
        vendor_pem = vendor.public_key_pem()
        vendor_hex = vendor.public_key().public_bytes_raw().hex()
    with smoke_workspace(tmp) as ws:
        key_hex = ws.public_key().public_bytes_raw().hex()
        ws.build_dataset("faces", purpose="ai_training", at="2013-08-01")
        archive = Ed25519PrivateKey.generate().public_key()
        ws.add_peer("recipient", "archive", public_key=_pem(archive), agreement="DPA-1", at="2013-08-01")
        transfers = [
            ws.share(
                "faces@1.0.0",
                to="archive",
                purposes=["ai_training"],
                at=f"2013-09-0{day}",
                override=("legal", "backfilling the archive's 2013 exports"),
            )["transfer"]
            for day in (1, 2, 3)
        ]
    with serve_api(tmp / "ws") as api:
        yield Served(api, key_hex, vendor_pem.decode(), vendor_hex, transfers)


def _all(api: Api, who: str, path: str, params: dict[str, Any] | None = None, *, size: int = 2) -> list[Any]:
    """Every item of a list, page by page (``size`` a page), checking each page's fields."""
    items: list[Any] = []
    offset: int | None = 0
    while offset is not None:
        answer = api.call(who, "GET", path, params={**(params or {}), "limit": size, "offset": offset})
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert got["limit"] == size and got["offset"] == offset and len(got["items"]) <= size
        items += got["items"]
        offset = got["next_offset"]
        assert offset is None or offset == len(items)
    assert len(items) == got["total"]
    return items


def _problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    return body


# -- recipients and senders ---------------------------------------------------------------


def test_recipients_and_senders_are_registered_with_real_keys_and_listed(served: Served) -> None:
    api = served.api
    added = api.call(
        "privacy_officer",
        "POST",
        "/v1/recipients",
        json={
            "name": "vendor",
            "public_key": served.vendor_pem,
            "endpoint": "https://inbox.vendor.example/",
            "agreement": "DSA-7",
        },
    )
    assert added.status_code == 201, added.text
    view = added.json()
    assert view["name"] == "vendor" and view["role"] == "recipient"
    assert view["public_key"] == served.vendor_hex  # the PEM's raw key
    assert view["endpoint"] == "https://inbox.vendor.example" and view["agreement"] == "DSA-7"
    # a sender's key as 64 hex digits (how PeerView shows it) works as well as PEM
    sender = api.call(
        "admin", "POST", "/v1/senders", json={"name": "vendor", "public_key": served.vendor_hex}
    )
    assert sender.status_code == 201, sender.text
    assert sender.json()["public_key"] == served.vendor_hex and sender.json()["endpoint"] is None

    recipients = _all(api, "viewer", "/v1/recipients", size=1)
    assert [r["name"] for r in recipients] == ["archive", "vendor"]
    assert recipients[1] == view
    assert [s["name"] for s in _all(api, "viewer", "/v1/senders")] == ["vendor"]

    # the viewer reads but does not register; a name is registered once per role
    forbidden = api.call(
        "viewer", "POST", "/v1/recipients", json={"name": "x", "public_key": served.vendor_hex}
    )
    assert "sharing:write" in _problem(forbidden, 403)["detail"]
    twice = api.call(
        "privacy_officer", "POST", "/v1/recipients", json={"name": "vendor", "public_key": served.vendor_hex}
    )
    assert "already exists" in _problem(twice, 422)["detail"]
    assert len(_all(api, "viewer", "/v1/recipients")) == 2


def test_a_malformed_public_key_is_a_clear_422_and_registers_nothing(served: Served) -> None:
    api = served.api
    rsa_pem = _pem(generate_private_key(public_exponent=65537, key_size=1024).public_key()).decode()
    bad = {
        "not a key": "neither a PEM public key nor 64 hex digits",
        served.vendor_hex[:-2]: "neither a PEM public key nor 64 hex digits",  # 31 bytes
        "zz" * 32: "neither a PEM public key nor 64 hex digits",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n": "neither a PEM public key",
        rsa_pem: "not an Ed25519 key",
    }
    for key, why in bad.items():
        for path in ("/v1/recipients", "/v1/senders"):
            answer = api.call("privacy_officer", "POST", path, json={"name": "broken", "public_key": key})
            problem = _problem(answer, 422)
            assert problem["type"] == "urn:disgorge:problem:invalid-input"
            assert problem["detail"].startswith("public key: ") and why in problem["detail"], problem
    bad_url = api.call(
        "privacy_officer",
        "POST",
        "/v1/recipients",
        json={"name": "broken", "public_key": served.vendor_hex, "endpoint": "ftp://vendor.example"},
    )
    assert "expected an http(s) URL" in _problem(bad_url, 422)["detail"]
    missing = api.call("privacy_officer", "POST", "/v1/recipients", json={"name": "broken"})
    assert _problem(missing, 422)["detail"]
    names = {p["name"] for path in ("/v1/recipients", "/v1/senders") for p in _all(api, "viewer", path)}
    assert "broken" not in names
    added = _all(api, "auditor", "/v1/audit/events", {"action": "recipient.added"}, size=50)
    assert all(e["payload"]["name"] != "broken" for e in added)


# -- transfers --------------------------------------------------------------------------------


def test_transfers_are_listed_in_pages_filtered_and_shown_by_id(served: Served) -> None:
    api = served.api
    listed = _all(api, "viewer", "/v1/transfers")
    assert [t["id"] for t in listed] == served.transfers  # oldest first
    first = listed[0]
    assert first["direction"] == "out" and first["peer"] == "archive" and first["backfilled"] is True
    assert first["dataset"] == "faces@1.0.0" and first["purposes"] == ["ai_training"]
    assert first["items"] > 0 and first["bundle_sha256"] is None and first["at"].startswith("2013-09-01")
    assert _all(api, "viewer", "/v1/transfers", {"direction": "out", "peer": "archive"}) == listed
    assert _all(api, "viewer", "/v1/transfers", {"direction": "in"}) == []
    assert _all(api, "viewer", "/v1/transfers", {"peer": "vendor"}) == []
    bad = api.call("viewer", "GET", "/v1/transfers", params={"direction": "sideways"})
    assert _problem(bad, 422)

    one = api.call("viewer", "GET", f"/v1/transfers/{first['id']}")
    assert one.status_code == 200 and one.json() == first
    by_prefix = api.call("viewer", "GET", f"/v1/transfers/{first['id'][:12]}")
    assert by_prefix.status_code == 200 and by_prefix.json() == first
    unknown = api.call("viewer", "GET", "/v1/transfers/tr_nothing_here")
    assert "no transfer" in _problem(unknown, 404)["detail"]
    assert api.call(None, "GET", "/v1/transfers").status_code == 401


# -- the audit log --------------------------------------------------------------------------


def test_audit_events_need_audit_read(served: Served) -> None:
    api = served.api
    for role in ("viewer", "ml_engineer"):
        denied = api.call(role, "GET", "/v1/audit/events")
        assert "audit:read" in _problem(denied, 403)["detail"]
        assert api.call(role, "GET", "/v1/audit/verify").status_code == 403
    for role in ("auditor", "privacy_officer", "admin"):
        answer = api.call(role, "GET", "/v1/audit/events")
        assert answer.status_code == 200, answer.text
        assert answer.json()["total"] > 0


def test_audit_events_come_in_pages_oldest_first_and_filter(served: Served) -> None:
    api = served.api
    whole = api.call("auditor", "GET", "/v1/audit/events", params={"limit": 1000}).json()
    assert whole["next_offset"] is None and whole["total"] == len(whole["items"]) > 4
    seqs = [e["seq"] for e in whole["items"]]
    assert seqs == list(range(1, len(seqs) + 1))
    first = api.call("auditor", "GET", "/v1/audit/events", params={"limit": 2}).json()
    assert first["next_offset"] == 2 and len(first["items"]) == 2 and first["total"] == whole["total"]
    assert _all(api, "auditor", "/v1/audit/events") == whole["items"]  # the pages, together
    beyond = api.call("auditor", "GET", "/v1/audit/events", params={"offset": whole["total"] + 5}).json()
    assert beyond["items"] == [] and beyond["next_offset"] is None and beyond["total"] == whole["total"]

    # filters: each is what it says, and they combine
    shares = _all(api, "auditor", "/v1/audit/events", {"action": "transfer.shared"})
    assert [e["payload"]["transfer"] for e in shares] == served.transfers
    assert shares == [e for e in whole["items"] if e["action"] == "transfer.shared"]
    by_tester = _all(api, "auditor", "/v1/audit/events", {"actor": "tester"})
    assert by_tester == [e for e in whole["items"] if e["actor"] == "tester"]
    window = _all(
        api, "auditor", "/v1/audit/events", {"since": "2013-09-02", "until": "2013-09-03T00:00:00Z"}
    )
    assert window == [e for e in whole["items"] if "2013-09-02" <= (e["at"] or "") < "2013-09-03"]
    assert [e["payload"]["transfer"] for e in window if e["action"] == "transfer.shared"] == served.transfers[
        1:2
    ]
    both = _all(api, "auditor", "/v1/audit/events", {"action": "transfer.shared", "since": "2013-09-02"})
    assert both == shares[1:]
    assert _all(api, "auditor", "/v1/audit/events", {"actor": "nobody-at-all"}) == []

    bad_since = api.call("auditor", "GET", "/v1/audit/events", params={"since": "last tuesday"})
    assert "since: 'last tuesday' is not an ISO 8601" in _problem(bad_since, 422)["detail"]
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        _problem(api.call("auditor", "GET", "/v1/audit/events", params=params), 422)


def test_a_checkpoint_is_signed_and_proven_extended_offline(served: Served) -> None:
    api = served.api
    assert api.call("auditor", "POST", "/v1/audit/checkpoints").status_code == 403  # audit:write
    before = api.call("auditor", "GET", "/v1/audit/events", params={"limit": 1}).json()["total"]
    made = api.call("privacy_officer", "POST", "/v1/audit/checkpoints")
    assert made.status_code == 201, made.text
    head = made.json()
    checked = check_tree_head(head, served.key_hex)  # signed by this workspace's key
    assert checked.tree_size == before
    # signing it was audited, after the head: with who asked, and what was signed
    last = api.call("auditor", "GET", "/v1/audit/events", params={"offset": before}).json()["items"]
    assert [(e["action"], e["actor"]) for e in last] == [("audit.checkpointed", OFFICER)]
    assert last[0]["payload"] == {"tree_size": before, "root_hash": head["body"]["root_hash"]}

    chain = api.call("auditor", "GET", "/v1/audit/verify")
    assert chain.status_code == 200
    assert chain.json() == {
        "ok": True,
        "events": before + 1,
        "head": last[0]["hash"],
        "first_bad_seq": None,
        "reason": None,
    }

    # the auditor gets the proofs and checks them with nothing but the public key
    proof = api.call("auditor", "POST", "/v1/audit/prove", json={"from": head, "event": 2})
    assert proof.status_code == 200, proof.text
    doc = proof.json()
    now = verify_proof(head, doc, served.key_hex)
    assert now.tree_size == before + 1 and doc["from"]["tree_size"] == before
    inclusion = doc["inclusion"]
    second = api.call("auditor", "GET", "/v1/audit/events", params={"offset": 1, "limit": 1}).json()["items"][
        0
    ]
    assert inclusion["seq"] == 2 and inclusion["event_hash"] == second["hash"]
    path = [bytes.fromhex(p) for p in inclusion["path"]]
    assert verify_inclusion(inclusion["leaf_index"], now.tree_size, leaf_hash(second["hash"]), path, now.root)
    # a certificate-like wrapper is unwrapped; no body at all gives just a signed head now
    wrapped = api.call("auditor", "POST", "/v1/audit/prove", json={"from": {"audit_tree_head": head}})
    assert wrapped.status_code == 200 and "consistency" in wrapped.json()
    bare = api.call("auditor", "POST", "/v1/audit/prove")
    assert bare.status_code == 200 and set(bare.json()) == {"head"}

    # a head altered after signing, or an event that does not exist, is refused
    forged = json.loads(json.dumps(head))
    forged["body"]["tree_size"] = 1
    refused = api.call("auditor", "POST", "/v1/audit/prove", json={"from": forged})
    assert "signature does not match" in _problem(refused, 422)["detail"]
    foreign = json.loads(json.dumps(head))
    foreign["signature"] = base64.b64encode(b"\0" * 64).decode()
    _problem(api.call("auditor", "POST", "/v1/audit/prove", json={"from": foreign}), 422)
    nowhere = api.call("auditor", "POST", "/v1/audit/prove", json={"event": 10**6})
    assert "there is no audit event" in _problem(nowhere, 422)["detail"]
    _problem(api.call("auditor", "POST", "/v1/audit/prove", json={"event": 0}), 422)


def test_every_write_is_audited_with_its_actor_and_no_secret_or_subject(served: Served) -> None:
    api = served.api
    start = api.call("auditor", "GET", "/v1/audit/events", params={"limit": 1}).json()["total"]
    key = _pem(Ed25519PrivateKey.generate().public_key()).decode()
    assert (
        api.call(
            "privacy_officer", "POST", "/v1/recipients", json={"name": "lab", "public_key": key}
        ).status_code
        == 201
    )
    assert (
        api.call("officer-2", "POST", "/v1/senders", json={"name": "lab", "public_key": key}).status_code
        == 201
    )
    assert api.call("privacy_officer", "POST", "/v1/audit/checkpoints").status_code == 201
    token = api.call("admin", "POST", f"/v1/principals/{ROLE_USERS['viewer']}/tokens", json={"expires": "1d"})
    assert token.status_code == 201, token.text
    secret = token.json()["token"]

    new = _all(api, "auditor", "/v1/audit/events", size=3)[start:]
    assert [(e["action"], e["actor"]) for e in new] == [
        ("recipient.added", OFFICER),
        ("sender.added", "officer-2"),
        ("audit.checkpointed", OFFICER),
        ("token.created", ADMIN),
    ]
    assert new[0]["payload"] == {"name": "lab"} and new[1]["payload"] == {"name": "lab"}
    assert new[3]["payload"]["token"] == token.json()["id"]
    # the actor filter finds each principal's writes, and only theirs
    mine = _all(api, "auditor", "/v1/audit/events", {"actor": OFFICER})
    assert {e["action"] for e in mine} >= {"recipient.added", "audit.checkpointed"}
    assert all(e["actor"] == OFFICER for e in mine)
    assert [e["action"] for e in _all(api, "auditor", "/v1/audit/events", {"actor": ADMIN})][
        -1
    ] == "token.created"

    # the whole log holds no token (neither the role tokens nor the new one) and no subject
    log = json.dumps(_all(api, "auditor", "/v1/audit/events", size=1000)).lower()
    for t in [*api.tokens.values(), secret]:
        assert t.lower() not in log
        assert t.split("_", 2)[2].lower() not in log  # dg_<id>_<secret>: nor the secret alone
    for person in PEOPLE:
        assert person.lower() not in log
        assert person.split("_")[-1].lower() not in log
