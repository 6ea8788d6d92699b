"""Issue #17, Dask: ``analyze --cluster`` and ``train --cluster`` give what a local run gives.

A real ``LocalCluster`` (two worker processes, one thread each) bound to 127.0.0.1 only,
real LFW photos (``../shared/data/faces/lfw10x10``; skipped, saying why, when absent),
real dlib, real workspaces. Analysis is compared photo by photo (by sha256) between a
workspace analysed here and one analysed on the cluster: face counts, face boxes and
landmarks, embeddings, crops and PDQ hashes, byte for byte. Training and unlearning are
compared in one workspace (the items' ids are the same there): the opened checkpoint
bytes, key by key, and the manifests. Skipped when dask.distributed is not installed,
unless ``DISGORGE_REQUIRE_DASK`` is set (then it fails).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from conftest import add_source_with_policy, cli, import_consent_csv, shared_faces_dir
from disgorge import Workspace
from disgorge.catalog.models import Asset, AssetDerivative, AuditEvent, Run, Subject
from disgorge.cluster import ClusterError, connect
from disgorge.training.lifecycle import checkpoints
from disgorge.training.registry import find_model
from disgorge.vision.phash import phash_context

try:
    import psutil  # a dependency of distributed
    from distributed import Client, LocalCluster
except ImportError:  # pragma: no cover - the dev extra installs it
    if os.environ.get("DISGORGE_REQUIRE_DASK"):
        raise
    pytest.skip(
        "dask.distributed is not installed (pip install 'disgorge[dask]'); set DISGORGE_REQUIRE_DASK to fail",
        allow_module_level=True,
    )

#: four people granted biometric processing; the fifth did not (and refused training)
GRANTED = ["Ariel_Sharon", "Colin_Powell", "George_W_Bush", "Tony_Blair"]
REFUSED = "Gerhard_Schroeder"
PER_PERSON = 5
AT = {"init": "2013-01-01", "ingest": "2013-02-01", "consent": "2013-03-01", "analyze": "2014-01-01"}


#: no dashboard; the scheduler's small HTTP server (health, metrics), which dask starts
#: anyway, on a free loopback port rather than on 8787 (taken by the first cluster)
NO_DASHBOARD: dict[str, Any] = {
    "dashboard_address": None,
    "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
}


def http_hosts(lc: LocalCluster) -> set[str]:
    """The hosts the scheduler's HTTP server listens on."""
    sockets = lc.scheduler.http_server._sockets.values()  # tornado's listening sockets
    return {sock.getsockname()[0] for sock in sockets}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A LocalCluster on loopback only; yields its scheduler's address."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", **NO_DASHBOARD
    ) as lc:
        with Client(lc, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            workers = list(client.scheduler_info()["workers"])
        assert lc.scheduler_address.startswith("tcp://127.0.0.1:")
        assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers), workers
        assert http_hosts(lc) == {"127.0.0.1"}
        # and the worker processes listen on loopback only
        children = psutil.Process().children(recursive=True)
        listening = {
            c.laddr.ip
            for p in children
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {"127.0.0.1"}, listening
        yield lc.scheduler_address


def finished(address: str, prefix: str) -> int:
    """How many tasks named ``prefix-...`` (dask drops a leading ``_``) the scheduler has run: proof
    that the work really went to the cluster."""
    with Client(address, set_as_default=False) as client:
        counts = client.run_on_scheduler(
            lambda dask_scheduler: {k: dict(v.state_counts) for k, v in dask_scheduler.task_prefixes.items()}
        )
    return int(counts.get(prefix, {}).get("memory", 0))


@dataclass
class Pair:
    local: Path  # analysed here (a process pool of 2)
    dask: Path  # analysed on the cluster
    local_report: dict[str, Any]
    dask_report: dict[str, Any]


def _workspace(root: Path, photos: Path) -> Workspace:
    ws = Workspace.init(root, actor="tester", at=AT["init"])
    add_source_with_policy(ws, "lfw", at=AT["init"])
    ws.ingest(photos, source="lfw", subject_from="dirname", at=AT["ingest"], workers=1)
    rows = [f"{n},biometric_processing,granted,{AT['consent']}" for n in GRANTED]
    rows.append(f"{REFUSED},ai_training,denied,{AT['consent']}")
    import_consent_csv(ws, root.parent / f"{root.name}-consent.csv", rows, at=AT["consent"])
    return ws


@pytest.fixture(scope="module")
def pair(cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    source = shared_faces_dir("lfw10x10")
    root = tmp_path_factory.mktemp("dask")
    photos = root / "photos"
    for person in [*GRANTED, REFUSED]:
        (photos / person).mkdir(parents=True)
        for p in sorted((source / person).iterdir())[:PER_PERSON]:
            shutil.copy(p, photos / person / p.name)
    reports = {}
    assert finished(cluster, "analyze_many") == 0
    for name in ("local", "dask"):
        with _workspace(root / name, photos) as ws:
            on = cluster if name == "dask" else None
            reports[name] = ws.analyze(workers=2, at=AT["analyze"], cluster=on).to_dict()
    # 25 photos in batches of 16: two tasks on the cluster
    assert finished(cluster, "analyze_many") == 2
    return Pair(root / "local", root / "dask", reports["local"], reports["dask"])


def _derived(ws: Workspace) -> dict[tuple[str, str, int], bytes]:
    """(photo sha256, kind, index) -> the opened value of every derivative (crops: the blob)."""
    out: dict[tuple[str, str, int], bytes] = {}
    with ws.reader() as s:
        rows = s.execute(
            select(AssetDerivative, Asset.sha256, Asset.owner_id).join(
                Asset, Asset.id == AssetDerivative.asset_id
            )
        ).all()
        for d, sha, owner_id in rows:
            owner = s.get_one(Subject, owner_id)
            a = d.asset_id
            if d.kind == "phash":
                value = ws.vault.open(owner, d.value_enc, phash_context(a, d.face_index))
            elif d.kind == "face":
                value = ws.vault.open(owner, d.value_enc, f"face:{a}:{d.face_index}")
            elif d.kind == "embedding":
                value = ws.vault.open(owner, d.value_enc, f"embedding:{a}:{d.id}")
            else:
                value = ws.vault.open(owner, ws.vault.store.get(d.blob_key), f"crop:{a}:{d.face_index}")
            assert (sha, d.kind, d.face_index) not in out
            out[(sha, d.kind, d.face_index)] = value
    return out


def _photos(ws: Workspace) -> dict[str, tuple[int | None, int | None]]:
    with ws.reader() as s:
        return {
            r.sha256: (r.faces, r.biometric)
            for r in s.execute(select(Asset.sha256, Asset.faces, Asset.biometric))
        }


def test_analysis_on_the_cluster_is_the_local_one_byte_for_byte(pair: Pair) -> None:
    counts = ("photos", "analyzed", "with_faces", "faces", "embedded_faces", "detection_only_photos")
    assert {k: pair.dask_report[k] for k in counts} == {k: pair.local_report[k] for k in counts}
    assert pair.local_report["analyzed"] == 5 * PER_PERSON and pair.local_report["errors"] == []
    with Workspace.open(pair.local, actor="tester") as a, Workspace.open(pair.dask, actor="tester") as b:
        assert _photos(a) == _photos(b)
        local, remote = _derived(a), _derived(b)
    assert local.keys() == remote.keys()
    kinds = {k[1] for k in local}
    assert kinds == {"phash", "face", "embedding", "crop"}
    different = [k for k in local if local[k] != remote[k]]
    assert different == []
    assert sum(1 for k in local if k[1] == "embedding") == pair.local_report["embedded_faces"] > 0


def test_the_consent_gate_holds_on_the_cluster(pair: Pair) -> None:
    """The refused person's photos are detected (count, flag) and hashed, never embedded."""
    assert pair.dask_report["detection_only_photos"] >= PER_PERSON - 1
    with Workspace.open(pair.dask, actor="tester") as ws, ws.reader() as s:
        refused = ws.subject_ref(REFUSED)
        rows = s.execute(
            select(AssetDerivative.kind, func.count())
            .join(Asset, Asset.id == AssetDerivative.asset_id)
            .join(Subject, Subject.id == Asset.owner_id)
            .where(Subject.ref == refused)
            .group_by(AssetDerivative.kind)
        ).all()
    assert dict(rows) == {"phash": dict(rows).get("phash", 0)} and dict(rows)["phash"] >= PER_PERSON


def _opened_checkpoints(ws: Workspace, name: str) -> dict[str, bytes]:
    with ws.reader() as s:
        manifest = find_model(s, name).extra["manifest"]
    store = checkpoints(ws.ctx, name)
    return {k: store.get(k) for shard in manifest["shards"] for k in shard["checkpoints"] if k}


def _manifest(ws: Workspace, name: str) -> dict[str, Any]:
    with ws.reader() as s:
        return dict(find_model(s, name).extra["manifest"])


def test_training_and_unlearning_on_the_cluster_are_bit_identical(
    pair: Pair, cluster: str, tmp_path: Path
) -> None:
    shutil.copytree(pair.dask, tmp_path / "ws")
    with Workspace.open(tmp_path / "ws", actor="tester") as ws:
        ws.build_dataset("faces", purpose="ai_training", at="2014-02-01")
        kw: dict[str, Any] = {
            "dataset": "faces@1.0.0",
            "shards": 2,
            "slices": 3,
            "seed": 3,
            "at": "2014-03-01",
        }
        here = ws.train_model("here", **kw)
        tasks = finished(cluster, "train_task")
        there = ws.train_model("there", **kw, cluster=cluster)
        assert finished(cluster, "train_task") == tasks + 2  # a task per shard
        assert (
            (here["samples"], here["subjects"])
            == (there["samples"], there["subjects"])
            == (4 * PER_PERSON, 4)
        )
        assert _manifest(ws, "here") == _manifest(ws, "there")
        a, b = _opened_checkpoints(ws, "here"), _opened_checkpoints(ws, "there")
        assert len(a) == 2 * 3 and a == b  # same keys, same clear bytes (the files are sealed apart)

        # forget one photo: one shard retrained, on the cluster as here
        with ws.reader() as s:
            sha = s.scalars(
                select(Asset.sha256)
                .join(Subject, Subject.id == Asset.owner_id)
                .where(Subject.ref == ws.subject_ref(GRANTED[0]))
                .order_by(Asset.sha256)
            ).first()
        assert sha is not None
        u_here = ws.unlearn_model("here", shas=[sha], at="2014-04-01")
        u_there = ws.unlearn_model("there", shas=[sha], at="2014-04-01", cluster=cluster)
        assert finished(cluster, "train_task") == tasks + 3  # only the affected shard
        for key in ("forgotten", "shards_retrained", "slices_retrained", "checkpoints_destroyed"):
            assert u_here[key] == u_there[key], key
        assert len(u_there["shards_retrained"]) == 1 and u_there["forgotten"] == 1
        assert (
            u_here["forgetting_audit"]["retrained_from_scratch"]
            == u_there["forgetting_audit"]["retrained_from_scratch"]
        )
        assert _manifest(ws, "here") == _manifest(ws, "there")
        assert _opened_checkpoints(ws, "here") == _opened_checkpoints(ws, "there")
        # the untouched shard kept its checkpoints; the retrained one has new ones
        assert len(set(_opened_checkpoints(ws, "there")) & set(b)) >= 3


def _dead_address() -> str:
    """A loopback port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def _written(ws: Workspace) -> tuple[int, int, int]:
    with ws.reader() as s:
        return (
            s.scalar(select(func.count()).select_from(Run)) or 0,
            s.scalar(select(func.count()).select_from(AuditEvent)) or 0,
            s.scalar(select(func.count()).select_from(AssetDerivative)) or 0,
        )


def test_an_unreachable_cluster_is_a_clear_error_and_nothing_is_written(pair: Pair, tmp_path: Path) -> None:
    shutil.copytree(pair.local, tmp_path / "ws")
    dead = _dead_address()
    with Workspace.open(tmp_path / "ws", actor="tester") as ws:
        ws.build_dataset("faces", purpose="ai_training", at="2014-02-01")
        before = _written(ws)
        for call in (
            lambda: ws.analyze(force=True, cluster=dead),
            lambda: ws.train_model("m", dataset="faces@1.0.0", shards=2, cluster=dead),
        ):
            started = time.monotonic()
            with pytest.raises(ClusterError, match="did not answer"):
                call()
            assert time.monotonic() - started < 30
        with pytest.raises(ClusterError, match="tcp://HOST:PORT"):
            ws.analyze(force=True, cluster="127.0.0.1:8786")
        assert _written(ws) == before
    started = time.monotonic()
    r = cli("analyze", "--force", "--cluster", dead, "-w", tmp_path / "ws", timeout=60)
    assert r.returncode == 1 and "did not answer" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert time.monotonic() - started < 45
    with Workspace.open(tmp_path / "ws", actor="tester") as ws:
        assert _written(ws) == before


def test_the_cli_trains_on_the_cluster(pair: Pair, cluster: str, tmp_path: Path) -> None:
    """``disgorge train --cluster`` (and ``DISGORGE_CLUSTER``) as a user runs them."""
    shutil.copytree(pair.dask, tmp_path / "ws")
    with Workspace.open(tmp_path / "ws", actor="tester") as ws:
        ws.build_dataset("faces", purpose="ai_training", at="2014-02-01")
        ws.train_model("here", dataset="faces@1.0.0", shards=2, slices=2, at="2014-03-01")
    args = ("train", "--dataset", "faces@1.0.0", "--shards", "2", "--slices", "2", "-w", tmp_path / "ws")
    r = cli(*args, "there", "--cluster", cluster, "--at", "2014-03-01")
    assert r.returncode == 0, r.stderr
    r = cli(*args, "env", "--at", "2014-03-01", env={"DISGORGE_CLUSTER": cluster})
    assert r.returncode == 0, r.stderr
    with Workspace.open(tmp_path / "ws", actor="tester") as ws:
        here = _opened_checkpoints(ws, "here")
        assert len(here) == 4
        assert _opened_checkpoints(ws, "there") == here == _opened_checkpoints(ws, "env")


def test_a_scheduler_without_workers_is_a_clear_error() -> None:
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", **NO_DASHBOARD) as lc:
        assert lc.scheduler_address.startswith("tcp://127.0.0.1:") and http_hosts(lc) == {"127.0.0.1"}
        started = time.monotonic()
        with pytest.raises(ClusterError, match="has no workers"), connect(lc.scheduler_address, timeout=2):
            pass
        assert time.monotonic() - started < 15
