"""OpenLineage run events: real workspaces, real transports, checked against the spec's schemas.

The JSON Schemas of the OpenLineage spec (and the facets disgorge uses) are shipped in
tests/schemas/openlineage (Apache-2.0, see its LICENSE); disgorge's own facet schema ships
in the package. They are loaded into a ``referencing`` registry by their ``$id``, so no
schema is ever fetched.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
from referencing.jsonschema import DRAFT202012

import disgorge.interop.openlineage as ol_module
from conftest import PEOPLE, sha, smoke_workspace
from disgorge import DisgorgeError, InvalidInput, Workspace, WorkspaceError
from disgorge.config import Config
from disgorge.interop import PRODUCER
from disgorge.interop.openlineage import OpenLineageEmitter
from disgorge.samples import synthetic_photo

SCHEMAS = Path(__file__).parent / "schemas" / "openlineage"
PACKAGE_SCHEMAS = Path(ol_module.__file__).parent / "schemas"
OPENLINEAGE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"


def _registry() -> referencing.Registry:
    files = [SCHEMAS / "OpenLineage.json", *sorted((SCHEMAS / "facets").glob("*.json"))]
    files += sorted(PACKAGE_SCHEMAS.glob("*.json"))
    resources = []
    for path in files:
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((schema["$id"], DRAFT202012.create_resource(schema)))
    return referencing.Registry().with_resources(resources)


REGISTRY = _registry()
Validator = jsonschema.Draft202012Validator


def _validate(instance: Any, ref: str) -> None:
    Validator({"$ref": ref}, registry=REGISTRY, format_checker=Validator.FORMAT_CHECKER).validate(instance)


def validate_event(event: dict[str, Any]) -> None:
    """The event against the spec (as any OpenLineage event, and as a RunEvent), and every facet
    against the schema its ``_schemaURL`` names: all of them must be in the registry."""
    _validate(event, OPENLINEAGE)
    _validate(event, f"{OPENLINEAGE}#/$defs/RunEvent")
    assert event["schemaURL"] == f"{OPENLINEAGE}#/$defs/RunEvent"
    facets = [*event["run"].get("facets", {}).values(), *event["job"].get("facets", {}).values()]
    for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
        facets += dataset.get("facets", {}).values()
    assert facets
    for facet in facets:
        assert facet["_producer"] == PRODUCER
        _validate(facet, facet["_schemaURL"])


@pytest.fixture
def lfw(tmp_path: Path) -> Iterator[Workspace]:
    """The smoke flow's workspace: source lfw, a policy, 3 people x 2 photos, one denial."""
    ws = smoke_workspace(tmp_path)
    yield ws
    ws.close()


def _file_transport(ws: Workspace) -> Path:
    ws.config.openlineage_transport = "file"
    ws.config.save()
    return ws.config.resolved_openlineage_path()


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _secrets(ws: Workspace, root: Path) -> list[str]:
    """What must never appear in an event: external ids, subject refs, photo hashes."""
    refs = [ws.subject_ref(name) for name in PEOPLE]
    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "photos").rglob("*.jpg")]
    assert len(shas) == 6 and all(r.startswith("sub_") for r in refs)
    return [*PEOPLE, *refs, "sub_", *shas, *(s[:12] for s in shas)]


