"""Continuous sync outside Dagster: the worker (outbox and inbox) and the webhook receiver."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from recon_pipeline.cli.catalog_cmds import open_catalog
from recon_pipeline.cli.processes import with_stripe
from recon_pipeline.settings import Settings, SettingsError
from recon_pipeline.stripe_api import StripeGateway

DEFAULTS = argparse.ArgumentDefaultsHelpFormatter


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.sync.credentials import check_key
    from recon_pipeline.sync.inbox import InboxApplier
    from recon_pipeline.sync.outbox import worker_id
    from recon_pipeline.sync.worker import run_worker

    catalog = open_catalog(settings)
    with contextlib.ExitStack() as stack:
        settings = with_stripe(settings, stack)
        gateways = StripeGateway.for_each_account(settings)
        applier = InboxApplier(catalog, settings.conflict_policy, gateways, settings.price_orphan_policy, settings.stripe_api_version)
        for each in gateways.values():
            check_key(catalog.engine, each)
        name = worker_id()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        accounts = ", ".join(settings.account_names)
        print(f"worker {name}: outbox -> {settings.stripe_api_base} (accounts {accounts}), inbox -> catalog (policy {settings.conflict_policy})", flush=True)
        totals = run_worker(
            catalog,
            gateways,
            applier,
            name=name,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            interval_s=args.interval,
            once=args.once,
            stop=stop,
            say=lambda line: print(line, flush=True),
        )
    return 2 if totals.refused else 0


def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from recon_pipeline.sync.webhooks import create_webhook_app

    if not settings.webhook_secret:
        raise SettingsError("STRIPE_WEBHOOK_SECRET is not set; set it to the endpoint's signing secret (whsec_...).")
    if settings.several_accounts and not args.account:
        raise SettingsError(f"RECON_STRIPE_ACCOUNTS names several accounts ({', '.join(settings.account_names)}): say whose endpoint this receiver is with --account.")
    account = settings.account(args.account).name if args.account else settings.account_names[0]
    connected = {a.connected_id: a.name for a in settings.accounts if a.connected_id}
    catalog = open_catalog(settings)
    print(f"webhook receiver on http://{args.host}:{args.port}/webhooks/stripe (Stripe account {account})", flush=True)
    app = create_webhook_app(catalog.engine, settings.webhook_secret, api_version=settings.stripe_api_version, account=account, connected=connected)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="push the outbox and apply the inbox continuously", formatter_class=DEFAULTS)
    worker.add_argument("--interval", type=float, default=0.2, help="seconds between polls when idle")
    worker.add_argument("--concurrency", type=int, default=8, help="products pushed in parallel")
    worker.add_argument("--batch-size", type=int, default=100, help="products claimed at a time (smaller spreads work over more workers)")
    worker.add_argument("--once", action="store_true", help="one pass, then exit")
    worker.set_defaults(func=cmd_worker)

    webhooks = commands.add_parser("webhooks", help="receive Stripe webhooks into the inbox", formatter_class=DEFAULTS)
    webhooks.add_argument("--host", default="127.0.0.1", help="address to bind")
    webhooks.add_argument("--port", type=int, default=8787, help="port to listen on")
    webhooks.add_argument("--account", help="with several Stripe accounts: whose endpoint this is (STRIPE_WEBHOOK_SECRET is its secret; default: the first; connected accounts' events say their own)")
    webhooks.set_defaults(func=cmd_webhooks)
