"""Sources and their privacy-policy versions: where photos come from, and on what terms.

Every photo is ingested from a named source (an app, a scrape, a partner...). A source
carries the versions of the privacy policy its users accepted, with the dates each was in
force and the purposes it allows: the consent gate reads them when a subject gave no
decision of their own (see :mod:`disgorge.consent.policy`). Only the text's hash is kept:
the text proves what was agreed, and the hash is enough to check a copy kept elsewhere.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from . import audit
from ._time import iso, parse_instant
from .catalog.models import Asset, PolicyVersion, Source
from .consent import parse_purpose
from .context import Context, when
from .errors import InvalidInput, NotFound

__all__ = [
    "SOURCE_KINDS",
    "PolicyView",
    "SourceView",
    "add_policy",
    "add_source",
    "find_source",
    "list_sources",
    "source_view",
]

SOURCE_KINDS = ("app", "scrape", "transfer", "partner", "other")


class PolicyView(TypedDict):
    """One privacy-policy version of a source."""

    version: str
    text_sha256: str
    effective_from: str | None
    effective_to: str | None
    allows: list[str]


class SourceView(TypedDict):
    """A source, how many photos came from it, and its policy versions."""

    name: str
    kind: str
    description: str
    created_at: str | None
    assets: int
    policies: list[PolicyView]


def find_source(session: Session, name: str) -> Source:
    """The source named ``name``; the error says how to create it."""
    src = session.scalar(select(Source).where(Source.name == name))
    if src is None:
        raise NotFound(f"no source named {name!r}; create it with `disgorge source add {name}`")
    return src


def _view(session: Session, src: Source) -> SourceView:
    assets = session.scalar(select(func.count()).select_from(Asset).where(Asset.source_id == src.id))
    return {
        "name": src.name,
        "kind": src.kind,
        "description": src.description,
        "created_at": iso(src.created_at),
        "assets": int(assets or 0),
        "policies": [
            {
                "version": p.version,
                "text_sha256": p.text_sha256,
                "effective_from": iso(p.effective_from),
                "effective_to": iso(p.effective_to),
                "allows": list(p.allowed_purposes),
            }
            for p in src.policies
        ],
    }


def add_source(
    ctx: Context, name: str, *, kind: str = "app", description: str = "", at: str | datetime | None = None
) -> SourceView:
    """Register a source; its name is how ingest, datasets and erasures refer to it."""
    name = name.strip()
    if not name:
        raise InvalidInput("source name is empty")
    if kind not in SOURCE_KINDS:
        raise InvalidInput(f"source kind {kind!r}: expected one of {', '.join(SOURCE_KINDS)}")
    instant = when(at)
    with ctx.sessions.begin() as session:
        if session.scalar(select(Source).where(Source.name == name)) is not None:
            raise InvalidInput(f"a source named {name!r} already exists")
        source = Source(name=name, kind=kind, description=description, created_at=instant)
        session.add(source)
        session.flush()
        audit.append(session, "source.added", {"source": name, "kind": kind}, actor=ctx.actor, at=instant)
        return _view(session, source)


def add_policy(
    ctx: Context,
    source: str,
    version: str,
    *,
    text: bytes,
    effective_from: str | datetime,
    effective_to: str | datetime | None = None,
    allows: list[str] | tuple[str, ...] = (),
    at: str | datetime | None = None,
) -> SourceView:
    """Record a privacy-policy version of a source: its text hash, dates and purposes."""
    start = parse_instant(effective_from, what="--from")
    end = parse_instant(effective_to, what="--to") if effective_to is not None else None
    if end is not None and end <= start:
        raise InvalidInput("policy version: --to must be after --from")
    purposes = sorted({parse_purpose(p).value for p in allows})
    instant = when(at)
    with ctx.sessions.begin() as session:
        src = find_source(session, source)
        if any(p.version == version for p in src.policies):
            raise InvalidInput(f"source {source!r} already has policy version {version!r}")
        policy = PolicyVersion(
            source_id=src.id,
            version=version,
            text_sha256=hashlib.sha256(text).hexdigest(),
            effective_from=start,
            effective_to=end,
            allowed_purposes=purposes,
        )
        session.add(policy)
        session.flush()
        audit.append(
            session,
            "policy.added",
            {
                "source": src.name,
                "version": version,
                "allows": purposes,
                "text_sha256": policy.text_sha256,
            },
            actor=ctx.actor,
            at=instant,
        )
        session.refresh(src)
        return _view(session, src)


def list_sources(ctx: Context) -> list[SourceView]:
    """Every source, by name."""
    with ctx.reader() as session:
        return [_view(session, s) for s in session.scalars(select(Source).order_by(Source.name))]


def source_view(ctx: Context, name: str) -> SourceView:
    """One source, with its photo count and policy versions."""
    with ctx.reader() as session:
        return _view(session, find_source(session, name))
