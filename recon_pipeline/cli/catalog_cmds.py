"""The catalog: its schema, edits from the command line, and the dead letters kept beside it."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from recon_pipeline.catalog import Catalog, CatalogPrice, CatalogProduct, InvalidPrice, InvalidProduct, default_lookup_key
from recon_pipeline.catalog.connect import shown
from recon_pipeline.catalog.prices import PRICE_COLUMNS
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
        engine = make_engine(settings.catalog_url)
        dialect = engine.dialect.name
        if args.capture:
            try:  # the schema our tables are in, where the database can be reached from here
                schema = capture.our_schema(engine)
            except DBAPIError:
                schema = None  # `public`
            statements = capture.install_statements(dialect, settings.catalog_source, schema)
        else:
            statements = capture.remove_statements(dialect, settings.catalog_source)
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
    "15.00" is refused rather than read as 15 cents; `-`: no amount, for a tiered or
    pay-what-you-want price, whose amounts come with --tiers or --custom-unit-amount)."""
    if not 2 <= len(values) <= 3:
        raise SettingsError(f"{flag} takes AMOUNT CURRENCY [INTERVAL], e.g. {flag} 1500 usd month; got {' '.join(values)!r}.")
    amount, currency, *interval = values
    if not amount.isdigit() and amount != "-":
        raise InvalidProduct(f"{flag} amount {amount!r} must be a whole number of the currency's smallest unit, e.g. 1500 for 15.00 (or - with --tiers)")
    money: dict[str, object] = {"unit_amount": None if amount == "-" else int(amount), "unit_amount_decimal": None}
    recurring = {"recurring_interval": interval[0], "recurring_interval_count": 1, "recurring_usage_type": "licensed"} if interval else {
        "recurring_interval": None, "recurring_interval_count": None, "recurring_usage_type": None
    }  # fmt: skip
    return {**money, "currency": currency.lower(), **recurring}


# Price fields beyond AMOUNT CURRENCY [INTERVAL]: flag -> (field, JSON?)
PRICE_FLAGS = {
    "interval_count": ("recurring_interval_count", False),
    "usage_type": ("recurring_usage_type", False),
    "nickname": ("nickname", False),
    "tax_behavior": ("tax_behavior", False),
    "tiers_mode": ("tiers_mode", False),
    "tiers": ("tiers", True),
    "currency_options": ("currency_options", True),
    "transform_quantity": ("transform_quantity", True),
    "custom_unit_amount": ("custom_unit_amount", True),
    "price_metadata": ("metadata", True),
}


