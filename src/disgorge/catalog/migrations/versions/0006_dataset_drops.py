"""derived dataset versions read their base's rows minus their drops

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:10:00

``dataset_members`` becomes a view over ``dataset_member_rows`` (the stored rows, the old
table renamed) and ``dataset_drops``: a version derived without some items stores only
those, not a copy of every other row (design note 17).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from disgorge.catalog.models import DATASET_MEMBERS_VIEW

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.rename_table("dataset_members", "dataset_member_rows")
    op.create_table(
        "dataset_drops",
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"]),
        sa.ForeignKeyConstraint(["dataset_id"], ["artifacts.id"]),
        sa.PrimaryKeyConstraint("dataset_id", "asset_id"),
    )
    with op.batch_alter_table("dataset_versions", recreate="never") as batch_op:
        batch_op.add_column(sa.Column("members_of", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_dataset_versions_members_of", ["members_of"], unique=False)
    op.execute(DATASET_MEMBERS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW dataset_members")
    with op.batch_alter_table("dataset_versions") as batch_op:
        batch_op.drop_index("ix_dataset_versions_members_of")
        batch_op.drop_column("members_of")
    op.drop_table("dataset_drops")
    op.rename_table("dataset_member_rows", "dataset_members")
