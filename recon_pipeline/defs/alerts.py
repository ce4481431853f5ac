"""Alerts: failed asset checks and failed runs, posted once each to ALERT_WEBHOOK_URL.

Two sensors, both running by default (`make dev` / the daemon; stop them from the UI's
Automation page), both on Dagster's public APIs only:

- `alert_sensor`: every failed asset check (ERROR and WARN) of every run that finished since
  its cursor (run-status records, then the run's own check evaluations).
- `run_failure_alert_sensor`: Dagster's run-failure sensor, for runs of this code location.

A tick makes one delivery attempt per alert with a short timeout and never sleeps: a check
alert the webhook did not take stays ahead of the cursor and is tried again next tick; a run
alert that was not taken fails the tick (shown on the sensor's page). The payloads and their
delivery are `recon_pipeline.alerts`.
"""

import json
import time

import dagster as dg

from recon_pipeline.alerts import check_alert, failure_already_alerted, post_alert, run_alert
from recon_pipeline.defs import step_failures
from recon_pipeline.defs.reconciliation import DRIFT_FRESHNESS, FRESHNESS_CHECK
from recon_pipeline.defs.resources import AlertsResource, CatalogResource
from recon_pipeline.settings import Settings

# On the very first evaluation, look back this far rather than alerting on all history.
FIRST_LOOKBACK_S = 3600
BATCH = 100
# One attempt per alert and tick: a tick has 60 s, and the next tick is the retry.
DELIVERY_TIMEOUT_S = 5.0
FINISHED = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE)


def _partition(run: dg.DagsterRun | None) -> str | None:
    """The run's partition (with several Stripe accounts, its account), if it has one."""
    if run is None:
        return None
    first, last = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    ranged = None if first is None else (first if first == last else f"{first}...{last}")  # a backfill of several hours
    return run.tags.get("dagster/partition") or ranged


def _check_alerts(instance: dg.DagsterInstance, run_id: str, ui_url: str) -> list[tuple[float, dict]]:
    """(when, the alert) for each failed asset check evaluated in the run, in the order they were evaluated."""
    run = instance.get_run_by_id(run_id)
    alerts = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
            continue
        alerts.append(
            (
                entry.timestamp,
                check_alert(
                    asset=evaluation.asset_key.to_user_string(),
                    check=evaluation.check_name,
                    severity=evaluation.severity.value,
                    description=evaluation.description,
                    metadata=evaluation.metadata,
                    run_id=run_id,
                    base_url=ui_url,
                    partition=_partition(run),
                ),
            )
        )
    return alerts


def _materialized(instance: dg.DagsterInstance, asset: str, before: float | None = None) -> bool:
    """Whether the asset was ever materialized (before a moment, if given)."""
    records = dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_user_string(asset), before_timestamp=before)
    return bool(instance.fetch_materializations(records, limit=1).records)


