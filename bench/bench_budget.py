"""What a slot of the shared Stripe rate budget costs: latency per acquire, at 100 requests/s.

    .venv/bin/python bench/bench_budget.py                  # 3 processes x 8 threads, 100 req/s, 20 s per store
    .venv/bin/python bench/bench_budget.py --rate 25 --seconds 10
    .venv/bin/python bench/bench_budget.py --smoke          # 3 s per store: the checks, for CI

Several processes (as run steps, workers and replays are), each with several threads (as
a repair's or a drain's concurrency), take slots of one account's budget as fast as it
hands them out, for each place the budget can live: a file beside a SQLite catalog, and
the catalog's PostgreSQL (a database of its own, dropped after). Per acquire it records
the time spent getting the slot (the lock and the round trips, not the wait for the slot
itself) and when the request would have gone. It checks that no second held more than the
burst plus the rate, and reports the rate achieved and the acquire latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from recon_pipeline.catalog import Catalog
from recon_pipeline.stripe_api.ratelimit import budget_for, burst_for
from recon_pipeline.testing import database_url, temporary_database

BUCKET = "bench *"


def child(url: str, start_at: float, seconds: float, rate: float, threads: int) -> None:
    """One process: `threads` threads taking slots until the deadline; prints [[sent_at, cost_s], ...]."""
    budget = budget_for(url)
    budget.reserve("warm-up", 1000.0)  # the connection pool's first connection, not part of the measure
    records: list[tuple[float, float]] = []
    lock = threading.Lock()
    time.sleep(max(0.0, start_at - time.time()))
    deadline = start_at + seconds

    def take() -> None:
        while time.time() < deadline:
            began = time.perf_counter()
            wait = budget.reserve(BUCKET, rate)
            cost = time.perf_counter() - began
            time.sleep(wait)
            with lock:
                records.append((time.time(), cost))

    pool = [threading.Thread(target=take) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    print(json.dumps(records))


def measure(url: str, processes: int, threads: int, rate: float, seconds: float) -> dict[str, float]:
    start_at = time.time() + 4.0  # every child started and connected
    argv = [sys.executable, __file__, "--child", url, str(start_at), str(seconds), str(rate), str(threads)]
    children = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    records = sorted(tuple(r) for c in children for r in json.loads(c.communicate(timeout=seconds + 120)[0]))
    if any(c.returncode for c in children):
        raise SystemExit("a child process failed")
    sent = [r[0] for r in records if r[0] <= start_at + seconds]
    costs = sorted(r[1] * 1000 for r in records)
    over = max(count - (burst_for(rate) + rate * (at - sent[0])) for count, at in enumerate(sent, start=1))
    return {
        "acquires": len(records),
        "rate": (len(sent) - burst_for(rate)) / (sent[-1] - sent[0]),
        "p50_ms": statistics.median(costs),
        "p95_ms": costs[int(0.95 * (len(costs) - 1))],
        "p99_ms": costs[int(0.99 * (len(costs) - 1))],
        "max_ms": costs[-1],
        "over_bound": over,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="the account's limit, requests/s")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="threads per process")
    parser.add_argument("--seconds", type=float, default=20.0, help="per store")
    parser.add_argument("--smoke", action="store_true", help="3 s per store: the checks, for CI")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, start_at, seconds, rate, threads = args.child
        child(url, float(start_at), float(seconds), float(rate), int(threads))
        return
    if args.smoke:
        args.seconds = 3.0

    print(f"{args.processes} processes x {args.threads} threads taking slots of one budget at {args.rate:g} req/s for {args.seconds:g} s")
    with tempfile.TemporaryDirectory() as tmp, temporary_database(prefix="recon_bench") as name:
        for store, url in (("file (SQLite catalog)", f"sqlite:///{Path(tmp) / 'catalog.db'}"), ("PostgreSQL", database_url(name))):
            Catalog.open(url).engine.dispose()
            found = measure(url, args.processes, args.threads, args.rate, args.seconds)
            print(
                f"{store:<22} {found['acquires']:>6,} acquires, {found['rate']:6.1f} req/s ({found['rate'] / args.rate:.1%} of the limit); "
                f"acquire latency p50 {found['p50_ms']:.2f} ms, p95 {found['p95_ms']:.2f} ms, p99 {found['p99_ms']:.2f} ms, max {found['max_ms']:.1f} ms"
            )
            # Correctness, whatever the machine: never more requests than the burst plus the rate since the start.
            assert found["over_bound"] <= 2, f"{store}: {found['over_bound']:.1f} requests over the budget's bound"


if __name__ == "__main__":
    main()
