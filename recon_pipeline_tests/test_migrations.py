"""Alembic owns the catalog's schema: an empty database and one made by release 0.1.0 both
upgrade to the newest revision, on SQLite, PostgreSQL and MariaDB, keeping every row."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, select

from recon_pipeline.catalog import make_engine
from recon_pipeline.catalog.migrate import RECORDS, VERSION_TABLE, current, heads, upgrade
from recon_pipeline.catalog.schema import metadata, outbox, prices, products
from recon_pipeline.settings import environment_for_children
from recon_pipeline_tests import release_0_1_0_schema as release

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def differences(engine, without: tuple[str, ...] = ()) -> list:
    """What differs between the database and schema.py (tables, columns, types, indexes), but for tables `without`."""
    with engine.connect() as conn:
        found = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    def about_a_left_out_table(d) -> bool:
        table = d[1] if d[0] == "add_table" else getattr(d[1], "table", None)
        return d[0] in ("add_table", "add_index") and table is not None and table.name in without

    return [d for d in found if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE) and not about_a_left_out_table(d)]


def test_an_empty_database_upgrades_to_the_schema(empty_database):
    engine = make_engine(empty_database)
    assert current(engine) == set()
    assert upgrade(engine) == heads() == current(engine)
    assert differences(engine) == []
    assert upgrade(engine) == heads()  # again: nothing to do


def test_a_database_made_by_release_0_1_0_upgrades_in_place_and_keeps_its_rows(empty_database):
    engine = make_engine(empty_database)
    release.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(release.products).values(id="sku_1", name="Pro", active=True, metadata={"tier": "2"}, unit_amount=1500, currency="usd", recurring_interval="month", updated_at=NOW))
        conn.execute(insert(release.products).values(id="sku_2", name="Free", active=True, metadata={}, updated_at=NOW))
        conn.execute(insert(release.outbox).values(product_id="sku_1", change="create", fields={}, created_at=NOW, status="pending", attempts=0, next_attempt_at=NOW))
    assert current(engine) == set() and VERSION_TABLE not in inspect(engine).get_table_names()
    upgrade(engine)
    assert current(engine) == heads()
    assert differences(engine) == []
    with engine.connect() as conn:
        # Each product's single price moved to `prices` under the key Stripe holds for it, as its default.
        assert conn.execute(select(products.c.id, products.c.name, products.c.default_price).order_by(products.c.id)).all() == [("sku_1", "Pro", "sku_1:default"), ("sku_2", "Free", None)]
        moved = conn.execute(select(prices.c.lookup_key, prices.c.product_id, prices.c.unit_amount, prices.c.currency, prices.c.recurring_interval, prices.c.recurring_interval_count)).all()
        assert moved == [("sku_1:default", "sku_1", 1500, "usd", "month", 1)]
        # Every product is sold in the one account of an install without RECON_STRIPE_ACCOUNTS.
        assert conn.execute(select(products.c.account)).scalars().all() == ["default", "default"]
        assert conn.execute(select(outbox.c.product_id, outbox.c.status)).all() == [("sku_1", "pending")]
    assert "unit_amount" not in {c["name"] for c in inspect(engine).get_columns("products")}


def test_many_processes_opening_a_new_catalog_at_once_upgrade_it_once(empty_database):
    failures: list[BaseException] = []

    def open_it() -> None:
        try:
            upgrade(make_engine(empty_database))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    engine = make_engine(empty_database)
    assert current(engine) == heads() and differences(engine) == []


def test_recon_pipeline_init_upgrades_and_says_to_which_revision(tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    env = environment_for_children(RECON_CATALOG_URL=url)
    done = subprocess.run([sys.executable, "-m", "recon_pipeline.cli", "init"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "revisions " + ", ".join(sorted(heads())) in done.stdout
    assert current(make_engine(url)) == heads()


def test_a_users_own_catalog_gets_the_records_but_no_products_table(empty_database):
    engine = make_engine(empty_database)
    upgrade(engine, with_products=False)
    assert current(engine) == heads((RECORDS,)) and not {"products", "prices"} & set(inspect(engine).get_table_names())
    assert differences(engine, without=("products", "prices")) == []
    upgrade(engine)  # later switched to our own catalog: the catalog branch joins
    assert current(engine) == heads() and differences(engine) == []
