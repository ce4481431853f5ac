"""The outage drill on a small scale: the naive push loses updates, the outbox + backfill loses none."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# The drill is a bench script: it carries the naive baseline, which the pipeline never uses.
_spec = importlib.util.spec_from_file_location("drill_outage", Path(__file__).resolve().parents[1] / "bench" / "drill_outage.py")
drill_outage = importlib.util.module_from_spec(_spec)
sys.modules["drill_outage"] = drill_outage  # dataclasses look their module up there
_spec.loader.exec_module(drill_outage)
run_drill = drill_outage.run_drill


def test_outage_drill_naive_loses_updates_and_ours_loses_none(monkeypatch):
    # run_drill points the process at its own catalog and emulator; put everything back after.
    for name in ("RECON_CATALOG_URL", "STRIPE_API_BASE", "RECON_CONFLICT_POLICY", "DAGSTER_HOME"):
        monkeypatch.setenv(name, "")
    report = run_drill(outage_start=1, outage_s=3, tail_s=1, rate=10, products=30)
    assert report.catalog_edits >= 40 and report.stripe_edits >= 8
    assert report.naive_failed_pushes > 0
    assert report.naive_lost > 0
    assert report.ours_lost == 0
    assert report.backfilled_hours >= 1


def test_a_two_minute_outage_with_edits_on_both_sides_loses_nothing(monkeypatch):
    for name in ("RECON_CATALOG_URL", "STRIPE_API_BASE", "RECON_CONFLICT_POLICY", "DAGSTER_HOME"):
        monkeypatch.setenv(name, "")
    report = run_drill(outage_start=2, outage_s=120, tail_s=2, rate=4, products=60)
    assert report.naive_failed_pushes >= 400
    assert report.ours_lost == 0 and report.naive_lost > 0
    assert report.outbox_caught_up_s < 60
