"""Several Stripe accounts (issue 16, part 3): each product is sold in one, and only that account is read and written for it.

Two accounts on one emulator: `us` with a key of its own (`sk_test_acct_us`, from the
variable KEY_US) and `eu`, a connected account reached with the platform's key through
`Stripe-Account: acct_eu`. The emulator keeps their objects apart, as Stripe does.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest

from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_prices, upsert_products
from recon_pipeline.catalog.changes import update_product
from recon_pipeline.repair import converge, full_drift
from recon_pipeline.settings import Settings, SettingsError
from recon_pipeline.stripe_api import StripeGateway
from recon_pipeline.sync.outbox import drain
from recon_pipeline.testing import one_price, sensor_resources

US, EU = [f"us_{i}" for i in range(4)], [f"eu_{i}" for i in range(3)]


def _connect_eu(emulator) -> None:
    """acct_eu becomes a connected account of the platform (on Stripe, by onboarding it)."""
    httpx.post(f"{emulator.url}/_emulator/accounts", json={"id": "acct_eu"}).raise_for_status()


def _settings(emulator, catalog_url: str) -> Settings:
    _connect_eu(emulator)
    return Settings.from_env(
        {
            "RECON_CATALOG_URL": catalog_url,
            "STRIPE_API_BASE": emulator.url,
            "RECON_STRIPE_ACCOUNTS": "us=KEY_US,eu=acct_eu",
            "KEY_US": "sk_test_acct_us",
        }
    )


def _posts(emulator, account_id: str) -> int:
    """Writes the emulator's account `account_id` has taken so far."""
    stats = httpx.get(f"{emulator.url}/_emulator/stats", headers={"Stripe-Account": account_id}).json()
    return sum(count for endpoint, count in stats["endpoints"].items() if endpoint.startswith("POST "))


def _names(emulator, account_id: str) -> dict[str, str]:
    answer = httpx.get(f"{emulator.url}/v1/products", params={"limit": 100}, headers={"Authorization": "Bearer sk_test_platform", "Stripe-Account": account_id})
    if answer.status_code == 403:  # an account nothing has reached yet: it holds nothing
        return {}
    return {p["id"]: p["name"] for p in answer.json()["data"]}


def _deployed(monkeypatch: pytest.MonkeyPatch, emulator, tmp_path: Path) -> None:
    """The two accounts' settings in the environment, as a deployment sets them: the resources
    take them as EnvVar, and a run reads an account's key from its variable."""
    _connect_eu(emulator)
    monkeypatch.setenv("RECON_CATALOG_URL", f"sqlite:///{tmp_path / 'catalog.db'}")
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    monkeypatch.setenv("RECON_STRIPE_ACCOUNTS", "us=KEY_US,eu=acct_eu")
    monkeypatch.setenv("KEY_US", "sk_test_acct_us")


@pytest.fixture
def two_accounts(emulator, tmp_path: Path):
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    ids = [*US, *EU]
    upsert_products(catalog.engine, [CatalogProduct(id=i, name=f"{i} v0", default_price=f"{i}:default", account=i[:2]) for i in ids])
    upsert_prices(catalog.engine, [one_price(i, 1000, "usd" if i.startswith("us") else "eur") for i in ids])
    settings = _settings(emulator, f"sqlite:///{tmp_path / 'catalog.db'}")
    return catalog, StripeGateway.for_each_account(settings)


def test_accounts_are_named_with_their_keys_or_connected_ids(emulator, tmp_path: Path):
    settings = _settings(emulator, f"sqlite:///{tmp_path / 'c.db'}")
    assert settings.account_names == ["us", "eu"] and settings.several_accounts
    gateways = StripeGateway.for_each_account(settings)
    assert gateways["eu"].stripe_account == "acct_eu" and gateways["us"].stripe_account is None
    assert "sk_test_acct_us" not in repr(gateways["us"]) + repr(settings)
    with pytest.raises(SettingsError, match="there is no Stripe account 'fr'; RECON_STRIPE_ACCOUNTS names us, eu"):
        settings.account("fr")
    with pytest.raises(SettingsError, match="KEY_FR, which is not set"):
        Settings.from_env({"STRIPE_API_KEY": "sk_live_x", "RECON_STRIPE_ACCOUNTS": "fr=KEY_FR"})
    # Unset, a single account called `default` with STRIPE_API_KEY: what every install had.
    assert Settings.from_env({}).account_names == ["default"]


