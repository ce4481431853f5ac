"""The Definitions load, and their public names stay what users and scripts rely on."""

from __future__ import annotations

import dagster as dg

from recon_pipeline.definitions import build_defs


def test_definitions_load_with_the_public_names():
    defs = build_defs()
    repository = defs.get_repository_def()
    assert {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()} == {
        "local_products",
        "local_prices",
        "stripe_products",
        "stripe_prices",
        "catalog_drift",
        "catalog_repair",
        "outbox_push",
        "inbox_apply",
        "catalog_changes_hourly",
        "stripe_events_hourly",
        "hourly_drift",
        "hourly_repair",
    }
    checks = {f"{key.asset_key.to_user_string()}.{key.name}" for key in repository.asset_graph.asset_check_keys}
    assert {
        "local_products.ids_unique",
        "local_prices.ids_unique",
        "stripe_products.ids_unique",
        "stripe_products.snapshot_complete",
        "stripe_prices.ids_unique",
        "stripe_prices.snapshot_complete",
        "catalog_drift.drift_rate_below_threshold",
        "catalog_repair.repair_verified",
        "catalog_repair.mass_drift_breaker",
        "catalog_repair.dead_letters_empty",
    } <= checks
    assert any(name.startswith("catalog_drift.") and "fresh" in name for name in checks)
    assert {job.name for job in repository.get_all_jobs() if not job.name.startswith("__")} >= {"reconcile_catalog", "repair_catalog", "drain_outbox", "apply_inbox", "backfill_hours"}
    assert {s.name for s in repository.schedule_defs} == {"reconcile_hourly", "changes_hourly"}
    assert {s.name for s in repository.sensor_defs} == {"drift_repair_sensor", "alert_sensor", "run_failure_alert_sensor", "freshness_checks_sensor", "outbox_sensor", "stripe_events_poller"}
    assert repository.get_schedule_def("reconcile_hourly").cron_schedule == "0 * * * *"


def test_secrets_are_env_vars_not_literals(monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_not_in_config_0123")
    defs = build_defs()
    stripe_resource = defs.resources["stripe"]
    assert isinstance(stripe_resource.api_key, dg.EnvVar) or "sk_test_not_in_config_0123" not in repr(stripe_resource)
