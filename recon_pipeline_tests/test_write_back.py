"""Write-back: Stripe's edits into the user's own tables, where RECON_CATALOG_WRITABLE allows it.

The user's tables are written by their database's own client; a dashboard edit in the
emulator comes back under `stripe_wins` into the mapped columns only, audited once, and
capture does not send it back to Stripe.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import httpx
import pytest
from sqlalchemy import select

from recon_pipeline.catalog import make_engine
from recon_pipeline.catalog.schema import audit, outbox
from recon_pipeline.settings import Settings, SettingsError
from recon_pipeline.sync.poller import poll_events
from recon_pipeline_tests.conftest import Database
from recon_pipeline_tests.test_capture import KEY
from recon_pipeline_tests.test_cli import cli, said
from recon_pipeline_tests.test_sync import gateway

USERS = {
    "RECON_CATALOG_TABLE": "shop_items",
    "RECON_CATALOG_COLUMNS": "id=sku,name=title,active=is_live,metadata=attrs",
    "RECON_PRICES_TABLE": "shop_prices",
    "RECON_PRICES_COLUMNS": "lookup_key=code,product_id=sku,currency=curr,unit_amount=cents,active=live",
}


def test_stripes_edits_come_back_into_a_writable_users_table_once_and_are_not_echoed(database: Database, emulator):
    database.run(
        "CREATE TABLE shop_items (sku VARCHAR(32) PRIMARY KEY, title VARCHAR(200) NOT NULL, is_live INTEGER NOT NULL, attrs TEXT, internal_note VARCHAR(50));\n"
        "CREATE TABLE shop_prices (code VARCHAR(64) PRIMARY KEY, sku VARCHAR(32) NOT NULL, curr VARCHAR(3) NOT NULL, cents INTEGER, live INTEGER NOT NULL);\n"
    )
    env: dict[str, Any] = {
        **USERS,
        "RECON_CATALOG_URL": database.url,
        "STRIPE_API_BASE": emulator.url,
        "RECON_CONFLICT_POLICY": "stripe_wins",
        "RECON_CATALOG_WRITABLE": "true",
    }
    assert "capture installed on shop_items, shop_prices" in said(cli("init", "--capture", **env))
    database.run("INSERT INTO shop_items VALUES ('W-1', 'Widget', 1, NULL, 'keep me');\nINSERT INTO shop_prices VALUES ('w1', 'W-1', 'usd', 500, 1);\n")
    assert cli("worker", "--once", **env).returncode == 0
    pushed = database.count()

    # A dashboard edit: the name, and a metadata key.
    edited = httpx.post(f"{emulator.url}/v1/products/W-1", data={"name": "Dashboard name", "metadata[color]": "red"}, auth=KEY)
    assert edited.status_code == 200
    engine = make_engine(database.url)
    poll_events(engine, gateway(emulator), None)
    assert cli("worker", "--once", **env).returncode == 0

    row = database.run("SELECT title, is_live, attrs, internal_note FROM shop_items WHERE sku = 'W-1';\n")
    assert "Dashboard name" in row and "red" in row and "keep me" in row  # mapped columns only
    with engine.connect() as conn:
        decisions = conn.execute(select(audit.c.field, audit.c.after, audit.c.decision).where(audit.c.decision == "conflict_stripe_wins")).all()
        queued = conn.execute(select(outbox.c.change)).scalars().all()
    engine.dispose()
    assert ("name", "Dashboard name") in {(d.field, d.after) for d in decisions}
    assert len([d for d in decisions if d.field == "name"]) == 1
    assert len(queued) == pushed  # the write back was Stripe's: nothing queued to push it back
    assert httpx.get(f"{emulator.url}/v1/products/W-1", auth=KEY).json()["name"] == "Dashboard name"

    # The user's own writes are still captured and pushed after it.
    database.run("UPDATE shop_items SET title = 'Widget again' WHERE sku = 'W-1';\n")
    assert cli("worker", "--once", **env).returncode == 0
    assert httpx.get(f"{emulator.url}/v1/products/W-1", auth=KEY).json()["name"] == "Widget again"


@pytest.mark.parametrize("command", [("init",), ("reconcile",), ("repair", "--dry-run"), ("worker", "--once")])
def test_a_policy_that_writes_into_a_read_only_users_table_is_refused_by_every_command(tmp_path, command):
    env = {**USERS, "RECON_CATALOG_URL": f"sqlite:///{tmp_path / 'shop.db'}", "RECON_CONFLICT_POLICY": "latest_wins"}
    done = cli(*command, **env)
    assert done.returncode == 2
    assert "RECON_CONFLICT_POLICY=latest_wins writes Stripe's edits into the catalog, which is your table 'shop_items' and read-only: set RECON_CATALOG_WRITABLE=true" in said(done)


def test_the_code_location_refuses_it_at_load_and_a_query_cannot_be_writable(monkeypatch):
    from recon_pipeline.definitions import build_defs

    monkeypatch.setenv("RECON_CATALOG_TABLE", "shop_items")
    monkeypatch.setenv("RECON_CATALOG_COLUMNS", USERS["RECON_CATALOG_COLUMNS"])
    monkeypatch.setenv("RECON_CONFLICT_POLICY", "stripe_wins")
    with pytest.raises(SettingsError, match="set RECON_CATALOG_WRITABLE=true"):
        build_defs()
    monkeypatch.setenv("RECON_CATALOG_WRITABLE", "true")
    assert isinstance(build_defs(), dg.Definitions)
    with pytest.raises(SettingsError, match="RECON_CATALOG_WRITABLE=true needs tables to write into"):
        Settings.from_env({"RECON_CATALOG_QUERY": "SELECT 1 AS id, 'x' AS name", "RECON_CATALOG_WRITABLE": "true"})
    with pytest.raises(SettingsError, match="RECON_CATALOG_WRITABLE='maybe' is not true or false"):
        Settings.from_env({"RECON_CATALOG_WRITABLE": "maybe"})


def test_adopting_into_a_users_table_is_refused_at_load():
    with pytest.raises(SettingsError, match="RECON_ORPHAN_POLICY=adopt inserts Stripe's objects into the catalog"):
        Settings.from_env({**USERS, "RECON_ORPHAN_POLICY": "adopt", "RECON_CATALOG_WRITABLE": "true"})
