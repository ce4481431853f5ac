"""The API version pinned (RECON_STRIPE_API_VERSION): sent on every request, events rendered at
another version counted and shown, and the README's upgrade runbook followed on the emulator."""

from __future__ import annotations

import dagster as dg
import httpx
import pytest
import stripe
from sqlalchemy import func, select

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.schema import inbox
from recon_pipeline.emulator.resources import API_VERSION
from recon_pipeline.emulator.server import ServerThread, free_port
from recon_pipeline.runs import latest_metadata, run_job
from recon_pipeline.settings import Settings, SettingsError
from recon_pipeline.stripe_api import StripeGateway
from recon_pipeline.sync.inbox import InboxApplier
from recon_pipeline.sync.poller import poll_events
from recon_pipeline.sync.webhooks import create_webhook_app
from recon_pipeline.testing import wait_until

OLD, NEW = API_VERSION, str(stripe.api_version)  # 2026-08-26.dahlia -> the SDK's, 2026-10-28.endive


def test_the_pinned_version_defaults_to_the_sdks_and_a_malformed_one_is_refused_by_name():
    assert Settings.from_env({}).stripe_api_version == NEW
    assert Settings.from_env({"RECON_STRIPE_API_VERSION": OLD}).stripe_api_version == OLD
    with pytest.raises(SettingsError, match="RECON_STRIPE_API_VERSION='latest' is not a Stripe API version"):
        Settings.from_env({"RECON_STRIPE_API_VERSION": "latest"})


def test_every_request_carries_the_pinned_version(emulator):
    assert StripeGateway("sk_test_v", emulator.url, api_version=OLD).request("get", "/v1/products", {"limit": 1})["object"] == "list"
    # A version Stripe never published is refused, naming it: so the pinned one is what was sent.
    with pytest.raises(stripe.InvalidRequestError, match="Invalid Stripe API version: 2022-08-02"):
        StripeGateway("sk_test_v", emulator.url, api_version="2022-08-02").request("get", "/v1/products", {"limit": 1})


def dashboard_rename(emulator, name: str) -> None:
    httpx.post(f"{emulator.url}/v1/products/sku_1", auth=("sk_test_dashboard", ""), data={"name": name}).raise_for_status()


def endpoint(emulator, url: str, version: str | None = None) -> dict:
    data = {"url": url, "enabled_events[]": "*"} | ({"api_version": version} if version else {})
    response = httpx.post(f"{emulator.url}/v1/webhook_endpoints", auth=("sk_test_ops", ""), data=data)
    response.raise_for_status()
    return response.json()


def test_the_upgrade_runbook_new_endpoint_beside_the_old_switch_retire(sqlite_url, emulator):
    """The account's default is the new version; the pipeline and its webhook endpoint are on the old one."""
    catalog = Catalog.open(sqlite_url)
    httpx.post(f"{emulator.url}/v1/products", auth=("sk_test_dashboard", ""), data={"id": "sku_1", "name": "One"}).raise_for_status()
    old_port, new_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    old = endpoint(emulator, f"http://127.0.0.1:{old_port}/webhooks/stripe", OLD)
    # The receivers verify signatures: each endpoint's secret is its receiver's STRIPE_WEBHOOK_SECRET.
    with ServerThread(create_webhook_app(catalog.engine, old["secret"], api_version=OLD), port=old_port):

        def received() -> int:
            with catalog.engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(inbox)).scalar_one()

        # Before: events reach the pipeline at its version.
        dashboard_rename(emulator, "Before")
        wait_until(lambda: received() == 1, what="the rename's event at the old endpoint")
        before = InboxApplier(catalog, api_version=OLD).apply_pending()
        assert before.version_mismatches == 0 and set(before.api_versions) == {OLD}
        # The poller reads /v1/events, rendered at the account's default: the mismatch is seen.
        polled = poll_events(catalog.engine, StripeGateway("sk_test_poll", emulator.url, api_version=OLD), None)
        assert polled.version_mismatches == polled.seen > 0

        # 1. A new endpoint at the new version beside the old (the account's default, so no api_version),
        #    and its receiver, on the new version.
        new = endpoint(emulator, f"http://127.0.0.1:{new_port}/webhooks/stripe")
        assert new["api_version"] is None  # it follows the account's default: events come at NEW
        with ServerThread(create_webhook_app(catalog.engine, new["secret"], api_version=NEW), port=new_port) as new_receiver:
            # 2. Switch: the pipeline pins the new version (RECON_STRIPE_API_VERSION); 3. retire the old endpoint.
            httpx.delete(f"{emulator.url}/v1/webhook_endpoints/{old['id']}", auth=("sk_test_ops", "")).raise_for_status()
            seen = received()
            dashboard_rename(emulator, "After")
            wait_until(lambda: received() == seen + 1, what="the rename's event at the new endpoint")
            after = InboxApplier(catalog, api_version=NEW).apply_pending()
            assert after.version_mismatches == 0 and set(after.api_versions) == {NEW}
            health = httpx.get(f"{new_receiver.url}/health").json()
            assert health == {"ok": True, "api_version": NEW, "api_version_mismatches": 0}


def test_a_mismatch_fails_the_warn_check_on_inbox_apply(sqlite_url, emulator, dagster_home, monkeypatch):
    monkeypatch.setenv("RECON_CATALOG_URL", sqlite_url)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    monkeypatch.setenv("RECON_STRIPE_API_VERSION", OLD)  # the account renders events at NEW
    catalog = Catalog.open(sqlite_url)
    httpx.post(f"{emulator.url}/v1/products", auth=("sk_test_dashboard", ""), data={"id": "sku_1", "name": "One"}).raise_for_status()
    poll_events(catalog.engine, StripeGateway("sk_test_poll", emulator.url), None)
    with dg.DagsterInstance.get() as instance:
        result = run_job("apply_inbox", instance=instance)
        assert result.success  # a WARN check does not fail the run; the alert sensor reports it
        [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "event_api_version_matches"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert f"RECON_STRIPE_API_VERSION={OLD}" in check.description and NEW in check.description
        assert latest_metadata(instance, "inbox_apply")["events/api_version_mismatch"] == 1
