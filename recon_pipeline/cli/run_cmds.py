"""The jobs from the command line: one run each, recorded in the instance at DAGSTER_HOME.

The runs are the same ones the schedule, the sensors and the UI launch (the UI of `make dev`
shows them: they go to the same DAGSTER_HOME), executed in this process, so they need no
daemon: the first sync of a new account, a backfill after an outage, a cron job.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
from typing import Any

from recon_pipeline.cli.processes import instance_home, with_stripe
from recon_pipeline.settings import PARTITION_FORMAT, Settings, SettingsError

DEFAULTS = argparse.ArgumentDefaultsHelpFormatter


def _run(settings: Settings, job: str, run_config: dict[str, Any] | None = None, tags: dict[str, str] | None = None, partition_key: str | None = None):
    """One run of `job`; with no Stripe key and no STRIPE_API_BASE, on the bundled emulator (started if need be)."""
    import dagster as dg

    from recon_pipeline.runs import run_job

    home = instance_home(settings)
    with contextlib.ExitStack() as stack:
        settings = with_stripe(settings, stack)
        instance = stack.enter_context(dg.DagsterInstance.from_config(str(home)))
        return run_job(job, run_config, instance=instance, quiet=True, settings=settings, tags=tags, partition_key=partition_key)


def _accounts(args: argparse.Namespace, settings: Settings) -> list[str | None]:
    """The runs to make: one (None) with one Stripe account; with several, the --account given or each in turn."""
    if not settings.several_accounts:
        if args.account:
            settings.account(args.account)  # refused, naming the accounts there are
        return [None]
    return [settings.account(args.account).name] if args.account else list[str | None](settings.account_names)


def _for_account(account: str | None) -> str:
    return "" if account is None else f" (Stripe account {account})"


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.runs import print_drift

    return max(print_drift(_run(settings, "reconcile_catalog", partition_key=account), _for_account(account), settings) for account in _accounts(args, settings))


def cmd_repair(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.runs import print_repair

    config: dict[str, Any] = {"dry_run": args.dry_run, "override_breaker": args.override_breaker}
    if args.orphan_policy:
        config["orphan_policy"] = args.orphan_policy
    if args.max_write_share is not None:
        config["max_write_share"] = args.max_write_share
    print("repair_catalog plans from the latest catalog_drift: run `recon-pipeline reconcile` first if it is old.")
    run_config = {"ops": {"catalog_repair": {"config": config}}}
    return max(print_repair(_run(settings, "repair_catalog", run_config, partition_key=account), _for_account(account), args.limit) for account in _accounts(args, settings))


def _hour(value: str, name: str, settings: Settings) -> dt.datetime:
    try:
        hour = dt.datetime.strptime(value, PARTITION_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise SettingsError(f"{name} {value!r} is not an hour in the form YYYY-MM-DD-HH:MM (UTC), e.g. 2026-11-24-10:00.") from None
    if hour.minute:
        raise SettingsError(f"{name} {value!r} is not on the hour; hourly partitions start at :00, e.g. {hour:%Y-%m-%d-%H}:00.")
    first = dt.datetime.strptime(settings.partitions_start, PARTITION_FORMAT).replace(tzinfo=dt.UTC)
    if hour < first:
        raise SettingsError(f"{name} {value!r} is before the first hourly partition {settings.partitions_start} (RECON_PARTITIONS_START).")
    if hour > dt.datetime.now(dt.UTC):
        raise SettingsError(f"{name} {value!r} is in the future; the latest partition is the hour in progress.")
    return hour


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.runs import check_lines, exit_status, failure_lines, latest_metadata

    first, last = _hour(args.first, "--from", settings), _hour(args.last, "--to", settings)
    if last < first:
        raise SettingsError(f"--to {args.last} is before --from {args.first}.")
    hours = int((last - first).total_seconds() // 3600) + 1
    status = 0
    for account in _accounts(args, settings):
        prefix = "" if account is None else f"{account}|"  # with several accounts, account x hour partitions
        print(f"backfill_hours: {hours} hours from {args.first} to {args.last}{_for_account(account)}, in one run ...", flush=True)
        tags = {"dagster/asset_partition_range_start": prefix + args.first, "dagster/asset_partition_range_end": prefix + args.last}
        result = _run(settings, "backfill_hours", tags=tags)
        print(f"backfill_hours run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
        print("\n".join(check_lines(result) + failure_lines(result)))
        if result.success:
            import dagster as dg

            home = settings.instance_home.resolve()
            with dg.DagsterInstance.from_config(str(home)) as instance:
                repaired = latest_metadata(instance, "hourly_repair")
            print(f"  hourly_repair: applied {repaired['applied']}, dead letters {repaired['dead_letters']}, remaining_drift {repaired['remaining_drift']}")
        status = max(status, exit_status(result))
    return status


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of actions (1 or more)")
    return int(text)


def register(commands: argparse._SubParsersAction) -> None:
    reconcile = commands.add_parser("reconcile", help="run reconcile_catalog once: snapshot both sides, derive catalog_drift, run its checks")
    reconcile.add_argument("--account", help="with several Stripe accounts (RECON_STRIPE_ACCOUNTS): only this one (default: each in turn)")
    reconcile.set_defaults(func=cmd_reconcile)

    repair = commands.add_parser("repair", help="run repair_catalog once from the latest catalog_drift", formatter_class=DEFAULTS)
    repair.add_argument("--dry-run", action="store_true", help="plan and report, write nothing: the plan's actions, each with its fields before -> after")
    repair.add_argument("--limit", type=_positive_int, metavar="N", help="show only the first N actions of the plan (default: all)")
    repair.add_argument("--orphan-policy", choices=["report", "archive", "adopt"], help="what to do with products only Stripe has (default: RECON_ORPHAN_POLICY)")
    repair.add_argument("--max-write-share", type=float, help="the mass-drift breaker's share (default: RECON_MAX_REPAIR_SHARE)")
    repair.add_argument("--override-breaker", action="store_true", help="repair even above the breaker: a person's decision (the first sync of a new account)")
    repair.add_argument("--account", help="with several Stripe accounts (RECON_STRIPE_ACCOUNTS): only this one (default: each in turn)")
    repair.set_defaults(func=cmd_repair)

    backfill = commands.add_parser("backfill", help="run backfill_hours once for a range of UTC hours (after an outage)")
    backfill.add_argument("--from", dest="first", required=True, metavar="HOUR", help="first hour, YYYY-MM-DD-HH:MM (UTC), e.g. 2026-11-24-10:00")
    backfill.add_argument("--to", dest="last", required=True, metavar="HOUR", help="last hour, included, e.g. 2026-11-24-13:00")
    backfill.add_argument("--account", help="with several Stripe accounts (RECON_STRIPE_ACCOUNTS): only this one (default: each in turn)")
    backfill.set_defaults(func=cmd_backfill)
