"""The command line as a person meets it: every mistake said plainly, with exit status 2
(1 for a request that could not be carried out), never a traceback, never a secret.

Each command runs as its own process, as a user would run it.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from recon_pipeline.catalog import Catalog, CatalogPrice, CatalogProduct, replace_products
from recon_pipeline.catalog.changes import create_product, update_product
from recon_pipeline.catalog.schema import dead_letter, outbox, stripe_refusals
from recon_pipeline.settings import environment_for_children
from recon_pipeline.sync.inbox import EventSource, InboxApplier, store_event
from recon_pipeline.testing import event, product_obj

REFUSED_KEY = "sk_live_REFUSEDKEY0000000000001234"  # the emulator takes only test keys: Stripe's 401


def cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """`recon-pipeline ARGS` in a process of its own, with these variables set (STRIPE_API_KEY unset unless given)."""
    environment = environment_for_children(**env)
    if "STRIPE_API_KEY" not in env:
        environment.pop("STRIPE_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "recon_pipeline.cli", *args], env=environment, capture_output=True, text=True, timeout=timeout)


def said(done: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    "url, message",
    [
        ("postgres://postgres@127.0.0.1:5432/x", "starts with 'postgres://', which SQLAlchemy does not accept; write postgresql+psycopg2://"),
        ("mysql://root@127.0.0.1:3306/x", "its driver (MySQLdb) is not installed; for MySQL and MariaDB write mysql+pymysql://"),
        ("postgresql+psycopg2://postgres@127.0.0.1:5432/recon_no_such_db", "the database 'recon_no_such_db' does not exist on 127.0.0.1:5432; create it"),
        ("postgresql+psycopg2://postgres@127.0.0.1:1/x", "nothing answers at 127.0.0.1:1"),
        ("postgresql+psycopg2://postgres@127.0.0.1:5432/recon_no_such_db", "create it (e.g. createdb -h 127.0.0.1 -p 5432 -U postgres recon_no_such_db)"),
        ("mysql+pymysql://root@127.0.0.1:3306/recon_no_such_db", "the database 'recon_no_such_db' does not exist on 127.0.0.1:3306"),
        ("mysql+pymysql://root@127.0.0.1:3306/recon_no_such_db", "create it (e.g. mariadb -h 127.0.0.1 -P 3306 -u root -e 'CREATE DATABASE `recon_no_such_db`')"),
    ],
)
def test_a_catalog_url_that_cannot_work_says_why_and_what_to_do(url, message):
    done = cli("init", RECON_CATALOG_URL=url)
    assert done.returncode == 2 and message in said(done)


def test_a_password_in_the_catalog_url_is_never_shown():
    done = cli("init", RECON_CATALOG_URL="postgresql+psycopg2://postgres:hunter2secret@127.0.0.1:1/x")
    assert done.returncode == 2 and "hunter2secret" not in said(done) and "***" in done.stderr


@pytest.mark.parametrize("command", [["dead-letters", "list"], ["audit"], ["quarantine", "list"]])
def test_commands_that_only_read_never_create_a_catalog(tmp_path: Path, command):
    typo = tmp_path / "catlog.db"
    done = cli(*command, RECON_CATALOG_URL=f"sqlite:///{typo}")
    assert done.returncode == 2 and f"there is no catalog at {typo}" in said(done)
    assert not typo.exists()


def test_init_reads_a_users_own_table_and_says_so_or_names_what_is_missing(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = Catalog.open(url).engine
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE shop_items (sku TEXT, title TEXT)"))
    ok = cli("init", RECON_CATALOG_URL=url, RECON_CATALOG_TABLE="shop_items", RECON_CATALOG_COLUMNS="id=sku,name=title")
    assert ok.returncode == 0 and "products are read from your table 'shop_items' (id=sku,name=title)" in said(ok)
    missing = cli("init", RECON_CATALOG_URL=url, RECON_CATALOG_TABLE="shop_item", RECON_CATALOG_COLUMNS="id=sku,name=title")
    assert missing.returncode == 2 and "RECON_CATALOG_TABLE='shop_item'" in said(missing) and "no such table" in missing.stderr
    wrong_column = cli("init", RECON_CATALOG_URL=url, RECON_CATALOG_TABLE="shop_items", RECON_CATALOG_COLUMNS="id=sku,name=label")
    assert wrong_column.returncode == 2 and "label" in said(wrong_column)


def test_a_users_own_catalog_gets_no_products_table_of_ours(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = Catalog.open(url, read_only=False).engine
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE products"))  # as a database that never had ours
        conn.execute(text("DELETE FROM recon_schema_version WHERE version_num LIKE 'c%'"))
        conn.execute(text("CREATE TABLE shop_items (sku TEXT, title TEXT)"))
    assert cli("init", RECON_CATALOG_URL=url, RECON_CATALOG_TABLE="shop_items", RECON_CATALOG_COLUMNS="id=sku,name=title").returncode == 0
    with engine.connect() as conn:
        assert "products" not in {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}


@pytest.mark.parametrize(
    "args, message",
    [
        (["edit", "sku_1"], "nothing to change: give --name, --description, --active, --metadata, --price, --add-price, --change-price, --price-json, --archive-price or --default-price"),
        (["edit", "sku_1", "--price", "1500"], "--price takes AMOUNT CURRENCY [INTERVAL], e.g. --price 1500 usd month; got '1500'"),
        (["edit", "sku_1", "--price", "1500", "usd", "month", "extra"], "got '1500 usd month extra'"),
        (["edit", "sku_1", "--price", "15.00", "usd"], "--price amount '15.00' must be a whole number"),
        (["edit", "nope", "--name", "X"], "product 'nope' is not in the catalog; add it first: recon-pipeline catalog add nope --name ..."),
        (["catalog", "add", "sku_2"], "recon-pipeline catalog add sku_2 needs --name"),
        (["catalog", "add", "sku_1", "--name", "Again"], "product 'sku_1' already exists; use update_product"),
        (["edit", "sku_1", "--nickname", "N"], "--nickname go with exactly one of --price, --add-price or --change-price"),
        (["edit", "sku_1", "--add-price", "k", "100", "usd", "--tiers", "[nope"], "--tiers '[nope' is not JSON"),
        (["dead-letters", "list", "3"], "dead letter ids go with replay"),
    ],
)
def test_edit_and_dead_letter_mistakes_are_named(tmp_path: Path, args, message):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    create_product(Catalog.open(url), CatalogProduct(id="sku_1", name="One"))
    done = cli(*args, RECON_CATALOG_URL=url)
    assert done.returncode == 2 and message in said(done)


def test_edit_says_when_nothing_changed(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    create_product(Catalog.open(url), CatalogProduct(id="sku_1", name="One"))
    first, again = cli("edit", "sku_1", "--name", "Two", RECON_CATALOG_URL=url), cli("edit", "sku_1", "--name", "Two", RECON_CATALOG_URL=url)
    assert "sku_1: changed and queued in the outbox" in said(first)
    assert again.returncode == 0 and "sku_1: already so in the catalog; nothing queued" in said(again)


def test_a_price_change_from_the_command_line_replaces_exactly_that_price(tmp_path: Path, emulator):
    """A monthly default price and an annual one (`pro_annual`) on both sides; `edit --price`
    then `worker --once`: the new monthly price is the default, and the annual one stays active."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = Catalog.open(url)
    monthly = CatalogPrice(lookup_key="sku_1:default", product_id="sku_1", currency="usd", unit_amount=1000, recurring_interval="month")
    annual = CatalogPrice(lookup_key="pro_annual", product_id="sku_1", currency="usd", unit_amount=10000, recurring_interval="year")
    replace_products(catalog.engine, [CatalogProduct(id="sku_1", name="Pro", default_price="sku_1:default")], [monthly, annual])
    fixture = {
        "id": "sku_1",
        "name": "Pro",
        "created": 1_700_000_000,
        "prices": [
            {"currency": "usd", "unit_amount": 1000, "recurring": {"interval": "month"}, "lookup_key": "sku_1:default"},
            {"currency": "usd", "unit_amount": 10000, "recurring": {"interval": "year"}, "lookup_key": "pro_annual"},
        ],
    }
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [fixture]}).raise_for_status()
    env = {"RECON_CATALOG_URL": url, "STRIPE_API_BASE": emulator.url}
    annual_id = httpx.get(f"{emulator.url}/v1/prices", params={"lookup_keys[]": "pro_annual"}, auth=("sk_test_cli", "")).json()["data"][0]["id"]

    assert "changed and queued" in said(cli("edit", "sku_1", "--price", "1200", "usd", "month", **env))
    assert cli("worker", "--once", **env).returncode == 0
    product = httpx.get(f"{emulator.url}/v1/products/sku_1", params={"expand[]": "default_price"}, auth=("sk_test_cli", "")).json()
    assert (product["default_price"]["unit_amount"], product["default_price"]["lookup_key"]) == (1200, "sku_1:default")
    kept = httpx.get(f"{emulator.url}/v1/prices/{annual_id}", auth=("sk_test_cli", "")).json()
    assert (kept["active"], kept["lookup_key"], kept["unit_amount"]) == (True, "pro_annual", 10000)

    # Add a price, change one, archive one: each by its lookup key; a key of another product is refused.
    assert "changed and queued" in said(cli("edit", "sku_1", "--add-price", "pro_eu", "900", "eur", "month", **env))
    assert "changed and queued" in said(cli("edit", "sku_1", "--archive-price", "pro_annual", **env))
    wrong = cli("edit", "sku_1", "--change-price", "nope", "100", "usd", **env)
    assert wrong.returncode == 2 and "'sku_1' has no price 'nope'; its prices are: pro_annual, pro_eu, sku_1:default" in said(wrong)
    assert cli("worker", "--once", **env).returncode == 0
    listed = {p["lookup_key"]: p for p in httpx.get(f"{emulator.url}/v1/prices", params={"product": "sku_1", "limit": 100}, auth=("sk_test_cli", "")).json()["data"]}
    assert set(listed) == {"sku_1:default", "pro_eu"}  # active ones; the annual one archived
    assert httpx.get(f"{emulator.url}/v1/prices/{annual_id}", auth=("sk_test_cli", "")).json()["active"] is False


