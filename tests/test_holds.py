"""Legal holds meet erasures: the held part is withheld, the rest erased, the certificate
says so, and releasing the hold finishes the erasure.

Real workspaces (the synthetic one: four people, a group photo owned by Alan_Turing that
shows Grace_Hopper, a dataset, a SISA model and an external model), real erasures with
their forensic scans, real CLI processes.
"""

from __future__ import annotations

import json

import pytest

from conftest import GROUP, REASON, Syn, cli, sha, sql
from disgorge import Workspace
from disgorge.errors import ConsentDenied, ErasureBlocked, InvalidInput, NotFound

LITIGATION = "litigation 2026-CV-0142 (preservation order)"


def _state(ws: Workspace, data: bytes) -> str:
    return ws.asset(sha(data))["state"]


def _subject_state(ws: Workspace, person: str) -> str:
    return ws.subject(person)["state"]


def test_a_hold_on_a_person_meets_a_source_erasure_and_its_release_finishes_it(
    sws: Workspace, syn: Syn
) -> None:
    hold = sws.add_hold("subject", "Grace_Hopper", reason=LITIGATION)
    assert hold["active"] and hold["target"].startswith("sub_") and "Grace" not in json.dumps(hold)

    plan = sws.erasure_plan("source", "app")
    # Grace's own three photos, and Alan's group photo that shows her
    assert plan["withheld"]["photos"] == 4
    assert plan["withheld"]["holds"] == [{"hold": hold["id"], "target": hold["target"], "reason": LITIGATION}]
    assert plan["counts"]["photos"] == len(syn.photos) - 4

    done = sws.erase("source", "app", reason=REASON)
    assert done["state"] == "completed", done["error"]
    assert done["verification"]["ok"], done["verification"]
    certificate = sws.erasure_certificate(done["id"])["body"]
    assert certificate["withheld"] == {"photos": 4, "models": [], "holds": plan["withheld"]["holds"]}

    held = {**syn.of("Grace_Hopper"), GROUP: syn.photos[GROUP]}
    for name, data in syn.photos.items():
        if name in held:
            assert _state(sws, data) == "withheld"
            assert sws.read_asset(sha(data)) == data  # kept whole, readable
        else:
            with pytest.raises(NotFound):
                sws.asset(sha(data))  # erased: its sha256 is gone from the catalog
    # the owners of withheld photos keep their keys; the others lost theirs
    assert _subject_state(sws, "Grace_Hopper") == "active"
    assert _subject_state(sws, "Alan_Turing") == "active"
    assert _subject_state(sws, "Ada_Lovelace") == "erased"

    # a withheld photo serves no purpose: the dataset version left holding them is refused
    latest = sws.dataset("faces")
    assert latest["version"] != "1.0.0"
    with pytest.raises(ConsentDenied, match="withheld"):
        sws.train_model("again", dataset="faces", shards=2, slices=2)

    released = sws.release_hold(hold["id"], reason="the court lifted the order")
    assert released["hold"]["active"] is False
    [follow_up] = released["erasures"]
    assert follow_up["state"] == "completed", follow_up["error"]
    assert follow_up["verification"]["ok"]
    assert done["id"] in follow_up["reason"]
    assert follow_up["plan"]["counts"]["photos"] == 4
    for data in held.values():
        with pytest.raises(NotFound):
            sws.asset(sha(data))
    assert _subject_state(sws, "Grace_Hopper") == "erased"
    assert _subject_state(sws, "Alan_Turing") == "erased"
    for request in (done["id"], follow_up["id"]):
        assert sws.verify_erasure(request)["ok"]
    events = [e["action"] for e in sws.audit_events(limit=200)]
    assert "hold.added" in events and "hold.released" in events
    assert sws.verify_audit().ok


def test_a_held_model_is_withheld_not_retired_until_released(sws: Workspace) -> None:
    hold = sws.add_hold("model", "vendor", reason=LITIGATION)
    done = sws.erase("subject", "Ada_Lovelace", reason=REASON)
    assert done["state"] == "completed", done["error"]
    assert done["plan"]["withheld"]["models"] == ["model:vendor@1"]
    assert [m["model"] for m in done["plan"]["models_retire"]] == []
    assert sws.model("vendor")["state"] == "withheld"
    assert sws.model("faceid")["version"] == "2"  # the SISA model was unlearned all the same
    certificate = sws.erasure_certificate(done["id"])["body"]
    assert certificate["withheld"]["models"] == ["model:vendor@1"]

    released = sws.release_hold(hold["id"], reason="the court lifted the order")
    [follow_up] = released["erasures"]
    assert follow_up["state"] == "completed", follow_up["error"]
    assert sws.model("vendor")["state"] == "retired"


