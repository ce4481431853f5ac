"""Emulator throughput: simple requests per second on loopback, bounded in time.

    .venv/bin/python bench/bench_emulator.py              # wrk if installed (apt-get install wrk), else Python threads
    .venv/bin/python bench/bench_emulator.py --smoke      # 2 s of Python threads: every answer 200, for CI

Runs the emulator as its own process (`recon-pipeline emulator`) with 1,000 products,
then drives `GET /v1/products/{id}` for 10 s with keep-alive connections: wrk with 2
threads and 16 connections, or, without wrk, 8 Python threads with httpx clients (the
Python generator itself then shares the 2 cores and under-reports).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import threading
import time

import httpx

from recon_pipeline.emulator.server import free_port
from recon_pipeline.testing import wait_until

KEY = "sk_test_bench"


def python_load(url: str, seconds: float, threads: int) -> float:
    deadline = time.monotonic() + seconds
    counts = [0] * threads

    def worker(i: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as client:
            while time.monotonic() < deadline:
                client.get(url).raise_for_status()
                counts[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def emulator_answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/_emulator/faults", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="the CI size: 2 s of Python threads (raise_for_status on every answer)")
    args = parser.parse_args()
    if args.smoke:
        args.seconds = 2

    port = free_port("127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "recon_pipeline.cli", "emulator", "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: emulator_answers(base), timeout=10, what="the emulator to answer")
        products = [{"id": f"sku_{i:05d}", "name": f"Product {i}", "created": 1_700_000_000 + i} for i in range(1000)]
        httpx.post(f"{base}/_emulator/fixtures", json={"products": products}, timeout=60).raise_for_status()
        url = f"{base}/v1/products/sku_00500"
        if shutil.which("wrk") and not args.smoke:
            out = subprocess.run(
                ["wrk", "-t2", "-c16", f"-d{args.seconds}s", "-H", f"Authorization: Bearer {KEY}", url],
                capture_output=True, text=True, check=True,
            ).stdout
            found = re.search(r"Requests/sec:\s+([\d.]+)", out)
            assert found, f"wrk printed no request rate:\n{out}"
            rate = float(found.group(1))
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            print(out.strip())
            print(f"\nemulator: {rate:,.0f} requests/s (GET /v1/products/{{id}}, wrk 2 threads, 16 connections, {args.seconds} s); non-2xx: {non2xx.group(1) if non2xx else 0}")
        else:
            rate = python_load(url, args.seconds, threads=8)
            print(f"emulator: {rate:,.0f} requests/s (GET /v1/products/{{id}}, 8 Python threads, {args.seconds} s)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
