"""Alerts: failed asset checks and failed runs, posted as JSON to ALERT_WEBHOOK_URL.

The payload is a Slack incoming-webhook message (`{"text": ...}`) plus structured fields,
so the same URL works for Slack and for any receiver that wants the fields:

    {"text": "...", "kind": "asset_check_failed" | "run_failed", "asset", "check", "severity",
     "value", "threshold", "description", "run_id", "job", "url", "dedup_key"}

The webhook URL is a secret (Slack's carry a token): it is read from the environment and
never logged.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any, Mapping

import httpx

log = logging.getLogger(__name__)
# httpx logs every request's full URL at INFO, and an alert webhook URL is a secret (Slack's
# carry their token in the path): keep httpx's request lines out of the logs.
logging.getLogger("httpx").setLevel(logging.WARNING)

DEFAULT_UI_URL = "http://127.0.0.1:3000"
# Which metadata entry of a check is "the value" and which is "the threshold", by check.
VALUE_KEYS = ("drift_rate", "planned_share", "open_dead_letters", "remaining_drift", "duplicate_ids", "duplicates", "oldest_pending_age_s")
THRESHOLD_KEYS = ("threshold", "max_age_s")


def ui_url() -> str:
    return os.environ.get("DAGSTER_UI_URL", DEFAULT_UI_URL).rstrip("/")


def _plain(value: Any) -> Any:
    # MetadataValue -> its plain value; anything else as is.
    return getattr(value, "value", value)


def check_alert(
    asset: str,
    check: str,
    severity: str,
    description: str | None,
    metadata: Mapping[str, Any],
    run_id: str | None,
    base_url: str | None = None,
) -> dict[str, Any]:
    base_url = base_url or ui_url()
    value = next((_plain(metadata[k]) for k in VALUE_KEYS if k in metadata), None)
    threshold = next((_plain(metadata[k]) for k in THRESHOLD_KEYS if k in metadata), None)
    url = f"{base_url}/assets/{asset.replace('.', '/')}?view=checks"
    text = f":rotating_light: Check {asset}.{check} failed ({severity})"
    if description:
        text += f": {description}"
    if value is not None:
        text += f" [value {value}" + (f", threshold {threshold}]" if threshold is not None else "]")
    text += f"\n<{url}|Open in Dagster>"
    return {
        "text": text,
        "kind": "asset_check_failed",
        "asset": asset,
        "check": check,
        "severity": severity,
        "value": value,
        "threshold": threshold,
        "description": description,
        "run_id": run_id,
        "url": url,
        "dedup_key": f"check:{asset}:{check}:{run_id}",
    }


def run_alert(run_id: str, job: str, error: str | None, base_url: str | None = None) -> dict[str, Any]:
    base_url = base_url or ui_url()
    url = f"{base_url}/runs/{run_id}"
    text = f":x: Run of {job} failed ({run_id[:8]})" + (f": {error}" if error else "") + f"\n<{url}|Open in Dagster>"
    return {
        "text": text,
        "kind": "run_failed",
        "asset": None,
        "check": None,
        "severity": "ERROR",
        "value": None,
        "threshold": None,
        "description": error,
        "run_id": run_id,
        "job": job,
        "url": url,
        "dedup_key": f"run:{run_id}",
    }


def post_alert(url: str, payload: Mapping[str, Any], attempts: int = 4, base_delay: float = 0.5, timeout: float = 10.0) -> bool:
    """POST the payload, retrying 429/5xx/connection errors with exponential backoff and jitter."""
    for attempt in range(attempts):
        try:
            response = httpx.post(url, json=dict(payload), timeout=timeout)
            if response.status_code < 300:
                return True
            retryable = response.status_code == 429 or response.status_code >= 500
            log.warning("alert webhook answered %s (attempt %d of %d)", response.status_code, attempt + 1, attempts)
            if not retryable:
                return False
        except httpx.HTTPError as error:
            log.warning("alert webhook unreachable: %s (attempt %d of %d)", type(error).__name__, attempt + 1, attempts)
        if attempt + 1 < attempts:
            time.sleep(random.uniform(0, base_delay * 2**attempt))
    return False