def test_a_hold_placed_before_approval_is_honoured_and_two_holds_need_two_releases(
    sws: Workspace, syn: Syn
) -> None:
    planned = sws.erase("subject", "Edsger_Dijkstra", reason=REASON, execute=False)
    assert "withheld" not in planned["plan"]
    first = sws.add_hold("subject", "Edsger_Dijkstra", reason=LITIGATION)
    second = sws.add_hold("source", "app", reason="regulator inquiry 2026/88 preservation")
    done = sws.erasure_approve(planned["id"])  # approval plans again, with the holds
    assert done["state"] == "completed", done["error"]
    assert done["plan"]["withheld"]["photos"] == 3
    assert {h["hold"] for h in done["plan"]["withheld"]["holds"]} == {first["id"], second["id"]}
    assert all(_state(sws, d) == "withheld" for d in syn.of("Edsger_Dijkstra").values())

    assert sws.release_hold(first["id"], reason="that matter is settled")["erasures"] == []
    assert all(_state(sws, d) == "withheld" for d in syn.of("Edsger_Dijkstra").values())
    [follow_up] = sws.release_hold(second["id"], reason="the inquiry is closed")["erasures"]
    assert follow_up["state"] == "completed", follow_up["error"]
    assert _subject_state(sws, "Edsger_Dijkstra") == "erased"
    with pytest.raises(InvalidInput, match="released"):
        sws.release_hold(second["id"], reason="the inquiry is closed")


def test_a_hold_needs_a_reason_and_something_held(sws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="reason"):
        sws.add_hold("subject", "Ada_Lovelace", reason="short")
    with pytest.raises(NotFound):
        sws.add_hold("source", "no-such-source", reason=LITIGATION)
    with pytest.raises(NotFound):
        sws.add_hold("model", "no-such-model", reason=LITIGATION)
    with pytest.raises(InvalidInput, match="subject, source, dataset, model"):
        sws.add_hold("photo", "x", reason=LITIGATION)
    assert sws.holds() == []


def test_hold_cli_add_list_release(sws: Workspace, syn: Syn) -> None:
    root = sws.ctx.config.root
    sws.close()
    added = cli("hold", "add", "--dataset", "faces", "--reason", LITIGATION, "--json", cwd=root)
    assert added.returncode == 0, added.stderr
    hold = json.loads(added.stdout)
    assert hold["target"] == "dataset:faces"
    listed = cli("hold", "list", "--active", "--json", cwd=root)
    assert [h["id"] for h in json.loads(listed.stdout)] == [hold["id"]]
    erased = cli("erase", "--subject", "Ada_Lovelace", "--reason", REASON, "--yes", "--json", cwd=root)
    assert erased.returncode == 0, erased.stderr
    view = json.loads(erased.stdout)
    # every photo of the dataset is held: Ada's photos stay, and faces' versions are untouched
    assert view["plan"]["withheld"]["photos"] == 3
    assert view["plan"]["datasets"] == []
    bad = cli("hold", "add", "--subject", "Ada_Lovelace", "--source", "app", "--reason", LITIGATION, cwd=root)
    assert bad.returncode == 2 and "exactly one" in bad.stderr
    released = cli("hold", "release", hold["id"][:8], "--reason", "the matter is closed", cwd=root)
    assert released.returncode == 0, released.stderr
    assert "finished: erasure" in released.stdout
    with Workspace.open(root / ".disgorge") as ws:
        assert all(
            s == "erased"
            for (s,) in sql(
                ws,
                "SELECT state FROM assets WHERE owner_id = (SELECT id FROM subjects WHERE ref = ?)",
                ws.subject_ref("Ada_Lovelace"),
            )
        )


