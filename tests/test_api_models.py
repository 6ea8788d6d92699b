"""The REST API's datasets, runs, models, analysis and jobs, on a real server.

A copy of the synthetic workspace (four people, faces analysed, the dataset ``faces``, the
SISA model ``faceid`` and the external model ``vendor``) is served by uvicorn on loopback;
every call goes over HTTP with a role's bearer token. Long work answers ``202`` with a job,
polled until it ends (bounded). A job a stop cut off is handled by kind when the next
server starts: training fails with a message (it is not run twice), analysis runs again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SYN_PEOPLE, Api, Syn, serve_api, sha
from disgorge import Workspace, jobs

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api(syn: Syn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api-models") / "ws"
    shutil.copytree(syn.template, root)
    with serve_api(root) as served:
        yield served


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    detail: str = response.json()["detail"]
    return detail


def wait_for(api: Api, job: dict[str, Any], who: str = "viewer", limit_s: float = 120) -> dict[str, Any]:
    """Poll the job until it ends (any role holding job:read may)."""
    view = api.wait(who, f"/v1/jobs/{job['id']}", ("succeeded", "failed"), limit_s)
    assert view["state"] in ("succeeded", "failed"), (
        f"job {job['id']} still {view['state']} after {limit_s} s"
    )
    return view


def test_an_ml_engineer_builds_a_dataset_trains_a_model_and_finds_it(api: Api) -> None:
    built = ok(
        api.call("ml_engineer", "POST", "/v1/datasets", json={"name": "api-faces", "purpose": "ai_training"}),
        201,
    )
    assert built["created"] and built["version"] == "1.0.0" and built["members"] == 13 and built["run"]
    again = ok(
        api.call("ml_engineer", "POST", "/v1/datasets", json={"name": "api-faces", "purpose": "ai_training"})
    )
    assert not again["created"] and again["version"] == "1.0.0"  # same members: 200, nothing new

    # subjects are named in the body; the version keeps only how many
    two = SYN_PEOPLE[:2]
    smaller = api.call(
        "ml_engineer",
        "POST",
        "/v1/datasets",
        json={"name": "api-faces", "purpose": "ai_training", "subjects": two},
    )
    assert ok(smaller, 201)["version"] == "2.0.0"  # items dropped: a MAJOR version
    assert not any(person in smaller.text for person in two)
    shown = ok(
        api.call("viewer", "GET", "/v1/datasets/api-faces", params={"version": "2.0.0", "members": True})
    )
    assert shown["selector"] == {"subjects": 2} and shown["versions"] == ["1.0.0", "2.0.0"]
    assert len(shown["member_sha256"]) == shown["members"] == 7  # 3 + 3, and the group photo Alan owns
    diff = ok(api.call("viewer", "GET", "/v1/datasets/api-faces/diff", params={"from": "1.0.0"}))
    assert (diff["from"], diff["to"]) == ("api-faces@1.0.0", "api-faces@2.0.0")
    assert len(diff["removed"]) == 6 and not diff["added"] and diff["unchanged"] == 7
    listed = ok(api.call("viewer", "GET", "/v1/datasets"))
    assert {d["name"]: d["version"] for d in listed["items"]}.items() >= {
        ("faces", "1.0.0"),
        ("api-faces", "2.0.0"),
    }
    doc = ok(api.call("viewer", "GET", "/v1/datasets/api-faces/croissant", params={"version": "1.0.0"}))
    assert doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    assert doc["disgorge:consentCoverage"]["disgorge:members"] == 13
    problem(api.call("viewer", "GET", "/v1/datasets/api-faces", params={"version": "9.9.9"}), 404)

    queued = ok(
        api.call(
            "ml_engineer",
            "POST",
            "/v1/models",
            json={"name": "api-model", "dataset": "api-faces@1.0.0", "shards": 2, "slices": 1},
        ),
        202,
    )
    assert queued["kind"] == "train" and queued["state"] in ("queued", "running", "succeeded")
    assert queued["params"]["dataset"] == "api-faces@1.0.0"
    # a dataset that does not exist is a 404 now, not a failed job later
    unknown = {"name": "api-model", "dataset": "nope"}
    assert "no dataset named 'nope'" in problem(
        api.call("ml_engineer", "POST", "/v1/models", json=unknown), 404
    )
    done = wait_for(api, queued)
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["model"] == "model:api-model@1" and done["result"]["subjects"] == 4
    assert (done["done"], done["total"]) == (1, 1)

    models = ok(api.call("viewer", "GET", "/v1/models", params={"name": "api-model"}))
    assert [(m["version"], m["state"], m["dataset"]) for m in models["items"]] == [
        ("1", "active", "api-faces@1.0.0")
    ]
    model = ok(api.call("viewer", "GET", "/v1/models/api-model@1"))
    assert (model["shards"], model["slices"], model["samples"]) == (2, 1, done["result"]["samples"])
    # the training ran as the principal who asked: its run names them
    [run] = ok(api.call("viewer", "GET", "/v1/runs", params={"job": "train:api-model"}))["items"]
    assert run["actor"] == "ml-1" and run["state"] == "completed" and run["outputs"] == 1
    assert ok(api.call("viewer", "GET", f"/v1/runs/{run['id']}"))["input_nodes"] == [
        "dataset:api-faces@1.0.0"
    ]


def test_a_build_consent_refuses_is_a_403_problem_and_builds_nothing(api: Api) -> None:
    # the source's policy does not allow ai_inference: no photo is covered
    refused = api.call(
        "ml_engineer", "POST", "/v1/datasets", json={"name": "matching", "purpose": "ai_inference"}
    )
    detail = problem(refused, 403)
    assert refused.json()["type"] == "urn:disgorge:problem:consent-denied"
    assert "none of the 13 selected photos may be used for ai_inference" in detail
    assert "policy_disallows: 13" in detail and "no version built" in detail
    assert not any(person in refused.text for person in SYN_PEOPLE)
    problem(api.call("viewer", "GET", "/v1/datasets/matching"), 404)
    # an unknown purpose never reaches the gate
    problem(api.call("ml_engineer", "POST", "/v1/datasets", json={"name": "x", "purpose": "selling"}), 422)


def test_roles_without_model_write_cannot_start_work(api: Api) -> None:
    before = ok(api.call("viewer", "GET", "/v1/jobs"))["total"]
    body = {"name": "sneaky", "dataset": "faces@1.0.0", "shards": 2, "slices": 1}
    assert "model:write" in problem(api.call("viewer", "POST", "/v1/models", json=body), 403)
    problem(api.call("auditor", "POST", "/v1/models", json=body), 403)
    problem(api.call("viewer", "POST", "/v1/analysis", json={}), 403)
    problem(api.call("viewer", "POST", "/v1/models/faceid/retire", json={"reason": "no"}), 403)
    problem(api.call("viewer", "POST", "/v1/datasets", json={"name": "d", "purpose": "ai_training"}), 403)
    problem(api.call("auditor", "POST", "/v1/models/faceid/audit", json={"forgotten": ["sub_x"]}), 403)
    assert ok(api.call("viewer", "GET", "/v1/jobs"))["total"] == before  # nothing was queued
    problem(api.call(None, "GET", "/v1/jobs"), 401)


def test_an_analysis_job_reports_its_progress_and_result(api: Api, syn: Syn) -> None:
    shas = sorted(sha(d) for d in syn.of("Grace_Hopper").values())
    queued = ok(
        api.call("ml_engineer", "POST", "/v1/analysis", json={"shas": shas, "force": True, "workers": 1}), 202
    )
    assert queued["kind"] == "analysis" and queued["params"]["shas"] == shas
    done = wait_for(api, queued)
    assert done["state"] == "succeeded", done["error"]
    assert (done["done"], done["total"]) == (3, 3)
    assert (
        done["result"]["photos"] == done["result"]["analyzed"] == 3 and done["result"]["embedded_faces"] >= 3
    )
    assert "resumed_after_crash" not in done["result"]
    listed = ok(api.call("viewer", "GET", "/v1/jobs", params={"state": "succeeded", "kind": "analysis"}))
    assert queued["id"] in [j["id"] for j in listed["items"]]
    problem(api.call("viewer", "GET", "/v1/jobs/no-such-job"), 404)
    problem(api.call("viewer", "GET", "/v1/jobs", params={"state": "lost"}), 422)


def test_runs_are_recorded_through_the_gate(api: Api) -> None:
    body = {
        "job": "eval-faces",
        "purpose": "ai_training",
        "inputs": ["faces@1.0.0"],
        "outputs": [{"kind": "report", "name": "eval"}],
        "parameters": {"split": "test"},
    }
    recorded = ok(api.call("ml_engineer", "POST", "/v1/runs", json=body), 201)
    assert recorded["outputs"] == ["report:eval@1"] and recorded["consent"]["not_covered"] == 0
    run = ok(api.call("viewer", "GET", f"/v1/runs/{recorded['run']}"))
    assert run["external"] and run["actor"] == "ml-1" and run["parameters"] == {"split": "test"}
    assert (run["input_nodes"], run["output_nodes"]) == (["dataset:faces@1.0.0"], ["report:eval@1"])
    # photos not covered for the purpose: refused; an ML engineer cannot override the gate
    inference = {**body, "purpose": "ai_inference", "outputs": [{"kind": "report", "name": "eval-2"}]}
    assert "not covered" in problem(api.call("ml_engineer", "POST", "/v1/runs", json=inference), 403)
    override = {"role": "privacy_officer", "justification": "a documented legal basis"}
    detail = problem(
        api.call("ml_engineer", "POST", "/v1/runs", json={**inference, "override": override}), 403
    )
    assert "admin" in detail
    assert ok(api.call("viewer", "GET", "/v1/runs", params={"job": "eval-faces"}))["total"] == 1
    problem(api.call("viewer", "GET", "/v1/runs/0123456789abcdef"), 404)


def test_unlearning_is_a_job_and_the_audit_shows_the_model_forgot(api: Api) -> None:
    ada = SYN_PEOPLE[0]
    queued = ok(api.call("ml_engineer", "POST", "/v1/models/faceid/unlearn", json={"subjects": [ada]}), 202)
    assert ada not in json.dumps(queued)  # the job keeps the sub_ ref only
    assert queued["params"]["subjects"][0].startswith("sub_")
    done = wait_for(api, queued)
    assert done["state"] == "succeeded", done["error"]
    assert done["result"]["model"] == "model:faceid@2" and done["result"]["forgotten"] == 3
    model = ok(api.call("viewer", "GET", "/v1/models/faceid"))
    assert model["version"] == "2" and model["unlearned_from"] == "1"
    assert [v["state"] for v in model["versions"]] == ["retired", "active"]
    # the old version cannot be unlearned again
    assert "retired" in problem(
        api.call("ml_engineer", "POST", "/v1/models/faceid@1/unlearn", json={"subjects": [ada]}), 422
    )

    audit = ok(api.call("privacy_officer", "POST", "/v1/models/faceid/audit", json={"forgotten": [ada]}))
    assert audit["model"] == "model:faceid@2" and audit["still_trained_on_them"] == 0
    assert audit["forgotten_exactly"] is True
    assert ada not in json.dumps(audit)

    retired = ok(
        api.call("ml_engineer", "POST", "/v1/models/vendor/retire", json={"reason": "vendor contract ended"})
    )
    assert retired["retired"] == ["model:vendor@1"]
    assert "already retired" in problem(
        api.call("ml_engineer", "POST", "/v1/models/vendor/retire", json={"reason": "again"}), 422
    )
    assert (
        ok(api.call("viewer", "GET", "/v1/models", params={"state": "retired", "name": "vendor"}))["total"]
        == 1
    )


def test_a_job_cut_off_by_a_stop_is_handled_by_kind_when_the_next_server_starts(
    syn: Syn, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(syn.template, root)
    one = sha(syn.of("Ada_Lovelace")["Ada_Lovelace_0.jpg"])
    with Workspace.open(root, actor="tester") as ws:
        # as a server that died mid-job leaves them: claimed (running), never finished
        train = jobs.submit(
            ws.ctx, "train", {"name": "crashed", "dataset": "faces@1.0.0", "shards": 2, "slices": 1}
        )
        analysis = jobs.submit(ws.ctx, "analysis", {"shas": [one], "force": True, "workers": 1})
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        )
        for _ in range(2):  # claimed by a process that has exited since, as a SIGKILL leaves it
            assert jobs.claim_next(ws.ctx, f"{dead.stdout.strip()}@{socket.gethostname()[:30]}:x") is not None
        # and one another live server is running right now: left alone
        busy = jobs.submit(ws.ctx, "analysis", {"shas": [one], "workers": 1})
        assert jobs.claim_next(ws.ctx, f"{os.getppid()}@{socket.gethostname()[:30]}:y") is not None
        assert {j["state"] for j in ws.jobs()} == {"running"}
    with serve_api(root) as api:
        failed = wait_for(api, train)
        assert failed["state"] == "failed" and "server stopped" in (failed["error"] or "")
        again = wait_for(api, analysis)
        assert again["state"] == "succeeded", again["error"]
        assert again["result"]["resumed_after_crash"] is True and again["result"]["analyzed"] == 1
        # training is not run twice behind the caller's back: no model was made
        problem(api.call("viewer", "GET", "/v1/models/crashed"), 404)
        assert api.call("viewer", "GET", f"/v1/jobs/{busy['id']}").json()["state"] == "running"
