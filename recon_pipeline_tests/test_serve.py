"""Production: dagster-webserver + dagster-daemon on deploy/dagster.yaml, storage on PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from recon_pipeline.catalog import CatalogProduct, init_schema, make_engine, upsert_products
from recon_pipeline_tests.conftest import database_url, temporary_database

pytestmark = pytest.mark.postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def catalog_database():
    """A second database, for the catalog, beside the one Dagster's storage gets."""
    with temporary_database("recon_catalog") as name:
        yield database_url(name)


def test_serve_runs_the_scheduled_reconciliation_on_postgresql_and_stops_cleanly(tmp_path: Path, dagster_postgres_url, catalog_database, emulator):
    ids = [f"sku_{i:03d}" for i in range(50)]
    engine = make_engine(catalog_database)
    init_schema(engine)
    upsert_products(engine, [CatalogProduct(id=i, name=f"Product {i}") for i in ids])
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [{"id": i, "name": f"Product {i}", "created": 1_700_000_000} for i in ids]}).raise_for_status()

    home = tmp_path / "dagster_home"
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": dagster_postgres_url,
        "RECON_CATALOG_URL": catalog_database,
        "STRIPE_API_BASE": emulator.url,
        "RECON_RECONCILE_CRON": "* * * * *",  # every minute, so the test need not wait an hour
    }
    env.pop("STRIPE_API_KEY", None)
    serve = subprocess.Popen(
        [sys.executable, "-m", "recon_pipeline.cli", "serve", "--port", str(port)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("dagster-webserver did not come up")
        assert (home / "dagster.yaml").read_text() == (Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml").read_text()

        os.environ["DAGSTER_POSTGRES_URL"] = dagster_postgres_url
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"
                assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
                run = None
                deadline = time.monotonic() + 150  # the next minute's tick, then the run
                while time.monotonic() < deadline:
                    runs = instance.get_runs(filters=dg.RunsFilter(job_name="reconcile_catalog"))
                    finished = [r for r in runs if r.is_finished]
                    if finished:
                        run = finished[0]
                        break
                    time.sleep(2)
                assert run is not None, "the schedule did not launch reconcile_catalog"
                assert run.status == dg.DagsterRunStatus.SUCCESS
                assert run.tags.get("dagster/schedule_name") == "reconcile_hourly"
                drift = instance.get_latest_materialization_event(dg.AssetKey("catalog_drift")).asset_materialization
                assert drift.metadata["drift/total"].value == 0
        finally:
            os.environ.pop("DAGSTER_POSTGRES_URL", None)
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=60)
    assert code == 0
    # The webserver, the daemon and their code servers are gone with it.
    survivors = ""
    for _ in range(60):
        survivors = subprocess.run(["ps", "-o", "pid,args", "--no-headers", "-g", str(serve.pid)], capture_output=True, text=True).stdout.strip()
        if not survivors:
            break
        time.sleep(0.5)
    assert survivors == ""
