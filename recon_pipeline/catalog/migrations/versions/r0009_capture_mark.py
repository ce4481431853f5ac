"""Capture: the mark a transaction leaves while the pipeline itself writes catalog rows (issue 22).

The capture triggers (`recon-pipeline init --capture`) turn every insert, update and delete
of a product or price into an outbox row, except the pipeline's own writes. On SQLite those
hold a row of `capture_mark`, written at their start and deleted before they commit, so only
their own transaction ever sees it (PostgreSQL and MariaDB mark the connection with a
setting instead, and leave the table empty).

Revision ID: r0009
Revises: r0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0009"
down_revision = "r0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "capture_mark",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("writer", sa.String(length=16), nullable=False, comment="pipeline | stripe: who writes in the transaction that holds it"),
    )


def downgrade() -> None:
    op.drop_table("capture_mark")
