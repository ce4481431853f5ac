"""Capture: changes written by any writer (here each database's own client, never Python) reach Stripe.

`recon-pipeline init --capture` installs triggers on PostgreSQL, MariaDB and SQLite; the
worker pushes the outbox rows they queue as it pushes any other.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text

from recon_pipeline.catalog import Catalog, make_engine
from recon_pipeline.catalog import capture as capture_module
from recon_pipeline.catalog.changes import take_from_stripe, update_product
from recon_pipeline.catalog.schema import audit, outbox
from recon_pipeline.testing import seed_priced
from recon_pipeline_tests.conftest import Database
from recon_pipeline_tests.test_cli import cli, said

KEY = ("sk_test_capture", "")


def _stripe(emulator, path: str, **params) -> dict:
    return httpx.get(f"{emulator.url}{path}", params=params, auth=KEY).json()


def _price(emulator, lookup_key: str) -> dict:
    found = _stripe(emulator, "/v1/prices", **{"lookup_keys[]": lookup_key})["data"]
    if found:
        return found[0]
    archived = [p for p in _stripe(emulator, "/v1/prices", active="false", limit=100)["data"] if p["lookup_key"] == lookup_key]
    return archived[0]


def test_a_dba_installs_capture_from_the_printed_sql_and_every_write_by_the_databases_client_reaches_stripe(database: Database, emulator):
    env = {"RECON_CATALOG_URL": database.url, "STRIPE_API_BASE": emulator.url}
    assert "capture: not installed" in said(cli("init", **env))
    printed = cli("init", "--capture", "--print-sql", **env)
    assert printed.returncode == 0 and "recon_capture_products" in printed.stdout
    database.run(printed.stdout)  # as a DBA would: the SQL through the database's own client
    triggers = 2 if database.kind == "postgresql" else 6  # PostgreSQL: one per table, for all three operations
    assert f"capture: {triggers} triggers installed" in said(cli("init", **env))
    t, now = database.true, database.now

    # A product and its price in one transaction: the worker creates both in Stripe.
    database.run(
        "BEGIN;\n"
        f"INSERT INTO products (id, name, active, account, updated_at) VALUES ('cap-1', 'Captured', {t}, 'default', {now});\n"
        f"INSERT INTO prices (lookup_key, product_id, active, currency, unit_amount, billing_scheme, recurring_interval, recurring_interval_count, updated_at) "
        f"VALUES ('cap-1:monthly', 'cap-1', {t}, 'usd', 1500, 'per_unit', 'month', 1, {now});\n"
        f"UPDATE products SET default_price = 'cap-1:monthly' WHERE id = 'cap-1';\n"
        "COMMIT;\n"
    )
    assert database.count() == 3
    assert cli("worker", "--once", **env).returncode == 0
    product = _stripe(emulator, "/v1/products/cap-1", **{"expand[]": "default_price"})
    assert (product["name"], product["default_price"]["lookup_key"], product["default_price"]["unit_amount"]) == ("Captured", "cap-1:monthly", 1500)

    # A rolled-back transaction leaves nothing to push.
    database.run("BEGIN;\nUPDATE products SET name = 'Never' WHERE id = 'cap-1';\nROLLBACK;\n")
    assert database.count() == 3

    # A new price inserted and the product pointed at it in one transaction, then the old price deleted.
    database.run(
        "BEGIN;\n"
        f"INSERT INTO prices (lookup_key, product_id, active, currency, unit_amount, billing_scheme, updated_at) VALUES ('cap-1:once', 'cap-1', {t}, 'usd', 9900, 'per_unit', {now});\n"
        "UPDATE products SET name = 'Captured v2', default_price = 'cap-1:once' WHERE id = 'cap-1';\n"
        "COMMIT;\n"
        "DELETE FROM prices WHERE lookup_key = 'cap-1:monthly';\n"
    )
    assert cli("worker", "--once", **env).returncode == 0
    product = _stripe(emulator, "/v1/products/cap-1", **{"expand[]": "default_price"})
    assert (product["name"], product["default_price"]["lookup_key"]) == ("Captured v2", "cap-1:once")
    assert _price(emulator, "cap-1:monthly")["active"] is False  # what the catalog deleted is archived

    # The product deleted: archived in Stripe. Every captured change is in the audit trail, with the database user.
    database.run("DELETE FROM prices WHERE product_id = 'cap-1';\nDELETE FROM products WHERE id = 'cap-1';\n")
    assert cli("worker", "--once", **env).returncode == 0
    assert _stripe(emulator, "/v1/products/cap-1")["active"] is False
    trail = said(cli("audit", "cap-1", **env))
    user = {"sqlite": "by sqlite", "postgresql": "by postgres", "mariadb": "by root@"}[database.kind]
    assert "insert of products" in trail and "delete of prices cap-1:monthly" in trail and user in trail
    engine = make_engine(database.url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox).where(outbox.c.status != "done")).scalar_one() == 0
    engine.dispose()

    # Removed, nothing is captured any more.
    assert "capture removed" in said(cli("init", "--no-capture", **env))
    database.run(f"INSERT INTO products (id, name, active, account, updated_at) VALUES ('cap-2', 'Not captured', {t}, 'default', {now});\n")
    assert "capture: not installed" in said(cli("init", **env))


def test_one_statement_updating_1000_rows_queues_1000_ordered_changes(database: Database):
    env: dict[str, Any] = {"RECON_CATALOG_URL": database.url}
    values = ",\n".join(f"('bulk-{i:04d}', 'Bulk {i}', {database.true}, 'default', {database.now})" for i in range(1000))
    assert cli("init", **env).returncode == 0
    database.run(f"INSERT INTO products (id, name, active, account, updated_at) VALUES\n{values};\n")
    assert "capture installed on products, prices" in said(cli("init", "--capture", **env))
    database.run("BEGIN;\nUPDATE products SET description = 'rolled back';\nROLLBACK;\n")
    assert database.count() == 0
    database.run("UPDATE products SET description = 'Bulk edit';\nUPDATE products SET description = 'Bulk edit';\n")  # the second changes nothing
    engine = make_engine(database.url)
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.id, outbox.c.product_id, outbox.c.change).order_by(outbox.c.id)).all()
    engine.dispose()
    assert len(rows) == 1000 and {r.change for r in rows} == {"update"}
    assert sorted(r.product_id for r in rows) == [f"bulk-{i:04d}" for i in range(1000)]
    assert [r.id for r in rows] == list(range(rows[0].id, rows[0].id + 1000))  # in the order the rows were written
    assert database.count("audit") == 1000


def test_a_users_own_tables_are_captured_through_the_column_mapping(database: Database, emulator):
    """The user's schema, their application's writes (here their database client), to Stripe."""
    now = database.now
    database.run(
        "CREATE TABLE shop_items (sku VARCHAR(32) PRIMARY KEY, title VARCHAR(200) NOT NULL, is_live INTEGER NOT NULL, changed_at TIMESTAMP NULL);\n"
        "CREATE TABLE shop_prices (code VARCHAR(64) PRIMARY KEY, sku VARCHAR(32) NOT NULL, curr VARCHAR(3) NOT NULL, cents INTEGER, every VARCHAR(8), live INTEGER NOT NULL);\n"
    )
    env: dict[str, Any] = {
        "RECON_CATALOG_URL": database.url,
        "STRIPE_API_BASE": emulator.url,
        "RECON_CATALOG_TABLE": "shop_items",
        "RECON_CATALOG_COLUMNS": "id=sku,name=title,active=is_live,updated_at=changed_at",
        "RECON_PRICES_TABLE": "shop_prices",
        "RECON_PRICES_COLUMNS": "lookup_key=code,product_id=sku,currency=curr,unit_amount=cents,recurring_interval=every,active=live",
    }
    assert "capture installed on shop_items, shop_prices" in said(cli("init", "--capture", **env))
    database.run(
        "BEGIN;\n"
        f"INSERT INTO shop_items VALUES ('W-1', 'Widget', 1, {now});\n"
        "INSERT INTO shop_prices VALUES ('w1_monthly', 'W-1', 'eur', 700, 'month', 1);\n"
        "COMMIT;\n"
        "UPDATE shop_items SET changed_at = NULL;\n"  # not a mapped field that syncs: no change
    )
    assert database.count() == 2
    assert cli("worker", "--once", **env).returncode == 0
    assert _stripe(emulator, "/v1/products/W-1")["name"] == "Widget"
    assert (_price(emulator, "w1_monthly")["unit_amount"], _price(emulator, "w1_monthly")["currency"]) == (700, "eur")
    database.run("UPDATE shop_items SET title = 'Widget Pro' WHERE sku = 'W-1';\nUPDATE shop_prices SET live = 0 WHERE code = 'w1_monthly';\n")
    assert cli("worker", "--once", **env).returncode == 0
    assert _stripe(emulator, "/v1/products/W-1")["name"] == "Widget Pro"
    assert _price(emulator, "w1_monthly")["active"] is False


def test_the_pipelines_own_writes_are_not_captured_again(catalog: Catalog):
    """An edit through the Python API is queued once (by the API, with its audit rows), and
    Stripe's values written back are not queued at all."""
    seed_priced(catalog, ["own-1"])
    capture_module.install(catalog.engine, catalog.source)
    assert update_product(catalog, "own-1", name="Renamed")
    with catalog.engine.begin() as conn:
        take_from_stripe(catalog, conn, "own-1", {"description": "From Stripe"})
    with catalog.engine.connect() as conn:
        assert conn.execute(select(outbox.c.change, outbox.c.fields)).all() == [("update", {"name": {"before": "own-1 v0", "after": "Renamed"}})]
        assert conn.execute(select(audit.c.field, audit.c.after, audit.c.decision, audit.c.reason)).all() == [("name", "Renamed", "edited", "update by api")]
        assert conn.execute(text("SELECT count(*) FROM capture_mark")).scalar_one() == 0
    assert catalog.rows(["own-1"])["description"].tolist() == ["From Stripe"]