def test_replaying_a_dead_letter_that_is_not_there_fails(tmp_path: Path, emulator):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    Catalog.open(url)
    done = cli("dead-letters", "replay", "42", RECON_CATALOG_URL=url, STRIPE_API_BASE=emulator.url)
    assert done.returncode == 1 and "no open dead letter #42" in said(done)


@pytest.mark.parametrize("command, shown", [("worker", "(default: 0.2)"), ("drill", "(default: 20"), ("emulator", "(default: 12111)"), ("audit", "--since"), ("backfill", "--from HOUR")])
def test_every_subcommand_explains_its_options_and_defaults(command, shown):
    done = cli(command, "--help")
    assert done.returncode == 0 and shown in said(done)


def test_the_audit_trail_is_readable_by_product_and_since(tmp_path: Path):
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    create_product(catalog, CatalogProduct(id="sku_1", name="Catalog name"))
    renamed = event("evt_audit", "product.updated", product_obj("sku_1", "Dashboard name", 1_900_000_000))
    renamed["data"]["previous_attributes"] = {"name": "Catalog name"}
    store_event(catalog.engine, renamed, EventSource.WEBHOOK)
    InboxApplier(catalog).apply_pending()
    url = str(catalog.engine.url)
    done = cli("audit", "sku_1", "--since", "1h", RECON_CATALOG_URL=url)
    lines = said(done).splitlines()
    assert 'sku_1  none -> {"name": "Catalog name", "prices": []}  by catalog  edited: create by api' in lines[0]
    assert "sku_1  name: 'Catalog name' -> 'Dashboard name'  by stripe  conflict_local_wins: product.updated changed an owned field; policy local_wins (evt_audit)" in lines[1]
    assert lines[-1].startswith("2 audit entries of sku_1 since ")
    # A catalog edit by command is in the trail too.
    assert cli("edit", "sku_1", "--name", "Edited", RECON_CATALOG_URL=url).returncode == 0
    assert "sku_1  name: 'Catalog name' -> 'Edited'  by catalog  edited: update by command" in said(cli("audit", "sku_1", RECON_CATALOG_URL=url)).splitlines()[2]
    assert "0 audit entries" in said(cli("audit", "sku_other", RECON_CATALOG_URL=url))
    bad = cli("audit", "--since", "yesterday", RECON_CATALOG_URL=url)
    assert bad.returncode == 2 and "--since 'yesterday' is neither a date or time" in said(bad)


