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

from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
from recon_pipeline.emulator.server import free_port
from recon_pipeline.runs import latest_metadata
from recon_pipeline.settings import environment_for_children
from recon_pipeline.testing import AlertReceiver, database_url, temporary_database, wait_until
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


def runs_of(instance: dg.DagsterInstance, job: str) -> list[dg.DagsterRun]:
    return list(reversed(instance.get_runs(filters=dg.RunsFilter(job_name=job))))  # oldest first


def test_under_serve_drift_fails_once_alerts_once_and_is_repaired_once(tmp_path: Path, dagster_postgres_url, catalog_database, emulator, monkeypatch):
    """The production path end to end: the schedule's reconcile finds drift (its blocking check
    fails: one failed run, not retried), one alert (the check's, not the run's too), one repair
    run; the next reconcile passes. A fresh instance raises no freshness alert. Ctrl-C stops it all."""
    ids = [f"sku_{i:03d}" for i in range(50)]
    upsert_products(Catalog.open(catalog_database).engine, [CatalogProduct(id=i, name=f"Product {i}") for i in ids])
    # Four names drifted in Stripe: 8 % of the catalog, over the 1 % drift check, under the 10 % breaker.
    fixtures = [{"id": i, "name": f"Product {i}" + (" (old)" if n < 4 else ""), "created": 1_700_000_000} for n, i in enumerate(ids)]
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": fixtures}).raise_for_status()

    home = tmp_path / "dagster_home"
    port = free_port("127.0.0.1")
    with AlertReceiver() as receiver:
        env = environment_for_children(
            DAGSTER_HOME=str(home),
            DAGSTER_POSTGRES_URL=dagster_postgres_url,
            RECON_CATALOG_URL=catalog_database,
            STRIPE_API_BASE=emulator.url,
            ALERT_WEBHOOK_URL=receiver.url,
            RECON_RECONCILE_CRON="* * * * *",  # every minute, so the test need not wait an hour
        )
        env.pop("STRIPE_API_KEY", None)
        log = tmp_path / "serve.log"
        serve = subprocess.Popen(
            [sys.executable, "-m", "recon_pipeline.cli", "serve", "--port", str(port)], env=env, start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        try:
            wait_until(lambda: answers(f"http://127.0.0.1:{port}/server_info"), timeout=60, interval=0.5, what="dagster-webserver to come up")
            monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_postgres_url)  # what the instance file reads
            assert (home / "dagster.yaml").read_text() == (Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml").read_text()
            with dg.DagsterInstance.from_config(str(home)) as instance:
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"
                assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"

                def passed_after_repair() -> bool:
                    reconciles = [r for r in runs_of(instance, "reconcile_catalog") if r.is_finished]
                    return len(reconciles) >= 2 and reconciles[-1].status == dg.DagsterRunStatus.SUCCESS

                # The first minute's tick finds the drift, the sensor repairs it, the next tick passes.
                wait_until(passed_after_repair, timeout=240, interval=2, what="a failed reconcile, a repair and a passing reconcile")
                reconciles = runs_of(instance, "reconcile_catalog")
                assert [r.status for r in reconciles[:2]] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]
                assert all(r.tags.get("dagster/schedule_name") == "reconcile_hourly" for r in reconciles)
                assert not [r for r in reconciles if r.tags.get("dagster/parent_run_id")], "a failed check is not retried"
                assert [r.status for r in runs_of(instance, "repair_catalog")] == [dg.DagsterRunStatus.SUCCESS]
                assert latest_metadata(instance, "catalog_drift")["drift/total"] == 0
                # The alert sensor (every 30 s) has seen the failed run by now: one alert, the check's.
                wait_until(lambda: receiver.received, timeout=90, interval=1, what="the drift alert")
                settled = [r.run_id for r in reconciles]
                wait_until(lambda: len(runs_of(instance, "reconcile_catalog")) > len(settled), timeout=90, interval=2, what="another tick")
            assert [(a["kind"], a.get("check")) for a in receiver.received] == [("asset_check_failed", "drift_rate_below_threshold")]
        finally:
            serve.send_signal(signal.SIGINT)  # what Ctrl-C sends
            code = serve.wait(timeout=60)
    assert code == 0 and "Traceback" not in log.read_text()

    def survivors() -> str:
        return subprocess.run(["ps", "-o", "pid,args", "--no-headers", "-g", str(serve.pid)], capture_output=True, text=True).stdout.strip()

    # The webserver, the daemon and their code servers are gone with it.
    wait_until(lambda: not survivors(), timeout=30, interval=0.5, what="the servers' process group to be gone")


