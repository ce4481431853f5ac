"""`recon-pipeline`: the project's command line.

    recon-pipeline init                      create or upgrade the catalog schema (idempotent)
    recon-pipeline emulator [--port 12111]   run the bundled Stripe emulator on 127.0.0.1
    recon-pipeline demo                      seed drift, run reconcile_catalog, print the drift
    recon-pipeline dev                       the Dagster UI on 127.0.0.1:3000 with the emulator
    recon-pipeline serve                     production: dagster-webserver + dagster-daemon on deploy/dagster.yaml
    recon-pipeline dead-letters list|replay  what exhausted its retries; replay it now
    recon-pipeline quarantine list [--all]   catalog rows set aside, with the reason of each
    recon-pipeline edit ID [--name ...]      change a catalog product (and queue it for Stripe)
    recon-pipeline audit [PRODUCT]           who changed what, before and after, and why
    recon-pipeline reconcile [--account A]   run reconcile_catalog once (per Stripe account, with several)
    recon-pipeline repair [--override-breaker] [--account A]  run repair_catalog once (per account)
    recon-pipeline backfill --from H --to H  run backfill_hours once for a range of hours
    recon-pipeline drill                     outage drill: outbox + backfill through a Stripe outage
    recon-pipeline worker                    push the outbox and apply the inbox continuously
    recon-pipeline webhooks [--port 8787]    receive Stripe webhooks into the inbox

Every command reads the settings once, when it starts (recon_pipeline/settings.py): a
malformed variable stops it with exit status 2 and a message naming the variable.
"""

from __future__ import annotations

import argparse
import sys

import stripe

from recon_pipeline.catalog import InvalidPrice, InvalidProduct
from recon_pipeline.cli import catalog_cmds, demo_cmds, run_cmds, server_cmds, sync_cmds
from recon_pipeline.settings import Settings, SettingsError

GROUPS = (catalog_cmds, run_cmds, server_cmds, demo_cmds, sync_cmds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recon-pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    return parser


def _quiet_dagster_previews() -> None:
    # Freshness checks, pools and friends are beta/preview APIs in Dagster 1.13; their
    # warnings say nothing a user of this command can act on. Matched by message, so that
    # commands that never load Dagster do not pay for importing it.
    import warnings

    warnings.filterwarnings("ignore", message=r".* is currently in (beta|preview)")


def main(argv: list[str] | None = None) -> int:
    _quiet_dagster_previews()
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        for warning in settings.warnings:
            print(f"recon-pipeline: warning: {warning}", file=sys.stderr)
        return args.func(args, settings)
    except (SettingsError, InvalidProduct, InvalidPrice) as error:  # bad usage, settings or values: said, nothing written
        print(f"recon-pipeline: {error}", file=sys.stderr)
        return 2
    except stripe.StripeError as error:  # after the client's retries: an outage, or a request Stripe refuses
        from recon_pipeline.stripe_api import error_text

        print(f"recon-pipeline: Stripe could not be used ({error_text(error)}); try again when it answers.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