def test_file_transport_start_complete_fail_all_valid(lfw: Workspace, tmp_path: Path) -> None:
    path = _file_transport(lfw)
    ws = Workspace.open(lfw.root, actor="tester")  # reopened: the setting comes from config.toml
    try:
        build = ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
        assert build.created and build.excluded == 2
        with ws.run("train", purpose="ai_training", inputs=[build], at="2014-02-01") as run:
            model = run.add_output("model", name="face-id")
        with (
            pytest.raises(RuntimeError, match="boom"),
            ws.run("train-broken", purpose="ai_training", inputs=[build], at="2014-03-01") as failing,
        ):
            raise RuntimeError("boom")
        recorded = ws.record_run(
            "external-eval",
            purpose="ai_training",
            inputs=[model],
            outputs=[{"kind": "report", "name": "eval"}],
            at="2014-04-01",
        )
        namespace = f"disgorge://{ws.workspace_id}"
        secrets = _secrets(ws, tmp_path)
    finally:
        ws.close()

    events = _events(path)
    for event in events:
        validate_event(event)
    summary = [(e["eventType"], e["job"]["name"]) for e in events]
    assert summary == [
        ("COMPLETE", "dataset.build:faces"),
        ("START", "train"),
        ("COMPLETE", "train"),
        ("START", "train-broken"),
        ("FAIL", "train-broken"),
        ("START", "external-eval"),
        ("COMPLETE", "external-eval"),
    ]
    build_event, start, complete, fail_start, fail, ext_start, ext_complete = events

    # the build: a new dataset version as output, a job of type DATASET_BUILD
    assert [o["name"] for o in build_event["outputs"]] == ["dataset:faces@1.0.0"]
    assert build_event["outputs"][0]["facets"]["version"]["datasetVersion"] == "1.0.0"
    assert build_event["job"]["facets"]["jobType"]["jobType"] == "DATASET_BUILD"
    assert build_event["eventTime"] == "2014-01-01T00:00:00Z"

    # a successful run: START then COMPLETE, same run id (our 32-hex id as a UUID)
    assert start["run"]["runId"] == complete["run"]["runId"] == str(uuid.UUID(hex=run.id))
    assert [i["name"] for i in start["inputs"]] == ["dataset:faces@1.0.0"]
    assert start["outputs"] == []
    assert [o["name"] for o in complete["outputs"]] == [model] == ["model:face-id@1"]
    assert start["run"]["facets"]["disgorge_purpose"]["purpose"] == "ai_training"
    assert start["job"]["namespace"] == namespace
    assert {d["namespace"] for d in [*start["inputs"], *complete["outputs"]]} == {namespace}
    assert start["eventTime"] == "2014-02-01T00:00:00Z"

    # a run whose body raised: START then FAIL
    assert fail_start["run"]["runId"] == fail["run"]["runId"] == str(uuid.UUID(hex=failing.id))
    assert fail["outputs"] == []

    # a recorded run: its input is the model, its output the report
    assert ext_start["run"]["runId"] == str(uuid.UUID(hex=recorded["run"]))
    assert [i["name"] for i in ext_complete["inputs"]] == ["model:face-id@1"]
    assert [o["name"] for o in ext_complete["outputs"]] == ["report:eval@1"]

    # dataset-level names only: no subject, external id or photo anywhere in the file
    text = path.read_text(encoding="utf-8")
    for secret in secrets:
        assert secret not in text, secret
    names = {d["name"] for e in events for d in [*e["inputs"], *e["outputs"]]}
    assert all(n.split(":")[0] in ("dataset", "source", "model", "report") for n in names)


def test_photo_inputs_are_named_by_their_source(lfw: Workspace, tmp_path: Path) -> None:
    path = _file_transport(lfw)
    sha = lfw.dataset(lfw.build_dataset("faces", purpose="ai_training", at="2014-01-01").name, members=True)[
        "member_sha256"
    ][0]
    with lfw.run("crop", purpose="ai_training", inputs=[f"asset:{sha}"], at="2014-02-01") as run:
        run.add_output("crop", name="crop-1")
    start, complete = _events(path)[1:]
    for event in (start, complete):
        validate_event(event)
        assert [i["name"] for i in event["inputs"]] == ["source:lfw"]
    assert sha not in path.read_text(encoding="utf-8")


def test_default_transport_none_writes_nothing(lfw: Workspace) -> None:
    assert lfw.config.openlineage_transport == "none"
    build = lfw.build_dataset("faces", purpose="ai_training", at="2014-01-01")
    with lfw.run("train", purpose="ai_training", inputs=[build], at="2014-02-01") as run:
        run.add_output("model", name="face-id")
    assert not lfw.config.resolved_openlineage_path().exists()
    assert not list(lfw.config.home.glob("openlineage*"))
    emitter = OpenLineageEmitter.from_config(lfw.config, "disgorge://x")
    assert (
        emitter.emit(
            "START",
            run_id=uuid.uuid4().hex,
            job="j",
            purpose="ai_training",
            event_time=build_time(),
            inputs=[],
            outputs=[],
        )
        == {}
    )


def build_time():
    from disgorge._time import parse_instant

    return parse_instant("2014-01-01")


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    server.status = 201  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_http_transport_posts_every_event(lfw: Workspace, receiver: http.server.HTTPServer) -> None:
    host, port = receiver.server_address[:2]
    lfw.config.openlineage_transport = "http"
    lfw.config.openlineage_url = f"http://{host}:{port}"
    build = lfw.build_dataset("faces", purpose="ai_training", at="2014-01-01")
    with lfw.run("train", purpose="ai_training", inputs=[build], at="2014-02-01") as run:
        run.add_output("model", name="face-id")
    received = receiver.received  # type: ignore[attr-defined]
    assert [path for path, _ in received] == ["/api/v1/lineage"] * 3
    assert [(e["eventType"], e["job"]["name"]) for _, e in received] == [
        ("COMPLETE", "dataset.build:faces"),
        ("START", "train"),
        ("COMPLETE", "train"),
    ]
    for _, event in received:
        validate_event(event)
    assert not lfw.config.resolved_openlineage_path().exists()


def test_http_url_with_a_path_is_the_endpoint(tmp_path: Path, receiver: http.server.HTTPServer) -> None:
    host, port = receiver.server_address[:2]
    config = Config(home=tmp_path, openlineage_transport="http", openlineage_url=f"http://{host}:{port}/ol")
    emitter = OpenLineageEmitter.from_config(config, "disgorge://x")
    sent = emitter.emit(
        "START",
        run_id=uuid.uuid4().hex,
        job="j",
        purpose="ai_training",
        event_time=build_time(),
        inputs=["dataset:faces@1.0.0"],
        outputs=[],
    )
    emitter.close()
    assert receiver.received == [("/ol", sent)]  # type: ignore[attr-defined]
    validate_event(sent)


