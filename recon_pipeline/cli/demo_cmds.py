"""Rehearsals on the bundled emulator: the demo, and the outage drill."""

from __future__ import annotations

import argparse
import dataclasses

from recon_pipeline.cli.processes import instance_home, running_emulator
from recon_pipeline.settings import EMULATOR_PORT, Settings, SettingsError

DEFAULTS = argparse.ArgumentDefaultsHelpFormatter


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import dagster as dg

    from recon_pipeline.catalog import make_engine
    from recon_pipeline.demo import plan_demo, seed_demo, unmanaged_prices
    from recon_pipeline.runs import print_drift, print_repair, print_report, run_job

    for name in ("RECON_CATALOG_URL", "STRIPE_API_KEY", "STRIPE_API_BASE"):
        if name in settings.set_in_env:
            raise SettingsError(
                f"{name} is set, but the demo seeds (and overwrites) the embedded SQLite catalog and the "
                f"bundled emulator only; unset {name} to run the demo."
            )
    home = instance_home(settings)
    data = plan_demo(n_products=args.products, seed=args.seed)
    with running_emulator(args.port) as url, dg.DagsterInstance.from_config(str(home)) as instance:
        demo = dataclasses.replace(settings, stripe_api_base=url)
        stripe_prices = sum(len(p["prices"]) for p in data.stripe)
        print(f"Seeding {len(data.products):,} catalog products with {len(data.prices):,} prices, and {len(data.stripe):,} Stripe products with {stripe_prices:,} prices ({url}) ...")
        seed_demo(make_engine(demo.catalog_url), url, data)
        status = print_report(run_job("reconcile_catalog", instance=instance, quiet=True, settings=demo), data)
        # The demo archives its orphans; the pipeline's default orphan policy only reports them.
        print(
            f"\nRepairing with orphan_policy: archive, so the demo ends at zero drift: its {data.expected['orphan_in_stripe']} orphans "
            f"are archived in Stripe. Your runs use RECON_ORPHAN_POLICY (now {settings.orphan_policy.value}; default report: orphans are only reported)."
        )
        repair = {"ops": {"catalog_repair": {"config": {"orphan_policy": "archive"}}}}
        status |= print_repair(run_job("repair_catalog", repair, instance=instance, quiet=True, settings=demo))
        status |= print_drift(run_job("reconcile_catalog", instance=instance, quiet=True, settings=demo), " after repair", demo, left_alone=len(data.unmanaged))
        for price in unmanaged_prices(url, data):
            state = "still active" if price["active"] else "ARCHIVED"
            print(f"\nThe unmanaged price {price['id']} of {price['product']} ({price.get('nickname')}) is {state}:")
            print("the catalog does not own its lookup key, so repair left it alone (RECON_PRICE_ORPHAN_POLICY=report).")
            status |= 0 if price["active"] else 1
    print("\nDrift seeded, found, repaired and verified: zero left but the unmanaged price, reported." if status == 0 else "\nThe demo did not end at zero drift (see above).")
    print("Open the UI with `make dev` to see the runs, the drift metadata, the actions and the checks.")
    return status


def cmd_drill(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.drill import run_drill

    print(f"outage drill: {args.outage_s:g} s outage after {args.outage_start:g} s, edits go on {args.tail_s:g} s after it ...", flush=True)
    report = run_drill(args.outage_start, args.outage_s, args.tail_s, args.rate, args.products)
    print("\n".join(report.lines()))
    return 0 if report.ours_lost == 0 else 1


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="seed drift into a demo catalog and the emulator, reconcile, repair, print it", formatter_class=DEFAULTS)
    demo.add_argument("--products", type=int, default=1000, help="catalog products to seed")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the demo's data")
    demo.add_argument("--port", type=int, default=EMULATOR_PORT, help="the emulator's port")
    demo.set_defaults(func=cmd_demo)

    drill = commands.add_parser("drill", help="outage drill: catalog and dashboard edits through a Stripe outage, then backfill", formatter_class=DEFAULTS)
    drill.add_argument("--outage-start", type=float, default=5, help="seconds of edits before the outage")
    drill.add_argument("--outage-s", type=float, default=20, help="how long Stripe is down")
    drill.add_argument("--tail-s", type=float, default=5, help="edits go on this long after the outage")
    drill.add_argument("--rate", type=float, default=10, help="catalog edits per second")
    drill.add_argument("--products", type=int, default=200, help="catalog products")
    drill.set_defaults(func=cmd_drill)
