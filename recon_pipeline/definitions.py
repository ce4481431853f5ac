"""The project's Dagster Definitions: each domain builds its own, merged here once.

    reconciliation   local_products, local_prices, stripe_products + stripe_prices (one step), catalog_drift; reconcile_catalog, reconcile_hourly
    repair           catalog_repair; repair_catalog, drift_repair_sensor
    sync             outbox_push, inbox_apply; drain_outbox, apply_inbox, their sensors
    hourly           the hourly partitions; backfill_hours, changes_hourly
    alerts           alert_sensor

Dagster loads `defs` (workspace.yaml points here): the settings are read from the
environment once, so a malformed variable fails the code location's load with a message
naming it. Tests, the demo and the drill call `build_defs(settings)` with their own.
"""

from __future__ import annotations

import dagster as dg

from recon_pipeline.defs import alerts, hourly, reconciliation, repair, sync
from recon_pipeline.defs.executors import executor_for
from recon_pipeline.defs.resources import build_resources
from recon_pipeline.settings import Settings

DOMAINS = (reconciliation, repair, sync, hourly, alerts)


def build_defs(settings: Settings | None = None) -> dg.Definitions:
    """Every domain's Definitions, with the resources and the executor the settings call for."""
    settings = settings if settings is not None else Settings.from_env()
    return dg.Definitions.merge(
        *(domain.build_defs(settings) for domain in DOMAINS),
        dg.Definitions(resources=build_resources(settings), executor=executor_for(settings.executor)),
    )


defs = build_defs()
