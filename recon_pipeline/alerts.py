"""Alerts: failed asset checks and failed runs, posted as JSON to ALERT_WEBHOOK_URL.

The payload is a Slack incoming-webhook message (`{"text": ...}`) plus structured fields,
so the same URL works for Slack and for any receiver that wants the fields:

    {"text": "...", "kind": "asset_check_failed" | "run_failed", "asset", "check", "severity",
     "value", "threshold", "description", "run_id", "job", "partition", "url", "dedup_key"}

`partition` is the run's partition, if it has one: with several Stripe accounts, the account.

The webhook URL is a secret (Slack's carry a token): it comes from the settings and is
never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from recon_pipeline.backoff import Backoff, retry_after_seconds

log = logging.getLogger(__name__)
# httpx logs every request's full URL at INFO, and an alert webhook URL is a secret (Slack's
# carry their token in the path): keep httpx's request lines out of the logs.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Which metadata entry of a check is "the value" and which is "the threshold", by check.
VALUE_KEYS = ("drift_rate", "planned_share", "open_dead_letters", "remaining_drift", "duplicate_ids", "duplicates", "oldest_pending_age_s", "oldest_age_s")
THRESHOLD_KEYS = ("threshold", "max_age_s")


def _plain(value: Any) -> Any:
    # MetadataValue -> its plain value; anything else as is.
    return getattr(value, "value", value)


def _payload(kind: str, text: str, url: str, dedup_key: str, **fields: Any) -> dict[str, Any]:
    empty = dict.fromkeys(("asset", "check", "severity", "value", "threshold", "description", "run_id", "job", "partition"))
    return {"text": f"{text}\n<{url}|Open in Dagster>", "kind": kind, **empty, **fields, "url": url, "dedup_key": dedup_key}


def check_alert(
    asset: str,
    check: str,
    severity: str,
    description: str | None,
    metadata: Mapping[str, Any],
    run_id: str | None,
    base_url: str,
    partition: str | None = None,
) -> dict[str, Any]:
    value = next((_plain(metadata[k]) for k in VALUE_KEYS if k in metadata), None)
    threshold = next((_plain(metadata[k]) for k in THRESHOLD_KEYS if k in metadata), None)
    text = f":rotating_light: Check {asset}.{check}{_of(partition)} failed ({severity})"
    if description:
        text += f": {description}"
    if value is not None:
        text += f" [value {value}" + (f", threshold {threshold}]" if threshold is not None else "]")
    url = f"{base_url.rstrip('/')}/assets/{asset.replace('.', '/')}?view=checks"
    fields = {"asset": asset, "check": check, "severity": severity, "value": value, "threshold": threshold, "description": description, "run_id": run_id, "partition": partition}
    return _payload("asset_check_failed", text, url, f"check:{asset}:{check}:{run_id}", **fields)


CHECK_FAILURE = "DagsterAssetCheckFailedError"  # Dagster's error when a blocking check failed (its class name)


def failure_already_alerted(step_errors: list[str]) -> bool:
    """A run that failed only because blocking checks failed: those checks were alerted each,
    so an alert for the run would say the same thing twice."""
    return bool(step_errors) and all(error == CHECK_FAILURE for error in step_errors)


def run_alert(run_id: str, job: str, error: str | None, base_url: str, partition: str | None = None) -> dict[str, Any]:
    text = f":x: Run of {job}{_of(partition)} failed ({run_id[:8]})" + (f": {error}" if error else "")
    return _payload(
        "run_failed", text, f"{base_url.rstrip('/')}/runs/{run_id}", f"run:{run_id}", severity="ERROR", description=error, run_id=run_id, job=job, partition=partition
    )


def _of(partition: str | None) -> str:
    """Which partition an alert is about: with several Stripe accounts, the account (and hour)."""
    return f" [{partition}]" if partition else ""


ALERT_BACKOFF = Backoff(base_s=0.5, cap_s=30.0)


def post_alert(url: str, payload: Mapping[str, Any], attempts: int = 4, backoff: Backoff = ALERT_BACKOFF, timeout: float = 10.0) -> bool:
    """POST the payload, retrying 429/5xx/connection errors with the project's backoff."""
    for attempt in range(attempts):
        retry_after = None
        try:
            response = httpx.post(url, json=dict(payload), timeout=timeout)
            if response.status_code < 300:
                return True
            log.warning("alert webhook answered %s (attempt %d of %d)", response.status_code, attempt + 1, attempts)
            if response.status_code != 429 and response.status_code < 500:
                return False
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
        except httpx.HTTPError as error:
            log.warning("alert webhook unreachable: %s (attempt %d of %d)", type(error).__name__, attempt + 1, attempts)
        if attempt + 1 < attempts:
            time.sleep(backoff.delay(attempt, retry_after))
    return False

