"""Soak: minutes of edits on both sides while Stripe's faults switch on and off.

    .venv/bin/python bench/soak.py [--duration 600]      # the benchmark (figures in bench/RESULTS.md)
    recon_pipeline_tests/faults/test_soak.py              # two minutes of it in the test suite

What runs, as in production: the catalog on PostgreSQL (a database made for the soak and
dropped after it), the bundled emulator on 127.0.0.1, `recon-pipeline worker` and
`recon-pipeline webhooks` as their own processes, the emulator delivering signed webhooks to
the receiver. Conflict policy `local_wins` (the default).

- catalog edits (catalog_rate per second) through the outbox API: renames, price
  changes, description edits;
- dashboard edits in Stripe (stripe_rate per second, another API key): renames and
  descriptions, owned fields, so each is a conflict the worker must revert, and each revert
  comes back as an event that must be recognised as our own echo;
- faults, fault_period_s seconds each, in turn: none, a 429 storm, 5xx, dropped
  connections, slow requests (longer than the worker's timeout), an outage.

At the end the edits stop, faults go off, and the soak waits (bounded) until the outbox and
the inbox are empty and stay so; then a full reconciliation counts the drift. The worker's
and the receiver's resident memory is sampled all along. Loopback only, bounded in time.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import stripe

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.changes import set_default_price, update_product
from recon_pipeline.emulator import EmulatorServer
from recon_pipeline.emulator.server import free_port
from recon_pipeline.settings import environment_for_children
from recon_pipeline.sync.inbox import inbox_lag
from recon_pipeline.sync.outbox import backlog
from recon_pipeline.testing import POSTGRES_ADMIN_URL, database_url, drift_rows, priced_fixture, seed_priced, temporary_database

FAULT_CYCLE: tuple[tuple[str, dict[str, Any]], ...] = (
    ("none", {}),
    ("429 storm", {"rate_limit": 8}),
    ("5xx", {"failure_rate": 0.2}),
    ("dropped connections", {"drop_rate": 0.15}),
    ("slow requests", {"slow_rate": 0.1, "slow_ms": 1500}),
    ("outage", {"outage": True}),
)


@dataclass
class SoakReport:
    duration_s: float
    catalog: str
    catalog_edits: int
    stripe_edits: int
    stripe_edits_refused: int
    fault_switches: int
    emulator_status_counts: dict[str, int]
    dropped_connections: int
    slow_requests: int
    settle_s: float
    drift_rows: int
    dead_letters: int
    memory: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # process -> [(seconds, MiB)]

    def memory_summary(self, name: str) -> dict[str, float]:
        """Warm (median of 20-35 % of the run), end (median of the last 15 %), max and slope after warm-up."""
        samples = self.memory[name]
        span = self.duration_s
        warm = [m for t, m in samples if 0.20 * span <= t <= 0.35 * span] or [samples[0][1]]
        end = [m for t, m in samples if t >= 0.85 * span] or [samples[-1][1]]
        later = [(t, m) for t, m in samples if t >= 0.20 * span]
        slope = 0.0
        if len(later) >= 3:
            mean_t = statistics.fmean(t for t, _ in later)
            mean_m = statistics.fmean(m for _, m in later)
            denominator = sum((t - mean_t) ** 2 for t, _ in later)
            slope = sum((t - mean_t) * (m - mean_m) for t, m in later) / denominator * 60 if denominator else 0.0
        return {
            "start": samples[0][1],
            "warm": statistics.median(warm),
            "end": statistics.median(end),
            "max": max(m for _, m in samples),
            "slope_mib_per_min": slope,
        }

    def lines(self) -> list[str]:
        out = [
            f"soak: {self.duration_s:.0f} s, catalog on {self.catalog}",
            f"edits: {self.catalog_edits} in the catalog, {self.stripe_edits} in the Stripe dashboard ({self.stripe_edits_refused} refused by a fault)",
            f"faults switched {self.fault_switches} times; emulator answered {dict(sorted(self.emulator_status_counts.items()))}, "
            f"dropped {self.dropped_connections} connections, slowed {self.slow_requests} requests",
            f"settled {self.settle_s:.1f} s after the edits stopped; drift rows at the end: {self.drift_rows}; dead letters: {self.dead_letters}",
        ]
        for name in self.memory:
            m = self.memory_summary(name)
            out.append(
                f"{name} RSS MiB: start {m['start']:.1f}, warm {m['warm']:.1f}, end {m['end']:.1f}, max {m['max']:.1f}, "
                f"slope after warm-up {m['slope_mib_per_min']:+.2f} MiB/min"
            )
        return out


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def run_soak(
    duration_s: float = 180, catalog: str = "postgresql", products: int = 200, catalog_rate: float = 5.0, stripe_rate: float = 1.0,
    fault_period_s: float = 15.0, settle_timeout_s: float = 180.0, seed: int = 11, log_dir: Path | None = None, admin_url: str = POSTGRES_ADMIN_URL,
) -> SoakReport:  # fmt: skip
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="recon-soak-"))
    log_dir = log_dir or tmp
    databases = contextlib.ExitStack()  # the soak's own PostgreSQL database, dropped at the end
    catalog_url = f"sqlite:///{tmp / 'catalog.db'}"
    if catalog == "postgresql":
        catalog_url = database_url(databases.enter_context(temporary_database(admin_url, "recon_soak")), admin_url)
    catalog_db = Catalog.open(catalog_url)
    engine = catalog_db.engine
    ids = [f"sku_{i:04d}" for i in range(products)]
    seed_priced(catalog_db, ids)
    processes: dict[str, subprocess.Popen] = {}
    try:
        with EmulatorServer() as api:
            with api.state.lock:
                api.app.state.account.load_fixtures([priced_fixture(i, f"{i} v0") for i in ids])
            dashboard = stripe.StripeClient("sk_test_dashboard", base_addresses={"api": api.url}, max_network_retries=0)
            receiver_port = free_port("127.0.0.1")
            endpoint = dashboard.v1.webhook_endpoints.create(
                params={"url": f"http://127.0.0.1:{receiver_port}/webhooks/stripe", "enabled_events": ["product.updated", "product.created", "price.created", "price.updated"]}
            )
            env = environment_for_children(
                RECON_CATALOG_URL=catalog_url,
                STRIPE_API_BASE=api.url,
                STRIPE_WEBHOOK_SECRET=endpoint.secret or "",  # shown once, when the endpoint is created
                RECON_STRIPE_RATE_LIMIT="50",
                RECON_STRIPE_TIMEOUT_S="1",
                RECON_CONFLICT_POLICY="local_wins",
            )
            env.pop("STRIPE_API_KEY", None)
            cli = [sys.executable, "-m", "recon_pipeline.cli"]
            processes["receiver"] = subprocess.Popen(
                [*cli, "webhooks", "--port", str(receiver_port)], env=env, stdout=(log_dir / "receiver.log").open("w"), stderr=subprocess.STDOUT
            )
            processes["worker"] = subprocess.Popen([*cli, "worker"], env=env, stdout=(log_dir / "worker.log").open("w"), stderr=subprocess.STDOUT)

            memory: dict[str, list[tuple[float, float]]] = {name: [] for name in processes}
            started = time.monotonic()
            stop_sampling = threading.Event()

            def sample() -> None:
                while not stop_sampling.is_set():
                    for name, process in processes.items():
                        if process.poll() is None:
                            memory[name].append((time.monotonic() - started, rss_mib(process.pid)))
                    stop_sampling.wait(2.0)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()

            catalog_edits = stripe_edits = refused = switches = 0
            phase = -1
            next_stripe_edit = started
            while (elapsed := time.monotonic() - started) < duration_s:
                for name, process in processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(f"{name} exited with {process.returncode}; see {log_dir / (name + '.log')}")
                wanted = int(elapsed // fault_period_s) % len(FAULT_CYCLE)
                if wanted != phase:
                    phase = wanted
                    api.faults.clear()
                    api.faults.update(FAULT_CYCLE[phase][1])
                    switches += 1
                product_id = rng.choice(ids)
                roll = rng.random()
                if roll < 0.6:
                    update_product(catalog_db, product_id, name=f"{product_id} c{catalog_edits}")
                elif roll < 0.8:
                    set_default_price(catalog_db, product_id, unit_amount=rng.randrange(100, 10_000), currency="usd")
                else:
                    update_product(catalog_db, product_id, description=f"catalog edit {catalog_edits}")
                catalog_edits += 1
                if time.monotonic() >= next_stripe_edit:
                    next_stripe_edit += 1 / stripe_rate
                    target = rng.choice(ids)
                    edit: stripe.params.ProductUpdateParams = {rng.choice(("name", "description")): f"dashboard edit {stripe_edits}"}  # type: ignore[misc]
                    try:
                        dashboard.v1.products.update(target, params=edit)
                        stripe_edits += 1
                    except stripe.StripeError:
                        refused += 1  # the dashboard call met the same fault; that edit did not happen (or we cannot know)
                stop_sampling.wait(1 / catalog_rate)  # the edit rate
            api.faults.clear()
            edits_stopped = time.monotonic()

            # Settle: outbox and inbox empty for 5 s in a row, and no drift.
            quiet_since = None
            drift = -1
            while time.monotonic() - edits_stopped < settle_timeout_s:
                queue = backlog(engine)
                waiting, _ = inbox_lag(engine)
                if queue.depth == queue.in_flight == waiting == 0:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= 5:
                        drift = drift_rows(catalog_db, api.url)
                        if drift == 0:
                            break
                        quiet_since = None
                else:
                    quiet_since = None
                stop_sampling.wait(0.5)
            settle_s = time.monotonic() - edits_stopped
            if drift != 0:
                drift = drift_rows(catalog_db, api.url)
            stop_sampling.set()
            sampler.join()
            emulator_stats = httpx.get(f"{api.url}/_emulator/stats", timeout=10).json()
            faults_seen = (emulator_stats["status_counts"], emulator_stats["dropped_connections"], emulator_stats["slow_requests"])
            return SoakReport(duration_s, catalog, catalog_edits, stripe_edits, refused, switches, *faults_seen, settle_s, drift, backlog(engine).dead, memory)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        engine.dispose()
        databases.close()
        if log_dir != tmp:
            shutil.rmtree(tmp, ignore_errors=True)
