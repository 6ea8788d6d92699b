"""train, predict, model list/show/retire/unlearn/audit/import-mlflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ._common import AtOpt, ClusterOpt, JsonOpt, WorkspaceOpt, console, fail, open_workspace, print_json
from .remote import ServerOpt, TokenOpt, open_target

model_app = typer.Typer(
    help="The model registry: versions, retirement, unlearning, forgetting audit.", no_args_is_help=True
)


def train(
    name: Annotated[str, typer.Argument(help="Model name; each training makes a new version.")],
    dataset: Annotated[str, typer.Option(help="Dataset version to train on, NAME@VERSION.")],
    model: Annotated[
        str, typer.Option(help="Model type (face-id: SISA ensemble over face embeddings).")
    ] = "face-id",
    shards: Annotated[
        int, typer.Option(help="SISA shards (by subject): forgetting a person retrains one.")
    ] = 8,
    slices: Annotated[int, typer.Option(help="SISA slices per shard (checkpoints to restart from).")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic given it).")] = 0,
    code_version: Annotated[
        str, typer.Option(help="Version of your training code, recorded on the run.")
    ] = "",
    cluster: ClusterOpt = None,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train a model through the consent gate (ai_training and biometric_processing)."""
    with open_workspace(workspace) as ws:
        result = ws.train_model(
            name,
            dataset=dataset,
            model=model,
            shards=shards,
            slices=slices,
            seed=seed,
            code_version=code_version,
            at=at,
            cluster=cluster,
        )
    if json_out:
        print_json(result)
        return
    console.print(
        f"trained {result['model']} on {result['dataset']}: {result['samples']} photo(s) of "
        f"{result['subjects']} subject(s), {result['shards']} shards x {result['slices']} slices",
        markup=False,
    )
    if result["skipped"].get("no_embedding"):
        console.print(f"  skipped {result['skipped']['no_embedding']} photo(s) without a face embedding")


def predict(
    name: Annotated[str, typer.Argument(help="Model NAME or NAME@VERSION.")],
    image: Annotated[Path, typer.Option("--image", help="Photo to identify faces in.")],
    min_score: Annotated[float, typer.Option(help="Below this score a face is reported as unknown.")] = 0.5,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Identify the faces in a photo with a face-id model (subjects by pseudonymous ref)."""
    if not image.is_file():
        raise fail(f"{image}: no such file")
    with open_workspace(workspace) as ws:
        result = ws.predict(name, image, min_score=min_score)
    if json_out:
        print_json(result)
        return
    console.print(f"{result['model']}: {len(result['faces'])} face(s)", markup=False)
    for face in result["faces"]:
        who = face["subject"] or "unknown"
        console.print(f"  {who}  score {face['score']}  box {face['box']}", markup=False)


@model_app.command("list")
def model_list(
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
) -> None:
    """Every model version with its state."""
    with open_target(workspace, server, token) as ws:
        models = ws.models()
    if json_out:
        print_json(models)
        return
    table = Table("model", "state", "type", "dataset", "samples", "trained at")
    for m in models:
        table.add_row(
            f"{m['name']}@{m['version']}",
            m["state"],
            m["type"],
            m["dataset"] or "-",
            str(m["samples"]),
            m["trained_at"],
        )
    console.print(table)


@model_app.command("show")
def model_show(
    ref: Annotated[str, typer.Argument(help="NAME (latest version) or NAME@VERSION.")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One model version: its run, dataset, shards, state and forgetting audit."""
    with open_workspace(workspace) as ws:
        info = ws.model(ref)
    if json_out:
        print_json(info)
        return
    table = Table(show_header=False, box=None)
    for key, value in info.items():
        if key != "versions":
            table.add_row(key, str(value))
    table.add_row("versions", ", ".join(f"{v['version']} ({v['state']})" for v in info["versions"]))
    console.print(table)


@model_app.command("retire")
def model_retire(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (or NAME for the latest).")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")],
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Retire a model version and everything derived from it (external models too)."""
    with open_workspace(workspace) as ws:
        result = ws.retire_model(ref, reason=reason, at=at)
    if json_out:
        print_json(result)
        return
    console.print(f"retired {len(result['retired'])}: {', '.join(result['retired'])}", markup=False)


@model_app.command("unlearn")
def model_unlearn(
    name: Annotated[str, typer.Argument(help="Model NAME (its latest active version).")],
    subject: Annotated[
        list[str] | None, typer.Option(help="Forget every photo of this subject (repeat).")
    ] = None,
    asset: Annotated[list[str] | None, typer.Option(help="Forget this photo, by sha256 (repeat).")] = None,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "unlearning request",
    cluster: ClusterOpt = None,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Forget photos exactly: retrain only the affected shards; a new version replaces the old."""
    if not subject and not asset:
        raise fail("say what to forget: --subject ID and/or --asset SHA256", code=2)
    with open_workspace(workspace) as ws:
        result = ws.unlearn_model(name, subjects=subject, shas=asset, reason=reason, at=at, cluster=cluster)
    if json_out:
        print_json(result)
        return
    console.print(result["message"], markup=False)
    if result.get("forgotten"):
        console.print(
            f"  {result['from']} retired; {result['model']} trained on {result['dataset']}", markup=False
        )
        audit = result["forgetting_audit"]
        before, after = audit["before"], audit["after"]
        if before.get("ran") and after.get("ran"):
            console.print(
                f"  membership inference on the forgotten photos: AUC {before['auc']} -> {after['auc']}, "
                f"TPR@1%FPR {before['tpr_at_1pct_fpr']} -> {after['tpr_at_1pct_fpr']}",
                markup=False,
            )
        else:
            console.print(f"  membership inference not run: {after.get('reason') or before.get('reason')}")
        console.print(f"  {_retrain_line(audit['retrained_from_scratch'])}", markup=False)