def test_each_account_is_reconciled_and_repaired_on_its_own_and_no_write_crosses(emulator, two_accounts):
    catalog, gateways = two_accounts
    for name in ("us", "eu"):
        converge(catalog, gateways[name])
    assert sorted(_names(emulator, "acct_us")) == US and sorted(_names(emulator, "acct_eu")) == EU
    assert _names(emulator, "acct_emulator") == {}  # the emulator's own account: nobody's
    # A key names its account however it is sent (Basic, as curl -u sends it, or Bearer).
    basic = httpx.get(f"{emulator.url}/v1/products", params={"limit": 100}, auth=("sk_test_acct_us", "")).json()
    assert sorted(p["id"] for p in basic["data"]) == US
    assert all(len(full_drift(catalog, gateways[name])) == 0 for name in ("us", "eu"))

    # An edit in the eu account's dashboard: drift there, none in us.
    gateways["eu"].request("post", "/v1/products/eu_1", {"name": "edited in the dashboard"}, idempotency_key="test-edit-eu_1")
    eu_drift, us_drift = full_drift(catalog, gateways["eu"]), full_drift(catalog, gateways["us"])
    assert list(eu_drift["product_id"]) == ["eu_1"] and list(eu_drift["field"]) == ["name"] and len(us_drift) == 0

    us_writes = _posts(emulator, "acct_us")
    repaired = converge(catalog, gateways["eu"])
    assert repaired.result.writes == 1 and len(repaired.remaining) == 0
    assert _names(emulator, "acct_eu")["eu_1"] == "eu_1 v0"
    assert _posts(emulator, "acct_us") == us_writes, "a repair of eu wrote to us"


def test_a_repair_given_another_accounts_products_leaves_them_alone(emulator, two_accounts):
    catalog, gateways = two_accounts
    converged = converge(catalog, gateways["us"], [*US, *EU])
    assert sorted(converged.sides.local["product_id"]) == US
    assert _names(emulator, "acct_eu") == {} and _posts(emulator, "acct_eu") == 0


def test_the_outbox_pushes_each_product_to_its_own_account(emulator, two_accounts):
    catalog, gateways = two_accounts
    for name in ("us", "eu"):
        converge(catalog, gateways[name])
    before = {account: _posts(emulator, account) for account in ("acct_us", "acct_eu")}
    update_product(catalog, "us_2", name="us_2 v1")
    update_product(catalog, "eu_0", name="eu_0 v1")
    result = drain(catalog, gateways)
    assert result.pushed_products == 2 and not result.errors
    assert _names(emulator, "acct_us")["us_2"] == "us_2 v1" and _names(emulator, "acct_eu")["eu_0"] == "eu_0 v1"
    assert "us_2" not in _names(emulator, "acct_eu") and "eu_0" not in _names(emulator, "acct_us")
    assert {a: _posts(emulator, a) - before[a] for a in before} == {"acct_us": 1, "acct_eu": 1}


def test_a_product_in_an_account_that_is_not_configured_waits_with_its_reason(emulator, two_accounts):
    catalog, gateways = two_accounts
    upsert_products(catalog.engine, [CatalogProduct(id="fr_0", name="fr_0 v0", account="fr")])
    update_product(catalog, "fr_0", name="fr_0 v1")
    result = drain(catalog, gateways)
    assert result.retried == 1 and "sold in the Stripe account 'fr', which RECON_STRIPE_ACCOUNTS does not name" in result.errors[0]
    assert "fr_0" not in _names(emulator, "acct_us") | _names(emulator, "acct_eu") | _names(emulator, "acct_emulator")


