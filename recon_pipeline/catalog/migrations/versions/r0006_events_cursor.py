"""The events poller's cursor in the catalog database, per Stripe account (issue 21).

The poller now polls in a run (`apply_inbox`), not in a sensor tick, so its place is kept
here rather than in the sensor's cursor. An install upgrading starts polling from a day
back once; the inbox is unique by event id, so events seen before are not stored twice.

Revision ID: r0006
Revises: r0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0006"
down_revision = "r0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events_cursor",
        sa.Column("account", sa.String(length=32), primary_key=True, comment="A name of RECON_STRIPE_ACCOUNTS"),
        sa.Column("last_id", sa.String(length=255), nullable=True, comment="The newest event stored from this account"),
        sa.Column("created", sa.Integer(), nullable=True, comment="That event's created (Stripe time, seconds)"),
        sa.Column("polled_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("events_cursor")