def test_capture_on_a_query_source_is_refused_saying_the_hourly_path_remains(tmp_path: Path):
    env: dict[str, Any] = {"RECON_CATALOG_URL": f"sqlite:///{tmp_path / 'c.db'}", "RECON_CATALOG_QUERY": "SELECT id, name FROM items"}
    done = cli("init", "--capture", "--print-sql", **env)
    assert done.returncode == 2
    assert "RECON_CATALOG_QUERY is a query: with a query only the hourly reconciliation runs" in said(done)


def test_the_pipelines_mark_blocks_no_other_writer_and_hides_nothing_of_theirs(database: Database):
    """While the pipeline holds its mark in an open transaction, another writer's change (here a
    case-only rename) is neither delayed nor missed; a row without its key is skipped, not refused."""
    env: dict[str, Any] = {"RECON_CATALOG_URL": database.url}
    assert cli("init", "--capture", **env).returncode == 0
    t, now = database.true, database.now
    database.run(f"INSERT INTO products (id, name, active, account, updated_at) VALUES ('a', 'widget', {t}, 'default', {now}), ('b', 'B', {t}, 'default', {now});\n")
    queued = database.count()
    catalog = Catalog.open(database.url)
    if database.kind == "sqlite":  # one writer at a time: the other writer waits for the file, as SQLite always does
        catalog.engine.dispose()
        database.run("UPDATE products SET name = 'Widget' WHERE id = 'a';\n")
        assert database.count() == queued + 1
        return
    wait = "SET lock_timeout = '3s';\n" if database.kind == "postgresql" else "SET SESSION innodb_lock_wait_timeout = 3;\n"
    with catalog.engine.connect() as conn, conn.begin(), capture_module.quiet(conn):
        conn.execute(text("UPDATE products SET description = 'by the pipeline' WHERE id = 'b'"))
        started = time.monotonic()
        database.run(f"{wait}UPDATE products SET name = 'Widget' WHERE id = 'a';\n")  # only the case differs
        assert time.monotonic() - started < 3
    catalog.engine.dispose()
    engine = make_engine(database.url)
    with engine.connect() as conn:
        assert conn.execute(select(outbox.c.product_id).where(outbox.c.id > queued)).scalars().all() == ["a"]  # theirs, not ours
    engine.dispose()