def test_a_product_written_without_an_account_is_in_the_default_one(tmp_path: Path):
    from sqlalchemy import select

    from recon_pipeline.catalog.schema import products

    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}")
    upsert_products(catalog.engine, [CatalogProduct(id="a", name="A")])
    with catalog.engine.connect() as conn:
        assert conn.execute(select(products.c.account)).scalars().all() == ["default"]


def test_reconcile_catalog_and_repair_catalog_run_per_account_partition_and_name_it(emulator, two_accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_home: Path):
    import dagster as dg

    from recon_pipeline.definitions import build_defs
    from recon_pipeline.runs import run_job

    catalog, gateways = two_accounts
    _deployed(monkeypatch, emulator, tmp_path)
    settings = Settings.from_env()
    instance = dg.DagsterInstance.get()
    defs = build_defs(settings)
    for job in ("reconcile_catalog", "repair_catalog"):
        assert defs.resolve_job_def(job).partitions_def.get_partition_keys() == ["us", "eu"]  # type: ignore[union-attr]
    converge(catalog, gateways["us"])  # us is in sync; eu was never pushed: all its products are missing there

    runs = {name: run_job("reconcile_catalog", instance=instance, settings=settings, partition_key=name) for name in ("us", "eu")}
    assert runs["us"].success and len(runs["us"].asset_value("catalog_drift")) == 0
    eu_drift = runs["eu"].asset_value("catalog_drift")
    assert sorted(set(eu_drift["product_id"])) == EU and set(eu_drift["kind"]) == {"missing_in_stripe", "price_missing_in_stripe"}
    check = next(e for e in runs["eu"].get_asset_check_evaluations() if e.check_name == "drift_rate_below_threshold")
    assert not check.passed and (check.description or "").startswith("Stripe account eu: 3 of 3 products drifted")
    assert runs["eu"].asset_value("local_products").frame()["product_id"].tolist() == EU  # the partition's account only
    # The alert names the account twice: its partition, and the check's own words.
    from recon_pipeline.defs.alerts import alert_sensor
    from recon_pipeline.defs.resources import AlertsResource
    from recon_pipeline.testing import AlertReceiver

    with AlertReceiver() as receiver:
        alert_sensor(dg.build_sensor_context(instance=instance, resources=sensor_resources(alerts=AlertsResource(webhook_url=receiver.url))))
    [alert] = receiver.received
    assert alert["partition"] == "eu" and alert["text"].startswith(":rotating_light: Check catalog_drift.drift_rate_below_threshold [eu] failed (ERROR): Stripe account eu:")

    us_writes = _posts(emulator, "acct_us")
    repair = run_job("repair_catalog", {"ops": {"catalog_repair": {"config": {"override_breaker": True}}}}, instance=instance, settings=settings, partition_key="eu")
    assert repair.success
    assert sorted(_names(emulator, "acct_eu")) == EU and _posts(emulator, "acct_us") == us_writes
    assert _names(emulator, "acct_emulator") == {}
    again = run_job("reconcile_catalog", instance=instance, settings=settings, partition_key="eu")
    assert again.success and len(again.asset_value("catalog_drift")) == 0


def test_the_hourly_schedule_and_the_drift_sensor_ask_for_each_account(emulator, two_accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_home: Path):
    import dagster as dg

    from recon_pipeline.definitions import build_defs
    from recon_pipeline.defs.resources import ReconPolicy
    from recon_pipeline.runs import run_job

    _deployed(monkeypatch, emulator, tmp_path)
    settings = Settings.from_env()
    defs = build_defs(settings)
    instance = dg.DagsterInstance.get()
    schedule = defs.resolve_schedule_def("reconcile_hourly")
    at = dt.datetime(2026, 12, 3, 20, tzinfo=dt.UTC)
    with dg.build_schedule_context(instance=instance, resources=defs.resources, scheduled_execution_time=at, repository_def=defs.get_repository_def()) as context:
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert [(r.partition_key, r.run_key) for r in requests] == [("us", f"reconcile_hourly:{at.isoformat()}:us"), ("eu", f"reconcile_hourly:{at.isoformat()}:eu")]

    run_job("reconcile_catalog", instance=instance, settings=settings, partition_key="eu")  # eu: everything missing
    sensor = defs.resolve_sensor_def("drift_repair_sensor")
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=sensor_resources(policy=ReconPolicy())) as context:
        result = sensor.evaluate_tick(context)
    assert [(r.partition_key, (r.run_key or "").endswith(":eu")) for r in result.run_requests or []] == [("eu", True)]


