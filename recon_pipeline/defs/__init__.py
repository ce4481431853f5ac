"""The Dagster layer: thin wiring of the catalog, the Stripe client and the logic, by domain.

One module per domain (reconciliation, repair, sync, hourly, alerts), each with a
`build_defs(settings)`; `recon_pipeline.definitions` merges them. No SQL and no business
rule lives here: assets, checks and sensors ask the logic layer and report what it says.
"""

import contextlib
import re
import warnings
from collections.abc import Iterable, Iterator

import dagster as dg


def run_id_of(context: dg.AssetExecutionContext) -> str | None:
    """The run's id for the ledger, or None when the asset is called directly (tests)."""
    try:
        return context.run.run_id
    except dg.DagsterError:  # invoked directly: there is no run
        return None


def step_failures(events: Iterable[dg.DagsterEvent]) -> list[tuple[str, str, str]]:
    """(step, error class, message) of each step-failure event: the step's own words, as the
    CLI prints them and alerts post them (the class name Dagster puts in front is dropped)."""
    found = []
    for event in events:
        error = getattr(event.event_specific_data, "error", None)
        name = getattr(error, "cls_name", "") or ""
        message = (getattr(error, "message", "") or "").strip()
        found.append((event.step_key or "?", name, re.sub(rf"^[\w.]*{re.escape(name)}: ", "", message) if name else message))
    return found


@contextlib.contextmanager
def chosen_dagster_mechanisms() -> Iterator[None]:
    """Dagster mechanisms this project uses on purpose although Dagster 1.13 marks them beta or
    superseded: freshness checks with their sensor (they produce asset checks, which alerting
    and the UI's checks tab already show) and single-run backfills of the hourly assets.
    Their warnings say nothing a user can act on, so they are silenced here, where each is used."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        yield


def account_of(context: dg.AssetExecutionContext) -> str | None:
    """The Stripe account a run of a per-account asset is for (its `account` partition), or None
    when there is one account and the assets are not partitioned."""
    return context.partition_key if context.has_partition_key else None


def accounts_partitions(names: list[str]) -> dg.StaticPartitionsDefinition | None:
    """With several Stripe accounts, the `account` partitions of the per-account assets; None with one."""
    return dg.StaticPartitionsDefinition(names) if len(names) > 1 else None


def per_account(assets: list, names: list[str]) -> list:
    """The assets partitioned by account when there are several accounts; as they are with one."""
    partitions = accounts_partitions(names)
    if partitions is None:
        return assets
    return list(dg.map_asset_specs(lambda spec: spec.replace_attributes(partitions_def=partitions), assets))
