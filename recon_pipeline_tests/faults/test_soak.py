"""A soak of two minutes: edits on both sides, Stripe's faults switched on and off in turn.

The worker and the webhook receiver run as their own processes on a PostgreSQL catalog,
the emulator delivers signed webhooks to the receiver (recon_pipeline/testing/soak.py;
bench/soak.py runs the ten-minute version recorded in bench/RESULTS.md). It ends with drift zero, nothing dead,
every fault seen by the emulator, and the processes' memory flat after warm-up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recon_pipeline.testing import soak
from recon_pipeline_tests.conftest import ADMIN_URL

# Resident memory may grow this much from warm-up to the end (caches filling, the allocator
# keeping pages); a leak of a few KiB per request would pass it within the first minute.
MAX_GROWTH_MIB = 15.0


@pytest.mark.postgres
@pytest.mark.timeout(420)
def test_a_two_minute_soak_with_edits_on_both_sides_and_faults_ends_in_sync_with_flat_memory(tmp_path: Path):
    report = soak.run_soak(duration_s=120, catalog="postgresql", products=100, fault_period_s=10, settle_timeout_s=180, log_dir=tmp_path, admin_url=ADMIN_URL)
    print("\n".join(report.lines()))
    assert report.catalog_edits > 300 and report.stripe_edits > 40
    assert report.fault_switches >= 2 * len(soak.FAULT_CYCLE) - 1
    seen = report.emulator_status_counts
    assert seen.get("429", 0) > 0 and seen.get("500", 0) > 0 and seen.get("503", 0) > 0
    assert report.dropped_connections > 0 and report.slow_requests > 0
    assert report.drift_rows == 0 and report.dead_letters == 0
    for process in ("worker", "receiver"):
        memory = report.memory_summary(process)
        assert memory["end"] - memory["warm"] < MAX_GROWTH_MIB, f"{process}: {memory}"
