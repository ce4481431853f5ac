"""Runs of the project's jobs in a Dagster instance, and what they did, printed readably.

The demo and the CLI's `reconcile`, `repair` and `backfill` run jobs here, in process, on
the instance at DAGSTER_HOME: the UI shows the runs as if the daemon had launched them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import dagster as dg
import pandas as pd

from recon_pipeline.alerts import CHECK_FAILURE
from recon_pipeline.defs import step_failures
from recon_pipeline.demo import DemoData
from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.reconcile import DRIFT_KINDS, ORPHAN_IN_STRIPE, PRICE_ORPHAN_IN_STRIPE, shortened
from recon_pipeline.reconcile.diff import PREVIEW_WIDTH
from recon_pipeline.repair import plan as actions
from recon_pipeline.settings import Settings


def run_job(
    name: str,
    run_config: dict | None = None,
    instance: dg.DagsterInstance | None = None,
    quiet: bool = False,
    settings: Settings | None = None,
    tags: dict[str, str] | None = None,
    partition_key: str | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of a project job, recorded in the instance (DAGSTER_HOME) so the UI shows it.

    `settings` default to the environment's. `quiet` keeps Dagster's console logger to
    critical messages (the full log is still in the instance, in the UI); the demo prints
    its own report instead. `partition_key`: with several Stripe accounts, the account.
    """
    from recon_pipeline.definitions import build_defs

    config = dict(run_config or {})
    if quiet:
        config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
    job = build_defs(settings).resolve_job_def(name)
    return job.execute_in_process(run_config=config, instance=instance or dg.DagsterInstance.get(), raise_on_error=False, tags=tags, partition_key=partition_key)


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict[str, Any]:
    """The plain values of an asset's latest materialization metadata in the instance."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None and event.asset_materialization is not None, f"{asset} was never materialized"
    return {key: getattr(value, "value", value) for key, value in event.asset_materialization.metadata.items()}


def _table(frame: pd.DataFrame, width: int | None = PREVIEW_WIDTH) -> str:
    """A frame as aligned text, values longer than `width` shortened (None: whole), wide
    characters (CJK) counted as two columns as terminals show them."""
    with pd.option_context("display.unicode.east_asian_width", True, "display.max_colwidth", None):
        return (frame if width is None else frame.map(lambda value: shortened(value, width))).to_string(index=False)


def failure_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    """Why the run failed, in the failed steps' own words (the same the worker prints); a step
    failed only by its blocking checks is left out: the check lines say it."""
    return [f"  {step} failed: {message.splitlines()[0] if message else name}" for step, name, message in step_failures(result.get_step_failure_events()) if name != CHECK_FAILURE]


def exit_status(result: dg.ExecuteInProcessResult) -> int:
    """0 when every check passed or only WARN checks failed (said on stdout); 1 when an ERROR check or the run failed."""
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    if not result.success or any(e.severity == dg.AssetCheckSeverity.ERROR for e in failed):
        return 1
    if failed:
        print(f"  only WARN checks failed ({', '.join(sorted({e.check_name for e in failed}))}): exit 0")
    return 0


def check_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        status = "passed" if evaluation.passed else f"FAILED ({evaluation.severity.value})"
        reason = f": {evaluation.description}" if evaluation.description and not evaluation.passed else ""
        name = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
        lines.append(f"  {name:<44} {status}{reason}")
    return lines


def drift_counts(drift: pd.DataFrame) -> Counter:
    """Rows per kind, and per kind/field for the mismatches, and the total."""
    counts = Counter(drift["kind"].tolist())
    mismatches = drift[drift["field"].notna()]
    counts.update(f"{kind}/{field}" for kind, field in zip(mismatches["kind"], mismatches["field"], strict=True))
    counts["total"] = len(drift)
    return counts


def print_report(result: dg.ExecuteInProcessResult, data: DemoData) -> int:
    """Print seeded vs found drift; 0 when they are exactly equal."""
    try:
        drift = result.asset_value("catalog_drift")
    except Exception as error:  # the run failed before catalog_drift was stored
        print(f"reconcile_catalog run {result.run_id} produced no catalog_drift: {error}")
        return 1
    found = drift_counts(drift)
    print(f"\nreconcile_catalog run {result.run_id}: catalog_drift has {len(drift)} rows\n")
    print(f"  {'drift kind':<34}{'seeded':>8}{'found':>8}")
    exact = True
    kind = ""
    for row, seeded in data.rows():
        key = row.strip() if not row.startswith(" ") else f"{kind}/{row.strip()}"
        kind = row if not row.startswith(" ") else kind
        marker = "" if seeded == found[key] else "   <-- differs"
        exact &= not marker
        print(f"  {row:<34}{seeded:>8}{found[key]:>8}{marker}")
    print("\nChecks:")
    print("\n".join(check_lines(result)))
    print("\nFirst rows of catalog_drift (each kind):")
    print(_table(drift.groupby("kind", sort=False).head(3)))
    print("\nThe drift found is exactly the drift seeded." if exact else "\nThe drift found differs from the drift seeded (see <-- above).")
    return 0 if exact else 1


ACTION_WORDS = {
    actions.CREATE_PRODUCT: "products created",
    actions.UPDATE_PRODUCT: "products updated",
    actions.CREATE_PRICE: "prices created",
    actions.REPLACE_PRICE: "prices replaced",
    actions.UPDATE_PRICE: "prices updated",
    actions.SET_DEFAULT_PRICE: "defaults set",
    actions.ARCHIVE_REPLACED: "replaced archived",
    actions.ARCHIVE_PRICE_ORPHAN: "prices archived",
    actions.ADOPT_PRICE_ORPHAN: "prices adopted",
    actions.REPORT_PRICE_ORPHAN: "prices left (unmanaged)",
    actions.ARCHIVE_ORPHAN: "products archived",
    actions.ADOPT_ORPHAN: "products adopted",
    actions.REPORT_ORPHAN: "products left (orphans)",
}


def _value(result: dg.ExecuteInProcessResult, asset: str) -> Any:
    """An asset's output in a run, or None when the run stored none."""
    try:
        return result.asset_value(asset)
    except Exception:
        return None


