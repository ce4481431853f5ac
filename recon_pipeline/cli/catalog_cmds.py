"""The catalog: its schema, edits from the command line, and the dead letters kept beside it."""

from __future__ import annotations

import argparse
import sys

from recon_pipeline.catalog import Catalog, InvalidProduct
from recon_pipeline.settings import Settings
from recon_pipeline.stripe_api import StripeGateway


def redact_url(url: str) -> str:
    """A database URL fit to print: never a password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_catalog(settings: Settings) -> Catalog:
    return Catalog.open(settings.catalog_url, settings.catalog_source)


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.catalog.migrate import current

    catalog = open_catalog(settings)
    print(f"catalog schema ready at {redact_url(settings.catalog_url)} (revision {current(catalog.engine)})")
    return 0


def cmd_edit(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.catalog.changes import change_price, update_product

    catalog = open_catalog(settings)
    fields = {k: v for k, v in (("name", args.name), ("description", args.description)) if v is not None}
    if args.active is not None:
        fields["active"] = args.active == "true"
    changed = False
    try:
        if fields:
            changed |= update_product(catalog, args.product_id, **fields)
        if args.price:
            amount, currency, *interval = args.price
            if not amount.isdigit():
                raise InvalidProduct(f"--price amount {amount!r} must be a whole number of the currency's smallest unit, e.g. 1500")
            changed |= change_price(catalog, args.product_id, int(amount), currency, interval[0] if interval else None)
    except InvalidProduct as error:
        print(f"recon-pipeline: {error}", file=sys.stderr)
        return 2
    print(f"{args.product_id}: changed and queued in the outbox" if changed else f"{args.product_id}: nothing changed")
    return 0


def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.repair.dead_letters import list_dead_letters
    from recon_pipeline.repair.replay import replay_dead_letters

    catalog = open_catalog(settings)
    if args.action == "list":
        letters = list_dead_letters(catalog.engine, include_resolved=args.all)
        for letter in letters:
            state = f"resolved {letter['resolved_at']:%Y-%m-%d %H:%M}" if letter["resolved_at"] else "open"
            print(f"#{letter['id']:<5} {letter['product_id']:<24} {letter['action']:<16} attempts={letter['attempts']:<3} {state}: {letter['reason']}")
        print(f"{len(letters)} dead letters" + ("" if args.all else " open"))
        return 0
    results = replay_dead_letters(catalog, StripeGateway.from_settings(settings), ids=args.ids or None)
    for result in results:
        print(f"#{result.id:<5} {result.product_id:<24} {'resolved' if result.resolved else 'still failing'}: {result.detail}")
    still = sum(not r.resolved for r in results)
    print(f"replayed {len(results)}, resolved {len(results) - still}, still failing {still}")
    return 1 if still else 0


def register(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("init", help="create or upgrade the catalog schema (idempotent)").set_defaults(func=cmd_init)

    edit = commands.add_parser("edit", help="change a catalog product; the change and its outbox row commit together")
    edit.add_argument("product_id", help="the catalog id of the product")
    edit.add_argument("--name", help="new name")
    edit.add_argument("--description", help="new description")
    edit.add_argument("--active", choices=["true", "false"], help="activate or archive")
    edit.add_argument("--price", nargs="+", metavar=("AMOUNT CURRENCY", "INTERVAL"), help="e.g. --price 1500 usd month")
    edit.set_defaults(func=cmd_edit)

    letters = commands.add_parser("dead-letters", help="list or replay what exhausted its retries")
    letters.add_argument("action", choices=["list", "replay"], help="list them, or replay them now")
    letters.add_argument("ids", nargs="*", type=int, help="replay only these dead letter ids (default: every open one)")
    letters.add_argument("--all", action="store_true", help="list resolved ones too")
    letters.set_defaults(func=cmd_dead_letters)
