"""Alerts: failed asset checks and failed runs, posted once each to ALERT_WEBHOOK_URL.

`alert_sensor` runs by default (`make dev` / the daemon); stop it from the UI's Automation
page. The payloads and their delivery are `recon_pipeline.alerts`.
"""


import json
import re
import time

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

from recon_pipeline.alerts import check_alert, failure_already_alerted, post_alert, run_alert
from recon_pipeline.defs.resources import AlertsResource
from recon_pipeline.settings import Settings

# On the very first evaluation, look back this far rather than alerting on all history.
FIRST_LOOKBACK_S = 3600
BATCH = 100


def _step_errors(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str, str]]:
    """(step, error class, message) of each failed step of a run."""
    found = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        name = getattr(error, "cls_name", "") or ""
        message = (getattr(error, "message", "") or "").strip()
        found.append((entry.step_key or "?", name, re.sub(rf"^[\w.]*{re.escape(name)}: ", "", message) if name else message))
    return found


def _alert_for(instance: dg.DagsterInstance, record: dg.EventLogRecord, ui_url: str) -> dict | None:
    """The alert for one event record, or None when it is not a failure (or already alerted)."""
    entry = record.event_log_entry
    event = entry.dagster_event
    if event is None:
        return None
    if event.event_type == dg.DagsterEventType.RUN_FAILURE:
        steps = _step_errors(instance, entry.run_id)
        if failure_already_alerted([error for _, error, _ in steps]):
            return None
        # What a person can act on: the failed step's own message, not just "steps failed".
        reason = "; ".join(f"{step}: {message.splitlines()[0]}" for step, _, message in steps if message) or event.message or None
        return run_alert(entry.run_id, event.job_name or "?", reason, ui_url, _partition(instance, entry.run_id))
    evaluation = event.event_specific_data
    if isinstance(evaluation, AssetCheckEvaluation) and not evaluation.passed:
        return check_alert(
            asset=evaluation.asset_key.to_user_string(),
            check=evaluation.check_name,
            severity=evaluation.severity.value,
            description=evaluation.description,
            metadata=evaluation.metadata,
            run_id=entry.run_id,
            base_url=ui_url,
            partition=_partition(instance, entry.run_id),
        )
    return None


def _partition(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The run's partition (with several Stripe accounts, its account), if it has one."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    first, last = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    ranged = None if first is None else (first if first == last else f"{first}...{last}")  # a backfill of several hours
    return run.tags.get("dagster/partition") or ranged


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def alert_sensor(context: dg.SensorEvaluationContext, alerts: AlertsResource):
    """Posts every failed asset check (ERROR and WARN) and every failed run to ALERT_WEBHOOK_URL.

    Slack-compatible JSON (`text`) plus structured fields (asset, check, value, threshold,
    run id, UI link), once per failure, retried with backoff. Watches the check evaluations
    themselves: a failed WARN check does not fail its run, so a run-failure sensor alone
    would miss it; a run that failed only because a blocking check failed is not alerted
    again (the check's alert says it). Without ALERT_WEBHOOK_URL it only logs the alerts.
    """
    state = json.loads(context.cursor) if context.cursor else {}
    url = alerts.webhook_url.strip()
    sent = 0

    def deliver(record: dg.EventLogRecord) -> bool:
        nonlocal sent
        payload = _alert_for(context.instance, record, alerts.ui_url)
        if payload is None:
            return True
        if not url:
            context.log.info(f"ALERT_WEBHOOK_URL is not set; alert not sent: {payload['text']}")
            return True
        if post_alert(url, payload):
            sent += 1
            return True
        # The cursor stays before this failure: the next tick tries it again.
        context.log.warning(f"alert webhook did not accept {payload['dedup_key']}; retrying next tick")
        return False

    # Failed checks, by timestamp (storage-id cursors are refused by Dagster's default,
    # run-sharded SQLite storage); the ids seen at the last timestamp avoid re-sending.
    seen = state.get("checks") or {"ts": time.time() - FIRST_LOOKBACK_S, "ids": []}
    checks = dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_timestamp=seen["ts"] - 0.001)
    for record in context.instance.get_event_records(checks, limit=BATCH, ascending=True):
        timestamp = record.event_log_entry.timestamp
        if record.storage_id in seen["ids"] or timestamp < seen["ts"]:
            continue
        if not deliver(record):
            break
        seen = {"ts": timestamp, "ids": [*seen["ids"], record.storage_id]} if timestamp == seen["ts"] else {"ts": timestamp, "ids": [record.storage_id]}
    state["checks"] = seen

    # Failed runs: run-status events, read one at a time so the cursor moves past exactly
    # what was delivered (this API also works on Dagster's run-sharded SQLite storage).
    for _ in range(BATCH):
        page = context.instance.fetch_run_status_changes(
            dg.DagsterEventType.RUN_FAILURE, limit=1, cursor=state.get("runs"), ascending=True
        )
        if not page.records:
            break
        record = page.records[0]
        recent = state.get("runs") or record.event_log_entry.timestamp >= time.time() - FIRST_LOOKBACK_S
        if recent and not deliver(record):
            break
        state["runs"] = page.cursor

    context.update_cursor(json.dumps(state))
    return dg.SkipReason(f"posted {sent} alerts" if sent else "no new failed checks or runs")


def build_defs(settings: Settings) -> dg.Definitions:
    """The alert sensor (its webhook and UI links come from the `alerts` resource)."""
    return dg.Definitions(sensors=[alert_sensor])
