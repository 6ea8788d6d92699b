"""ingest and consent import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..ingest import IngestReport
from ._common import (
    AtOpt,
    ClusterOpt,
    JsonOpt,
    WorkspaceOpt,
    console,
    err,
    fail,
    open_workspace,
    print_json,
    shown,
)

consent_app = typer.Typer(
    help="Consent history: import it from CSV or JSON Lines (format: docs/formats.md).", no_args_is_help=True
)

#: exit code of an ingest that finished but refused some files
EXIT_REJECTED = 3


def ingest(
    path: Annotated[
        Path, typer.Argument(help="A folder, .zip or .tar(.gz) of photos, or a bundle from a sender.")
    ],
    source: Annotated[
        str | None,
        typer.Option(
            "--source", "-s", help="Name of a registered source (not for a bundle: it brings its own)."
        ),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(help="CSV/JSONL: path, subject[, depicted][, captured_at]. Keep it outside PATH."),
    ] = None,
    subject_from: Annotated[
        str | None, typer.Option(help="'dirname': the subject is the photo's folder name (LFW layout).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Decoder processes (default: one per core).")] = None,
    faces: Annotated[
        bool, typer.Option("--faces", help="Also analyse the new photos (as `disgorge analyze` does).")
    ] = False,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Ingest photos: safe decode, sha256, encrypt under the owner's key, register, audit.

    Exit code 0 when every file was stored or already present, 3 when some files were
    refused (each is listed with its reason), 1 on an error that stopped the ingest.
    A bundle (`disgorge share` at the sender) is checked whole first: a registered
    sender's signature, made for this workspace, every photo's sha256.
    """
    from ..sharing.bundle import is_bundle

    if is_bundle(path):
        if source or manifest or subject_from:
            raise fail("a bundle brings its own source and manifest: drop --source/--manifest", code=2)
        with open_workspace(workspace) as ws:
            received = ws.receive_bundle(path, at=at)
        if json_out:
            print_json(received)
        elif received["already_received"]:
            console.print(
                f"transfer {received['transfer'][:12]} from {shown(received['sender'])} was already received",
                markup=False,
            )
        else:
            console.print(
                f"transfer {received['transfer'][:12]} from {shown(received['sender'])}: "
                f"{received['ingested']} stored, "
                f"{received['duplicates']} already present, {len(received['rejected'])} refused; source "
                f"{shown(received['source'])}, usable for {', '.join(received['purposes'])} only",
                markup=False,
            )
        if received["rejected"]:
            raise typer.Exit(EXIT_REJECTED)
        return
    if not source:
        raise fail("name the source the photos come from (--source NAME)", code=2)
    with open_workspace(workspace) as ws:
        report = _with_progress(
            "ingest",
            lambda advance: ws.ingest(
                path,
                source=source,
                manifest=manifest,
                subject_from=subject_from,
                at=at,
                workers=workers,
                progress=advance,
            ),
        )
        analysis = None
        if faces and report.asset_ids:
            analysis = _with_progress(
                "analyze",
                lambda advance: ws.analyze(
                    asset_ids=report.asset_ids, workers=workers, at=at, progress=advance
                ),
            )
    if json_out:
        out = report.to_dict()
        if faces:
            out["analysis"] = analysis.to_dict() if analysis else None
        print_json(out)
    else:
        _print_report(report)
        if analysis is not None:
            _print_analysis(analysis, False)
    if report.rejected:
        raise typer.Exit(EXIT_REJECTED)


def _print_report(report: IngestReport) -> None:
    d = report.to_dict()
    table = Table(
        show_header=False,
        box=None,
        title=f"ingest into source {shown(report.source)}",
        title_justify="left",
    )
    table.add_row("files seen", str(d["files"]))
    table.add_row("stored", str(d["ingested"]))
    table.add_row("already present", str(d["duplicates"]))
    if d["provenances_added"]:
        table.add_row("  of which now also held through this source", str(d["provenances_added"]))
    table.add_row("refused", str(len(d["rejected"])))
    table.add_row("new subjects", str(d["subjects_created"]))
    table.add_row("bytes", f"{d['bytes'] / 1e6:.1f} MB")
    table.add_row("time", f"{d['seconds']:.2f} s ({d['photos_per_second']} photos/s)")
    console.print(table)
    first = report.rejected[:50]
    for r in first:
        console.print(f"  [yellow]refused[/] {escape(shown(r.path))}: {escape(shown(r.reason))}", markup=True)
    if len(report.rejected) > len(first):
        console.print(f"  ... and {len(report.rejected) - len(first)} more (--json lists all)")


