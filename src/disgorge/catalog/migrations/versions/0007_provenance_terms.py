"""a bundle's per-photo terms belong to the transfer they came with

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00

``consent_records.transfer_id``: a per-photo grant recorded from a received bundle counts
only when the photo is used through that transfer's provenance, so a bundle cannot relabel
bytes this workspace already held from elsewhere (design note 19). Existing grants from
bundles (``policy_version`` ``transfer-<12 hex>``) are scoped to their transfer here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consent_records", recreate="never") as batch_op:
        batch_op.add_column(sa.Column("transfer_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_consent_records_transfer_id", ["transfer_id"], unique=False)
    # grants written by receive_bundle before 0007: policy_version names the transfer's prefix
    op.execute(
        "UPDATE consent_records SET transfer_id = ("
        " SELECT t.id FROM transfers t WHERE t.direction = 'in'"
        " AND 'transfer-' || substr(t.id, 1, 12) = consent_records.policy_version)"
        " WHERE policy_version LIKE 'transfer-%' AND asset_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("consent_records") as batch_op:
        batch_op.drop_index("ix_consent_records_transfer_id")
        batch_op.drop_column("transfer_id")
