"""The catalog: its schema, edits from the command line, and the dead letters kept beside it."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys

from recon_pipeline.catalog import Catalog, CatalogPrice, InvalidPrice, InvalidProduct
from recon_pipeline.catalog.connect import shown
from recon_pipeline.cli.processes import with_stripe
from recon_pipeline.settings import Settings, SettingsError
from recon_pipeline.stripe_api import StripeGateway


def open_catalog(settings: Settings, read_only: bool = False) -> Catalog:
    """The catalog the settings name; `read_only` for commands that only look (they create nothing).
    Its edits are audited as made by `command`."""
    return dataclasses.replace(Catalog.open(settings.catalog_url, settings.catalog_source, read_only=read_only), writer="command")


def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.catalog import capture
    from recon_pipeline.catalog.migrate import current
    from recon_pipeline.catalog.store import make_engine

    if args.print_sql:
        if args.capture is None:
            raise SettingsError("--print-sql goes with --capture (the SQL that installs capture) or --no-capture (the SQL that removes it).")
        dialect = make_engine(settings.catalog_url).dialect.name
        statements = (capture.install_statements if args.capture else capture.remove_statements)(dialect, settings.catalog_source)
        print(capture.script(dialect, statements), end="")
        return 0
    catalog = open_catalog(settings)
    catalog.check_source()
    revisions = ", ".join(sorted(current(catalog.engine)))
    print(f"catalog schema ready at {shown(settings.catalog_url)} (revisions {revisions}); products are read from {settings.catalog_source.describe()}")
    print(f"Stripe API version of every request: {settings.stripe_api_version} (RECON_STRIPE_API_VERSION)")
    if args.capture:
        tables = ", ".join(t.table for t in capture.install(catalog.engine, settings.catalog_source))
        print(f"capture installed on {tables}: every insert, update and delete is queued in the outbox as it commits")
        left = capture.uncaptured_prices(settings.catalog_source)
        if left:
            print(f"not captured: {left}")
    elif args.capture is False:
        capture.remove(catalog.engine, settings.catalog_source)
        print("capture removed: changes written outside recon-pipeline wait for the hourly reconciliation")
    else:
        triggers = capture.installed(catalog.engine)
        print(f"capture: {len(triggers)} triggers installed ({', '.join(triggers)})" if triggers else "capture: not installed (recon-pipeline init --capture)")
    return 0


def _terms(flag: str, values: list[str]) -> dict[str, object]:
    """AMOUNT CURRENCY [INTERVAL] as price fields (a whole amount in the currency's smallest unit:
    "15.00" is refused rather than read as 15 cents; fractional amounts go in the catalog table)."""
    if not 2 <= len(values) <= 3:
        raise SettingsError(f"{flag} takes AMOUNT CURRENCY [INTERVAL], e.g. {flag} 1500 usd month; got {' '.join(values)!r}.")
    amount, currency, *interval = values
    if not amount.isdigit():
        raise InvalidProduct(f"{flag} amount {amount!r} must be a whole number of the currency's smallest unit, e.g. 1500 for 15.00")
    money: dict[str, object] = {"unit_amount": int(amount), "unit_amount_decimal": None}
    recurring = {"recurring_interval": interval[0], "recurring_interval_count": 1, "recurring_usage_type": "licensed"} if interval else {
        "recurring_interval": None, "recurring_interval_count": None, "recurring_usage_type": None
    }  # fmt: skip
    return {**money, "currency": currency.lower(), **recurring}


def cmd_edit(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.catalog.changes import add_price, archive_price, change_price, edits, set_default_price, update_product

    fields: dict[str, object] = {k: v for k, v in (("name", args.name), ("description", args.description), ("default_price", args.default_price)) if v is not None}
    if args.active is not None:
        fields["active"] = args.active == "true"
    if not fields and not (args.price or args.add_price or args.change_price or args.archive_price):
        raise SettingsError(
            "nothing to change: give --name, --description, --active, --price, --add-price, --change-price, --archive-price or --default-price (see recon-pipeline edit --help)."
        )
    catalog = None
    changed = False
    try:
        # Every value is read before anything is written: a mistake changes nothing.
        added = (args.add_price[0], _terms("--add-price", args.add_price[1:])) if args.add_price else None
        changing = (args.change_price[0], _terms("--change-price", args.change_price[1:])) if args.change_price else None
        default_terms = _terms("--price", args.price) if args.price else None
        catalog = open_catalog(settings)
        for key in (changing[0] if changing else None, args.archive_price):
            if key is not None:
                _require_price_of(catalog, key, args.product_id)
        with edits(catalog) as conn:  # all of them, with their outbox rows, or none
            if added:
                add_price(catalog, CatalogPrice(lookup_key=added[0], product_id=args.product_id, **added[1]), conn=conn)  # type: ignore[arg-type]
                changed = True
            if fields:
                changed |= update_product(catalog, args.product_id, conn, **fields)
            if default_terms:
                changed |= set_default_price(catalog, args.product_id, conn, **default_terms)
            if changing:
                changed |= change_price(catalog, changing[0], conn, **changing[1])
            if args.archive_price:
                changed |= archive_price(catalog, args.archive_price, conn)
    except (InvalidProduct, InvalidPrice) as error:
        print(f"recon-pipeline: {error}", file=sys.stderr)
        return 2
    print(f"{args.product_id}: changed and queued in the outbox" if changed else f"{args.product_id}: already so in the catalog; nothing queued")
    return 0


def _require_price_of(catalog: Catalog, lookup_key: str, product_id: str) -> None:
    owners = catalog.price_rows([product_id])["lookup_key"]
    if lookup_key not in set(owners):
        listed = ", ".join(sorted(owners)) or "none yet (add one with --add-price)"
        raise InvalidPrice(f"{product_id!r} has no price {lookup_key!r}; its prices are: {listed}")


def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.repair.dead_letters import list_dead_letters
    from recon_pipeline.repair.replay import replay_dead_letters

    if args.action == "list":
        if args.ids:
            raise SettingsError("dead letter ids go with replay: recon-pipeline dead-letters replay ID ...")
        catalog = open_catalog(settings, read_only=True)
        letters = list_dead_letters(catalog.engine, include_resolved=args.all)
        for letter in letters:
            state = f"resolved {letter['resolved_at']:%Y-%m-%d %H:%M}" if letter["resolved_at"] else "open"
            print(f"#{letter['id']:<5} {letter['product_id']:<24} {letter['action']:<16} attempts={letter['attempts']:<3} {state}: {letter['reason']}")
        print(f"{len(letters)} dead letters" + ("" if args.all else " open"))
        return 0
    catalog = open_catalog(settings)
    if args.ids:
        open_ids = {letter["id"] for letter in list_dead_letters(catalog.engine)}
        unknown = sorted(set(args.ids) - open_ids)
        if unknown:
            print(f"recon-pipeline: no open dead letter {', '.join(f'#{i}' for i in unknown)}; `recon-pipeline dead-letters list` shows the open ones", file=sys.stderr)
            return 1
    from recon_pipeline.stripe_api import CredentialsRefused
    from recon_pipeline.sync.credentials import check_key, record_refusal

    with contextlib.ExitStack() as stack:
        gateways = StripeGateway.for_each_account(with_stripe(settings, stack))
        for gateway in gateways.values():
            check_key(catalog.engine, gateway)
        try:
            results = replay_dead_letters(catalog, gateways, ids=args.ids or None)
        except CredentialsRefused as refused:
            record_refusal(catalog.engine, gateway, refused)  # by the refused key's own fingerprint
            raise
    for result in results:
        print(f"#{result.id:<5} {result.product_id:<24} {'resolved' if result.resolved else 'still failing'}: {result.detail}")
    still = sum(not r.resolved for r in results)
    print(f"replayed {len(results)}, resolved {len(results) - still}, still failing {still}")
    return 1 if still else 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.catalog.audit import parse_since, trail

    since = parse_since(args.since) if args.since else None
    catalog = open_catalog(settings, read_only=True)
    entries = trail(catalog.engine, args.product_id, since, args.limit)
    for entry in entries:
        print(entry.line())
    scope = f" of {args.product_id}" if args.product_id else ""
    print(f"{len(entries)} audit entries{scope}" + (f" since {since:%Y-%m-%d %H:%M} UTC" if since else "") + (" (the newest; --limit for more)" if len(entries) == args.limit else ""))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    init = commands.add_parser("init", help="create or upgrade the catalog schema (idempotent); install or remove capture")
    capture = init.add_mutually_exclusive_group()
    capture.add_argument("--capture", action="store_true", default=None, help="install triggers that queue every change of the catalog's tables, whoever writes it")
    capture.add_argument("--no-capture", dest="capture", action="store_false", help="remove those triggers")
    init.add_argument("--print-sql", action="store_true", help="print the SQL of --capture or --no-capture for a DBA to run, and change nothing")
    init.set_defaults(func=cmd_init)

    edit = commands.add_parser("edit", help="change a catalog product; the change and its outbox row commit together")
    edit.add_argument("product_id", help="the catalog id of the product")
    edit.add_argument("--name", help="new name")
    edit.add_argument("--description", help="new description")
    edit.add_argument("--active", choices=["true", "false"], help="activate or archive")
    edit.add_argument("--price", nargs="+", metavar=("AMOUNT CURRENCY", "INTERVAL"), help="the default price's terms, e.g. --price 1500 usd month (a new price in Stripe, under the same lookup key)")
    edit.add_argument("--add-price", nargs="+", metavar=("LOOKUP_KEY AMOUNT CURRENCY", "INTERVAL"), help="add a price, e.g. --add-price pro_annual 15000 usd year")
    edit.add_argument("--change-price", nargs="+", metavar=("LOOKUP_KEY AMOUNT CURRENCY", "INTERVAL"), help="change one price's terms; no other price is touched")
    edit.add_argument("--archive-price", metavar="LOOKUP_KEY", help="archive one price")
    edit.add_argument("--default-price", metavar="LOOKUP_KEY", help="make one of the product's prices its default")
    edit.set_defaults(func=cmd_edit)

    audit = commands.add_parser("audit", help="who changed what, before and after, and why (the audit trail)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    audit.add_argument("product_id", nargs="?", help="one product's trail (default: every product)")
    audit.add_argument("--since", help="a date or time (2026-11-24, 2026-11-24T10:00, UTC) or an age (30m, 6h, 7d)")
    audit.add_argument("--limit", type=int, default=200, help="the newest entries shown at most")
    audit.set_defaults(func=cmd_audit)

    letters = commands.add_parser("dead-letters", help="list or replay what exhausted its retries")
    letters.add_argument("action", choices=["list", "replay"], help="list them, or replay them now")
    letters.add_argument("ids", nargs="*", type=int, help="replay only these dead letter ids (default: every open one)")
    letters.add_argument("--all", action="store_true", help="list resolved ones too")
    letters.set_defaults(func=cmd_dead_letters)