def test_recon_pipeline_reconcile_refuses_an_account_that_is_not_named(tmp_path: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "RECON_CATALOG_URL": f"sqlite:///{tmp_path / 'c.db'}", "RECON_STRIPE_ACCOUNTS": "us=KEY_US,eu=acct_eu", "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "recon_pipeline.cli", "reconcile", "--account", "fr"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "there is no Stripe account 'fr'; RECON_STRIPE_ACCOUNTS names us, eu" in done.stderr


def test_each_accounts_events_are_polled_and_applied_in_that_account_only(emulator, two_accounts):
    from sqlalchemy import select

    from recon_pipeline.catalog.schema import inbox
    from recon_pipeline.policies import ConflictPolicy
    from recon_pipeline.sync.inbox import EventSource, InboxApplier, store_event
    from recon_pipeline.sync.poller import poll_events
    from recon_pipeline.testing import event, product_obj

    catalog, gateways = two_accounts
    for name in ("us", "eu"):
        converge(catalog, gateways[name])
    cursors = {name: poll_events(catalog.engine, gateway, None).cursor for name, gateway in gateways.items()}  # the pushes' own events
    InboxApplier(catalog, ConflictPolicy.LOCAL_WINS, gateways).apply_pending()

    # A dashboard edit in eu, the connected account: its event says so, and is filed under eu.
    gateways["eu"].request("post", "/v1/products/eu_1", {"name": "edited in the eu dashboard"}, idempotency_key="test-edit-eu_1-again")
    polled = {name: poll_events(catalog.engine, gateway, cursors[name]) for name, gateway in gateways.items()}
    assert polled["eu"].stored == 1 and polled["us"].stored == 0
    with catalog.engine.connect() as conn:
        row = conn.execute(select(inbox.c.account, inbox.c.payload).where(inbox.c.status == "received")).one()
    assert row.account == "eu" and row.payload["account"] == "acct_eu"

    # An event from us about a product sold in eu is not us's to apply.
    store_event(catalog.engine, event("evt_cross", "product.updated", product_obj("eu_2", "renamed from us", 2_000_000_000)), EventSource.WEBHOOK, "us")
    applied = InboxApplier(catalog, ConflictPolicy.LOCAL_WINS, gateways).apply_pending()
    assert applied.applied == 1 and applied.ignored == 1
    with catalog.engine.connect() as conn:
        note = conn.execute(select(inbox.c.note).where(inbox.c.event_id == "evt_cross")).scalar_one()
    assert note == "from the Stripe account 'us', about product 'eu_2', which is sold in 'eu'"

    # local_wins: the catalog's name goes back to eu, and only there.
    us_writes = _posts(emulator, "acct_us")
    assert drain(catalog, gateways).pushed_products == 1
    assert _names(emulator, "acct_eu")["eu_1"] == "eu_1 v0" and _posts(emulator, "acct_us") == us_writes


def test_the_webhook_receiver_files_a_connected_accounts_event_under_its_name(tmp_path: Path):
    from sqlalchemy import select

    from recon_pipeline.catalog.schema import inbox
    from recon_pipeline.emulator import ServerThread
    from recon_pipeline.sync.webhooks import create_webhook_app
    from recon_pipeline.testing import WEBHOOK_SECRET, event, product_obj, signed

    engine = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}").engine
    app = create_webhook_app(engine, WEBHOOK_SECRET, account="us", connected={"acct_eu": "eu"})
    with ServerThread(app) as server:
        for event_id, account in (("evt_platform", None), ("evt_connected", "acct_eu")):
            body = event(event_id, "product.updated", product_obj("p", "P", 1_700_000_000))
            if account:
                body["account"] = account
            payload, headers = signed(body)
            assert httpx.post(f"{server.url}/webhooks/stripe", content=payload, headers=headers).status_code == 200
    with engine.connect() as conn:
        assert {r.event_id: r.account for r in conn.execute(select(inbox.c.event_id, inbox.c.account))} == {"evt_platform": "us", "evt_connected": "eu"}


