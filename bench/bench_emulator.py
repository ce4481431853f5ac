"""Emulator throughput: simple requests per second on loopback, bounded in time.

    .venv/bin/python bench/bench_emulator.py                   # wrk if installed (apt-get install wrk), else Python threads
    .venv/bin/python bench/bench_emulator.py --vs-localstripe  # side by side with localstripe 1.15.10, same load, same run
    .venv/bin/python bench/bench_emulator.py --smoke           # 2 s of Python threads: every answer 200, for CI

With --vs-localstripe, localstripe (github.com/adrienverge/localstripe, from the package
index into a virtual environment of its own under the system's temp directory, or the one
--localstripe-venv names) and the emulator each get the same 100 products through
`POST /v1/products`, then `GET /v1/products?limit=100` is driven at 8 connections, in turns
(emulator, localstripe, emulator, localstripe), each for --seconds; the figure is the ratio
of the two servers' best turns. localstripe binds every interface; only loopback is sent
traffic.

Runs the emulator as its own process (`recon-pipeline emulator`) with 1,000 products,
then drives `GET /v1/products/{id}` for 10 s with keep-alive connections: wrk with 2
threads and 16 connections, or, without wrk, 8 Python threads with httpx clients (the
Python generator itself then shares the 2 cores and under-reports).
"""

from __future__ import annotations

import argparse
import functools
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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


def measure(url: str, seconds: int, connections: int) -> float:
    """Requests per second at `url`: wrk (2 threads) if installed, else Python threads; every answer 2xx."""
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Authorization: Bearer {KEY}", url], capture_output=True, text=True, check=True
        ).stdout
        found = re.search(r"Requests/sec:\s+([\d.]+)", out)
        assert found, f"wrk printed no request rate:\n{out}"
        assert not re.search(r"Non-2xx or 3xx responses: (\d+)", out), f"answers that were not 2xx:\n{out}"
        return float(found.group(1))
    return python_load(url, seconds, threads=connections)


def localstripe_venv(given: str | None) -> Path:
    """A virtual environment with localstripe 1.15.10: the given one, or one made once under the temp directory."""
    venv = Path(given) if given else Path(tempfile.gettempdir()) / "recon-bench-localstripe"
    if not (venv / "bin" / "localstripe").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "localstripe==1.15.10"], check=True)
    return venv


def side_by_side(seconds: int, venv: Path) -> None:
    """The emulator and localstripe, the same 100 products, the same load, in turns."""
    servers = {}
    emulator_port, localstripe_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    servers["emulator"] = subprocess.Popen([sys.executable, "-m", "recon_pipeline.emulator", "--port", str(emulator_port)], stdout=subprocess.DEVNULL)
    servers["localstripe"] = subprocess.Popen([str(venv / "bin" / "localstripe"), "--port", str(localstripe_port), "--from-scratch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bases = {"emulator": f"http://127.0.0.1:{emulator_port}", "localstripe": f"http://127.0.0.1:{localstripe_port}"}
    try:
        for name, base in bases.items():
            wait_until(functools.partial(answers, f"{base}/v1/products"), timeout=30, what=f"{name} to answer")
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as client:
                for i in range(100):
                    client.post("/v1/products", data={"name": f"Product {i}", "description": "A product of the benchmark"}).raise_for_status()
                assert len(client.get("/v1/products", params={"limit": 100}).json()["data"]) == 100
        rates: dict[str, list[float]] = {name: [] for name in bases}
        for _ in range(2):
            for name, base in bases.items():
                rates[name].append(measure(f"{base}/v1/products?limit=100", seconds, connections=8))
                print(f"{name:<12} {rates[name][-1]:>8,.0f} requests/s", flush=True)
        best = {name: max(found) for name, found in rates.items()}
        print(
            f"\nGET /v1/products?limit=100, 100 products, 8 connections, {seconds} s a turn, best of 2: "
            f"emulator {best['emulator']:,.0f}/s, localstripe {best['localstripe']:,.0f}/s = {best['emulator'] / best['localstripe']:.1f}x "
            f"({'wrk' if shutil.which('wrk') else 'Python threads'})"
        )
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(timeout=10)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="the CI size: 2 s of Python threads (raise_for_status on every answer)")
    parser.add_argument("--vs-localstripe", action="store_true", help="side by side with localstripe 1.15.10 (installed from the package index)")
    parser.add_argument("--localstripe-venv", help="a virtual environment that has localstripe (default: one made under the temp directory)")
    args = parser.parse_args()
    if args.vs_localstripe:
        side_by_side(args.seconds, localstripe_venv(args.localstripe_venv))
        return
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