def print_repair(result: dg.ExecuteInProcessResult, when: str = "", limit: int | None = None) -> int:
    """Print what repair_catalog did; 0 when it succeeded and verified. When it wrote nothing
    (a dry run, or the breaker held), the plan itself: each action and what it would change,
    before -> after (the first `limit` actions, or all)."""
    outcomes = _value(result, "catalog_repair")
    materialization = next(iter(result.get_asset_materialization_events()), None)
    metadata = materialization.materialization.metadata if materialization else {}
    print(f"\nrepair_catalog run {result.run_id}{when}: {'succeeded' if result.success else 'FAILED'}")
    if outcomes is not None:
        counts = outcomes.groupby(["action", "status"]).size()
        for (action, status), count in counts.items():
            print(f"  {ACTION_WORDS.get(action, action):<24} {count:>5}   ({status})")
    for key in ("writes", "retries", "rate_limited", "dead_letters"):
        if key in metadata:
            print(f"  {key.replace('_', ' '):<24} {metadata[key].value:>5}")
    planned_only = bool(metadata["dry_run"].value) if "dry_run" in metadata else False
    if planned_only and outcomes is not None and len(outcomes):
        shown = outcomes.head(limit) if limit is not None else outcomes
        print(f"\nThe plan ({len(outcomes)} actions, nothing written):")
        print(_table(shown[["product_id", "lookup_key", "action", "changes"]].fillna(""), width=None))  # each change's values come shortened
        if len(shown) < len(outcomes):
            print(f"... and {len(outcomes) - len(shown)} more (--limit {len(outcomes)} shows them all)")
    print("\n".join(check_lines(result) + failure_lines(result)))
    if planned_only:
        print(f"  {'catalog_repair.repair_verified':<44} not evaluated: nothing was written")
    return exit_status(result)


def reported_by_policy(settings: Settings) -> tuple[str, ...]:
    """The drift kinds repair reports and never writes under the settings' orphan policies."""
    return tuple(kind for kind, policy in ((ORPHAN_IN_STRIPE, settings.orphan_policy), (PRICE_ORPHAN_IN_STRIPE, settings.price_orphan_policy)) if policy == OrphanPolicy.REPORT)


def drift_line(drift: pd.DataFrame, reported_kinds: tuple[str, ...] = ()) -> str:
    """`drift N rows (by kind)`, where N leaves out the rows repair only reports (an orphan under
    the `report` policy): those are said apart, so a catalog in sync reads `drift 0 rows`."""
    counts = drift_counts(drift)
    reported = {kind: counts[kind] for kind in reported_kinds if counts[kind]}
    parts = [", ".join(f"{kind} {counts[kind]}" for kind in DRIFT_KINDS if counts[kind] and kind not in reported)]
    if reported:
        which = next(iter(reported)) if len(reported) == 1 else ", ".join(f"{kind} {count}" for kind, count in reported.items())
        parts.append(f"{sum(reported.values())} reported by policy: {which}")
    said = "; ".join(part for part in parts if part)
    return f"drift {len(drift) - sum(reported.values())} rows" + (f" ({said})" if said else "")


def print_drift(result: dg.ExecuteInProcessResult, when: str = "", settings: Settings | None = None, left_alone: int | None = None) -> int:
    """Print catalog_drift of a reconcile_catalog run (its first rows), the checks and why the
    run failed, if it did; the exit status of `exit_status`. The rows the `settings`' orphan
    policies only report are counted apart. With `left_alone` (the demo after its repair), 1
    unless the drift is exactly that many unmanaged prices (reported, never written)."""
    drift = _value(result, "catalog_drift")
    if drift is None:
        print(f"\nreconcile_catalog run {result.run_id}{when} FAILED before catalog_drift:")
        print("\n".join(failure_lines(result) + check_lines(result)))
        return 1
    counts = drift_counts(drift)
    print(f"\nreconcile_catalog run {result.run_id}{when}: {drift_line(drift, reported_by_policy(settings or Settings.from_env()))}")
    print("\n".join(check_lines(result)))
    if len(drift):
        print(_table(drift.head(12)))
    print("\n".join(failure_lines(result)))
    status = exit_status(result)
    if left_alone is not None and not len(drift) == left_alone == counts["price_orphan_in_stripe"]:
        return 1
    return status
