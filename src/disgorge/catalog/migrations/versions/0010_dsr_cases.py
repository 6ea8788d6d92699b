"""data-subject request cases, and the sealed perceptual blocklist of erased photos

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 14:00:00

``dsr_cases``: requests handled as cases (kind, pseudonymous subject, channel, due date and
its one extension, identity verification, what the case produced). ``erased_hashes``: the
PDQ hashes (eight dihedral variants) of each erased photo, sealed, so that near-copies of
an erased photo are refused at ingest.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dsr_cases",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=True),
        sa.Column("jurisdiction", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("extended_at", sa.DateTime(), nullable=True),
        sa.Column("extension_reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("identity_state", sa.String(length=16), nullable=False),
        sa.Column("identity_method", sa.String(length=200), nullable=True),
        sa.Column("identity_verified_by", sa.String(length=128), nullable=True),
        sa.Column("identity_verified_at", sa.DateTime(), nullable=True),
        sa.Column("erasure_id", sa.String(length=32), sa.ForeignKey("erasure_requests.id"), nullable=True),
        sa.Column("export_sha256", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_dsr_cases_subject_ref", "dsr_cases", ["subject_ref"])
    op.create_index("ix_dsr_cases_due_at", "dsr_cases", ["due_at"])
    op.create_index("ix_dsr_cases_status", "dsr_cases", ["status"])
    op.create_table(
        "erased_hashes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(length=32), sa.ForeignKey("erasure_requests.id"), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("erased_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_erased_hashes_request_id", "erased_hashes", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_erased_hashes_request_id", table_name="erased_hashes")
    op.drop_table("erased_hashes")
    op.drop_index("ix_dsr_cases_status", table_name="dsr_cases")
    op.drop_index("ix_dsr_cases_due_at", table_name="dsr_cases")
    op.drop_index("ix_dsr_cases_subject_ref", table_name="dsr_cases")
    op.drop_table("dsr_cases")