def _before_first_reconciliation(instance: dg.DagsterInstance, payload: dict, at: float) -> bool:
    """A freshness failure evaluated before the asset's first materialization: a fresh install, not (yet) late."""
    return payload["check"] == FRESHNESS_CHECK.name and not _materialized(instance, payload["asset"], before=at)


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def alert_sensor(context: dg.SensorEvaluationContext, alerts: AlertsResource, catalog: CatalogResource):
    """Posts every failed asset check (ERROR and WARN) to ALERT_WEBHOOK_URL, once each.

    Slack-compatible JSON (`text`) plus structured fields (asset, check, value, threshold,
    run id, UI link). Reads the check evaluations of each run as it finishes, failed or not
    (a failed WARN check does not fail its run), of runs made against this catalog. A webhook that does not take an alert gets it
    again next tick. Without ALERT_WEBHOOK_URL it only logs the alerts. On a fresh install,
    catalog_drift's freshness check fails at once ("never materialized"): that alert is held
    until two hours after this sensor started, and dropped once a reconciliation comes. Failed runs are
    `run_failure_alert_sensor`'s.
    """
    state = json.loads(context.cursor) if context.cursor else {}
    state.setdefault("since", time.time())
    url = alerts.webhook_url.strip()
    sent, stuck = 0, False

    def deliver(payload: dict) -> bool:
        nonlocal sent
        if not url:
            context.log.info(f"ALERT_WEBHOOK_URL is not set; alert not sent: {payload['text']}")
        elif post_alert(url, payload, attempts=1, timeout=DELIVERY_TIMEOUT_S):
            sent += 1
        else:
            context.log.warning(f"alert webhook did not accept {payload['dedup_key']}; retrying next tick")
            return False
        return True

    held = []
    for payload in state.get("held", []):
        if _materialized(context.instance, payload["asset"]):
            continue  # reconciled since: the alert is moot
        if time.time() - state["since"] > DRIFT_FRESHNESS.total_seconds() and deliver(payload):
            continue
        held.append(payload)
    state["held"] = held
    for status in FINISHED:
        # Run-status records one at a time, so the cursor moves past exactly what was delivered
        # (this API also works on Dagster's default, run-sharded SQLite storage).
        for _ in range(BATCH):
            page = context.instance.fetch_run_status_changes(status, limit=1, cursor=state.get(status.name), ascending=True)
            if not page.records:
                break
            entry = page.records[0].event_log_entry
            recent = state.get(status.name) or entry.timestamp >= time.time() - FIRST_LOOKBACK_S
            recent = recent and catalog.made(context.instance.get_run_by_id(entry.run_id))  # another catalog's run is not ours to alert
            delivered = set(state.get("delivered", {}).get(entry.run_id, []))
            for at, payload in _check_alerts(context.instance, entry.run_id, alerts.ui_url) if recent else []:
                if payload["dedup_key"] in delivered:
                    continue
                if _before_first_reconciliation(context.instance, payload, at):
                    state["held"].append(payload)
                elif not deliver(payload):
                    stuck = True
                    break
                delivered.add(payload["dedup_key"])
            if stuck:  # the cursor stays before this run; what was delivered of it is remembered
                state["delivered"] = {entry.run_id: sorted(delivered)}
                break
            state[status.name] = page.cursor
            state.pop("delivered", None)
        if stuck:
            break
    context.update_cursor(json.dumps(state))
    return dg.SkipReason(f"posted {sent} check alerts" if sent else "no new failed checks")


class AlertNotDelivered(Exception):
    """The alert webhook did not take a run's alert (the tick fails, so the sensor's page shows it)."""


@dg.run_failure_sensor(name="run_failure_alert_sensor", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alerts: AlertsResource, catalog: CatalogResource):
    """Posts every failed run of this code location and catalog to ALERT_WEBHOOK_URL, once, with the failed
    steps' own messages (what a person can act on). A run that failed only because blocking
    checks failed is not alerted again: `alert_sensor` posted those checks."""
    run = context.dagster_run
    if not catalog.made(run):
        return dg.SkipReason(f"run {run.run_id[:8]} was made against another catalog")
    steps = step_failures(context.get_step_failure_events())
    if failure_already_alerted([error for _, error, _ in steps]):
        return dg.SkipReason(f"run {run.run_id[:8]} failed only its blocking checks; alert_sensor alerted them")
    reason = "; ".join(f"{step}: {message.splitlines()[0]}" for step, _, message in steps if message) or context.failure_event.message or None
    payload = run_alert(run.run_id, run.job_name or "?", reason, alerts.ui_url, _partition(run))
    url = alerts.webhook_url.strip()
    if not url:
        context.log.info(f"ALERT_WEBHOOK_URL is not set; alert not sent: {payload['text']}")
    elif not post_alert(url, payload, attempts=1, timeout=DELIVERY_TIMEOUT_S):
        raise AlertNotDelivered(f"the alert webhook did not accept the alert for run {run.run_id} ({run.job_name}); see the run in the UI")
    return None


def build_defs(settings: Settings) -> dg.Definitions:
    """The alert sensors (their webhook and UI links come from the `alerts` resource)."""
    return dg.Definitions(sensors=[alert_sensor, run_failure_alert_sensor])
