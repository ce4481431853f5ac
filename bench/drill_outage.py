"""Outage drill, ours beside the naive push: who loses what when Stripe goes down?

    .venv/bin/python bench/drill_outage.py                       # 20 s outage
    .venv/bin/python bench/drill_outage.py --outage-s 120        # a couple of minutes
    .venv/bin/python bench/drill_outage.py --smoke               # a few seconds, for CI: checks, no figures

The drill itself is package code (`recon_pipeline/drill.py`, also `recon-pipeline drill`);
this script adds the naive baseline (`naive_sync.py`, never part of the pipeline) as a
second side that gets the same edits, and prints both. It exits 1 unless ours lost
nothing (and, with --smoke, unless the naive push lost something: the drill must be able
to tell them apart).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive_sync import naive_push

from recon_pipeline.drill import run_drill

NAIVE = "naive push"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage-start", type=float, default=5, help="seconds of edits before the outage")
    parser.add_argument("--outage-s", type=float, default=20, help="how long Stripe is down")
    parser.add_argument("--tail-s", type=float, default=5, help="edits go on this long after the outage")
    parser.add_argument("--rate", type=float, default=10, help="catalog edits per second")
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="the CI size: a 3 s outage over 30 products")
    args = parser.parse_args(argv)
    if args.smoke:
        args.outage_start, args.outage_s, args.tail_s, args.products = 1, 3, 1, 30
    print(f"outage drill: {args.outage_s:g} s outage after {args.outage_start:g} s, edits go on {args.tail_s:g} s after it ...", flush=True)
    report = run_drill(args.outage_start, args.outage_s, args.tail_s, args.rate, args.products, baselines={NAIVE: naive_push})
    print("\n".join(report.lines()))
    naive = report.sides[NAIVE]
    told_apart = naive.failed_pushes > 0 and naive.lost > 0
    if args.smoke and not told_apart:
        print("the naive push lost nothing: the outage did not bite, so the drill proves nothing", file=sys.stderr)
    return 0 if report.ours_lost == 0 and (told_apart or not args.smoke) else 1


if __name__ == "__main__":
    sys.exit(main())
