"""One rate budget per Stripe account, shared by every process that calls it (issue 16, part 1).

The budget lives where every process sees it: rows of the catalog's PostgreSQL, or a file
under `flock` beside a SQLite catalog. Separate processes taking slots from it together stay
within one rate; the last test runs two `recon-pipeline worker`s and a `recon-pipeline
repair` run at once against the emulator, limited as a sandbox account is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.changes import create_product
from recon_pipeline.catalog.schema import OutboxStatus, outbox, rate_budget, sync_ledger
from recon_pipeline.stripe_api import FileBudget, LocalBudget, RateLimiter, budget_for
from recon_pipeline.stripe_api.ratelimit import SqlBudget, burst_for, next_slot
from recon_pipeline.testing import priced_product, seed_priced, wait_until

# A child process taking `slots` slots of one bucket at `rate`, printing when each was its turn.
CHILD = """
import json, sys, time
from recon_pipeline.stripe_api import budget_for
budget = budget_for(sys.argv[1])
start_at, slots, rate = float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
time.sleep(max(0.0, start_at - time.time()))
sent = []
for _ in range(slots):
    time.sleep(budget.reserve("default *", rate))
    sent.append(time.time())
print(json.dumps(sent))
"""


def test_a_slot_follows_the_burst_at_the_rate():
    tat, waits = None, []
    for _ in range(8):
        tat, wait = next_slot(tat, 100.0, rate=4.0, burst=2.0)
        waits.append(wait)
    assert waits == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    # After a quiet spell the bucket starts afresh; a slot far ahead (a clock that jumped) is forgotten.
    assert next_slot(tat, 200.0, 4.0, 2.0) == (200.25, 0.0)
    assert next_slot(10_000.0, 200.0, 4.0, 2.0) == (200.25, 0.0)
    assert burst_for(25) == 12.5 and burst_for(1) == 1.0


def test_a_budget_is_shared_where_the_catalog_is(tmp_path: Path, postgres_url: str):
    assert isinstance(budget_for(None), LocalBudget) and isinstance(budget_for("sqlite:///:memory:"), LocalBudget)
    on_file = budget_for(f"sqlite:///{tmp_path / 'catalog.db'}")
    assert isinstance(on_file, FileBudget) and on_file.path == tmp_path / "catalog.db-ratelimit"
    assert isinstance(budget_for(postgres_url), SqlBudget)


def test_processes_taking_slots_at_once_keep_to_one_rate(empty_database: str):
    url = empty_database  # a file beside a SQLite catalog; rows in PostgreSQL or MariaDB
    Catalog.open(url).engine.dispose()
    rate, slots, processes = 40.0, 30, 3
    start_at = time.time() + 3.0  # every child imported and waiting
    children = [subprocess.Popen([sys.executable, "-c", CHILD, url, str(start_at), str(slots), str(rate)], stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    sent = sorted(t for child in children for t in json.loads(child.communicate(timeout=60)[0]))
    assert all(child.returncode == 0 for child in children)
    assert len(sent) == processes * slots
    # Never more than the burst plus the rate since the start (a little slack for a busy machine's scheduling)...
    for count, at in enumerate(sent, start=1):
        assert count <= burst_for(rate) + rate * (at - sent[0]) + 2, f"{count} requests by {at - sent[0]:.3f} s"
    # ...and not much less either: the rate is used, not wasted.
    assert sent[-1] - sent[0] < (len(sent) - burst_for(rate)) / rate + 1.0
    budget = budget_for(url)
    if isinstance(budget, SqlBudget):
        with budget.engine.begin() as conn:
            assert conn.execute(select(rate_budget.c.bucket)).scalars().all() == ["default *"]
            # A slot far ahead (a clock that jumped, a rate lowered since) is forgotten, as next_slot says.
            conn.execute(update(rate_budget).values(tat=rate_budget.c.tat + 10_000))
    else:
        assert isinstance(budget, FileBudget)
        budget.path.write_text(json.dumps({"default *": time.monotonic() + 10_000}))  # the file keeps the monotonic clock
    assert budget.reserve("default *", rate) == 0.0


def test_the_limiter_takes_the_endpoint_slot_then_the_accounts():
    budget = LocalBudget()
    limiter = RateLimiter(global_rate=4.0, endpoint_rate=2.0, budget=budget, account="eu")
    waits = [limiter.acquire("GET /v1/products") for _ in range(3)]
    assert waits[0] == 0.0 and waits[2] >= 0.45  # the endpoint's 2/s holds, though the account's 4/s would allow more
    assert set(budget._tats) == {"eu GET /v1/products", "eu *"}
    with pytest.raises(ValueError, match="global rate must be > 0"):
        RateLimiter(global_rate=0, endpoint_rate=None)


LIMIT = 25  # requests/s: a sandbox account's global limit
REPAIRED = 30  # products the repair run creates (three writes each): about 12 s at its third of the limit


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "recon_pipeline.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _counts(emulator) -> tuple[int, int]:
    """The emulator's requests so far: all of them, and those answered 429."""
    import httpx

    stats = httpx.get(f"{emulator.url}/_emulator/stats").json()
    return stats["requests"], stats["rate_limited"]


