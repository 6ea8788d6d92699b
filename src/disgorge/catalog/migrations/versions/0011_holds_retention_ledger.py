"""legal holds, retention rules, and the ledger step of the erasure journal

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 16:00:00

``legal_holds``: what must be kept despite an erasure (a subject, a source, a dataset or a
model, by name), why, and when it was released. ``retention_rules``: how long a source's or
a dataset's photos are kept. Every erasure still in flight gains the ``record_ledger`` step
after ``shred_keys`` (the journal's steps are numbered; the later ones move up by one), so
that it too leaves an entry in the erasure ledger a restored backup is checked against.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_IN_FLIGHT = ("approved", "executing", "verifying", "awaiting_recipients", "failed")


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("target_kind", sa.String(length=16), nullable=False),
        sa.Column("target_key", sa.String(length=200), nullable=False),
        sa.Column("target_ref", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.Column("released_by", sa.String(length=128), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_legal_holds_target", "legal_holds", ["target_kind", "target_key"])
    op.create_table(
        "retention_rules",
        sa.Column("target_kind", sa.String(length=16), primary_key=True),
        sa.Column("target_name", sa.String(length=200), primary_key=True),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("set_at", sa.DateTime(), nullable=False),
        sa.Column("set_by", sa.String(length=128), nullable=False),
    )
    bind = op.get_bind()
    steps = sa.table(
        "erasure_steps",
        sa.column("request_id", sa.String),
        sa.column("seq", sa.Integer),
        sa.column("name", sa.String),
        sa.column("done_at", sa.DateTime),
        sa.column("summary", sa.JSON),
    )
    requests = sa.table("erasure_requests", sa.column("id", sa.String), sa.column("state", sa.String))
    in_flight = bind.execute(sa.select(requests.c.id).where(requests.c.state.in_(_IN_FLIGHT))).scalars().all()
    for request_id in in_flight:
        rows = bind.execute(
            sa.select(steps.c.seq, steps.c.name).where(steps.c.request_id == request_id).order_by(steps.c.seq)
        ).all()
        names = [name for _, name in rows]
        if "record_ledger" in names or "shred_keys" not in names:
            continue
        after = dict((name, seq) for seq, name in rows)["shred_keys"]
        for seq, _ in sorted(rows, reverse=True):  # highest first: (request_id, seq) stays unique
            if seq > after:
                bind.execute(
                    sa.update(steps)
                    .where(steps.c.request_id == request_id, steps.c.seq == seq)
                    .values(seq=seq + 1)
                )
        bind.execute(
            sa.insert(steps).values(
                request_id=request_id, seq=after + 1, name="record_ledger", done_at=None, summary={}
            )
        )


def downgrade() -> None:
    bind = op.get_bind()
    steps = sa.table(
        "erasure_steps", sa.column("request_id", sa.String), sa.column("seq", sa.Integer), sa.column("name", sa.String)
    )
    for request_id, seq in bind.execute(
        sa.select(steps.c.request_id, steps.c.seq).where(steps.c.name == "record_ledger")
    ).all():
        bind.execute(sa.delete(steps).where(steps.c.request_id == request_id, steps.c.seq == seq))
        later = bind.execute(
            sa.select(steps.c.seq).where(steps.c.request_id == request_id, steps.c.seq > seq).order_by(steps.c.seq)
        ).scalars().all()
        for s in later:
            bind.execute(
                sa.update(steps).where(steps.c.request_id == request_id, steps.c.seq == s).values(seq=s - 1)
            )
    op.drop_table("retention_rules")
    op.drop_index("ix_legal_holds_target", table_name="legal_holds")
    op.drop_table("legal_holds")
