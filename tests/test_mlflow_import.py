"""MLflow import: registered model versions and their dataset inputs become disgorge lineage.

The MLflow stores are real ones, written in tmp_path by the real mlflow library
(``mlflow.log_input``, the model registry), read back by ``import_mlflow``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

mlflow = pytest.importorskip("mlflow")

from conftest import DISGORGE, tiny_photos  # noqa: E402
from disgorge import InvalidInput, Workspace  # noqa: E402
from disgorge.interop.mlflow import import_mlflow  # noqa: E402

# mlflow's own deprecation notices (SQLAlchemy loader options, dataset sources) while the
# test writes the store; disgorge's import silences them itself
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore:The specified dataset source can be interpreted:UserWarning"),
]


@pytest.fixture(autouse=True)
def _no_store_in_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow falls back to ./mlflow.db when its tracking URI is reset: keep that in tmp."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def lineage_ws(ws: Workspace, tmp_path: Path) -> Workspace:
    """ann and cat consented to training, ben refused: dataset faces@1.0.0 holds ann and cat."""
    ws.add_policy("app", "2013", text=b"p", effective_from="2013-01-01", allows=["ai_training"])
    folder = tiny_photos(tmp_path / "photos", ["ann", "ben", "cat"], 2)
    ws.ingest(folder, source="app", subject_from="dirname", at="2013-02-01")
    consent = tmp_path / "consent.csv"
    consent.write_text("subject,purpose,decision,at\nben,ai_training,denied,2013-01-05\n")
    ws.import_consent(consent)
    ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
    return ws


def _root_from_catalog(ws: Workspace) -> str:
    from disgorge.catalog.models import DatasetVersion

    with ws.reader() as session:
        return session.query(DatasetVersion.merkle_root).filter_by(name="faces").scalar()


def _log_run(
    client: Any,
    experiment: str,
    name: str,
    inputs: list[tuple[str, str | None, dict[str, str]]],
    *,
    register: list[str] = (),
    tags: dict[str, str] | None = None,
) -> str:
    """One MLflow run with dataset inputs (name, digest, input tags), registering models."""
    with mlflow.start_run(experiment_id=experiment, run_name=name, tags=tags) as run:
        mlflow.log_param("epochs", 3)
        for ds_name, digest, input_tags in inputs:
            ds = mlflow.data.from_numpy(np.zeros((4, 2)), name=ds_name, digest=digest, source="/data/x")
            mlflow.log_input(ds, context="training", tags=input_tags)
    for model in register:
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # registered by an earlier run
            client.create_registered_model(model)
        client.create_model_version(model, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return run.info.run_id


def _store(uri: str, root: str) -> dict[str, str]:
    """A store with every case: mapped by tag, by name, by digest; unmapped; refused; no model."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(uri, uri)
    exp = client.create_experiment("faces")
    ids = {
        "tag": _log_run(
            client,
            exp,
            "by-tag",
            [("train-split", None, {"disgorge.dataset": "faces@1.0.0"}), ("imagenet-1k", None, {})],
            register=["face-net", "face-net"],
        ),
        "name": _log_run(client, exp, "by-name", [("faces@1.0.0", None, {})], register=["face-net"]),
        "digest": _log_run(client, exp, "by-digest", [("faces", root[:12], {})], register=["face-small"]),
        "bad_tag": _log_run(
            client, exp, "bad-tag", [("x", None, {"disgorge.dataset": "faces@9.9.9"})], register=["ghost"]
        ),
        "foreign": _log_run(client, exp, "foreign", [("imagenet-1k", None, {})], register=["other"]),
        "refused": _log_run(
            client,
            exp,
            "mining",
            [("faces@1.0.0", None, {})],
            register=["miner"],
            tags={"disgorge.purpose": "data_mining"},
        ),
        "unregistered": _log_run(client, exp, "no-model", [("faces@1.0.0", None, {})]),
    }
    mlflow.set_tracking_uri(None)
    return ids


