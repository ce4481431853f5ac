"""Names every layer shares, and nothing else: the leaf of the package's imports.

The package is layered, each layer importing only those below it (a test holds it to that):

    names, fields, policies, backoff, progress  shared names, the field registry, small rules
    catalog                                     the catalog database: tables, rows, migrations
    settings                                    the environment, read once into one object
    stripe_api                                  the one Stripe client (rate budget, retries, idempotency)
    reconcile, repair, sync                     the logic: snapshot, diff, plan, apply, outbox, inbox
    alerts, backfill, demo                      what the Dagster layer and the CLI report and seed
    defs, definitions, runs, drill, cli, testing   Dagster wiring and the commands

The emulator (`recon_pipeline.emulator`) stands apart: it imports nothing of the pipeline.
"""

DEFAULT_ACCOUNT = "default"
"""The Stripe account of an install without RECON_STRIPE_ACCOUNTS."""


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""
