"""The quarantine keeps what it let go (issue 25): `released_at` is when a row left it, because
the catalog row was fixed or removed; `at` is when it was first set aside. Open rows have no
`released_at`; `recon-pipeline quarantine list --all` shows the released ones too.

Revision ID: r0010
Revises: r0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0010"
down_revision = "r0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True, comment="When the row left the quarantine (fixed or removed in the catalog); NULL while it is held"))


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("released_at")