def test_backfill_hours_runs_per_account_x_hour_and_repairs_that_account_only(emulator, two_accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_home: Path):
    import dagster as dg
    from sqlalchemy import update

    from recon_pipeline.backfill import hour_key
    from recon_pipeline.catalog.schema import products
    from recon_pipeline.definitions import build_defs

    catalog, gateways = two_accounts
    for name in ("us", "eu"):
        converge(catalog, gateways[name])
    _deployed(monkeypatch, emulator, tmp_path)
    # A catalog edit in each account two hours ago that never reached Stripe (an outage).
    when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with catalog.engine.begin() as conn:
        for product_id in ("us_0", "eu_0"):
            conn.execute(update(products).where(products.c.id == product_id).values(name=f"{product_id} during the outage", updated_at=when))
    hour = hour_key(when)
    job = build_defs(Settings.from_env()).resolve_job_def("backfill_hours")
    assert isinstance(job.partitions_def, dg.MultiPartitionsDefinition)
    us_writes = _posts(emulator, "acct_us")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance, tags={"dagster/asset_partition_range_start": f"eu|{hour}", "dagster/asset_partition_range_end": f"eu|{hour}"}, raise_on_error=False
        )
        assert result.success
        assert instance.get_materialized_partitions(dg.AssetKey("hourly_repair")) == {f"eu|{hour}"}
    assert _names(emulator, "acct_eu")["eu_0"] == "eu_0 during the outage"
    assert _names(emulator, "acct_us")["us_0"] == "us_0 v0" and _posts(emulator, "acct_us") == us_writes  # us waits for its own backfill


def test_settings_refuse_a_key_in_the_variable_two_accounts_on_one_key_and_real_keys_sent_to_the_emulator():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"STRIPE_API_KEY": "sk_test_x", "RECON_STRIPE_ACCOUNTS": "us=sk_live_51Secret"})
    assert "looks like a Stripe secret key" in str(caught.value) and "51Secret" not in str(caught.value)
    with pytest.raises(SettingsError, match="gives KEY to two accounts"):
        Settings.from_env({"STRIPE_API_KEY": "sk_test_x", "RECON_STRIPE_ACCOUNTS": "us=KEY,eu=KEY", "KEY": "sk_test_k"})
    with pytest.raises(SettingsError, match=r"KEY_US .* is set but STRIPE_API_KEY is not"):
        Settings.from_env({"RECON_STRIPE_ACCOUNTS": "us=KEY_US", "KEY_US": "sk_live_k"})


def test_one_named_account_is_the_one_dagster_calls_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from recon_pipeline.defs.resources import build_resources

    monkeypatch.setenv("KEY_US", "sk_test_acct_us")
    settings = Settings.from_env({"STRIPE_API_KEY": "sk_test_platform", "RECON_STRIPE_ACCOUNTS": "us=KEY_US", "KEY_US": "sk_test_acct_us"})
    gateways = build_resources(settings)["stripe"].gateways()  # type: ignore[attr-defined]
    assert list(gateways) == ["us"] and gateways["us"].key_fingerprint == StripeGateway("sk_test_acct_us", "http://127.0.0.1:9").key_fingerprint