def test_a_users_schema_elsewhere_and_rows_without_a_key(database: Database, emulator):
    """PostgreSQL: the user's table in a schema of its own, written with another search_path; a
    price row without a lookup key is not queued (the hourly run quarantines it) and the write
    stands. Elsewhere: a table in another database is refused by name, not half-installed."""
    if database.kind != "postgresql":  # MariaDB's other database, SQLite's attached one: no triggers of ours there
        env: dict[str, Any] = {"RECON_CATALOG_URL": database.url, "RECON_CATALOG_TABLE": "other.items", "RECON_CATALOG_COLUMNS": "id=sku,name=title"}
        done = cli("init", "--capture", "--print-sql", **env)  # refused before any SQL is printed
        dialect = "mysql" if database.kind == "mariadb" else "sqlite"
        assert done.returncode == 2 and f"capture on {dialect} needs the table in the catalog's own database: 'other.items'" in said(done)
        return
    database.run(
        "CREATE SCHEMA shop;\n"
        "CREATE TABLE shop.items (sku VARCHAR(32) PRIMARY KEY, title VARCHAR(200) NOT NULL);\n"
        "CREATE TABLE shop.prices (code VARCHAR(64), sku VARCHAR(32) NOT NULL, cents INTEGER, curr VARCHAR(3));\n"
    )
    env = {
        "RECON_CATALOG_URL": database.url,
        "STRIPE_API_BASE": emulator.url,
        "RECON_CATALOG_TABLE": "shop.items",
        "RECON_CATALOG_COLUMNS": "id=sku,name=title",
        "RECON_PRICES_TABLE": "shop.prices",
        "RECON_PRICES_COLUMNS": "lookup_key=code,product_id=sku,unit_amount=cents,currency=curr",
    }
    assert "capture installed on shop.items, shop.prices" in said(cli("init", "--capture", **env))
    database.run("SET search_path = shop;\nINSERT INTO items VALUES ('S-1', 'Schema item');\nINSERT INTO prices VALUES (NULL, 'S-1', 100, 'usd');\n")
    assert database.count() == 1
    assert cli("worker", "--once", **env).returncode == 0
    assert _stripe(emulator, "/v1/products/S-1")["name"] == "Schema item"