def test_http_failure_is_a_disgorge_error(
    tmp_path: Path, receiver: http.server.HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = receiver.server_address[:2]
    receiver.shutdown()
    receiver.server_close()  # nothing listens there any more
    monkeypatch.setattr(ol_module, "_HTTP_RETRY", {"total": 0})  # fail at once, no backoff
    config = Config(home=tmp_path, openlineage_transport="http", openlineage_url=f"http://{host}:{port}")
    emitter = OpenLineageEmitter.from_config(config, "disgorge://x")
    with pytest.raises(DisgorgeError, match="could not send the START event"):
        emitter.emit(
            "START",
            run_id=uuid.uuid4().hex,
            job="j",
            purpose="ai_training",
            event_time=build_time(),
            inputs=[],
            outputs=[],
        )


def test_http_refusal_is_a_disgorge_error(tmp_path: Path, receiver: http.server.HTTPServer) -> None:
    host, port = receiver.server_address[:2]
    receiver.status = 400  # type: ignore[attr-defined]
    config = Config(home=tmp_path, openlineage_transport="http", openlineage_url=f"http://{host}:{port}")
    emitter = OpenLineageEmitter.from_config(config, "disgorge://x")
    with pytest.raises(DisgorgeError, match=r"could not send the COMPLETE event of job 'j' to http.*400"):
        emitter.emit(
            "COMPLETE",
            run_id=uuid.uuid4().hex,
            job="j",
            purpose="ai_training",
            event_time=build_time(),
            inputs=[],
            outputs=[],
        )
    emitter.close()
    assert len(receiver.received) == 1  # type: ignore[attr-defined]  (a 4xx is not retried)


def test_console_transport_writes_json_lines_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Config(home=tmp_path, openlineage_transport="console")
    sent = OpenLineageEmitter.from_config(config, "disgorge://x").emit(
        "COMPLETE",
        run_id=uuid.uuid4().hex,
        job="j",
        purpose="data_mining",
        event_time=build_time(),
        inputs=["source:lfw"],
        outputs=["report:r@1"],
    )
    out, err = capsys.readouterr()
    assert out == ""
    assert [json.loads(line) for line in err.splitlines()] == [sent]
    validate_event(sent)


def test_emitter_refuses_personal_names_and_bad_settings(tmp_path: Path) -> None:
    config = Config(home=tmp_path, openlineage_transport="file")
    emitter = OpenLineageEmitter.from_config(config, "disgorge://x")
    for name in ("subject:sub_0123", "asset:" + "a" * 64):
        with pytest.raises(InvalidInput, match="never a"):
            emitter.emit(
                "START",
                run_id=uuid.uuid4().hex,
                job="j",
                purpose="ai_training",
                event_time=build_time(),
                inputs=[name],
                outputs=[],
            )
    assert not config.resolved_openlineage_path().exists()
    with pytest.raises(WorkspaceError, match="unknown OpenLineage transport"):
        OpenLineageEmitter.from_config(Config(home=tmp_path, openlineage_transport="kafka"), "n")
    with pytest.raises(WorkspaceError, match="needs \\[openlineage\\] url"):
        OpenLineageEmitter.from_config(Config(home=tmp_path, openlineage_transport="http"), "n")


def test_missing_client_package_says_how_to_install(lfw: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    for name in [m for m in sys.modules if m == "openlineage" or m.startswith("openlineage.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if the package were not installed
    monkeypatch.delitem(sys.modules, "disgorge.interop._ol_model")
    lfw.config.openlineage_transport = "file"
    with pytest.raises(DisgorgeError, match=r"pip install 'disgorge\[lineage\]'"):
        lfw.build_dataset("faces", purpose="ai_training", at="2014-01-01")


def test_undelivered_event_does_not_fail_the_run_and_is_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog is the record; a lineage server that is down must not lose or fail the run."""
    import socket

    from disgorge import Workspace

    monkeypatch.setattr(ol_module, "_HTTP_RETRY", {"total": 0})
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with Workspace.init(tmp_path / "ws") as ws:
        ws.add_source("app")
        ws.add_policy("app", "1", text=b"p", effective_from="2013-01-01", allows=["ai_training"])
        (tmp_path / "p" / "ann").mkdir(parents=True)
        (tmp_path / "p" / "ann" / "1.jpg").write_bytes(synthetic_photo(1, 1, size=48))
        ws.ingest(tmp_path / "p", source="app", subject_from="dirname")
        ws.config.openlineage_transport = "http"
        ws.config.openlineage_url = f"http://127.0.0.1:{dead}"
        with ws.run(
            "train", purpose="ai_training", inputs=["asset:" + sha(synthetic_photo(1, 1, size=48))]
        ) as run:
            run.add_output("model", name="m")
        undelivered = ws.audit_events(action="openlineage.undelivered")
        assert [e["payload"]["event"] for e in undelivered] == ["START", "COMPLETE"]
        assert ws.lineage("model:m@1", direction="upstream").assets["count"] == 1
