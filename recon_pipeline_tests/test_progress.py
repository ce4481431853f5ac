"""Long work says how far it is about every ten seconds, and never a line per object."""

from __future__ import annotations

from recon_pipeline.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_says_done_total_rate_and_eta_about_every_ten_seconds():
    clock, said = Clock(), []
    progress = Progress("repair actions", 3338, said.append, clock=clock)
    for _ in range(3338):  # 3,338 writes over 300 s: about 30 lines, not 3,338
        clock.now += 300 / 3338
        progress.advance()
    assert 28 <= len(said) <= 30
    assert said[0].startswith("repair actions: 112/3,338 (3%), 11.1/s, ETA 4m5") or said[0].startswith("repair actions: 111/3,338 (3%), 11.1/s, ETA 4m5")
    assert progress.summary() == "repair actions: 3,338/3,338 done in 5m00s (11.1/s)"


def test_an_unknown_total_says_how_many_and_how_fast():
    clock, said = Clock(), []
    progress = Progress("Stripe prices listed", None, said.append, clock=clock)
    clock.now = 12.0
    progress.advance(100)
    assert said == ["Stripe prices listed: 100 in 12s, 8.3/s"]


def test_a_long_repair_logs_progress_and_a_summary_never_a_line_per_write(tmp_path, emulator, dagster_home, monkeypatch):
    import dagster as dg
    import httpx

    from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
    from recon_pipeline.runs import run_job

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("RECON_CATALOG_URL", url)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    upsert_products(Catalog.open(url).engine, [CatalogProduct(id=f"sku_{i:02d}", name=f"Product {i}") for i in range(12)])
    with dg.DagsterInstance.get() as instance:
        run_job("reconcile_catalog", instance=instance)
        httpx.post(f"{emulator.url}/_emulator/faults", json={"latency_ms": 1000}).raise_for_status()  # 12 writes, one at a time: over 12 s
        repair = run_job("repair_catalog", {"ops": {"catalog_repair": {"config": {"concurrency": 1, "override_breaker": True}}}}, instance=instance)
        assert repair.success
        lines = [entry.user_message for entry in instance.all_logs(repair.run_id) if entry.step_key == "catalog_repair" and entry.dagster_event is None]
    progress = [line for line in lines if line.startswith("repair actions: ") and "ETA" in line]
    assert 1 <= len(progress) <= 2, lines  # about every 10 s
    assert "repair actions: 12/12 done in " in "\n".join(lines)
    assert "repair: create_product applied 12" in lines
    assert not [line for line in lines if line.startswith("applied:")]  # each write is in sync_ledger, not the log