def test_holds_over_the_api_release_queues_the_follow_up(sws: Workspace, syn: Syn) -> None:
    """Real uvicorn on 127.0.0.1: an officer places a hold, a subject's erasure leaves the
    held photo withheld, the release's follow-up runs as a job."""
    pytest.importorskip("uvicorn")
    from conftest import serve_api

    root = sws.ctx.config.root
    sws.close()
    with serve_api(root) as api:
        body = {"kind": "subject", "name": "Grace_Hopper", "reason": LITIGATION}
        assert api.call("viewer", "POST", "/v1/holds", json=body).status_code == 403
        placed = api.call("privacy_officer", "POST", "/v1/holds", json=body)
        assert placed.status_code == 201, placed.text
        hold = placed.json()
        assert "Grace" not in placed.text and hold["target"].startswith("sub_")
        listed = api.call("auditor", "GET", "/v1/holds?active=true")
        assert [h["id"] for h in listed.json()["items"]] == [hold["id"]]

        # Alan's erasure reaches his group photo, which shows Grace: withheld
        asked = api.call(
            "privacy_officer",
            "POST",
            "/v1/erasures",
            json={"kind": "subject", "id": "Alan_Turing", "reason": REASON},
        )
        assert asked.status_code == 202, asked.text
        request_id = asked.json()["id"]
        done = api.wait("auditor", f"/v1/erasures/{request_id}", ["completed", "failed"])
        assert done["state"] == "completed", done["error"]
        assert done["plan"]["withheld"]["photos"] == 1
        certificate = api.call("auditor", "GET", f"/v1/erasures/{request_id}/certificate").json()
        assert certificate["body"]["withheld"]["holds"][0]["reason"] == LITIGATION

        short = api.call("privacy_officer", "POST", f"/v1/holds/{hold['id']}/release", json={"reason": "x"})
        assert short.status_code == 422
        released = api.call(
            "privacy_officer",
            "POST",
            f"/v1/holds/{hold['id']}/release",
            json={"reason": "the order was lifted"},
        )
        assert released.status_code == 200, released.text
        [follow_up] = released.json()["erasures"]
        assert follow_up["state"] == "approved"
        finished = api.wait("auditor", f"/v1/erasures/{follow_up['id']}", ["completed", "failed"])
        assert finished["state"] == "completed", finished["error"]
        assert finished["plan"]["counts"]["photos"] == 1
    with Workspace.open(root) as ws, pytest.raises(NotFound):
        ws.asset(sha(syn.photos[GROUP]))


def test_a_subject_key_is_not_destroyed_while_a_hold_keeps_their_photos(sws: Workspace, syn: Syn) -> None:
    hold = sws.add_hold("source", "app", reason=LITIGATION)
    with pytest.raises(ErasureBlocked, match="legal hold"):
        sws.destroy_subject_key("Ada_Lovelace")
    assert sws.subject("Ada_Lovelace")["key"] == "active"
    data = next(iter(syn.of("Ada_Lovelace").values()))
    assert sws.read_asset(sha(data)) == data
    sws.release_hold(hold["id"], reason="the inquiry is closed")
    sws.destroy_subject_key("Ada_Lovelace")
    assert sws.subject("Ada_Lovelace")["key"] != "active"


def test_a_case_erasure_tells_the_officer_what_a_hold_withheld(sws: Workspace) -> None:
    root = sws.ctx.config.root
    sws.add_hold("subject", "Edsger_Dijkstra", reason=LITIGATION)
    case = sws.open_case("erasure", "Edsger_Dijkstra", received_at="2026-11-20", channel="email")
    sws.verify_case_identity(case["id"], how="reply from the account e-mail")
    sws.close()
    erased = cli("request", "erase", case["id"][:9], "--reason", REASON, cwd=root)
    assert erased.returncode == 0, erased.stderr
    assert "withheld 3 photo(s): legal hold" in erased.stdout and LITIGATION in erased.stdout


def test_an_access_export_still_gives_the_person_their_withheld_photos(
    sws: Workspace, syn: Syn, tmp_path
) -> None:
    import zipfile

    sws.add_hold("subject", "Edsger_Dijkstra", reason=LITIGATION)
    assert sws.erase("subject", "Edsger_Dijkstra", reason=REASON)["state"] == "completed"
    export = sws.export_subject("Edsger_Dijkstra", tmp_path / "edsger.zip")
    with zipfile.ZipFile(tmp_path / "edsger.zip") as archive:
        copied = {n: archive.read(n) for n in archive.namelist() if n.startswith("photos/")}
    assert sorted(copied.values()) == sorted(syn.of("Edsger_Dijkstra").values())
    assert export["photos"] == 3 and export["photo_files"] == 3
