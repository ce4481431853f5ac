"""PostgreSQL restarting under a draining worker, and two workers at once.

The restart is real: this test starts its own PostgreSQL server (initdb into a temporary
directory, a free port on 127.0.0.1) so that stopping it cannot disturb the machine's
server or the tests running beside it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.changes import change_price, create_product, update_product
from recon_pipeline.emulator.server import free_port
from recon_pipeline.sync.outbox import backlog
from recon_pipeline.testing import assert_no_duplicates, drift_rows, priced_product, wait_until

pytestmark = pytest.mark.postgres


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}")) or ([Path(p)] if (p := shutil.which(name)) else [])
    if not found:
        raise RuntimeError(f"{name} not found: install PostgreSQL's server binaries (Debian: postgresql)")
    return str(found[-1])


class PrivatePostgres:
    """A PostgreSQL server of this test's own, that the test may stop and start at will."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.port = free_port("127.0.0.1")
        # PostgreSQL refuses to run as root: as root, run it as the postgres user.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run([*self.as_user, _pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", *args], check=True, capture_output=True)

    def init(self) -> PrivatePostgres:
        if self.as_user:
            shutil.chown(self.root, "postgres")
        subprocess.run([*self.as_user, _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        self._ctl("start")
        return self

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def start(self) -> None:
        self._ctl("start")


@pytest.fixture
def private_postgres():
    # Not under tmp_path: the postgres user must be able to reach the directory.
    root = Path(tempfile.mkdtemp(prefix="recon-pg-"))
    server = PrivatePostgres(root).init()
    yield server
    subprocess.run([*server.as_user, _pg_bin("pg_ctl"), "-D", str(server.data), "-m", "immediate", "-w", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def seed(url: str, count: int) -> Catalog:
    catalog = Catalog.open(url)
    for i in range(count):
        create_product(catalog, *priced_product(f"sku_{i:03d}", f"P{i}", 100 + i))
        update_product(catalog, f"sku_{i:03d}", name=f"P{i} final")
        if i % 3 == 0:
            change_price(catalog, f"sku_{i:03d}:default", unit_amount=900 + i)
    return catalog


def start_worker(catalog_url: str, emulator, log: Path) -> subprocess.Popen:
    env = {**os.environ, "RECON_CATALOG_URL": catalog_url, "STRIPE_API_BASE": emulator.url, "RECON_STRIPE_RATE_LIMIT": "1000", "RECON_STRIPE_TIMEOUT_S": "2"}
    env.pop("STRIPE_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-m", "recon_pipeline.cli", "worker", "--concurrency", "4", "--batch-size", "10"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def wait_drained(engine, timeout_s: float) -> None:
    def drained() -> bool:
        try:
            queue = backlog(engine)
            return queue.depth == queue.in_flight == 0
        except Exception:  # the database may still be coming back
            engine.dispose()
            return False

    wait_until(drained, timeout=timeout_s, interval=0.2, what="the outbox to drain")


def stop_worker(worker: subprocess.Popen) -> int:
    worker.send_signal(signal.SIGTERM)
    return worker.wait(timeout=30)


def test_a_postgresql_restart_mid_drain_loses_and_duplicates_nothing(private_postgres, emulator, tmp_path):
    catalog = seed(private_postgres.url, 60)
    engine = catalog.engine
    emulator.faults.update({"latency_ms": 40})
    log = tmp_path / "worker.log"
    worker = start_worker(private_postgres.url, emulator, log)
    try:
        wait_until(lambda: backlog(engine).in_flight, timeout=30, what="the worker to start draining")
        engine.dispose()
        private_postgres.stop()  # the worker loses its database mid-drain
        wait_until(lambda: "catalog database unreachable" in log.read_text(), timeout=30, what="the worker to notice the database is gone")
        assert worker.poll() is None, f"the worker died with the database:\n{log.read_text()}"
        private_postgres.start()
        emulator.faults.update({"latency_ms": 0})
        wait_drained(engine, 60)
        assert worker.poll() is None
    finally:
        code = stop_worker(worker)
    output = log.read_text()
    assert code == 0, output
    assert "catalog database unreachable" in output and "reachable again" in output, output
    assert backlog(engine).dead == 0
    assert drift_rows(catalog, emulator.url) == 0
    assert_no_duplicates(emulator.url)


def test_two_workers_at_once_through_dropped_connections_and_5xx(postgres_url, emulator, tmp_path):
    catalog = seed(postgres_url, 90)
    engine = catalog.engine
    emulator.faults.update({"drop_rate": 0.1, "failure_rate": 0.1, "latency_ms": 10})
    workers = [start_worker(postgres_url, emulator, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        wait_drained(engine, 120)
    finally:
        codes = [stop_worker(w) for w in workers]
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    assert all("pushed" in log for log in logs), "both workers did part of the work"
    emulator.faults.update({"drop_rate": 0.0, "failure_rate": 0.0})
    assert backlog(engine).dead == 0
    assert drift_rows(catalog, emulator.url) == 0
    assert_no_duplicates(emulator.url)
