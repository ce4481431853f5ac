"""Alert delivery to a real local HTTP server: payload shape, retries, give-up."""

from __future__ import annotations

import pytest

from recon_pipeline.alerts import check_alert, post_alert, run_alert
from recon_pipeline.backoff import Backoff
from recon_pipeline.testing import AlertReceiver

UI = "http://127.0.0.1:3000"
QUICK = Backoff(base_s=0.01, cap_s=0.05)


@pytest.fixture
def receiver():
    with AlertReceiver() as r:
        yield r


def test_check_alert_is_slack_compatible_with_structured_fields(receiver):
    payload = check_alert(
        asset="catalog_drift",
        check="drift_rate_below_threshold",
        severity="ERROR",
        description="60 of 1008 products drifted (5.95% > 1.00%)",
        metadata={"drift_rate": 0.0595, "threshold": 0.01},
        run_id="abcd1234",
        base_url="http://127.0.0.1:3000",
    )
    assert post_alert(receiver.url, payload)
    [got] = receiver.received
    assert got["text"].startswith(":rotating_light: Check catalog_drift.drift_rate_below_threshold failed (ERROR)")
    assert {k: got[k] for k in ("asset", "check", "value", "threshold", "run_id", "kind")} == {
        "asset": "catalog_drift",
        "check": "drift_rate_below_threshold",
        "value": 0.0595,
        "threshold": 0.01,
        "run_id": "abcd1234",
        "kind": "asset_check_failed",
    }
    assert got["url"] == "http://127.0.0.1:3000/assets/catalog_drift?view=checks"


def test_a_failing_webhook_is_retried_until_it_accepts():
    with AlertReceiver(fail_first=2) as flaky:
        assert post_alert(flaky.url, run_alert("run123456", "repair_catalog", "boom", UI), attempts=4, backoff=QUICK)
        assert flaky.attempts == 3
        assert flaky.received[0]["kind"] == "run_failed"


def test_a_webhook_that_refuses_the_payload_is_not_retried():
    with AlertReceiver(fail_first=10, status=400) as refusing:
        assert not post_alert(refusing.url, run_alert("r", "j", None, UI), attempts=4, backoff=QUICK)
        assert refusing.attempts == 1


def test_an_unreachable_webhook_gives_up_after_its_attempts():
    with AlertReceiver() as gone:
        url = gone.url
    assert not post_alert(url, run_alert("r", "j", None, UI), attempts=2, backoff=QUICK, timeout=1)


def test_a_retry_after_is_honoured_up_to_its_cap_and_the_backoff_is_full_jitter():
    never_jitter = Backoff(base_s=1.0, cap_s=8.0, jitter=lambda: 1.0)
    assert [never_jitter.delay(n) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert Backoff(base_s=1.0, cap_s=8.0, jitter=lambda: 0.0).delay(3) == 0.0
    assert never_jitter.delay(0, retry_after=30) == 30
    assert never_jitter.delay(0, retry_after=3600) == 60  # as the SDK: never parked for an hour


def test_a_throttled_webhook_is_retried_after_its_retry_after():
    with AlertReceiver(fail_first=1, status=429) as throttled:
        assert post_alert(throttled.url, run_alert("r", "j", None, UI), attempts=2, backoff=QUICK)
        assert throttled.attempts == 2
