"""Bad input: each bad catalog row is quarantined with a reason naming the value, the rest syncs,
and nothing of a bad row is half-written to Stripe. Malformed webhook bodies are refused by
the receiver with nothing stored; malformed settings stop a command before it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
import stripe
from sqlalchemy import select, text

from recon_pipeline.catalog import init_schema, make_engine
from recon_pipeline.catalog.schema import inbox, quarantine
from recon_pipeline.emulator.webhooks import sign
from recon_pipeline.runs import run_job
from recon_pipeline.testing import WEBHOOK_SECRET as SECRET
from recon_pipeline.testing import event, product_obj, signed

MAPPING = "id=sku,name=title,metadata=attrs,unit_amount=price,currency=curr"
GOOD = [(f"ok_{i}", f"Good {i}", "{}", 1000 + i, "usd") for i in range(5)]
BAD = {
    "null id": (None, "No id", "{}", 100, "usd"),
    "duplicate id 1": ("twice", "First", "{}", 100, "usd"),
    "duplicate id 2": ("twice", "Second", "{}", 100, "usd"),
    "negative amount": ("neg", "Negative", "{}", -5, "usd"),
    "fractional amount": ("frac", "Fraction", "{}", 9.99, "usd"),
    "unknown currency": ("xyz", "Unknown money", "{}", 100, "xyz"),
    "long name": ("long", "N" * 300, "{}", None, None),
    "51 metadata keys": ("keys", "Keys", json.dumps({f"k{i}": "v" for i in range(51)}), None, None),
    "41-character key": ("keylen", "Key length", json.dumps({"k" * 41: "v"}), None, None),
    "501-character value": ("vallen", "Value length", json.dumps({"k": "v" * 501}), None, None),
    "metadata not JSON": ("notjson", "Not JSON", "{broken", None, None),
}
REASONS = {
    "null": "product id None is NULL",
    "twice": "'twice' appears more than once",
    "neg": "price 'neg:default': unit_amount=-5 must be a whole, non-negative number",
    "frac": "price 'frac:default': unit_amount=9.99 must be a whole, non-negative number",
    "xyz": "price 'xyz:default': currency='xyz' must be a three-letter ISO 4217 currency code",
    "long": "is longer than 250 characters",
    "keys": "has more than Stripe's 50 keys",
    "keylen": "is longer than 40 characters",
    "vallen": "is longer than 500 characters",
    "notjson": "metadata='{broken' is not JSON",
    "utf8": "is not valid UTF-8",
}


@pytest.fixture
def shop(tmp_path: Path, emulator, dagster_home, monkeypatch):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE shop_items (sku TEXT, title TEXT, attrs TEXT, price NUMERIC, curr TEXT)"))
        for row in [*GOOD, *BAD.values()]:
            conn.execute(text("INSERT INTO shop_items VALUES (:a, :b, :c, :d, :e)"), dict(zip("abcde", row, strict=True)))
        # Bytes that are not UTF-8, as a broken import would leave them.
        conn.execute(text("INSERT INTO shop_items VALUES ('utf8', CAST(X'4361C3' AS TEXT), '{}', NULL, NULL)"))
    init_schema(engine)
    for name, value in {"RECON_CATALOG_URL": url, "RECON_CATALOG_TABLE": "shop_items", "RECON_CATALOG_COLUMNS": MAPPING, "STRIPE_API_BASE": emulator.url}.items():
        monkeypatch.setenv(name, value)
    # "twice" exists in Stripe: quarantined in the catalog, it must not become an orphan.
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [{"id": "twice", "name": "In Stripe", "created": 1_700_000_000}]}).raise_for_status()
    return engine, emulator


def test_bad_rows_are_quarantined_with_reasons_and_the_rest_syncs(shop):
    engine, emulator = shop
    with dg.DagsterInstance.get() as instance:
        first = run_job("reconcile_catalog", instance=instance)
        checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
        assert not checks["no_quarantined_rows"].passed and checks["no_quarantined_rows"].severity == dg.AssetCheckSeverity.WARN
        with engine.connect() as conn:
            held = conn.execute(select(quarantine.c.product_id, quarantine.c.reason)).all()
        reasons = "\n".join(r.reason for r in held)
        # A row's bad price is the price's quarantine (its product syncs without it); a bad
        # product's price goes with it; a row without an id has no price either.
        assert sorted(r.product_id for r in held if r.reason.startswith("price ")) == ["frac", "neg", "twice", "twice", "xyz"]
        assert len(held) == len(BAD) + 1 + 2
        for key, expected in REASONS.items():
            assert expected in reasons, f"{key}: {expected!r} not among the reasons"
        drift = first.asset_value("catalog_drift")
        assert set(drift["product_id"]) == {f"ok_{i}" for i in range(5)} | {"neg", "frac", "xyz"}  # no orphan "twice", no bad rows
        repair = run_job("repair_catalog", {"ops": {"catalog_repair": {"config": {"orphan_policy": "archive", "max_write_share": 1.0}}}}, instance=instance)
        assert repair.success
        assert run_job("reconcile_catalog", instance=instance).asset_value("catalog_drift").empty
    client = stripe.StripeClient("sk_test_check", base_addresses={"api": emulator.url}, max_network_retries=0)
    in_stripe = {p.id: p for p in client.v1.products.list(params={"limit": 100}).auto_paging_iter()}
    assert sorted(in_stripe) == sorted([f"ok_{i}" for i in range(5)] + ["frac", "neg", "twice", "xyz"])  # no bad product written
    prices = list(client.v1.prices.list(params={"limit": 100}).auto_paging_iter())
    assert sorted(p.lookup_key for p in prices) == [f"ok_{i}:default" for i in range(5)]  # no bad price written
    assert not in_stripe["neg"].default_price  # its price quarantined: no default to set
    assert in_stripe["twice"].active and in_stripe["twice"].name == "In Stripe"  # left alone, not archived


def test_the_emulator_refuses_an_unknown_currency_like_stripe(emulator):
    client = stripe.StripeClient("sk_test_check", base_addresses={"api": emulator.url}, max_network_retries=0)
    client.v1.products.create(params={"id": "p", "name": "P"})
    with pytest.raises(stripe.InvalidRequestError, match="Invalid currency: xyz"):
        client.v1.prices.create(params={"product": "p", "unit_amount": 100, "currency": "xyz"})


# -- malformed webhook bodies: the receiver over HTTP answers 400 and stores nothing --------------


@pytest.mark.parametrize(
    "case",
    ["wrong_secret", "stale_timestamp", "no_signature", "tampered_body", "malformed_json", "not_an_event", "empty_body"],
)
def test_webhook_receiver_refuses_bad_requests_and_stores_nothing(receiver, case):
    engine, server = receiver
    good = event("evt_1", "product.updated", product_obj("sku_1", "A", 1))
    body, headers = signed(good)
    if case == "wrong_secret":
        body, headers = signed(good, secret="whsec_other")
    elif case == "stale_timestamp":
        body, headers = signed(good, timestamp=int(time.time()) - 301)
    elif case == "no_signature":
        headers = {"Content-Type": "application/json"}
    elif case == "tampered_body":
        body = body.replace('"A"', '"B"')
    elif case == "malformed_json":
        body, headers = "{not json", signed(good)[1]
        headers["Stripe-Signature"] = sign(body, SECRET)
    elif case == "not_an_event":
        body, headers = signed({"id": "x", "object": "product"})
    elif case == "empty_body":
        body, headers = "", signed(good)[1]
        headers["Stripe-Signature"] = sign(body, SECRET)
    response = httpx.post(f"{server.url}/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 400 and "error" in response.json()
    with engine.connect() as conn:
        assert conn.execute(select(inbox)).all() == []


# -- malformed settings: the command refuses, naming the variable, and writes nothing ------------


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("RECON_STRIPE_RATE_LIMIT", "-3", "RECON_STRIPE_RATE_LIMIT='-3' must be greater than 0"),
        ("RECON_MAX_DRIFT_RATE", "lots", "RECON_MAX_DRIFT_RATE"),
        ("RECON_EXECUTOR", "kubernetes", "RECON_EXECUTOR='kubernetes' is not one of multiprocess"),
        ("RECON_CATALOG_COLUMNS", "id", "RECON_CATALOG_COLUMNS is set but RECON_CATALOG_TABLE is not"),
        ("RECON_CONFLICT_POLICY", "whoever", "RECON_CONFLICT_POLICY='whoever' is not one of local_wins"),
        ("RECON_ORPHAN_POLICY", "nuke", "RECON_ORPHAN_POLICY='nuke' is not one of report"),
        ("RECON_MAX_REPAIR_SHARE", "ten", "RECON_MAX_REPAIR_SHARE='ten' is not a number"),
        ("RECON_PARTITIONS_START", "2026-01-01", "RECON_PARTITIONS_START='2026-01-01' is not an hour"),
        ("STRIPE_WEBHOOK_SECRET", "hunter2", "STRIPE_WEBHOOK_SECRET does not look like a webhook signing secret"),
    ],
)
def test_a_malformed_setting_stops_the_command_before_anything_is_written(tmp_path: Path, name, value, message):
    catalog = tmp_path / "catalog.db"
    env = {**os.environ, "RECON_CATALOG_URL": f"sqlite:///{catalog}", name: value}
    done = subprocess.run([sys.executable, "-m", "recon_pipeline.cli", "init"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr
    assert not catalog.exists()  # nothing half-written
    if name == "STRIPE_WEBHOOK_SECRET":
        assert value not in done.stderr  # a secret, even a wrong one, is not echoed