@pytest.mark.postgres
@pytest.mark.timeout(420)
def test_two_workers_and_a_repair_run_together_stay_within_the_accounts_limit(postgres_url: str, emulator, dagster_home: Path, monkeypatch: pytest.MonkeyPatch):
    import dagster as dg

    from recon_pipeline.runs import run_job

    catalog = Catalog.open(postgres_url)
    settings = {"RECON_CATALOG_URL": postgres_url, "STRIPE_API_BASE": emulator.url, "RECON_STRIPE_RATE_LIMIT": str(LIMIT), "RECON_EXECUTOR": "in_process"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    env = dict(os.environ)
    # Drift for the repair run: products the catalog has and Stripe has not, found by a reconciliation.
    seed_priced(catalog, [f"repair_{i:03d}" for i in range(REPAIRED)])
    reconcile = run_job("reconcile_catalog", instance=dg.DagsterInstance.get(), quiet=True)
    assert len(reconcile.asset_value("catalog_drift")) == 2 * REPAIRED  # each product and its price
    # Work for the workers: new products through the outbox, more than they can push in the run's time.
    for i in range(200):
        create_product(catalog, *priced_product(f"queued_{i:03d}", f"Queued {i}"))

    emulator.faults.update({"rate_limit": LIMIT})  # the account's limit, as Stripe holds it

    def pending() -> int:
        with catalog.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(outbox).where(outbox.c.status != OutboxStatus.DONE.value)).scalar_one()

    def writes_by(source: str) -> int:
        with catalog.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(sync_ledger).where(sync_ledger.c.source == source)).scalar_one()

    before = _counts(emulator)
    # Small batches: a worker marks its changes done (and stops on SIGTERM) batch by batch.
    workers = [_cli("worker", "--concurrency", "8", "--batch-size", "10", env=env) for _ in range(2)]
    repair = _cli("repair", "--override-breaker", env=env)
    try:
        wait_until(lambda: writes_by("outbox") > 0 and writes_by("repair") > 0, timeout=120, what="the workers and the repair run to write")
        # From here all three call Stripe; measured until the repair run ends (its products
        # take a third of the limit for several seconds) or the workers run out of work.
        start, started_at = _counts(emulator), time.monotonic()
        wait_until(lambda: repair.poll() is not None or pending() == 0, timeout=240, interval=0.1, what="the repair run to end")
        end, ended_at = _counts(emulator), time.monotonic()
        assert pending() > 0, "the workers ran out of work before the repair run ended: give them more"
        assert repair.wait(timeout=60) == 0, repair.stdout.read() if repair.stdout else ""
    finally:
        running = [repair, *workers]
        for process in running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            process.wait(timeout=60)
    after = _counts(emulator)

    answered, refused = after[0] - before[0], after[1] - before[1]
    window_s = ended_at - started_at
    used = ((end[0] - end[1]) - (start[0] - start[1])) / window_s
    print(f"{answered} requests, {refused} answered 429; {used:.1f} req/s of {LIMIT} over {window_s:.1f} s with all three calling")
    assert window_s >= 4, "too short a window to measure: give the repair run more to do"
    assert refused <= 0.01 * answered
    assert used >= 0.9 * LIMIT
