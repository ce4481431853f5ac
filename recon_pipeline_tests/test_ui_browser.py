"""The Dagster UI in a real browser: Debian's Chromium, driven by Playwright's client, on 127.0.0.1.

Screenshots land in docs/ (the README shows them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import httpx
import pytest

from recon_pipeline.catalog import make_engine
from recon_pipeline.demo import plan_demo, seed_demo
from recon_pipeline.emulator.server import free_port
from recon_pipeline.runs import run_job
from recon_pipeline.testing import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[1] / "docs"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def webserver(tmp_path: Path, emulator, dagster_home, monkeypatch):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("RECON_CATALOG_URL", url)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    seed_demo(make_engine(url), emulator.url, plan_demo(n_products=1000, seed=7))
    with dg.DagsterInstance.get() as instance:
        run_job("reconcile_catalog", instance=instance, quiet=True)  # the drift check fails: 60 of 1008
    port = free_port("127.0.0.1")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        env=dict(os.environ), cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/server_info"), timeout=60, interval=0.5, what="dagster-webserver to come up")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def dismiss_welcome(page) -> None:
    """The UI greets a new browser with a community dialog; close it before looking."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:  # no dialog this time
        pass


def test_the_ui_shows_the_assets_the_drift_metadata_and_a_failed_checks_reason(webserver, page):
    DOCS.mkdir(exist_ok=True)

    page.goto(f"{webserver}/locations/recon_pipeline/asset-groups/reconciliation")
    dismiss_welcome(page)
    for name in ("local_products", "local_prices", "stripe_products", "stripe_prices", "catalog_drift"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(DOCS / "ui-asset-graph.png"))

    page.goto(f"{webserver}/assets/catalog_drift")
    page.get_by_text("drift/total").first.wait_for()
    body = page.inner_text("body")
    assert "drift/missing_in_stripe" in body and "drift/price_field_mismatch" in body and "drift_rate" in body
    page.wait_for_timeout(1000)
    page.screenshot(path=str(DOCS / "ui-catalog-drift.png"), full_page=False)

    page.goto(f"{webserver}/assets/catalog_drift?view=checks")
    page.get_by_text("drift_rate_below_threshold").first.wait_for()
    page.get_by_text("drift_rate_below_threshold").first.click()
    # The demo of seed 7: 73 of its 1,000 products drift, and 8 orphans are products too.
    page.get_by_text("73 of 1008 products drifted").first.wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(DOCS / "ui-failed-check.png"))
    assert "7.24% > 1.00%" in page.inner_text("body")
