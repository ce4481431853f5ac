"""The outage drill: catalog and dashboard edits through a Stripe outage, then outbox and backfill.

The drill is package code (`recon-pipeline drill`); the naive push it is compared against
lives in bench/ (`bench/drill_outage.py --smoke` is run by `make bench-smoke`).
"""

from __future__ import annotations

import pytest

from recon_pipeline.drill import run_drill

pytestmark = pytest.mark.slow


def test_an_outage_drill_with_edits_on_both_sides_loses_nothing():
    report = run_drill(outage_start=1, outage_s=3, tail_s=1, rate=10, products=30)
    assert report.catalog_edits >= 40 and report.stripe_edits >= 8
    assert report.ours_lost == 0
    assert report.backfilled_hours >= 1


def test_a_two_minute_outage_with_edits_on_both_sides_loses_nothing():
    report = run_drill(outage_start=2, outage_s=120, tail_s=2, rate=4, products=60)
    assert report.catalog_edits >= 480
    assert report.ours_lost == 0
    assert report.outbox_caught_up_s < 60


def test_a_baseline_side_gets_the_same_edits_and_is_counted_apart():
    pushes: list[tuple[str, str]] = []

    def record_only(client, product_id: str, name: str) -> bool:
        pushes.append((product_id, name))
        return False  # never reaches Stripe: every one of its edits is lost

    report = run_drill(outage_start=1, outage_s=1, tail_s=1, rate=10, products=10, baselines={"recorder": record_only})
    recorder = report.sides["recorder"]
    assert len(pushes) == report.catalog_edits == recorder.failed_pushes
    assert recorder.lost > 0 and report.ours_lost == 0
    assert "recorder" in report.lines()[1]