# -- a key Stripe refuses -----------------------------------------------------------------


def test_a_refused_api_key_stops_the_worker_at_once_saying_why_and_nothing_is_lost(tmp_path: Path, emulator):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = Catalog.open(url)
    create_product(catalog, CatalogProduct(id="sku_1", name="One"))
    update_product(catalog, "sku_1", name="One, renamed")
    env = {"RECON_CATALOG_URL": url, "STRIPE_API_BASE": emulator.url}
    done = cli("worker", STRIPE_API_KEY=REFUSED_KEY, **env)
    output = said(done)
    assert done.returncode == 2 and "Stripe refused the API key in STRIPE_API_KEY (401" in output and "2 changes wait in the outbox" in output
    assert "REFUSEDKEY" not in output and "1234" not in output  # neither the key nor Stripe's masked echo of it
    with catalog.engine.connect() as conn:
        assert conn.execute(select(outbox.c.status, outbox.c.attempts)).all() == [("pending", 0), ("pending", 0)]  # untouched
        assert conn.execute(select(dead_letter)).all() == []
        assert len(conn.execute(select(stripe_refusals)).all()) == 1
    requests = httpx.get(f"{emulator.url}/_emulator/stats").json()["requests"]
    assert requests == 1, "a refused key is not retried"
    # Started again with the same key: one probe, refused, stop.
    again = cli("worker", STRIPE_API_KEY=REFUSED_KEY, **env)
    assert again.returncode == 2 and "Stripe refused the API key in STRIPE_API_KEY" in said(again)
    assert httpx.get(f"{emulator.url}/_emulator/stats").json()["requests"] == requests + 1
    # Another key: everything goes out.
    fixed = cli("worker", "--once", STRIPE_API_KEY="sk_test_fixed", **env)
    assert fixed.returncode == 0 and "pushed 1 products (2 changes)" in said(fixed)


