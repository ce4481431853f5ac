"""Secrets never appear in logs, Dagster's event log, run config or asset metadata; servers bind 127.0.0.1."""

from __future__ import annotations

import logging
import uuid

import dagster as dg
import httpx
import pytest

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.changes import update_product
from recon_pipeline.cli import build_parser
from recon_pipeline.definitions import build_defs
from recon_pipeline.defs.alerts import alert_sensor
from recon_pipeline.demo import plan_demo, seed_demo
from recon_pipeline.emulator import ServerThread
from recon_pipeline.runs import run_job
from recon_pipeline.stripe_api import StripeGateway
from recon_pipeline.sync.outbox import drain
from recon_pipeline.sync.webhooks import create_webhook_app
from recon_pipeline.testing import AlertReceiver, sensor_resources

pytestmark = pytest.mark.postgres


def test_no_secret_reaches_logs_event_log_run_config_or_metadata(postgres_url, emulator, dagster_home, monkeypatch, caplog, capfd):
    token = uuid.uuid4().hex[:12]
    secrets = {
        "api_key": f"sk_test_KNOWNSECRET{token}",
        "webhook_secret": f"whsec_KNOWNSECRET{token}",
        "alert_token": f"ALERTTOKEN{token}",
        "db_password": f"dbpw{token}",
    }
    # Trust auth ignores the password, so it can ride in the URL like a real one would.
    catalog_url = postgres_url.replace("postgres@", f"postgres:{secrets['db_password']}@")
    monkeypatch.setenv("STRIPE_API_KEY", secrets["api_key"])
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", secrets["webhook_secret"])
    monkeypatch.setenv("RECON_CATALOG_URL", catalog_url)
    caplog.set_level(logging.DEBUG)

    catalog = Catalog.open(catalog_url)
    engine = catalog.engine
    seed_demo(engine, emulator.url, plan_demo(n_products=1000, seed=13))
    with AlertReceiver() as receiver, dg.DagsterInstance.get() as instance:
        monkeypatch.setenv("ALERT_WEBHOOK_URL", f"{receiver.url}/{secrets['alert_token']}")
        emulator.faults.update({"failure_rate": 0.05})  # retries and their log lines too
        runs = [
            run_job("reconcile_catalog", instance=instance),
            run_job("repair_catalog", {"ops": {"catalog_repair": {"config": {"orphan_policy": "archive"}}}}, instance=instance),
        ]
        alert_sensor(dg.build_sensor_context(instance=instance, resources=sensor_resources(alerts=build_defs().resources["alerts"])))
        update_product(catalog, "sku_00001", name="Edited")
        drain(catalog, StripeGateway(secrets["api_key"], emulator.url, global_rate=None, endpoint_rate=None))
        with ServerThread(create_webhook_app(engine, secrets["webhook_secret"])) as hooks:
            httpx.post(f"{hooks.url}/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=bad"})
        emulator.faults.update({"failure_rate": 0.0})
        runs.append(run_job("reconcile_catalog", instance=instance))

        haystack = [caplog.text, *capfd.readouterr(), *map(str, receiver.received)]
        for run in runs:
            record = instance.get_run_by_id(run.run_id)
            haystack.append(repr(record.run_config))
            haystack.append(repr(record.tags))
            haystack.extend(repr(entry) for entry in instance.all_logs(run.run_id))
        for key in ("local_products", "stripe_products", "catalog_drift", "catalog_repair"):
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            haystack.append(repr(event.asset_materialization.metadata))

    assert runs[-1].success and receiver.received, "the flows under test did not run"
    text = "\n".join(haystack)
    assert len(text) > 10_000
    leaked = {name: text[max(0, text.find(value) - 160): text.find(value) + 40] for name, value in secrets.items() if value in text}
    assert leaked == {}


@pytest.mark.parametrize("command", ["emulator", "webhooks", "dev", "serve"])
def test_servers_bind_loopback_unless_told_otherwise(command):
    args = build_parser().parse_args([command])
    assert args.host == "127.0.0.1"
