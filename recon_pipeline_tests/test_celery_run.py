"""The Celery example for real: a `dagster-celery` worker and RabbitMQ on 127.0.0.1 run the steps.

deploy/celery as written (instance on PostgreSQL, run config with the broker from the
environment), RECON_EXECUTOR=celery: `reconcile_catalog` (failing its drift check),
`repair_catalog` and `reconcile_catalog` again (passing) are launched from the CLI, each step becomes a Celery task (in a RabbitMQ virtual host of this test's
own), the worker (a separate process) runs it, and the repair leaves no drift.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import httpx
import pytest

from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
from recon_pipeline.testing import assert_no_duplicates, drift_rows, wait_until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def broker():
    """RabbitMQ on 127.0.0.1, in a virtual host of this test's own (queues and all), dropped after."""
    if not rabbitmq_is_up():
        pytest.fail("RabbitMQ is not listening on 127.0.0.1:5672 (.ci/run starts it)")
    vhost = f"recon-test-{uuid.uuid4().hex[:8]}"
    for command in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", "-q", *command], check=True, capture_output=True, timeout=60)
    try:
        yield f"pyamqp://guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


def rabbitmq_is_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        return True
    except OSError:
        return False


def wait_for(path: Path, text: str, timeout_s: float) -> None:
    wait_until(lambda: path.exists() and text in path.read_text(errors="replace"), timeout=timeout_s, interval=0.3, what=f"{text!r} in {path}")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_reconcile_and_repair_run_their_steps_on_a_celery_worker(tmp_path: Path, dagster_postgres_url, emulator, broker):
    catalog_url = f"sqlite:///{tmp_path / 'catalog.db'}"
    catalog = Catalog.open(catalog_url)
    ids = [f"sku_{i:02d}" for i in range(50)]
    upsert_products(catalog.engine, [CatalogProduct(id=i, name=f"Product {i}") for i in ids])
    # In Stripe: three renamed, one missing; 8 % of the catalog, under the mass-drift breaker.
    fixtures = [{"id": i, "name": f"Old {i}" if n < 3 else f"Product {i}", "created": 1_700_000_000} for n, i in enumerate(ids[:-1])]
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": fixtures}).raise_for_status()
    assert drift_rows(catalog, emulator.url) == 4

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "deploy" / "celery" / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": dagster_postgres_url,
        "DAGSTER_CELERY_BROKER_URL": broker,
        "RECON_EXECUTOR": "celery",
        "RECON_CATALOG_URL": catalog_url,
        "STRIPE_API_BASE": emulator.url,
    }
    env.pop("STRIPE_API_KEY", None)
    run_config = str(ROOT / "deploy" / "celery" / "run_config.yaml")
    worker_log = tmp_path / "worker.log"
    bin_dir = Path(sys.executable).parent
    worker = subprocess.Popen(
        [str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", run_config, "--", "--concurrency=2"],
        env=env, cwd=tmp_path, stdout=worker_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(worker_log, " ready.", 90)
        # The drift fails reconcile's blocking check (as the sensor would see it), repair
        # writes, and reconcile passes.
        for job, succeeds in (("reconcile_catalog", False), ("repair_catalog", True), ("reconcile_catalog", True)):
            done = subprocess.run(
                [str(bin_dir / "dagster"), "job", "execute", "-m", "recon_pipeline.definitions", "-j", job, "-c", run_config],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            output = done.stdout[-3000:] + done.stderr[-3000:]
            (tmp_path / f"{job}-{succeeds}.log").write_text(done.stdout + done.stderr)
            assert (done.returncode == 0) == succeeds, output
            if not succeeds:
                assert "catalog_drift: drift_rate_below_threshold" in output
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()

    # Both runs succeeded in PostgreSQL storage, and every step went to the worker.
    os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = list(reversed(instance.get_runs()))  # oldest first
            assert [(r.job_name, r.status) for r in runs] == [
                ("reconcile_catalog", dg.DagsterRunStatus.FAILURE),
                ("repair_catalog", dg.DagsterRunStatus.SUCCESS),
                ("reconcile_catalog", dg.DagsterRunStatus.SUCCESS),
            ]
            repair_run = next(r for r in runs if r.job_name == "repair_catalog")
            logs = instance.all_logs(repair_run.run_id)
            submitted = [e.message for e in logs if e.message and "Submitting celery task" in e.message]
            assert any('"catalog_repair"' in m for m in submitted), submitted
    finally:
        os.environ.pop("DAGSTER_POSTGRES_URL", None)
    worker_says = worker_log.read_text(errors="replace")
    assert "Task execute_plan" in worker_says and "succeeded" in worker_says
    assert drift_rows(catalog, emulator.url) == 0
    assert_no_duplicates(emulator.url)