def test_a_product_sold_in_another_account_is_no_orphan_there_and_an_adopted_one_is_sold_where_it_was_found(emulator, two_accounts):
    from recon_pipeline.policies import OrphanPolicy

    catalog, gateways = two_accounts
    for name in ("us", "eu"):
        converge(catalog, gateways[name])
    # us_0 also exists in eu's Stripe (it moved accounts, say); "stray" is eu's alone.
    gateways["eu"].request("post", "/v1/products", {"id": "us_0", "name": "us_0 in eu"}, idempotency_key="test-create-us_0-in-eu")
    gateways["eu"].request("post", "/v1/products", {"id": "stray", "name": "Stray"}, idempotency_key="test-create-stray")
    drift = full_drift(catalog, gateways["eu"])
    assert list(drift["product_id"]) == ["stray"] and list(drift["kind"]) == ["orphan_in_stripe"]
    converge(catalog, gateways["eu"], orphan_policy=OrphanPolicy.ADOPT)
    assert catalog.accounts_of(["stray", "us_0"]) == {"stray": "eu", "us_0": "us"}


def test_a_dead_letter_is_replayed_in_its_products_account(emulator, two_accounts):
    from sqlalchemy import update

    from recon_pipeline.catalog.schema import products
    from recon_pipeline.repair import WriteSource
    from recon_pipeline.repair.dead_letters import record_dead_letter
    from recon_pipeline.repair.replay import replay_dead_letters

    catalog, gateways = two_accounts
    for name in ("us", "eu"):
        converge(catalog, gateways[name])
    with catalog.engine.begin() as conn:
        conn.execute(update(products).where(products.c.id == "eu_2").values(name="eu_2 renamed"))
        record_dead_letter(conn, WriteSource.REPAIR, "eu_2", "update_product", {}, "503 api_error: an outage", 8, "eu")
    us_writes = _posts(emulator, "acct_us")
    [replayed] = replay_dead_letters(catalog, gateways)
    assert replayed.resolved and _names(emulator, "acct_eu")["eu_2"] == "eu_2 renamed" and _posts(emulator, "acct_us") == us_writes


def test_the_inbox_keeps_each_accounts_gateway_whatever_came_before(two_accounts):
    from recon_pipeline.policies import ConflictPolicy
    from recon_pipeline.sync.inbox import ApplyResult, InboxApplier
    from recon_pipeline.testing import event, product_obj

    catalog, gateways = two_accounts
    applier = InboxApplier(catalog, ConflictPolicy.LOCAL_WINS, gateways)
    result = ApplyResult()
    applier.apply_event(event("evt_1", "product.updated", product_obj("x", "X", 1)), result, "acct_unknown")
    assert result.ignored == 1 and applier.gateway is None
    applier.apply_event(event("evt_2", "product.updated", product_obj("eu_0", "eu_0 v0", 2)), result, "eu")
    assert applier.gateway is gateways["eu"]


def test_an_orphans_dead_letter_is_replayed_in_the_account_it_failed_in(emulator, two_accounts):
    from recon_pipeline.repair import WriteSource
    from recon_pipeline.repair.dead_letters import record_dead_letter
    from recon_pipeline.repair.plan import ARCHIVE_ORPHAN
    from recon_pipeline.repair.replay import replay_dead_letters

    catalog, gateways = two_accounts
    stray = {"id": "stray", "name": "Made in eu's dashboard", "created": 1_700_000_000}
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [stray]}, headers={"Stripe-Account": "acct_eu"}).raise_for_status()
    with catalog.engine.begin() as conn:  # archiving it in eu failed: the catalog does not have it, so only the letter knows where
        record_dead_letter(conn, WriteSource.REPAIR, "stray", ARCHIVE_ORPHAN, {}, "503 api_error: an outage", 8, "eu")
    us_writes = _posts(emulator, "acct_us")
    [replayed] = replay_dead_letters(catalog, gateways)
    eu = httpx.get(f"{emulator.url}/v1/products/stray", headers={"Authorization": "Bearer sk_test_platform", "Stripe-Account": "acct_eu"}).json()
    assert replayed.resolved and eu["active"] is False and _posts(emulator, "acct_us") == us_writes


