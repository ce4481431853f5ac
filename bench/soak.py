"""Soak: minutes of edits on both sides while Stripe's faults switch on and off.

    .venv/bin/python bench/soak.py                        # 3 minutes, catalog on PostgreSQL
    .venv/bin/python bench/soak.py --duration 600         # 10 minutes
    .venv/bin/python bench/soak.py --catalog sqlite       # the embedded default
    .venv/bin/python bench/soak.py --smoke                # 30 s on SQLite, faults every 5 s: the checks, for CI

The harness is `recon_pipeline/testing/soak.py` (the test suite runs two minutes of it);
this script runs it for as long as asked and prints the report. Exit 1 unless the soak
ends in sync with nothing dead.
"""

from __future__ import annotations

import argparse
import sys

from recon_pipeline.testing import POSTGRES_ADMIN_URL
from recon_pipeline.testing.soak import run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=180, help="seconds of edits and faults")
    parser.add_argument("--catalog", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--catalog-rate", type=float, default=5.0, help="catalog edits per second")
    parser.add_argument("--stripe-rate", type=float, default=1.0, help="dashboard edits per second")
    parser.add_argument("--fault-period", type=float, default=15.0, help="seconds each fault (or none) lasts")
    parser.add_argument("--admin-url", default=POSTGRES_ADMIN_URL, help="a PostgreSQL database the soak may create its own from")
    parser.add_argument("--smoke", action="store_true", help="the CI size: 30 s on SQLite, 50 products, faults every 5 s")
    args = parser.parse_args(argv)
    if args.smoke:
        args.duration, args.catalog, args.products, args.fault_period = 30, "sqlite", 50, 5.0
    print(f"soak: {args.duration:g} s ...", flush=True)
    report = run_soak(args.duration, args.catalog, args.products, args.catalog_rate, args.stripe_rate, args.fault_period, admin_url=args.admin_url)
    print("\n".join(report.lines()))
    return 0 if report.drift_rows == 0 and report.dead_letters == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
