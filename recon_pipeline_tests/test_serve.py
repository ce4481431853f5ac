"""Production: dagster-webserver + dagster-daemon on deploy/dagster.yaml, storage on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import httpx
import pytest

from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
from recon_pipeline.emulator.server import free_port
from recon_pipeline.runs import latest_metadata
from recon_pipeline.testing import database_url, temporary_database, wait_until
from recon_pipeline_tests.conftest import ADMIN_URL

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def catalog_database():
    """A second database, for the catalog, beside the one Dagster's storage gets."""
    with temporary_database(ADMIN_URL, "recon_catalog") as name:
        yield database_url(name, ADMIN_URL)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_runs_the_scheduled_reconciliation_on_postgresql_and_stops_cleanly(tmp_path: Path, dagster_postgres_url, catalog_database, emulator):
    ids = [f"sku_{i:03d}" for i in range(50)]
    upsert_products(Catalog.open(catalog_database).engine, [CatalogProduct(id=i, name=f"Product {i}") for i in ids])
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [{"id": i, "name": f"Product {i}", "created": 1_700_000_000} for i in ids]}).raise_for_status()

    home = tmp_path / "dagster_home"
    port = free_port("127.0.0.1")
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
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/server_info"), timeout=60, interval=0.5, what="dagster-webserver to come up")
        assert (home / "dagster.yaml").read_text() == (Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml").read_text()

        os.environ["DAGSTER_POSTGRES_URL"] = dagster_postgres_url
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"
                assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"

                def finished_run():
                    runs = instance.get_runs(filters=dg.RunsFilter(job_name="reconcile_catalog"))
                    return next((r for r in runs if r.is_finished), None)

                # The next minute's tick, then the run.
                run = wait_until(finished_run, timeout=150, interval=2, what="the schedule to launch reconcile_catalog and the run to finish")
                assert run.status == dg.DagsterRunStatus.SUCCESS
                assert run.tags.get("dagster/schedule_name") == "reconcile_hourly"
                assert latest_metadata(instance, "catalog_drift")["drift/total"] == 0
        finally:
            os.environ.pop("DAGSTER_POSTGRES_URL", None)
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=60)
    assert code == 0
    # The webserver, the daemon and their code servers are gone with it.
    def survivors() -> str:
        return subprocess.run(["ps", "-o", "pid,args", "--no-headers", "-g", str(serve.pid)], capture_output=True, text=True).stdout.strip()

    wait_until(lambda: not survivors(), timeout=30, interval=0.5, what="the servers' process group to be gone")