def test_import_records_model_versions_with_their_dataset_inputs(
    lineage_ws: Workspace, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = _store(uri, _root_from_catalog(lineage_ws))

    result = import_mlflow(lineage_ws.ctx, uri)

    recorded = {tuple(r["outputs"]): r for r in result.recorded}
    assert set(recorded) == {
        ("model:face-net@1", "model:face-net@2"),
        ("model:face-net@3",),
        ("model:face-small@1",),
    }
    assert all(r["inputs"] == ["dataset:faces@1.0.0"] for r in result.recorded)
    assert recorded[("model:face-net@3",)]["mlflow_run"] == ids["name"]
    # the lineage: a consenting subject reaches every imported model; ben reaches none
    ann = lineage_ws.lineage("subject:ann").labels()
    assert {"model:face-net@1", "model:face-net@2", "model:face-net@3", "model:face-small@1"} <= ann
    assert not {label for label in lineage_ws.lineage("subject:ben").labels() if label.startswith("model:")}
    view = lineage_ws.model("face-net@1")
    assert view["type"] == "external" and view["job"] == "mlflow:faces/by-tag"
    # what could not be mapped or recorded is said, with why
    unmapped = {(u["mlflow_run"], u["dataset"]): u["reason"] for u in result.unmapped_inputs}
    assert set(unmapped) == {
        (ids["tag"], "imagenet-1k"),
        (ids["bad_tag"], "x"),
        (ids["foreign"], "imagenet-1k"),
    }
    assert "faces@9.9.9" in unmapped[(ids["bad_tag"], "x")]
    skipped = {s["model"]: s["reason"] for s in result.skipped}
    assert set(skipped) == {"model:ghost@1", "model:other@1", "model:miner@1"}
    assert "not covered" in skipped["model:miner@1"]
    assert result.runs_without_model == [ids["unregistered"]]

    # idempotent: a second import records nothing and says why
    again = import_mlflow(lineage_ws.ctx, uri)
    assert again.recorded == []
    assert sorted(again.already_imported) == [
        "model:face-net@1",
        "model:face-net@2",
        "model:face-net@3",
        "model:face-small@1",
    ]
    assert lineage_ws.lineage("subject:ann").labels() == ann


def test_retiring_an_imported_model_cascades_and_it_cannot_be_unlearned(
    lineage_ws: Workspace, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _store(uri, _root_from_catalog(lineage_ws))
    import_mlflow(lineage_ws.ctx, uri)
    lineage_ws.record_run(
        "package",
        purpose="ai_training",
        inputs=["model:face-small@1"],
        outputs=[{"kind": "export", "name": "b"}],
    )
    with pytest.raises(InvalidInput, match="trained outside disgorge"):
        lineage_ws.unlearn_model("face-small", subjects=["ann"])
    retired = lineage_ws.retire_model("face-small@1", reason="ann asked")["retired"]
    assert set(retired) == {"model:face-small@1", "export:b@1"}


def test_a_new_version_registered_later_is_imported_next_time(lineage_ws: Workspace, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri, uri)
    exp = client.create_experiment("faces")
    run_id = _log_run(client, exp, "r", [("faces@1.0.0", None, {})], register=["m"])
    assert [r["outputs"] for r in import_mlflow(lineage_ws.ctx, uri).recorded] == [["model:m@1"]]
    client.create_model_version("m", source=f"runs:/{run_id}/model2", run_id=run_id)
    mlflow.set_tracking_uri(None)
    second = import_mlflow(lineage_ws.ctx, uri)
    assert [r["outputs"] for r in second.recorded] == [["model:m@2"]]
    assert second.already_imported == ["model:m@1"]


def test_a_name_taken_by_another_model_is_skipped_not_overwritten(
    lineage_ws: Workspace, tmp_path: Path
) -> None:
    lineage_ws.record_run(
        "vendor",
        purpose="ai_training",
        inputs=["dataset:faces@1.0.0"],
        outputs=[{"kind": "model", "name": "m"}],
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri, uri)
    _log_run(client, client.create_experiment("e"), "r", [("faces@1.0.0", None, {})], register=["m"])
    mlflow.set_tracking_uri(None)
    result = import_mlflow(lineage_ws.ctx, uri)
    assert result.recorded == []
    assert result.skipped == [
        {"model": "model:m@1", "reason": "model:m@1 already exists in disgorge, not from this run"}
    ]


def test_a_file_store_imports_too(
    lineage_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 writes one only when told
    store = tmp_path / "mlruns"
    uri = store.as_uri()
    _store(uri, _root_from_catalog(lineage_ws))
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    result = import_mlflow(lineage_ws.ctx, str(store))  # a plain path is a file store
    assert len(result.recorded) == 3
    assert import_mlflow(lineage_ws.ctx, uri).recorded == []


def test_only_local_existing_stores_are_read(lineage_ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="never a tracking server"):
        import_mlflow(lineage_ws.ctx, "http://127.0.0.1:5000")
    missing = tmp_path / "nope.db"
    with pytest.raises(InvalidInput, match="does not exist"):
        import_mlflow(lineage_ws.ctx, f"sqlite:///{missing}")
    assert not missing.exists()  # and nothing was created there


def test_cli_import_mlflow(lineage_ws: Workspace, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _store(uri, _root_from_catalog(lineage_ws))
    folder = str(tmp_path / "ws")
    lineage_ws.close()
    cmd = [DISGORGE, "model", "import-mlflow", uri, "--workspace", folder]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["recorded"]) == 3 and len(data["unmapped_inputs"]) == 3
    wide = {**os.environ, "COLUMNS": "300"}  # one message a line, unwrapped
    text = subprocess.run(cmd, capture_output=True, text=True, check=False, env=wide)
    assert text.returncode == 0, text.stderr
    assert (
        "already imported: model:face-net@1, model:face-net@2, model:face-net@3, model:face-small@1"
        in text.stdout
    )
    assert "skipped model:miner@1" in text.stdout
    bad = subprocess.run(
        [DISGORGE, "model", "import-mlflow", "https://example.invalid", "--workspace", folder],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and "never a tracking server" in bad.stderr
    assert "Traceback" not in bad.stderr
