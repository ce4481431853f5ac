"""Alert delivery to a real local HTTP server: payload shape, retries, give-up."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from recon_pipeline.alerts import check_alert, post_alert, run_alert


class AlertReceiver:
    """A Slack-incoming-webhook stand-in on 127.0.0.1 that records what it receives."""

    def __init__(self, fail_first: int = 0, status: int = 503):
        self.received: list[dict] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= fail_first:
                    self.send_response(status)
                    self.end_headers()
                    return
                receiver.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


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
        assert post_alert(flaky.url, run_alert("run123456", "repair_catalog", "boom"), attempts=4, base_delay=0.01)
        assert flaky.attempts == 3
        assert flaky.received[0]["kind"] == "run_failed"


def test_a_webhook_that_refuses_the_payload_is_not_retried():
    with AlertReceiver(fail_first=10, status=400) as refusing:
        assert not post_alert(refusing.url, run_alert("r", "j", None), attempts=4, base_delay=0.01)
        assert refusing.attempts == 1


def test_an_unreachable_webhook_gives_up_after_its_attempts():
    with AlertReceiver() as gone:
        url = gone.url
    assert not post_alert(url, run_alert("r", "j", None), attempts=2, base_delay=0.01, timeout=1)
