"""Helpers the tests and the benchmarks share, so neither imports the other.

Real parts only: a PostgreSQL database of one's own, the emulator's view of an account,
a local HTTP receiver for alerts, Stripe events as the webhook receiver gets them, and a
way to wait for a condition with a deadline instead of sleeping a fixed time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import stripe
from sqlalchemy import create_engine, text

from recon_pipeline.catalog import Catalog, CatalogPrice, CatalogProduct, default_lookup_key, upsert_prices, upsert_products
from recon_pipeline.emulator.webhooks import sign
from recon_pipeline.repair import full_drift
from recon_pipeline.stripe_api import StripeGateway

# The machine's PostgreSQL (trust auth), as the tests and benchmarks find it by default.
POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
WEBHOOK_SECRET = "whsec_test_secret_value"

T = TypeVar("T")


@contextmanager
def emulator_process() -> Iterator[str]:
    """The bundled emulator as a process of its own (as Stripe is to its clients) on a free
    loopback port; yields its URL, and stops it."""
    from recon_pipeline.cli.processes import emulator_is_up
    from recon_pipeline.emulator.server import free_port

    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    argv = [sys.executable, "-m", "recon_pipeline.cli", "emulator", "--port", url.rsplit(":", 1)[1]]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: emulator_is_up(url), timeout=60, what="the emulator to start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def wait_until(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "the condition") -> T:
    """Poll `condition` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(interval)


# -- PostgreSQL ---------------------------------------------------------------------------------


@contextmanager
def temporary_database(admin_url: str = POSTGRES_ADMIN_URL, prefix: str = "recon_test") -> Iterator[str]:
    """A PostgreSQL database created for the caller and dropped after; yields its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def database_url(name: str, admin_url: str = POSTGRES_ADMIN_URL) -> str:
    """The SQLAlchemy URL of database `name` on the admin URL's server."""
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


# -- what an account holds ------------------------------------------------------------------------


def stripe_objects(url: str, kind: str) -> list[dict]:
    """Every product or price of the account at `url` (active and archived), through the official SDK."""
    client = stripe.StripeClient("sk_test_verify", base_addresses={"api": url}, max_network_retries=0)
    if kind == "products":
        return [obj.to_dict() for obj in client.v1.products.list(params={"limit": 100}).auto_paging_iter()]
    # Stripe lists active prices unless asked for the archived ones.
    return [obj.to_dict() for active in (True, False) for obj in client.v1.prices.list(params={"limit": 100, "active": active}).auto_paging_iter()]


def assert_no_duplicates(url: str, unmanaged: Iterable[str] = ()) -> None:
    """One product per id; no active price twice; no active price without a lookup key (a
    price repair replaced and left active), but the `unmanaged` ones a test made so."""
    products = stripe_objects(url, "products")
    assert len({p["id"] for p in products}) == len(products)
    active = [p for p in stripe_objects(url, "prices") if p["active"]]
    terms = Counter(
        (p["product"], p["unit_amount"], p["unit_amount_decimal"], p["currency"], json.dumps(p.get("recurring"), sort_keys=True), p["lookup_key"]) for p in active
    )
    assert [k for k, n in terms.items() if n > 1] == [], "the same price was created twice"
    stray = [p["id"] for p in active if not p["lookup_key"] and p["id"] not in set(unmanaged)]
    assert stray == [], f"active prices without a lookup key (a replaced price left active): {stray}"


# -- a catalog product with one price, on both sides ------------------------------------------


def one_price(product_id: str, amount: int = 1000, currency: str = "usd", interval: str | None = None) -> CatalogPrice:
    """The product's price `<id>:default`."""
    recurring = {"recurring_interval": interval, "recurring_interval_count": 1, "recurring_usage_type": "licensed"} if interval else {}
    return CatalogPrice(lookup_key=default_lookup_key(product_id), product_id=product_id, currency=currency, unit_amount=amount, **recurring)  # type: ignore[arg-type]


def priced_product(product_id: str, name: str, amount: int = 1000, currency: str = "usd", interval: str | None = None) -> tuple[CatalogProduct, list[CatalogPrice]]:
    """A product with its one price, `<id>:default`, as its default: `create_product`'s arguments."""
    price = one_price(product_id, amount, currency, interval)
    return CatalogProduct(id=product_id, name=name, default_price=price.lookup_key), [price]


def seed_priced(catalog: Catalog, ids: Iterable[str], amount: int = 1000, currency: str = "usd", name: str = "{id} v0") -> None:
    """Catalog products with one default price each (`<id>:default`)."""
    ids = list(ids)
    upsert_products(catalog.engine, [CatalogProduct(id=i, name=name.format(id=i), default_price=default_lookup_key(i)) for i in ids])
    upsert_prices(catalog.engine, [one_price(i, amount, currency) for i in ids])


def priced_fixture(product_id: str, name: str, amount: int = 1000, currency: str = "usd", created: int = 1_700_000_000, **fields: Any) -> dict[str, Any]:
    """The same product in the emulator (`/_emulator/fixtures`), its default price `<id>:default`."""
    price = {"currency": currency, "unit_amount": amount, "lookup_key": default_lookup_key(product_id), "created": created}
    return {"id": product_id, "name": name, "created": created, "prices": [price], **fields}


def drift_rows(catalog: Catalog, url: str) -> int:
    """Rows of drift between the whole catalog and the whole Stripe account, by a full reconciliation."""
    return len(full_drift(catalog, StripeGateway("sk_test_verify", url, global_rate=None, endpoint_rate=None)))


# -- Stripe events as a webhook receiver gets them -----------------------------------------------


def event(event_id: str, type_: str, obj: dict, created: int | None = None, key: str | None = None) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": type_,
        "created": created or int(time.time()),
        "api_version": stripe.api_version,  # a new account's (the emulator's default), which the pipeline pins by default
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": key},
    }


def product_obj(product_id: str, name: str, updated: int, **fields: Any) -> dict:
    return {
        "id": product_id,
        "object": "product",
        "name": name,
        "description": None,
        "active": True,
        "metadata": {},
        "default_price": None,
        "created": updated,
        "updated": updated,
        **fields,
    }


def signed(body: dict, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> tuple[str, dict]:
    """The JSON body and the headers Stripe would send it with."""
    payload = json.dumps(body)
    return payload, {"Stripe-Signature": sign(payload, secret, timestamp), "Content-Type": "application/json"}


# -- an alert webhook -------------------------------------------------------------------------------


class AlertReceiver:
    """A Slack-incoming-webhook stand-in on 127.0.0.1 that records what it receives.

    The first `fail_first` posts are answered `status` (a flaky receiver).
    """

    def __init__(self, fail_first: int = 0, status: int = 503):
        self.received: list[dict] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= fail_first:
                    self.send_response(status)
                    self.end_headers()
                    return
                receiver.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AlertReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def sensor_resources(**overrides: object) -> dict[str, object]:
    """The resources the project's sensors get, from the environment's settings, with some replaced."""
    from recon_pipeline.defs.resources import build_resources
    from recon_pipeline.settings import Settings

    return {**build_resources(Settings.from_env()), **overrides}