@consent_app.command("import")
def consent_import(
    file: Annotated[Path, typer.Argument(help="CSV or JSON Lines: subject, purpose, decision, at[, ...].")],
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import consent history. The whole file is checked first: one bad row imports nothing."""
    with open_workspace(workspace) as ws:
        report = ws.import_consent(file, at=at)
    if json_out:
        print_json(report.to_dict())
        return
    console.print(
        f"imported {report.imported} consent record(s) from {shown(report.file)} "
        f"({report.already_present} already present, {report.subjects_created} new subject(s))",
        markup=False,
    )
    if report.conflicts:
        err.print(
            f"warning: {report.conflicts} conflict(s): different decisions for the same subject, "
            "purpose and instant; the most restrictive one applies (denial wins)",
            markup=False,
        )


@consent_app.command("check")
def consent_check(
    subject: Annotated[str, typer.Argument(help="External id or sub_... ref.")],
    purpose: Annotated[str, typer.Argument(help="e.g. ai_training, biometric_processing.")],
    at: Annotated[
        str | None, typer.Option("--at", help="Check as of this ISO 8601 time (default: now).")
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """May this subject's photos be used for PURPOSE? A verdict per photo, with the rule and reason.

    Exit code 0 when every photo is covered, 1 when any is not.
    """
    with open_workspace(workspace) as ws:
        result = ws.consent_check(subject, purpose, at=at)
    if json_out:
        print_json(result)
    else:
        verdict = "allowed" if result["allowed"] else "NOT allowed"
        console.print(
            f"{result['subject']}: {result['purpose']} at {result['at']}: {verdict} "
            f"({result['covered']} of {result['photos']} photo(s) covered)",
            markup=False,
        )
        for item in result["items"]:
            mark = "ok " if item["allowed"] else "no "
            console.print(f"  {mark} {item['sha256'][:16]}  {item['rule']}: {item['reason']}", markup=False)
    if not result["allowed"]:
        raise typer.Exit(1)


def analyze(
    force: Annotated[
        bool, typer.Option("--force", help="Analyse again every photo, including those analysed before.")
    ] = False,
    cnn: Annotated[
        bool, typer.Option("--cnn", help="Use dlib's CNN detector (slower, finds more faces).")
    ] = False,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    embedder: Annotated[
        str,
        typer.Option(
            help="dlib: face detection and dlib's face embedding (extra faces). portrait: the "
            "centre of each photo described by colour histogram and thumbnail, a stand-in for "
            "drawn sample portraits, not a face recogniser."
        ),
    ] = "dlib",
    cluster: ClusterOpt = None,
    workspace: WorkspaceOpt = None,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Detect faces and PDQ-hash photos; embed and crop faces only where biometric consent allows.

    Photos whose subjects did not grant biometric_processing get detection only (face
    count and biometric flag): no embedding, landmarks or crop is computed or stored.
    Each run also does what consent allows now: photos analysed before with detection
    only whose subjects have since granted biometric_processing are embedded, and photos
    whose grant was withdrawn or expired lose their embeddings, landmarks, crops and
    face-index entries (their PDQ hashes stay).
    """
    with open_workspace(workspace) as ws:
        report = _with_progress(
            "analyze",
            lambda advance: ws.analyze(
                force=force,
                cnn=cnn,
                workers=workers,
                embedder=embedder,
                at=at,
                progress=advance,
                cluster=cluster,
            ),
        )
    _print_analysis(report, json_out)


def _with_progress(label: str, work):
    progress = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    with progress:
        task = progress.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return work(advance)


def _print_analysis(report, json_out: bool) -> None:
    d = report.to_dict()
    if json_out:
        print_json(d)
        return
    console.print(
        f"analysed {d['analyzed']} of {d['photos']} photo(s) in {d['seconds']:.1f} s: "
        f"{d['with_faces']} with faces ({d['faces']} faces), {d['embedded_faces']} face(s) embedded",
        markup=False,
    )
    if d["embedder"] != "dlib":
        console.print(f"  embedder: {d['embedder']} (a stand-in, not a face recogniser)", markup=False)
    if d["face_index"] != "updated":
        console.print(f"  face index {d['face_index']}", markup=False)
    if d["consent_granted_photos"]:
        console.print(
            f"  consent now allows embedding: {d['consent_granted_photos']} photo(s) analysed before "
            "with detection only",
            markup=False,
        )
    if d["consent_withdrawn_photos"]:
        console.print(
            f"  consent withdrawn: removed {d['removed_embeddings']} embedding(s), {d['removed_crops']} "
            f"crop(s) and {d['removed_faces']} face outline(s) of {d['consent_withdrawn_photos']} photo(s)",
            markup=False,
        )
    if d["detection_only_photos"]:
        reasons = ", ".join(f"{k}: {n}" for k, n in d["detection_only_reasons"].items())
        console.print(
            f"  detection only (no biometric consent) for {d['detection_only_photos']} photo(s): {reasons}",
            markup=False,
        )
    for e in d["errors"]:
        console.print(f"  [yellow]could not analyse[/] {e['sha256'][:16]}: {escape(shown(e['reason']))}")


def find(
    image: Annotated[Path, typer.Option("--image", help="The photo to look for.")],
    by: Annotated[
        str, typer.Option(help="copy: copies of this photo (PDQ); face: photos of the same person.")
    ] = "copy",
    max_distance: Annotated[
        float | None,
        typer.Option(help="Threshold (copy: PDQ bits, default 31; face: embedding distance, 0.6)."),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Find stored copies of a photo, or photos of the same person, with distances.

    Exit code 0 when something matched, 1 when nothing did.
    """
    if not image.is_file():
        raise fail(f"{shown(image)}: no such file")
    with open_workspace(workspace) as ws:
        result = ws.find(image, by=by, max_distance=max_distance)
    if json_out:
        print_json(result)
    else:
        extra = f", {result['query_faces']} face(s) in the query" if by == "face" else ""
        console.print(
            f"{len(result['matches'])} match(es) by {by} "
            f"({result['metric']} <= {result['threshold']}{extra})",
            markup=False,
        )
        for m in result["matches"]:
            console.print(f"  {m['sha256']}  {m['owner']}  distance {m['distance']}", markup=False)
    if not result["matches"]:
        raise typer.Exit(1)