def test_replay_with_a_refused_key_says_so_without_a_traceback(tmp_path: Path, emulator):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = Catalog.open(url)
    create_product(catalog, CatalogProduct(id="sku_1", name="One"))
    with catalog.engine.begin() as conn:
        conn.execute(dead_letter.insert().values(source="outbox", product_id="sku_1", action="push", payload={}, reason="503", attempts=8, failed_at=dt.datetime.now(dt.UTC)))
    done = cli("dead-letters", "replay", RECON_CATALOG_URL=url, STRIPE_API_BASE=emulator.url, STRIPE_API_KEY=REFUSED_KEY)
    assert done.returncode == 2 and "Stripe refused the API key in STRIPE_API_KEY" in said(done) and "REFUSEDKEY" not in done.stderr
    with catalog.engine.connect() as conn:
        assert conn.execute(select(dead_letter.c.attempts, dead_letter.c.resolved_at)).all() == [(8, None)]  # the letter is as it was


def test_a_misspelled_variable_is_warned_about_with_the_closest_name(tmp_path: Path):
    done = cli("init", RECON_CATALOG_URL=f"sqlite:///{tmp_path / 'catalog.db'}", RECON_CONFLICT_POLICI="stripe_wins")
    assert done.returncode == 0
    assert "warning: RECON_CONFLICT_POLICI is not a recon-pipeline setting; did you mean RECON_CONFLICT_POLICY?" in said(done)


def test_a_misspelled_stripe_key_is_warned_about_and_the_emulator_standing_in_is_said(tmp_path: Path, emulator):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    assert cli("init", RECON_CATALOG_URL=url).returncode == 0
    done = cli("dead-letters", "replay", RECON_CATALOG_URL=url, STRIPE_API_BASE=emulator.url, STRIPE_API_KY="sk_live_TYPOKEY000000000000001234")
    assert done.returncode == 0 and "warning: STRIPE_API_KY is set but recon-pipeline does not read it; did you mean STRIPE_API_KEY?" in said(done)
    assert f"note: STRIPE_API_KEY is not set, so the bundled Stripe emulator ({emulator.url}) stands in for Stripe" in done.stderr
    assert "TYPOKEY" not in done.stdout + done.stderr


def test_the_projects_dagster_yaml_reaches_its_dagster_home_each_time_it_changes(tmp_path: Path):
    from recon_pipeline.cli.processes import dagster_home

    config = tmp_path / "dagster.yaml"
    config.write_text("telemetry:\n  enabled: false\n")
    default = tmp_path / ".dagster_home"
    home = dagster_home(None, default, config)
    assert (home / "dagster.yaml").read_text() == config.read_text()
    config.write_text("telemetry:\n  enabled: false\nrun_retries:\n  enabled: false\n")
    assert (dagster_home(None, default, config) / "dagster.yaml").read_text() == config.read_text()  # the edit applies
    own = tmp_path / "own_home"
    own.mkdir()
    (own / "dagster.yaml").write_text("# mine\n")
    assert (dagster_home(own, default, config) / "dagster.yaml").read_text() == "# mine\n"  # a home of one's own keeps its file