@model_app.command("audit")
def model_audit(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    forgotten: Annotated[list[str], typer.Option(help="A subject that should be forgotten (repeat).")],
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Has this model forgotten these subjects? Membership inference (LiRA, with the other
    SISA shards as reference models) on their photos against photos their shard never saw,
    and the proof: the shards that held them, retrained from scratch without them, have
    the same weights digest. Exit 1 when the model still holds their photos or the digests
    differ."""
    with open_workspace(workspace) as ws:
        result = ws.model_audit(ref, forgotten=forgotten)
    if json_out:
        print_json(result)
    else:
        console.print(
            f"{result['model']}: {result['photos']} photo(s) of them, {result['ever_trained_on']} trained on "
            f"by this version or those it was unlearned from, {result['still_trained_on_them']} still",
            markup=False,
        )
        mia = result["membership_inference"]
        if mia.get("ran"):
            console.print(
                f"  membership inference (LiRA, {mia['reference_models']} reference shard(s)): "
                f"{mia['members']} member(s) vs {mia['non_members']} non-member(s)",
                markup=False,
            )
            console.print(
                f"    AUC {mia['auc']}  TPR@1%FPR {mia['tpr_at_1pct_fpr']}  "
                f"TPR@0.1%FPR {mia['tpr_at_0.1pct_fpr']}  "
                f"(lowest measurable FPR {mia['lowest_measurable_fpr']})",
                markup=False,
            )
            if mia.get("note"):
                console.print(f"    note: {mia['note']}", markup=False)
        else:
            console.print(f"  membership inference not run: {mia['reason']}", markup=False)
        console.print(f"  {_retrain_line(result['retrained_from_scratch'])}", markup=False)
    if result["forgotten_exactly"] is False:
        raise typer.Exit(1)


def _retrain_line(check: dict[str, Any]) -> str:
    if not check.get("ran"):
        return f"retrain check not run: {check['reason']}"
    parts = [
        f"shard {r['shard']} {r['unlearned'][:12]} {'=' if r['unlearned'] == r['retrained'] else '!='} "
        f"{r['retrained'][:12]}"
        for r in check["shards"]
    ]
    verdict = "identical" if check["identical"] else "DIFFERENT"
    return f"retrained from scratch without them: weights {verdict} ({'; '.join(parts)})"


@model_app.command("import-mlflow")
def model_import_mlflow(
    uri: Annotated[
        str,
        typer.Argument(help="Local MLflow store: sqlite:///PATH/mlflow.db or a file: folder (no server)."),
    ],
    purpose: Annotated[
        str,
        typer.Option(help="Purpose of the imported runs, unless a run has the tag disgorge.purpose."),
    ] = "ai_training",
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Record MLflow's registered model versions and their dataset inputs as lineage.

    An input maps to a disgorge dataset version by its tag disgorge.dataset=NAME@VERSION,
    or by a dataset name NAME@VERSION; inputs that map to nothing are listed. Importing
    again records nothing new."""
    from ..interop.mlflow import import_mlflow

    with open_workspace(workspace) as ws:
        result = import_mlflow(ws.ctx, uri, purpose=purpose).to_dict()
    if json_out:
        print_json(result)
        return
    for rec in result["recorded"]:
        console.print(
            f"recorded {', '.join(rec['outputs'])} <- {', '.join(rec['inputs'])} "
            f"(MLflow run {rec['mlflow_run']})",
            markup=False,
        )
    if result["already_imported"]:
        console.print(f"already imported: {', '.join(result['already_imported'])}", markup=False)
    for skip in result["skipped"]:
        console.print(f"skipped {skip['model']}: {skip['reason']}", markup=False)
    for miss in result["unmapped_inputs"]:
        console.print(
            f"unmapped input {miss['dataset']!r} of MLflow run {miss['mlflow_run']}: {miss['reason']}",
            markup=False,
        )
    if result["runs_without_model"]:
        console.print(
            f"{len(result['runs_without_model'])} MLflow run(s) read disgorge data but registered no "
            f"model version: {', '.join(result['runs_without_model'])}",
            markup=False,
        )
    if not any(result[k] for k in ("recorded", "already_imported", "skipped", "unmapped_inputs")):
        console.print("no registered model versions in that store", markup=False)
