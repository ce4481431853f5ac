"""The catalog's tables: the products and prices it owns, plus the durable records of DESIGN.md.

Plain SQLAlchemy Core, so the same schema runs on SQLite (embedded default) and PostgreSQL.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.mysql import LONGBLOB

from recon_pipeline.names import DEFAULT_ACCOUNT

metadata = MetaData()


def _serial() -> Column:
    """An autoincrementing integer key."""
    return Column("id", Integer, primary_key=True, autoincrement=True)


def _moment(name: str, nullable: bool = False) -> Column:
    """A point in time, with its time zone (UTC as written)."""
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _product_ref(nullable: bool = True) -> Column:
    """The catalog id of the product a row is about."""
    return Column("product_id", String(64), nullable=nullable)


class OutboxStatus(StrEnum):
    """Where an outbox row is: waiting (or backing off), claimed by a worker, delivered, given up."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    DEAD = "dead"


class InboxStatus(StrEnum):
    """What became of a received Stripe event."""

    RECEIVED = "received"  # waiting to be applied
    APPLIED = "applied"
    ECHO = "echo"  # our own write coming back
    STALE = "stale"  # older than what the catalog has already seen
    IGNORED = "ignored"

products = Table(
    "products",
    metadata,
    Column("id", String(64), primary_key=True, comment="Catalog id; the Stripe product id is derived from it"),
    Column("name", String(250), nullable=False),
    Column("description", Text, nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("metadata", JSON, nullable=True, comment="Metadata keys the catalog manages in Stripe"),
    Column("marketing_features", JSON, nullable=True, comment="Feature names, in order, as the pricing table shows them"),
    Column("images", JSON, nullable=True, comment="Image URLs (up to 8)"),
    Column("package_dimensions", JSON, nullable=True, comment="{height, length, weight, width}, inches and ounces"),
    Column("shippable", Boolean, nullable=True),
    Column("statement_descriptor", String(22), nullable=True),
    Column("tax_code", String(64), nullable=True),
    Column("unit_label", String(12), nullable=True),
    Column("url", Text, nullable=True),
    Column("default_price", String(200), nullable=True, comment="lookup_key of the default price; NULL: the catalog does not choose"),
    Column("account", String(32), nullable=False, server_default=DEFAULT_ACCOUNT, comment="The Stripe account it is sold in: a name of RECON_STRIPE_ACCOUNTS"),
    _moment("updated_at"),
)
Index("ix_products_updated_at", products.c.updated_at)
Index("ix_products_account", products.c.account)

# The prices the catalog owns, by lookup key: the identity Stripe holds for each price.
# A Stripe price without one of these keys is not the catalog's and is never written.
prices = Table(
    "prices",
    metadata,
    Column("lookup_key", String(200), primary_key=True, comment="Stripe's lookup_key of this price"),
    _product_ref(nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("currency", String(3), nullable=False),
    Column("unit_amount", BigInteger, nullable=True, comment="In the currency's smallest unit; NULL for a tiered or decimal price"),
    Column("unit_amount_decimal", String(40), nullable=True, comment="A fractional amount, e.g. 0.125 (cents)"),
    Column("billing_scheme", String(16), nullable=False, default="per_unit", comment="per_unit | tiered"),
    Column("tiers_mode", String(16), nullable=True, comment="graduated | volume (tiered prices)"),
    Column("tiers", JSON, nullable=True, comment="Stripe's shape; the last tier's up_to is \"inf\""),
    Column("recurring_interval", String(8), nullable=True, comment="day|week|month|year, NULL = one-time"),
    Column("recurring_interval_count", Integer, nullable=True),
    Column("recurring_usage_type", String(16), nullable=True, comment="licensed | metered"),
    Column("transform_quantity", JSON, nullable=True, comment="{divide_by, round}"),
    Column("currency_options", JSON, nullable=True, comment="Other currencies: currency -> {unit_amount, tiers, tax_behavior, ...}"),
    Column("custom_unit_amount", JSON, nullable=True, comment="{minimum, maximum, preset}: pay what you want"),
    Column("tax_behavior", String(16), nullable=True, comment="inclusive | exclusive | unspecified (NULL)"),
    Column("nickname", String(250), nullable=True),
    Column("metadata", JSON, nullable=True),
    _moment("updated_at"),
)
Index("ix_prices_product", prices.c.product_id)

# Every write made to Stripe, whatever its outcome: the record naive webhook sync lacks.
sync_ledger = Table(
    "sync_ledger",
    metadata,
    _serial(),
    _moment("at"),
    Column("source", String(32), nullable=False, comment="repair | outbox | ..."),
    Column("run_id", String(64), nullable=True),
    _product_ref(),
    Column("method", String(8), nullable=False),
    Column("path", String(255), nullable=False),
    Column("idempotency_key", String(80), nullable=True),
    Column("request", JSON, nullable=True, comment="The request's parameters (never credentials)"),
    Column("status", Integer, nullable=True, comment="HTTP status of the final attempt; NULL if no response"),
    Column("object_id", String(255), nullable=True, comment="Id of the Stripe object written"),
    Column("error", Text, nullable=True),
)
Index("ix_sync_ledger_product", sync_ledger.c.product_id)
Index("ix_sync_ledger_key", sync_ledger.c.idempotency_key)

# What exhausted its retries, with the reason; replayable until resolved.
dead_letter = Table(
    "dead_letter",
    metadata,
    _serial(),
    Column("source", String(32), nullable=False),
    _product_ref(),
    Column("action", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=1),
    _moment("failed_at"),
    _moment("resolved_at", nullable=True),
    Column("resolution", Text, nullable=True),
    Column("account", String(32), nullable=False, server_default=DEFAULT_ACCOUNT, comment="The Stripe account it failed in: a name of RECON_STRIPE_ACCOUNTS"),
)
Index("ix_dead_letter_open", dead_letter.c.resolved_at)

# Changes to push to Stripe, written in the same transaction as the catalog change. A push
# always sends the product's *current* catalog state, so several pending rows of one
# product coalesce into one push and order within a product cannot be violated.
outbox = Table(
    "outbox",
    metadata,
    _serial(),
    _product_ref(nullable=False),
    Column("change", String(32), nullable=False, comment="create | update | archive | change_price"),
    Column("fields", JSON, nullable=True, comment="What changed, for the audit trail"),
    _moment("created_at"),
    Column("status", String(16), nullable=False, default=OutboxStatus.PENDING.value, comment="pending | in_flight | done | dead"),
    Column("attempts", Integer, nullable=False, default=0),
    _moment("next_attempt_at"),
    Column("claimed_by", String(64), nullable=True),
    _moment("claimed_at", nullable=True),
    _moment("done_at", nullable=True),
    Column("last_error", Text, nullable=True),
)
Index("ix_outbox_pending", outbox.c.status, outbox.c.next_attempt_at)
Index("ix_outbox_product", outbox.c.product_id, outbox.c.status)

# Stripe events received (webhooks and the poller), unique by event id: a duplicate or a
# replay is a no-op. Applied in order of `created`.
inbox = Table(
    "inbox",
    metadata,
    Column("event_id", String(255), primary_key=True),
    Column("type", String(64), nullable=False),
    Column("created", Integer, nullable=False, comment="The event's created (Stripe time, seconds)"),
    Column("object_id", String(255), nullable=True),
    Column("payload", JSON, nullable=False),
    Column("source", String(16), nullable=False, comment="webhook | poller"),
    Column("account", String(32), nullable=False, server_default=DEFAULT_ACCOUNT, comment="The Stripe account it came from: a name of RECON_STRIPE_ACCOUNTS"),
    _moment("received_at"),
    Column("status", String(16), nullable=False, default=InboxStatus.RECEIVED.value, comment="received | applied | echo | stale | ignored"),
    _moment("applied_at", nullable=True),
    Column("note", Text, nullable=True),
)
Index("ix_inbox_pending", inbox.c.status, inbox.c.created)

# Every change applied to either side and every conflict decision: who, what, before, after, why.
audit = Table(
    "audit",
    metadata,
    _serial(),
    _moment("at"),
    Column("actor", String(32), nullable=False, comment="stripe | catalog | pipeline"),
    _product_ref(),
    Column("field", String(32), nullable=True),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
    Column("decision", String(32), nullable=False, comment="applied | kept_local | conflict_local_wins | conflict_stripe_wins | ..."),
    Column("reason", Text, nullable=False),
    Column("event_id", String(255), nullable=True),
)
Index("ix_audit_product", audit.c.product_id)

# Per product, the newest Stripe state the catalog has seen (the `updated` of the last
# applied object), so an older event never overwrites newer state.
stripe_seen = Table(
    "stripe_seen",
    metadata,
    Column("product_id", String(64), primary_key=True),
    Column("stripe_updated", Integer, nullable=False),
    Column("event_id", String(255), nullable=False),
)

# Hourly partitions of Dagster assets, one row per (asset, hour): a range of hours loads
# with one query (Dagster's filesystem IO manager cannot load ranges).
asset_partitions = Table(
    "asset_partitions",
    metadata,
    Column("asset_key", String(255), primary_key=True),
    Column("partition_key", String(32), primary_key=True),
    Column("frame", LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb"), nullable=False, comment="The partition's rows as Parquet"),
    Column("row_count", Integer, nullable=False),
    _moment("stored_at"),
)

# Catalog rows the pipeline will not sync until they are fixed, with the reason. Each
# local_products (local_prices) materialization brings the held products (prices) up to date:
# new bad rows come in, fixed ones get `released_at` and are kept 30 days.
quarantine = Table(
    "quarantine",
    metadata,
    _serial(),
    _moment("at"),
    Column("product_id", String(255), nullable=True),
    Column("reason", Text, nullable=False),
    Column("row", JSON, nullable=True),
    Column("kind", String(16), nullable=False, server_default="product", comment="product | price"),
    Column("lookup_key", String(200), nullable=True, comment="A quarantined price's lookup key"),
    Column("released_at", DateTime(timezone=True), nullable=True, comment="When the row left the quarantine (fixed or removed in the catalog); NULL while it is held"),
)

# API keys Stripe refused (401/403), by a digest of the key (never the key): while the key
# in use is here, nothing calls Stripe with it again, and a new key starts afresh.
stripe_refusals = Table(
    "stripe_refusals",
    metadata,
    Column("key_fingerprint", String(64), primary_key=True, comment="sha256 of the key, first 16 hex digits"),
    _moment("refused_at"),
    Column("status", Integer, nullable=False, comment="401 (the key) or 403 (what it may do)"),
    Column("code", String(64), nullable=True),
)

# The Stripe rate budget every process shares (see stripe_api/ratelimit.py): per bucket (an
# account's global limit, or one of its endpoints), the moment its next request slot is free.
rate_budget = Table(
    "rate_budget",
    metadata,
    Column("bucket", String(255), primary_key=True, comment="'<account> *' or '<account> <METHOD> <path template>'"),
    Column("tat", Double(), nullable=False, comment="When the next slot is free, in seconds since the epoch by the database's clock"),
)

# Where the events poller is, per Stripe account: the newest event it stored, and when it last
# listed the account's events to the end (the poller's sensor decides from this when to poll).
events_cursor = Table(
    "events_cursor",
    metadata,
    Column("account", String(32), primary_key=True, comment="A name of RECON_STRIPE_ACCOUNTS"),
    Column("last_id", String(255), nullable=True, comment="The newest event stored from this account"),
    Column("created", Integer, nullable=True, comment="That event's created (Stripe time, seconds)"),
    _moment("polled_at"),
)

# SQLite's capture mark: while a row is here the capture triggers stay silent. The pipeline
# inserts one before its own writes of catalog rows and deletes it before they commit, so only
# its own transaction sees it (catalog/capture.py; PostgreSQL and MariaDB use a setting instead).
capture_mark = Table(
    "capture_mark",
    metadata,
    _serial(),
    Column("writer", String(16), nullable=False, comment="pipeline | stripe: who writes in the transaction that holds it"),
)

# Every drift row ever found (each catalog_drift materialization appends its rows; kept
# RECON_DRIFT_HISTORY_DAYS), so "what drifted, when, and for how long" is a SQL query.
drift_history = Table(
    "drift_history",
    metadata,
    _serial(),
    Column("run_id", String(64), nullable=True, comment="The Dagster run that found it"),
    _moment("observed_at"),
    Column("account", String(32), nullable=False, server_default=DEFAULT_ACCOUNT, comment="The Stripe account: a name of RECON_STRIPE_ACCOUNTS"),
    Column("product_id", String(255), nullable=True),
    Column("lookup_key", String(200), nullable=True, comment="A price's lookup key; NULL for product rows"),
    Column("kind", String(32), nullable=False),
    Column("field", String(64), nullable=True),
    Column("local_value", Text, nullable=True),
    Column("stripe_value", Text, nullable=True),
)
Index("ix_drift_history_product", drift_history.c.product_id, drift_history.c.observed_at)
Index("ix_drift_history_observed", drift_history.c.observed_at)