def _json(flag: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SettingsError(
            f'{flag} {text[:60]!r} is not JSON ({error.msg}); write it in Stripe\'s shape, e.g. --tiers \'[{{"up_to": 10, "unit_amount": 500}}, {{"up_to": "inf", "unit_amount": 400}}]\'.'
        ) from None


def _price_fields(args: argparse.Namespace, given: int) -> dict[str, Any]:
    """The price field flags (--tiers, --nickname, ...), for the one price --price, --add-price or --change-price names."""
    found: dict[str, Any] = {}
    for flag, (name, is_json) in PRICE_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            found[name] = _json(f"--{flag.replace('_', '-')}", value) if is_json else value
    if found and given != 1:
        raise SettingsError(f"{', '.join('--' + f.replace('_', '-') for f in PRICE_FLAGS if getattr(args, f, None) is not None)} go with exactly one of --price, --add-price or --change-price.")
    if "recurring_interval_count" in found:
        if not str(found["recurring_interval_count"]).isdigit():
            raise InvalidPrice(f"--interval-count {found['recurring_interval_count']!r} must be a whole number")
        found["recurring_interval_count"] = int(found["recurring_interval_count"])
    if found.get("tiers") is not None:
        found.setdefault("billing_scheme", "tiered")
    return found


def _price_json(product_id: str, text: str) -> CatalogPrice:
    """--price-json: one whole price, our (Stripe's) field names; lookup_key defaults to `<id>:default`."""
    values = _json("--price-json", text)
    if not isinstance(values, dict):
        raise SettingsError(f'--price-json must be a JSON object of price fields, e.g. \'{{"lookup_key": "pro_m", "currency": "usd", "unit_amount": 1500}}\'; got {text[:60]!r}.')
    unknown = sorted(set(values) - set(PRICE_COLUMNS) - {"product_id"})
    if unknown:
        raise SettingsError(f"--price-json has unknown fields {unknown}; price fields are {', '.join(c for c in PRICE_COLUMNS if c not in ('product_id', 'updated_at'))}.")
    values.setdefault("lookup_key", default_lookup_key(product_id))
    if values.get("tiers") is not None:
        values.setdefault("billing_scheme", "tiered")
    try:
        return CatalogPrice(**{**values, "product_id": product_id})
    except TypeError:
        raise InvalidPrice(f"--price-json {text[:60]!r} needs at least currency (and lookup_key, or it is {default_lookup_key(product_id)!r})") from None


def _product_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {
        k: v
        for k, v in (
            ("name", args.name),
            ("description", args.description),
            ("default_price", getattr(args, "default_price", None)),
            ("tax_code", args.tax_code),
            ("unit_label", args.unit_label),
            ("url", args.url),
            ("statement_descriptor", args.statement_descriptor),
        )
        if v is not None
    }
    if args.active is not None:
        fields["active"] = args.active == "true"
    if args.metadata is not None:
        fields["metadata"] = _json("--metadata", args.metadata)
    return fields


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    """recon-pipeline catalog add: a new product (and its prices), queued for Stripe."""
    from recon_pipeline.catalog.changes import create_product

    fields = _product_fields(args)
    if "name" not in fields:
        raise SettingsError(f"recon-pipeline catalog add {args.product_id} needs --name (the product's name, as customers see it).")
    extra = _price_fields(args, bool(args.price))
    prices = [CatalogPrice(lookup_key=default_lookup_key(args.product_id), product_id=args.product_id, **{**_terms("--price", args.price), **extra})] if args.price else []
    prices += [_price_json(args.product_id, text) for text in args.price_json or []]
    if args.price and "default_price" not in fields:
        fields["default_price"] = prices[0].lookup_key
    try:
        catalog = open_catalog(settings)
        create_product(catalog, CatalogProduct(id=args.product_id, **fields), prices)
    except (InvalidProduct, InvalidPrice) as error:
        print(f"recon-pipeline: {error}", file=sys.stderr)
        return 2
    print(f"{args.product_id}: added with {len(prices)} prices and queued in the outbox")
    return 0


def cmd_edit(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.catalog.changes import add_price, archive_price, change_price, edits, price_owner, set_default_price, update_product

    fields = _product_fields(args)
    extra = _price_fields(args, sum(bool(x) for x in (args.price, args.add_price, args.change_price)))
    if not fields and not (args.price or args.add_price or args.change_price or args.archive_price or args.price_json):
        raise SettingsError(
            "nothing to change: give --name, --description, --active, --metadata, --price, --add-price, --change-price, --price-json, --archive-price "
            "or --default-price (see recon-pipeline edit --help)."
        )
    catalog = None
    changed = False
    try:
        # Every value is read before anything is written: a mistake changes nothing.
        added = (args.add_price[0], {**_terms("--add-price", args.add_price[1:]), **extra}) if args.add_price else None
        changing = (args.change_price[0], {**_terms("--change-price", args.change_price[1:]), **extra}) if args.change_price else None
        default_terms = {**_terms("--price", args.price), **extra} if args.price else None
        whole = [_price_json(args.product_id, text) for text in args.price_json or []]
        catalog = open_catalog(settings)
        for key in (changing[0] if changing else None, args.archive_price):
            if key is not None:
                _require_price_of(catalog, key, args.product_id)
        with edits(catalog) as conn:  # all of them, with their outbox rows, or none
            if added:
                add_price(catalog, CatalogPrice(lookup_key=added[0], product_id=args.product_id, **added[1]), conn=conn)
                changed = True
            for price in whole:  # added, or changed to these terms
                owner = price_owner(conn, price.lookup_key)
                if owner is None:
                    add_price(catalog, price, conn=conn)
                    changed = True
                elif owner != args.product_id:
                    raise InvalidPrice(f"--price-json: lookup key {price.lookup_key!r} is a price of {owner!r}, not of {args.product_id!r}")
                else:
                    terms = {k: v for k, v in dataclasses.asdict(price).items() if k not in ("lookup_key", "product_id", "updated_at")}
                    changed |= change_price(catalog, price.lookup_key, conn, **terms)
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


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.catalog.files import ImportRefused, import_entries, read_file

    path = Path(args.file)
    if not path.is_file():
        raise SettingsError(f"{args.file!r} is not a file; give a .csv or .json catalog file (recon-pipeline catalog export writes one).")
    try:
        entries = read_file(path)
        prices = sum(len(e.prices) for e in entries)
        if args.dry_run:
            print(f"{path.name}: {len(entries)} products and {prices} prices, every row valid; nothing written (--dry-run)")
            return 0
        done = import_entries(open_catalog(settings), entries)
    except ImportRefused as refused:
        for problem in refused.problems:
            print(f"recon-pipeline: {path.name}: {problem}", file=sys.stderr)
        print(f"recon-pipeline: {path.name}: {len(refused.problems)} bad rows; nothing was written. Fix them and import the file again.", file=sys.stderr)
        return 2
    counts = f"products created {done.products_created}, changed {done.products_changed}; prices added {done.prices_added}, changed {done.prices_changed}"
    queued = "queued in the outbox (recon-pipeline worker pushes them)" if any(dataclasses.astuple(done)) else "the catalog already says so; nothing queued"
    print(f"{path.name}: {counts}; {queued}")
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.catalog.files import export_rows, to_csv, to_json

    kind = args.format or (Path(args.output).suffix.lstrip(".").lower() if args.output else "csv")
    if kind not in ("csv", "json"):
        raise SettingsError(f"--format {kind!r}: a catalog file is csv or json.")
    rows = export_rows(open_catalog(settings, read_only=True))
    text = to_csv(rows) if kind == "csv" else to_json(rows)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{args.output}: {len(rows)} products, {sum(len(r['prices']) for r in rows)} prices ({kind})", file=sys.stderr)
    else:
        sys.stdout.write(text)
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
            line = f"#{letter['id']:<5} {letter['product_id']:<24} {letter['action']:<16} attempts={letter['attempts']:<3}"
            if letter["resolved_at"]:
                print(f"{line} resolved {letter['resolved_at']:%Y-%m-%d %H:%M} by {letter['resolution']} (it had failed: {letter['reason']})")
            else:
                print(f"{line} open: {letter['reason']}")
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


def cmd_quarantine(args: argparse.Namespace, settings: Settings) -> int:
    from recon_pipeline.catalog.quarantine import RELEASED_KEPT, listed

    rows = listed(open_catalog(settings, read_only=True).engine, include_released=args.all)
    for row in rows:
        which = row["product_id"] if row["kind"] == "product" else f"{row['product_id']} / {row['lookup_key']}"
        state = f"released {row['released_at']:%Y-%m-%d %H:%M}" if row["released_at"] else f"held since {row['at']:%Y-%m-%d %H:%M}"
        print(f"{row['kind']:<8} {which!s:<32} {state}: {row['reason']}")
    held = [row for row in rows if not row["released_at"]]
    products = sum(row["kind"] == "product" for row in held)
    print(f"{len(held)} catalog rows quarantined ({products} products, {len(held) - products} prices) as of the last reconcile_catalog run"
          + (f", {len(rows) - len(held)} released in the last {RELEASED_KEPT.days} days" if args.all else ""))
    if held:
        print("To do: fix each row in the catalog as its reason says (or remove it); the next reconcile_catalog run syncs it and releases it from the quarantine.")
    return 0


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

    _edit_parser(commands.add_parser("edit", help="change a catalog product; the change and its outbox row commit together"))

    catalog = commands.add_parser("catalog", help="author the catalog: add and edit products, import and export files")
    actions = catalog.add_subparsers(dest="action", required=True, metavar="add|edit|import|export")
    add = actions.add_parser("add", help="add a product (and its prices); queued for Stripe with it")
    _product_arguments(add)
    add.add_argument("--price", nargs="+", metavar=("AMOUNT CURRENCY", "INTERVAL"), help="its default price <id>:default, e.g. --price 1500 usd month (- for a tiered price: with --tiers)")
    _price_arguments(add)
    add.set_defaults(func=cmd_add)
    _edit_parser(actions.add_parser("edit", help="change a catalog product (as recon-pipeline edit)"))
    load = actions.add_parser("import", help="add or change products and prices from a CSV or JSON file: every row checked first, all or nothing")
    load.add_argument("file", help="a .csv (Stripe's export column names) or .json file")
    load.add_argument("--dry-run", action="store_true", help="check every row and say what the file holds; write nothing")
    load.set_defaults(func=cmd_import)
    dump = actions.add_parser("export", help="write the catalog's products and prices as CSV or JSON (what import reads)")
    dump.add_argument("--format", choices=["csv", "json"], help="default: from --output's extension, else csv")
    dump.add_argument("--output", "-o", help="a file (default: standard output)")
    dump.set_defaults(func=cmd_export)

    audit = commands.add_parser("audit", help="who changed what, before and after, and why (the audit trail)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    audit.add_argument("product_id", nargs="?", help="one product's trail (default: every product)")
    audit.add_argument("--since", help="a date or time (2026-11-24, 2026-11-24T10:00, UTC) or an age (30m, 6h, 7d)")
    audit.add_argument("--limit", type=int, default=200, help="the newest entries shown at most")
    audit.set_defaults(func=cmd_audit)

    held = commands.add_parser("quarantine", help="the catalog rows set aside because Stripe would refuse them, with the reason of each")
    held.add_argument("action", choices=["list"], help="list them")
    held.add_argument("--all", action="store_true", help="list the rows released lately (fixed or removed in the catalog) too")
    held.set_defaults(func=cmd_quarantine)

    letters = commands.add_parser("dead-letters", help="list or replay what exhausted its retries")
    letters.add_argument("action", choices=["list", "replay"], help="list them, or replay them now")
    letters.add_argument("ids", nargs="*", type=int, help="replay only these dead letter ids (default: every open one)")
    letters.add_argument("--all", action="store_true", help="list resolved ones too")
    letters.set_defaults(func=cmd_dead_letters)


def _product_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("product_id", help="the catalog id of the product (its Stripe id)")
    parser.add_argument("--name", help="its name")
    parser.add_argument("--description", help="its description")
    parser.add_argument("--active", choices=["true", "false"], help="activate or archive")
    parser.add_argument("--metadata", metavar="JSON", help='its metadata, e.g. \'{"plan": "pro"}\'')
    parser.add_argument("--tax-code", help="Stripe tax code, e.g. txcd_10000000")
    parser.add_argument("--unit-label", help="e.g. seat")
    parser.add_argument("--url", help="its public page")
    parser.add_argument("--statement-descriptor", help="up to 22 characters on card statements")


def _price_arguments(parser: argparse.ArgumentParser) -> None:
    terms = parser.add_argument_group("price fields", "for the one price --price, --add-price or --change-price names; JSON in Stripe's shape")
    terms.add_argument("--interval-count", help="e.g. 3 with month: every three months")
    terms.add_argument("--usage-type", choices=["licensed", "metered"])
    terms.add_argument("--nickname")
    terms.add_argument("--tax-behavior", choices=["inclusive", "exclusive", "unspecified"])
    terms.add_argument("--tiers-mode", choices=["graduated", "volume"])
    terms.add_argument("--tiers", metavar="JSON", help='e.g. \'[{"up_to": 10, "unit_amount": 500}, {"up_to": "inf", "unit_amount": 400}]\' (AMOUNT -)')
    terms.add_argument("--currency-options", metavar="JSON", help='other currencies, e.g. \'{"eur": {"unit_amount": 1400}}\' (each may have its own tiers)')
    terms.add_argument("--transform-quantity", metavar="JSON", help='e.g. \'{"divide_by": 10, "round": "up"}\'')
    terms.add_argument("--custom-unit-amount", metavar="JSON", help="pay what you want, e.g. '{\"minimum\": 500}' (AMOUNT -)")
    terms.add_argument("--price-metadata", metavar="JSON")
    parser.add_argument(
        "--price-json",
        action="append",
        metavar="JSON",
        help='a whole price, any field (repeatable), e.g. \'{"lookup_key": "pro_y", "currency": "usd", "unit_amount": 15000, "recurring_interval": "year"}\'',
    )


def _edit_parser(edit: argparse.ArgumentParser) -> None:
    _product_arguments(edit)
    edit.add_argument("--price", nargs="+", metavar=("AMOUNT CURRENCY", "INTERVAL"), help="the default price's terms, e.g. --price 1500 usd month (a new price in Stripe, under the same lookup key)")
    edit.add_argument("--add-price", nargs="+", metavar=("LOOKUP_KEY AMOUNT CURRENCY", "INTERVAL"), help="add a price, e.g. --add-price pro_annual 15000 usd year")
    edit.add_argument("--change-price", nargs="+", metavar=("LOOKUP_KEY AMOUNT CURRENCY", "INTERVAL"), help="change one price's terms; no other price is touched")
    edit.add_argument("--archive-price", metavar="LOOKUP_KEY", help="archive one price")
    edit.add_argument("--default-price", metavar="LOOKUP_KEY", help="make one of the product's prices its default")
    _price_arguments(edit)
    edit.set_defaults(func=cmd_edit)
