"""the same bytes ingested from a second source of this workspace's own are held through it too

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 17:00:00

``asset_sources``: a later ingest from another source of this workspace's own that meets
bytes already held (a bundle brought them first, say) records that source as a provenance
of the asset, instead of only counting a duplicate; a use must then be allowed through it
too, and a sender's erasure request leaves the bytes in place (design note 19).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "asset_sources",
        sa.Column("asset_id", sa.String(length=32), sa.ForeignKey("assets.id"), primary_key=True),
        sa.Column("source_id", sa.Integer(), sa.ForeignKey("sources.id"), primary_key=True),
        sa.Column("added_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_asset_sources_source", "asset_sources", ["source_id"])


def downgrade() -> None:
    op.drop_index("ix_asset_sources_source", table_name="asset_sources")
    op.drop_table("asset_sources")