def test_previews_align_wide_characters_as_a_terminal_shows_them():
    import pandas as pd
    from wcwidth import wcswidth

    from recon_pipeline.defs.reconciliation import drift_metadata
    from recon_pipeline.reconcile import summarize_drift

    drift = pd.DataFrame({"product_id": ["sku_1", "sku_2"], "lookup_key": None, "kind": "field_mismatch", "field": "name", "local_value": ["東京 Seat 20", "Basic"], "stripe_value": ["Tokyo", "東京"]})
    preview = drift_metadata(drift, summarize_drift(drift, 2, 2))["preview"].value
    widths = {wcswidth(line) for line in str(preview).splitlines()}
    assert len(widths) == 1, preview


def test_reconcile_prints_why_its_run_failed_in_the_workers_words_and_exits_1(tmp_path: Path, emulator):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    Catalog.open(url)
    env = {"RECON_CATALOG_URL": url, "STRIPE_API_BASE": emulator.url, "DAGSTER_HOME": str(tmp_path / "home")}
    done = cli("reconcile", STRIPE_API_KEY=REFUSED_KEY, timeout=120, **env)
    output = said(done)
    assert done.returncode == 1, output
    assert "snapshot failed: Stripe refused the API key in STRIPE_API_KEY (401" in done.stdout
    assert "see the run in the UI" not in output and "REFUSEDKEY" not in output
    assert f"Dagster instance DAGSTER_HOME={tmp_path / 'home'}" in done.stderr  # where the run is recorded, said by every command


def test_one_deployment_one_dagster_instance_decided_in_settings(tmp_path: Path):
    from recon_pipeline.settings import PROJECT_ROOT, Settings

    embedded = Settings.from_env({})
    assert (embedded.instance_home, embedded.instance_config) == (PROJECT_ROOT / ".dagster_home", PROJECT_ROOT / "dagster.yaml")
    served = Settings.from_env({"DAGSTER_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/recon_dagster"})  # make serve's settings, for every command
    assert (served.instance_home, served.instance_config) == (PROJECT_ROOT / ".dagster_serve", PROJECT_ROOT / "deploy" / "dagster.yaml")
    own = Settings.from_env({"DAGSTER_HOME": str(tmp_path), "DAGSTER_POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/recon_dagster"})
    assert own.instance_home == tmp_path


def test_reconcile_exits_0_when_only_warn_checks_fail_and_says_so(tmp_path: Path, emulator):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = Catalog.open(url)
    replace_products(catalog.engine, [CatalogProduct(id="sku_1", name="One"), CatalogProduct(id="sku_bad", name="Bad")])
    with catalog.engine.begin() as conn:  # an admin's edit Stripe would refuse: quarantined, a WARN check
        conn.execute(text("UPDATE products SET name = '' WHERE id = 'sku_bad'"))
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [{"id": "sku_1", "name": "One", "created": 1_700_000_000}]}).raise_for_status()
    done = cli("reconcile", timeout=120, RECON_CATALOG_URL=url, STRIPE_API_BASE=emulator.url, DAGSTER_HOME=str(tmp_path / "home"))
    output = said(done)
    assert done.returncode == 0, output
    assert "local_products.no_quarantined_rows" in done.stdout and "FAILED (WARN)" in done.stdout
    assert "only WARN checks failed (no_quarantined_rows): exit 0" in done.stdout


def test_an_edit_that_fails_halfway_writes_nothing(tmp_path: Path):
    """`edit p --name N --price 200 usd month`, where `p:default` exists but the product names no
    default: the price add is refused, and the name, checked first, is not written either."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = Catalog.open(url)
    price = CatalogPrice(lookup_key="p:default", product_id="p", currency="usd", unit_amount=100, recurring_interval="month")
    replace_products(catalog.engine, [CatalogProduct(id="p", name="Before")], [price])
    done = cli("edit", "p", "--name", "After", "--price", "200", "usd", "month", RECON_CATALOG_URL=url)
    assert done.returncode == 2 and "'p:default' already exists" in said(done)
    with catalog.engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM products WHERE id = 'p'")).scalar() == "Before"
        assert conn.execute(select(outbox)).all() == []  # nothing queued
