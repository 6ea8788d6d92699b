"""web UI: principals' password hashes, and login sessions

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 16:45:00

``principals.password_hash``: an argon2id hash (the web UI's login; API tokens are
unchanged). ``web_sessions``: one row per login, looked up by the SHA-256 of the
session cookie's secret (the cookie itself is never stored), with its CSRF token, expiry
and revocation (logout ends it on the server, not just in the browser).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("password_hash", sa.Text(), nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("principal_id", sa.String(length=32), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_web_sessions_principal_id", "web_sessions", ["principal_id"])


def downgrade() -> None:
    op.drop_index("ix_web_sessions_principal_id", table_name="web_sessions")
    op.drop_table("web_sessions")
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("password_hash")
