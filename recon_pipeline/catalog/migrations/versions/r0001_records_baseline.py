"""Baseline of the durable records (branch `records`): the tables release 0.1.0 made with
`metadata.create_all`, but for the catalog's own `products` (branch `catalog`, c0001).

A database made by that release already has every table: each is created only if it is
missing, so upgrading such a database records this revision and changes nothing, and an
empty database gets them all. Every install has these, a user's own catalog too.

Revision ID: r0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from recon_pipeline.catalog.migrations.helpers import TEXT_ID
from recon_pipeline.catalog.migrations.helpers import create_if_missing as _create

revision = "r0001"
down_revision = None
branch_labels = ("records",)
depends_on = None


def upgrade() -> None:
    stamp = sa.DateTime(timezone=True)
    _create(
        "sync_ledger",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", stamp, nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False, comment="repair | outbox | ..."),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("product_id", TEXT_ID, nullable=True),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("idempotency_key", sa.String(length=80), nullable=True),
        sa.Column("request", sa.JSON(), nullable=True, comment="The request's parameters (never credentials)"),
        sa.Column("status", sa.Integer(), nullable=True, comment="HTTP status of the final attempt; NULL if no response"),
        sa.Column("object_id", sa.String(length=255), nullable=True, comment="Id of the Stripe object written"),
        sa.Column("error", sa.Text(), nullable=True),
        indexes={"ix_sync_ledger_product": ["product_id"], "ix_sync_ledger_key": ["idempotency_key"]},
    )
    _create(
        "dead_letter",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("product_id", TEXT_ID, nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failed_at", stamp, nullable=False),
        sa.Column("resolved_at", stamp, nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        indexes={"ix_dead_letter_open": ["resolved_at"]},
    )
    _create(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("product_id", TEXT_ID, nullable=False),
        sa.Column("change", sa.String(length=32), nullable=False, comment="create | update | archive | change_price"),
        sa.Column("fields", sa.JSON(), nullable=True, comment="What changed, for the audit trail"),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, comment="pending | in_flight | done | dead"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", stamp, nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", stamp, nullable=True),
        sa.Column("done_at", stamp, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        indexes={"ix_outbox_pending": ["status", "next_attempt_at"], "ix_outbox_product": ["product_id", "status"]},
    )
    _create(
        "inbox",
        sa.Column("event_id", sa.String(length=255), primary_key=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False, comment="The event's created (Stripe time, seconds)"),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False, comment="webhook | poller"),
        sa.Column("received_at", stamp, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, comment="received | applied | echo | stale | ignored"),
        sa.Column("applied_at", stamp, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        indexes={"ix_inbox_pending": ["status", "created"]},
    )
    _create(
        "audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", stamp, nullable=False),
        sa.Column("actor", sa.String(length=32), nullable=False, comment="stripe | catalog | pipeline"),
        sa.Column("product_id", TEXT_ID, nullable=True),
        sa.Column("field", sa.String(length=32), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("decision", sa.String(length=32), nullable=False, comment="applied | kept_local | conflict_local_wins | conflict_stripe_wins | ..."),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        indexes={"ix_audit_product": ["product_id"]},
    )
    _create(
        "stripe_seen",
        sa.Column("product_id", TEXT_ID, primary_key=True),
        sa.Column("stripe_updated", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
    )
    _create(
        "asset_partitions",
        sa.Column("asset_key", sa.String(length=255), primary_key=True),
        sa.Column("partition_key", sa.String(length=32), primary_key=True),
        sa.Column("frame", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=False, comment="The partition's rows as Parquet"),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("stored_at", stamp, nullable=False),
    )
    _create(
        "quarantine",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", stamp, nullable=False),
        sa.Column("product_id", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("row", sa.JSON(), nullable=True),
    )


def downgrade() -> None:
    for name in ("quarantine", "asset_partitions", "stripe_seen", "audit", "inbox", "outbox", "dead_letter", "sync_ledger"):
        op.drop_table(name)
