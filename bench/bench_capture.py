"""Your own tables, written only by their database's client: latency to Stripe and back.

    .venv/bin/python bench/bench_capture.py                    # PostgreSQL and MariaDB, 100 changes each way
    .venv/bin/python bench/bench_capture.py --database mariadb
    .venv/bin/python bench/bench_capture.py --smoke            # both, 10 changes each way: every one arrives, for CI

A database of its own holds the user's `shop_items` table (their schema, mapped with
RECON_CATALOG_TABLE/COLUMNS), with capture installed (`recon-pipeline init --capture`),
RECON_CATALOG_WRITABLE=true and RECON_CONFLICT_POLICY=stripe_wins. The emulator, the
webhook receiver (an endpoint registered in the emulator) and `recon-pipeline worker` run
as processes of their own on 127.0.0.1.

- a write in the table -> visible in Stripe: `psql -c` / `mariadb -e` runs one UPDATE and
  exits (t0: its transaction committed); visible when the emulator returns the new name.
- a dashboard edit -> visible in the table: the SDK renames the product in the emulator
  (t0); visible when the table's row has the new name. Afterwards: one audit row per edit,
  and nothing queued back to Stripe (no echo).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import stripe
from bench_sync_latency import KEY, free_port, measure, named_in_stripe, percentiles, stop, wait_http
from sqlalchemy import create_engine, select, text

from recon_pipeline.catalog.schema import audit, outbox
from recon_pipeline.settings import environment_for_children
from recon_pipeline.testing import POSTGRES_ADMIN_URL

MARIADB_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
CLIENTS = {
    "postgresql": lambda name, sql: ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", name, "-c", sql],
    "mariadb": lambda name, sql: ["mariadb", "-h", "127.0.0.1", "-u", "root", name, "-e", sql],
}


def client(database: str, name: str, sql: str) -> None:
    subprocess.run(CLIENTS[database](name, sql), check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def own_database(database: str):
    name = f"recon_bench_{uuid.uuid4().hex[:10]}"
    admin_url = POSTGRES_ADMIN_URL if database == "postgresql" else MARIADB_ADMIN_URL
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield name, admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if database == "postgresql" else "")))
        admin.dispose()


def run(database: str, changes: int, rate: float, timeout: float) -> tuple[list[float], list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="recon-bench-capture-"))
    api_port, hook_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    ids = [f"sku_{i:04d}" for i in range(2 * changes)]
    procs: list[subprocess.Popen] = []
    with own_database(database) as (name, url):
        env = environment_for_children(
            RECON_CATALOG_URL=url,
            RECON_CATALOG_TABLE="shop_items",
            RECON_CATALOG_COLUMNS="id=sku,name=title,active=is_live",
            RECON_CATALOG_WRITABLE="true",
            RECON_CONFLICT_POLICY="stripe_wins",
            STRIPE_API_BASE=api,
            DAGSTER_HOME=str(tmp),
        )

        def start(*argv: str) -> None:
            procs.append(subprocess.Popen([sys.executable, "-m", "recon_pipeline.cli", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))

        try:
            rows = ", ".join(f"('{i}', '{i} v0', 1)" for i in ids)
            client(database, name, f"CREATE TABLE shop_items (sku VARCHAR(32) PRIMARY KEY, title VARCHAR(200) NOT NULL, is_live INTEGER NOT NULL); INSERT INTO shop_items VALUES {rows};")
            subprocess.run([sys.executable, "-m", "recon_pipeline.cli", "init", "--capture"], env=env, check=True, capture_output=True, timeout=120)
            start("emulator", "--port", str(api_port))
            wait_http(f"{api}/_emulator/faults")
            httpx.post(f"{api}/_emulator/fixtures", json={"products": [{"id": i, "name": f"{i} v0", "created": 1_700_000_000} for i in ids]}, timeout=60).raise_for_status()
            sdk = stripe.StripeClient(KEY, base_addresses={"api": api}, max_network_retries=0)
            endpoint = sdk.v1.webhook_endpoints.create(params={"url": f"http://127.0.0.1:{hook_port}/webhooks/stripe", "enabled_events": ["product.updated"]})
            env["STRIPE_WEBHOOK_SECRET"] = endpoint.secret or ""  # shown once, when the endpoint is created
            start("webhooks", "--port", str(hook_port))
            wait_http(f"http://127.0.0.1:{hook_port}/health")
            start("worker", "--interval", "0.1")
            time.sleep(1)

            write = lambda i: client(database, name, f"UPDATE shop_items SET title = '{ids[i]} local' WHERE sku = '{ids[i]}'")
            outbound = measure(write, lambda p: named_in_stripe(api, ids, p, "local"), changes, rate, timeout)
            engine = create_engine(url)

            def in_table(pending: list[int]) -> list[int]:
                with engine.connect() as conn:
                    titles: dict[str, str] = {row.sku: row.title for row in conn.execute(text("SELECT sku, title FROM shop_items"))}
                return [i for i in pending if titles.get(ids[changes + i]) == f"{ids[changes + i]} stripe"]

            inbound = measure(lambda i: sdk.v1.products.update(ids[changes + i], params={"name": f"{ids[changes + i]} stripe"}), in_table, changes, rate, timeout)
            time.sleep(1)  # a pass of the worker after the last one: an echo would be queued by now
            edited = ids[changes:]
            with engine.connect() as conn:
                decisions = conn.execute(select(audit.c.product_id).where(audit.c.product_id.in_(edited), audit.c.field == "name", audit.c.decision == "conflict_stripe_wins")).scalars().all()
                echoes = conn.execute(select(outbox.c.product_id).where(outbox.c.product_id.in_(edited))).scalars().all()
            engine.dispose()
            print(f"{database}: audit rows per dashboard edit: {len(decisions) / changes:.2f}; changes queued back to Stripe (echoes): {len(echoes)}")
            assert sorted(decisions) == sorted(edited), "each dashboard edit has exactly one audit row"
            assert echoes == [], "a write back was captured and queued back to Stripe"
            return outbound, inbound
        finally:
            stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["postgresql", "mariadb"], action="append", help="default: both")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5.0, help="changes issued per second")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--smoke", action="store_true", help="the CI size: 10 changes each way, every one arrives")
    args = parser.parse_args()
    if args.smoke:
        args.changes, args.rate, args.timeout = 10, 10.0, 30.0
    for database in args.database or ["postgresql", "mariadb"]:
        outbound, inbound = run(database, args.changes, args.rate, args.timeout)
        print(f"{database}: a write by {'psql' if database == 'postgresql' else 'mariadb'} -> visible in Stripe: {percentiles(outbound)}")
        print(f"{database}: a dashboard edit -> visible in the table: {percentiles(inbound)}")
        assert len(outbound) == len(inbound) == args.changes, "a change did not arrive within the timeout"


if __name__ == "__main__":
    main()