def test_a_refused_key_pauses_only_its_own_accounts_outbox(emulator, two_accounts):
    from sqlalchemy import select

    from recon_pipeline.catalog.schema import outbox

    catalog, gateways = two_accounts
    for name in ("us", "eu"):
        converge(catalog, gateways[name])
    update_product(catalog, "us_2", name="us_2 v1")
    update_product(catalog, "eu_0", name="eu_0 v1")
    refused_us = {**gateways, "us": StripeGateway("sk_live_REFUSEDKEY0000000000001234", emulator.url, account="us")}  # the emulator takes test keys only: 401
    first = drain(catalog, refused_us)
    assert set(first.refused) == {"us"} and "the key of Stripe account 'us'" in first.refused["us"]
    assert first.pushed_products == 1 and _names(emulator, "acct_eu")["eu_0"] == "eu_0 v1"  # eu went on
    with catalog.engine.connect() as conn:
        waiting = conn.execute(select(outbox.c.product_id, outbox.c.status, outbox.c.attempts).where(outbox.c.product_id == "us_2")).all()
    assert waiting == [("us_2", "pending", 0)]  # untouched: no attempt counted, nothing dead-lettered
    refused_requests = httpx.get(f"{emulator.url}/_emulator/stats").json()["requests"]  # where a key the emulator refuses lands
    assert refused_requests >= 1
    again = drain(catalog, refused_us)
    assert set(again.refused) == {"us"} and again.pushed_products == 0
    assert httpx.get(f"{emulator.url}/_emulator/stats").json()["requests"] == refused_requests  # the refused key is not tried again
    fixed = drain(catalog, gateways)  # a key Stripe takes: us_2 goes out
    assert fixed.pushed_products == 1 and not fixed.refused and _names(emulator, "acct_us")["us_2"] == "us_2 v1"


def test_a_partition_run_reads_the_catalogs_rows_once(emulator, two_accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dagster_home: Path):
    """local_products reads the rows (in chunks); local_prices and catalog_drift ask only for ids and accounts."""
    import dagster as dg

    from recon_pipeline.catalog import Catalog
    from recon_pipeline.runs import run_job

    _deployed(monkeypatch, emulator, tmp_path)
    reads: list[str] = []
    rows, narrow = Catalog.row_chunks, Catalog.product_accounts

    def counted_rows(self, size=None):
        reads.append("rows")
        return rows(self, size)

    def counted_ids(self):
        reads.append("ids and accounts")
        return narrow(self)

    monkeypatch.setattr(Catalog, "row_chunks", counted_rows)
    monkeypatch.setattr(Catalog, "product_accounts", counted_ids)
    result = run_job("reconcile_catalog", instance=dg.DagsterInstance.get(), settings=Settings.from_env(), partition_key="eu")
    assert result.success is False and len(result.asset_value("catalog_drift")) > 0  # eu was never pushed: drift, read from one read
    assert reads.count("rows") == 1, reads
    assert reads.count("ids and accounts") == 2


def test_a_captured_delete_is_archived_in_the_account_the_product_was_sold_in(emulator, two_accounts):
    """The row is gone, so the catalog cannot say the account: the captured delete does."""
    import subprocess

    from recon_pipeline.catalog import capture

    catalog, gateways = two_accounts
    for name in ("us", "eu"):
        converge(catalog, gateways[name])
    capture.install(catalog.engine, catalog.source)
    before = _posts(emulator, "acct_us")
    database = catalog.engine.url.database
    subprocess.run(["sqlite3", str(database), "DELETE FROM prices WHERE product_id = 'eu_1'; DELETE FROM products WHERE id = 'eu_1';"], check=True)
    result = drain(catalog, gateways)
    assert result.pushed_products == 1 and not result.errors
    archived = httpx.get(f"{emulator.url}/v1/products/eu_1", headers={"Authorization": "Bearer sk_test_platform", "Stripe-Account": "acct_eu"}).json()
    assert archived["active"] is False
    assert _posts(emulator, "acct_us") == before  # nothing written in the other account