def test_a_captured_change_stripe_keeps_refusing_is_dead_lettered_and_replayed(tmp_path: Path, emulator):
    """Captured rows take the outbox's path whole: retried, dead-lettered, replayed."""
    from recon_pipeline.repair.replay import replay_dead_letters
    from recon_pipeline.stripe_api import RetryPolicy, StripeGateway
    from recon_pipeline.sync.outbox import OutboxPolicy, drain

    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    capture_module.install(catalog.engine, catalog.source)
    subprocess.run(["sqlite3", str(tmp_path / "catalog.db"), "INSERT INTO products (id, name, active, account, updated_at) VALUES ('dl', 'Down', 1, 'default', CURRENT_TIMESTAMP);"], check=True)
    gateway = StripeGateway("sk_test_capture", emulator.url, global_rate=None, endpoint_rate=None, retry=RetryPolicy(1, 0.01, 0.01))
    emulator.faults.update({"failure_rate": 1.0})
    result = drain(catalog, gateway, policy=OutboxPolicy(max_attempts=1))
    assert result.dead == 1
    emulator.faults.update({"failure_rate": 0.0})
    replayed = replay_dead_letters(catalog, gateway)
    assert [r.resolved for r in replayed] == [True]
    assert _stripe(emulator, "/v1/products/dl")["name"] == "Down"
