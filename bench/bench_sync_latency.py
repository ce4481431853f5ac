"""End-to-end sync latency, both directions, p50/p95 over N changes.

    .venv/bin/python bench/bench_sync_latency.py --path worker    # recon-pipeline worker + webhooks
    .venv/bin/python bench/bench_sync_latency.py --path dagster   # dagster dev: daemon + sensors
    .venv/bin/python bench/bench_sync_latency.py --smoke          # the worker path, 10 changes: every one arrives, for CI

Everything runs as its own process on 127.0.0.1, as a user would run it: the emulator
(`recon-pipeline emulator`), and either the worker and the webhook receiver (with a
webhook endpoint registered in the emulator) or `dagster dev` (outbox_sensor,
stripe_events_poller). The catalog is a SQLite file; the conflict policy is stripe_wins
so that a Stripe edit shows in the catalog.

- catalog edit -> visible in Stripe: `update_product` commits the change and its outbox row
  (t0); the change is visible when the emulator returns the new name (polled every 50 ms).
- Stripe edit -> visible in the catalog: the SDK renames the product in the emulator (t0);
  visible when the catalog row has the new name.

Changes are issued at --rate per second, each to its own product, so latencies overlap as
they would in production. Bounded: N changes, then a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import stripe

from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
from recon_pipeline.catalog.changes import update_product
from recon_pipeline.emulator.server import free_port as _free_port
from recon_pipeline.settings import environment_for_children
from recon_pipeline.testing import wait_until

KEY = "sk_test_bench"


def free_port() -> int:
    return _free_port("127.0.0.1")


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
        return True
    except httpx.HTTPError:
        return False


def wait_http(url: str, seconds: float = 60) -> None:
    wait_until(lambda: answers(url), timeout=seconds, interval=0.2, what=f"{url} to come up")


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    p = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return f"n={len(values)} p50={statistics.median(values):.2f}s p95={p(0.95):.2f}s max={values[-1]:.2f}s"


def measure(issue, visible, count: int, rate: float, timeout: float) -> list[float]:
    """Issue `count` changes at `rate`/s; return each one's seconds until `visible`."""
    started: dict[int, float] = {}
    latency: dict[int, float] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            pending = [i for i in started if i not in latency]
            if pending:
                seen = visible(pending)
                now = time.monotonic()
                for i in seen:
                    latency[i] = now - started[i]
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for i in range(count):
        issue(i)
        started[i] = time.monotonic()
        time.sleep(1 / rate)
    with contextlib.suppress(AssertionError):  # what did not arrive is reported below as missing
        wait_until(lambda: len(latency) >= count, timeout=timeout, interval=0.1, what="every change to be visible")
    done.set()
    watcher.join()
    missing = count - len(latency)
    if missing:
        print(f"  {missing} changes not visible within {timeout:.0f} s")
    return list(latency.values())


def named_in_stripe(api: str, ids: list[str], pending: list[int], suffix: str) -> list[int]:
    """Those of the pending changes whose product the emulator now names `<id> <suffix>` (up to 100 at a time)."""
    query: list[tuple[str, str | int | float | bool | None]] = [("limit", "100"), *[("ids[]", ids[i]) for i in pending[:100]]]
    listed = httpx.get(f"{api}/v1/products", params=query, headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
    names = {p["id"]: p["name"] for p in listed}
    return [i for i in pending[:100] if names.get(ids[i]) == f"{ids[i]} {suffix}"]


def stop(procs: list[subprocess.Popen]) -> None:
    """Stop each process group: SIGTERM, then SIGKILL what is still there after 20 s."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", choices=["worker", "dagster"], default="worker")
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="changes issued per second")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--smoke", action="store_true", help="the CI size: the worker path, 10 changes each way, 30 s timeout")
    args = parser.parse_args()
    if args.smoke:
        args.path, args.changes, args.rate, args.timeout = "worker", 10, 10.0, 30.0

    tmp = Path(tempfile.mkdtemp(prefix="recon-bench-"))
    catalog_url = f"sqlite:///{tmp / 'catalog.db'}"
    api_port, hook_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    env = environment_for_children(
        RECON_CATALOG_URL=catalog_url, STRIPE_API_BASE=api, RECON_CONFLICT_POLICY="stripe_wins", DAGSTER_HOME=str(tmp / "dagster_home")
    )
    (tmp / "dagster_home").mkdir()
    (tmp / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    procs: list[subprocess.Popen] = []

    def start(*argv: str) -> None:
        procs.append(subprocess.Popen([sys.executable, "-m", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))

    try:
        start("recon_pipeline.cli", "emulator", "--port", str(api_port))
        wait_http(f"{api}/_emulator/faults")
        n = args.changes
        ids = [f"sku_{i:04d}" for i in range(2 * n)]
        catalog = Catalog.open(catalog_url)
        upsert_products(catalog.engine, [CatalogProduct(id=i, name=f"{i} v0") for i in ids])
        httpx.post(f"{api}/_emulator/fixtures", json={"products": [{"id": i, "name": f"{i} v0", "created": 1_700_000_000} for i in ids]}, timeout=60).raise_for_status()
        client = stripe.StripeClient(KEY, base_addresses={"api": api}, max_network_retries=0)

        if args.path == "worker":
            endpoint = client.v1.webhook_endpoints.create(params={"url": f"http://127.0.0.1:{hook_port}/webhooks/stripe", "enabled_events": ["product.updated", "product.created", "product.deleted"]})
            env["STRIPE_WEBHOOK_SECRET"] = endpoint.secret or ""  # shown once, when the endpoint is created
            start("recon_pipeline.cli", "webhooks", "--port", str(hook_port))
            wait_http(f"http://127.0.0.1:{hook_port}/health")
            start("recon_pipeline.cli", "worker", "--interval", "0.1")
        else:
            ui = free_port()
            start("dagster", "dev", "-m", "recon_pipeline.definitions", "-h", "127.0.0.1", "-p", str(ui))
            wait_http(f"http://127.0.0.1:{ui}/server_info", 120)
            time.sleep(10)  # the daemon starts its sensors after the webserver
        time.sleep(1)

        outbound = measure(lambda i: update_product(catalog, ids[i], name=f"{ids[i]} local"), lambda p: named_in_stripe(api, ids, p, "local"), n, args.rate, args.timeout)
        print(f"{args.path}: catalog edit -> visible in Stripe: {percentiles(outbound)}")

        def catalog_names(pending: list[int]) -> list[int]:
            frame = catalog.rows([ids[n + i] for i in pending]).set_index("id")["name"]
            return [i for i in pending if frame.get(ids[n + i]) == f"{ids[n + i]} stripe"]

        inbound = measure(lambda i: client.v1.products.update(ids[n + i], params={"name": f"{ids[n + i]} stripe"}), catalog_names, n, args.rate, args.timeout)
        print(f"{args.path}: Stripe edit -> visible in the catalog: {percentiles(inbound)}")
        assert len(outbound) == len(inbound) == n, "a change did not arrive within the timeout"
    finally:
        stop(procs)


if __name__ == "__main__":
    main()