def test_serve_refuses_a_busy_port_and_a_missing_catalog_database_before_starting_anything(tmp_path: Path, dagster_postgres_url):
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "DAGSTER_POSTGRES_URL": dagster_postgres_url}
    missing = subprocess.run(
        [sys.executable, "-m", "recon_pipeline.cli", "serve"],
        env=environment_for_children(**env, RECON_CATALOG_URL="postgresql+psycopg2://postgres@127.0.0.1:5432/recon_catalog_not_created"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "the database 'recon_catalog_not_created' does not exist" in missing.stderr and "createdb" in missing.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "recon_pipeline.cli", "serve", "--port", str(port)],
            env=environment_for_children(**env, RECON_CATALOG_URL=f"sqlite:///{tmp_path / 'c.db'}"), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in done.stderr and f"--port {port + 1}" in done.stderr
    assert "Traceback" not in done.stderr + missing.stderr


def _ours(home: Path) -> list[str]:
    """Processes started for this DAGSTER_HOME (every child inherits it), as `pid args`."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"DAGSTER_HOME={home}".encode() + b"\0" in environ.read_bytes():
                command = (environ.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{environ.parent.name} {command[:120]}")
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def test_ctrl_c_on_dev_and_serve_returns_within_10_s_and_leaves_no_process_five_times_in_a_row(tmp_path: Path, dagster_postgres_url, catalog_database, emulator):
    """`recon-pipeline dev` and `recon-pipeline serve` (what `make dev` and `make serve` run), side
    by side: up, then Ctrl-C; each returns 0 within 10 s, with nothing of it left, and prints no
    Supersession or Beta warning."""
    for round_ in range(5):
        started: list[tuple[str, Path, Path, int, subprocess.Popen]] = []
        try:
            _one_round(round_, started, tmp_path, dagster_postgres_url, catalog_database, emulator.url)
        finally:  # a failed round leaves nothing running either
            for _, _, _, _, process in started:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)


def _one_round(round_: int, started: list, tmp_path: Path, dagster_postgres_url: str, catalog_database: str, stripe_url: str) -> None:
    for command, extra in (("dev", {}), ("serve", {"DAGSTER_POSTGRES_URL": dagster_postgres_url})):
        home, port = tmp_path / f"{command}{round_}", free_port("127.0.0.1")
        env = environment_for_children(DAGSTER_HOME=str(home), RECON_CATALOG_URL=catalog_database, STRIPE_API_BASE=stripe_url, **extra)
        env.pop("STRIPE_API_KEY", None)
        log = tmp_path / f"{command}{round_}.log"
        argv = [sys.executable, "-m", "recon_pipeline.cli", command, "--port", str(port), "--emulator-port", str(free_port("127.0.0.1"))]
        started.append((command, home, log, port, subprocess.Popen(argv, env=env, start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT)))
    for command, _, _, port, _ in started:
        url = f"http://127.0.0.1:{port}/server_info"
        wait_until(lambda url=url: answers(url), timeout=90, interval=0.5, what=f"{command} to serve")  # type: ignore[misc]
    for command, home, log, _, process in started:
        begun = time.monotonic()
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(timeout=30) == 0, log.read_text()[-2000:]
        took = time.monotonic() - begun
        assert took < 10, f"{command}, round {round_ + 1}: Ctrl-C took {took:.1f} s"
        assert _ours(home) == [], f"{command}, round {round_ + 1}: left behind"
        said = log.read_text()
        assert "SupersessionWarning" not in said and "BetaWarning" not in said and "Traceback" not in said, said[-2000:]
