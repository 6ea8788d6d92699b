"""principals, API tokens, settings, erasure approvals and jobs: the REST API

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 13:00:00

``principals`` and ``api_tokens`` (stored as SHA-256 only) authenticate API callers;
``settings`` holds what a workspace changed from the defaults (the two-person rule's
numbers); ``erasure_approvals`` records each principal's decision on a request, and
``erasure_requests.principal_id`` who asked; ``jobs`` are the API's long-running
operations (analysis, training) with their progress.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "principals",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("name", sa.String(length=128), nullable=False, unique=True),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("disabled_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=16), primary_key=True),
        sa.Column("principal_id", sa.String(length=32), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_api_tokens_principal_id", "api_tokens", ["principal_id"])
    op.create_table(
        "settings",
        sa.Column("key", sa.String(length=64), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
    )
    op.create_table(
        "erasure_approvals",
        sa.Column("request_id", sa.String(length=32), sa.ForeignKey("erasure_requests.id"), primary_key=True),
        sa.Column("principal_id", sa.String(length=32), primary_key=True),
        sa.Column("principal_name", sa.String(length=128), nullable=False),
        sa.Column("decision", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    with op.batch_alter_table("erasure_requests") as batch:
        batch.add_column(sa.Column("principal_id", sa.String(length=32), nullable=True))
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("principal_id", sa.String(length=32), nullable=True),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])


def downgrade() -> None:
    op.drop_index("ix_jobs_state", table_name="jobs")
    op.drop_table("jobs")
    with op.batch_alter_table("erasure_requests") as batch:
        batch.drop_column("principal_id")
    op.drop_table("erasure_approvals")
    op.drop_table("settings")
    op.drop_index("ix_api_tokens_principal_id", table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("principals")
