"""Dataset versions as services: build one through the gate, show one, compare two.

A build is recorded as a run of its own (``dataset.build:NAME``) inside
:func:`~disgorge.datasets.build.build_dataset`; here the OpenLineage COMPLETE event for it
is sent once the catalog has committed, so a listener never hears of a version that a
rollback took back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from ..catalog.models import DatasetVersion
from ..consent import parse_purpose
from ..context import Context, when
from ..runs import emit_lineage
from ..subjects import ref_of
from .build import DatasetBuild, DatasetDiff, DatasetView, build_dataset, dataset_diff, dataset_view

__all__ = ["build", "diff", "list_datasets", "show"]


def build(
    ctx: Context,
    name: str,
    *,
    purpose: str,
    source: str | None = None,
    subjects: list[str] | None = None,
    at: str | datetime | None = None,
) -> DatasetBuild:
    """Build a dataset version through the consent gate (see :mod:`disgorge.datasets`)."""
    instant = when(at)
    purpose_value = parse_purpose(purpose).value
    refs = {ref_of(ctx.vault, s) for s in subjects} if subjects is not None else None
    with ctx.sessions.begin() as session:
        made = build_dataset(
            session,
            name,
            purpose=purpose_value,
            at=instant,
            actor=ctx.actor,
            source=source,
            subject_refs=refs,
        )
    if made.created:
        emit_lineage(
            ctx,
            "COMPLETE",
            f"dataset.build:{name}",
            made.run_id,
            purpose_value,
            instant,
            [],
            [f"dataset:{name}@{made.version}"],
        )
    return made


def show(ctx: Context, ref: str, *, members: bool = False) -> DatasetView:
    """A dataset version (``NAME@VERSION`` or NAME's latest), with its members if asked."""
    with ctx.reader() as session:
        return dataset_view(session, ref, with_members=members)


def list_datasets(ctx: Context) -> list[DatasetView]:
    """The latest version of every dataset, by name (each lists its ``versions``)."""
    with ctx.reader() as session:
        names = session.scalars(select(DatasetVersion.name).distinct().order_by(DatasetVersion.name)).all()
        return [dataset_view(session, name) for name in names]


def diff(ctx: Context, a: str, b: str) -> DatasetDiff:
    """What changed between two dataset versions (sha256s added and dropped)."""
    with ctx.reader() as session:
        return dataset_diff(session, a, b)
