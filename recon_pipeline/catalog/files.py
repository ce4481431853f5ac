"""Catalog files: products and prices read from and written to CSV and JSON.

`recon-pipeline catalog import FILE` and `export` use them. A CSV file has one row per price
(a product without prices: one row with no lookup key), its columns named as Stripe's own
product and price exports name them where Stripe has the field (`Product ID`, `Product
Name`, `Amount` in the currency's main unit such as "15.00", `Currency`, `Interval`,
`Interval Count`, `Usage Type`, `Billing Scheme`, `Tax Behavior`, `Description` for the
price's nickname...), and JSON (in Stripe's shape) for the nested fields. A JSON file is
`{"products": [{...product fields..., "prices": [{...price fields...}]}]}`, our field names.

Every row is checked before anything is written; each bad row is reported with its line
and reason, and then nothing is written. The rows are written in one transaction through
`changes.py` (their outbox rows with them), so a file is taken whole or not at all.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from recon_pipeline.catalog import changes
from recon_pipeline.catalog.currencies import exponent
from recon_pipeline.catalog.prices import CatalogPrice, InvalidPrice, validate_price
from recon_pipeline.catalog.products import CatalogProduct, InvalidProduct, validate_product
from recon_pipeline.catalog.store import Catalog

# CSV column -> product field (JSON text where the field is an object or a list)
PRODUCT_CSV = {
    "Product ID": "id",
    "Product Name": "name",
    "Product Description": "description",
    "Product Active": "active",
    "Product Statement Descriptor": "statement_descriptor",
    "Product Tax Code": "tax_code",
    "Product Unit Label": "unit_label",
    "Product URL": "url",
    "Product Images": "images",
    "Product Marketing Features": "marketing_features",
    "Product Metadata": "metadata",
}
# CSV column -> price field; `Amount` is read separately (main units), `Default Price` marks the product's default.
PRICE_CSV = {
    "Lookup Key": "lookup_key",
    "Currency": "currency",
    "Interval": "recurring_interval",
    "Interval Count": "recurring_interval_count",
    "Usage Type": "recurring_usage_type",
    "Billing Scheme": "billing_scheme",
    "Tiers Mode": "tiers_mode",
    "Tiers": "tiers",
    "Currency Options": "currency_options",
    "Transform Quantity": "transform_quantity",
    "Custom Unit Amount": "custom_unit_amount",
    "Tax Behavior": "tax_behavior",
    "Description": "nickname",
    "Price Active": "active",
    "Price Metadata": "metadata",
}
AMOUNT, DEFAULT = "Amount", "Default Price"
CSV_COLUMNS = (*PRODUCT_CSV, "Lookup Key", DEFAULT, AMOUNT, *(c for c in PRICE_CSV if c != "Lookup Key"))
JSON_FIELDS = {"metadata", "images", "marketing_features", "tiers", "currency_options", "transform_quantity", "custom_unit_amount", "package_dimensions"}
BOOLEANS = {"active", "shippable"}
WHOLE = {"recurring_interval_count"}
PRODUCT_FIELDS = tuple(f.name for f in fields(CatalogProduct) if f.name != "updated_at")
PRICE_FIELDS = tuple(f.name for f in fields(CatalogPrice) if f.name not in ("updated_at", "product_id"))


# Where a product was, its values, its prices (where, values), and what is wrong with the rows already.
Found = tuple[str, dict[str, Any], list[tuple[str, dict[str, Any]]], list[str]]


class ImportRefused(ValueError):
    """A file with bad rows: every one is listed (where, and why); nothing was written."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} bad rows; nothing was written:\n" + "\n".join(problems))


@dataclass
class Entry:
    """One product of a file, where it was, the fields the file gives, and its prices."""

    where: str
    product: CatalogProduct
    given: set[str]
    prices: list[tuple[str, CatalogPrice, set[str]]] = field(default_factory=list)


def read_file(path: Path) -> list[Entry]:
    """The products and prices of a CSV or JSON file, every one checked; ImportRefused lists the bad ones."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        return _checked(_from_json(text))
    if path.suffix.lower() == ".csv":
        return _checked(_from_csv(text))
    raise ImportRefused([f"{path}: a catalog file is .csv or .json, not {path.suffix or 'without an extension'}"])


def _value(name: str, raw: Any) -> Any:
    """A cell (or a JSON value) as the field holds it; ValueError saying why not."""
    if isinstance(raw, str):
        raw = raw.strip()
        if raw == "":
            return None
        if name in JSON_FIELDS:
            try:
                return json.loads(raw)
            except json.JSONDecodeError as error:
                raise ValueError(f"{name} is not JSON ({error.msg})") from None
        if name in BOOLEANS:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{name}={raw!r} is not true or false")
            return raw.lower() in ("true", "1", "yes")
        if name in WHOLE:
            if not raw.isdigit():
                raise ValueError(f"{name}={raw!r} is not a whole number")
            return int(raw)
    return raw


def minor_units(amount: str, currency: str) -> dict[str, Any]:
    """`Amount` ("15.00", in the currency's main unit) as unit_amount, or unit_amount_decimal when it has fractions of the smallest unit."""
    try:
        number = Decimal(amount.strip()) if "," not in amount else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise ValueError(f"Amount={amount!r} is not a number; write it as Stripe's export does, with a point and no thousands separator: 1234.50")
    smallest = number.scaleb(exponent(currency))
    if smallest == smallest.to_integral_value():
        return {"unit_amount": int(smallest), "unit_amount_decimal": None}
    return {"unit_amount": None, "unit_amount_decimal": format(smallest.normalize(), "f")}


def _from_csv(text: str) -> list[Found]:
    reader = csv.DictReader(io.StringIO(text))
    known = set(CSV_COLUMNS)
    unknown = [c for c in reader.fieldnames or [] if c not in known]
    if unknown or "Product ID" not in (reader.fieldnames or []):
        raise ImportRefused([f"line 1: unknown columns {unknown} (columns are: {', '.join(CSV_COLUMNS)})" if unknown else "line 1: the Product ID column is missing"])
    grouped: dict[str, Found] = {}
    for number, row in enumerate(reader, start=2):
        where = f"line {number}"
        problems: list[str] = []
        product_id = (row.get("Product ID") or "").strip()
        if not product_id:
            grouped[f"?{number}"] = (where, {}, [], [f"{where}: Product ID is empty"])
            continue
        entry = grouped.setdefault(product_id, (where, {"id": product_id}, [], []))
        for column, name in PRODUCT_CSV.items():
            if column in row and row[column] not in (None, ""):
                try:
                    entry[1].setdefault(name, _value(name, row[column]))
                except ValueError as error:
                    problems.append(f"{where}: {error}")
        key = (row.get("Lookup Key") or "").strip()
        if key:
            price: dict[str, Any] = {"lookup_key": key}
            for column, name in PRICE_CSV.items():
                if column in row and row[column] not in (None, "") and name != "lookup_key":
                    try:
                        price[name] = _value(name, row[column])
                    except ValueError as error:
                        problems.append(f"{where}: {error}")
            if (row.get(AMOUNT) or "").strip():
                try:
                    price.update(minor_units(row[AMOUNT], price.get("currency") or "usd"))
                except ValueError as error:
                    problems.append(f"{where}: {error}")
            if price.get("tiers") and "billing_scheme" not in price:
                price["billing_scheme"] = "tiered"
            if (row.get(DEFAULT) or "").strip().lower() in ("true", "1", "yes"):
                entry[1]["default_price"] = key
            entry[2].append((where, price))
        elif any((row.get(c) or "").strip() for c in (AMOUNT, *(c for c in PRICE_CSV if c != "Lookup Key"))):
            problems.append(f"{where}: a price needs its Lookup Key (the identity it has in Stripe)")
        entry[3].extend(problems)
    return list(grouped.values())


def _from_json(text: str) -> list[Found]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportRefused([f"line {error.lineno}: not JSON ({error.msg})"]) from None
    items = document.get("products") if isinstance(document, Mapping) else document
    if not isinstance(items, list):
        raise ImportRefused(['the file must be {"products": [...]} or a list of products'])
    found: list[Found] = []
    for i, item in enumerate(items):
        where = f"products[{i}]"
        if not isinstance(item, Mapping):
            found.append((where, {}, [], [f"{where}: must be an object with id and name"]))
            continue
        unknown = sorted(set(item) - set(PRODUCT_FIELDS) - {"prices"})
        problems = [f"{where}: unknown fields {unknown} (fields are {', '.join(PRODUCT_FIELDS)}, prices)"] if unknown else []
        prices = []
        for j, price in enumerate(item.get("prices") or []):
            if not isinstance(price, Mapping):
                problems.append(f"{where}.prices[{j}]: must be an object with lookup_key and currency")
                continue
            strange = sorted(set(price) - set(PRICE_FIELDS) - {"product_id"})
            if strange:
                problems.append(f"{where}.prices[{j}]: unknown fields {strange} (fields are {', '.join(PRICE_FIELDS)})")
            prices.append((f"{where}.prices[{j}]", {k: v for k, v in price.items() if k in PRICE_FIELDS}))
        found.append((where, {k: v for k, v in item.items() if k in PRODUCT_FIELDS}, prices, problems))
    return found


def _checked(found: Iterable[Found]) -> list[Entry]:
    entries: list[Entry] = []
    problems: list[str] = []
    keys: dict[str, str] = {}
    for where, values, prices, said in found:
        problems += said
        if said:
            continue
        wrong = _not_text(values) + [f"prices[{j}].{n}" for j, (_, p) in enumerate(prices) for n in _not_text(p)]
        if wrong:
            problems.append(f"{where}: {', '.join(wrong)} must be text")
            continue
        try:
            product = CatalogProduct(**values)
            validate_product(product)
        except (TypeError, InvalidProduct) as error:
            problems.append(f"{where}: {_reason(error, values)}")
            continue
        entry = Entry(where, product, set(values))
        for price_where, price_values in prices:
            try:
                price = CatalogPrice(product_id=product.id, **price_values)
                validate_price(price)
            except (TypeError, InvalidPrice) as error:
                problems.append(f"{price_where}: {_reason(error, price_values)}")
                continue
            if price.lookup_key in keys:
                problems.append(f"{price_where}: lookup key {price.lookup_key!r} is already used at {keys[price.lookup_key]}; lookup keys are unique")
                continue
            keys[price.lookup_key] = price_where
            entry.prices.append((price_where, price, set(price_values)))
        entries.append(entry)
    if problems:
        raise ImportRefused(problems)
    return entries


TEXT_FIELDS = {"id", "name", "description", "statement_descriptor", "tax_code", "unit_label", "url", "default_price", "account", "lookup_key", "currency",
               "unit_amount_decimal", "billing_scheme", "tiers_mode", "recurring_interval", "recurring_usage_type", "tax_behavior", "nickname"}  # fmt: skip


def _not_text(values: Mapping[str, Any]) -> list[str]:
    return [name for name, value in values.items() if name in TEXT_FIELDS and value is not None and not isinstance(value, str)]


def _reason(error: Exception, values: Mapping[str, Any]) -> str:
    if isinstance(error, TypeError):  # a required field missing
        missing = [name for name in ("id", "name", "lookup_key", "currency") if name in str(error)]
        return f"{', '.join(missing) or 'a required field'} is missing"
    return str(error)


# -- writing a file into the catalog, and the catalog into a file --------------------------------


@dataclass
class Imported:
    products_created: int = 0
    products_changed: int = 0
    prices_added: int = 0
    prices_changed: int = 0


def import_entries(catalog: Catalog, entries: list[Entry]) -> Imported:
    """Write the file's products and prices in one transaction (their outbox rows with them):
    new products created, existing ones changed in the fields the file gives; prices added
    or changed by lookup key. A refusal names the row; then nothing is written."""
    catalog.require_own_tables("recon-pipeline catalog import")
    counts = Imported()
    with changes.edits(catalog) as conn:
        for entry in entries:
            try:
                _import(catalog, conn, entry, counts)
            except (InvalidProduct, InvalidPrice) as error:
                raise ImportRefused([f"{entry.where}: {error}"]) from None
    return counts


def _import(catalog: Catalog, conn: Connection, entry: Entry, counts: Imported) -> None:
    product = entry.product
    if catalog.row(conn, product.id) is None:
        changes.create_product(catalog, product, [p for _, p, _ in entry.prices], conn)
        counts.products_created += 1
        counts.prices_added += len(entry.prices)
        return
    for where, price, given in entry.prices:
        owner = changes.price_owner(conn, price.lookup_key)
        if owner is not None and owner != product.id:
            raise InvalidPrice(f"{where}: lookup key {price.lookup_key!r} is a price of product {owner!r}; lookup keys are unique")
        if owner is not None:
            wanted = {name: getattr(price, name) for name in given if name != "lookup_key"}
            counts.prices_changed += changes.change_price(catalog, price.lookup_key, conn, **wanted)
        else:
            changes.add_price(catalog, price, conn=conn)
            counts.prices_added += 1
    wanted = {name: getattr(product, name) for name in entry.given if name != "id"}
    counts.products_changed += bool(wanted) and changes.update_product(catalog, product.id, conn, **wanted)


def export_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """Every catalog product with its prices, as the JSON form has them."""
    by_product: dict[str, list[dict[str, Any]]] = {}
    for row in catalog.price_rows().to_dict("records"):
        by_product.setdefault(str(row["product_id"]), []).append(_present(row, PRICE_FIELDS))
    return [{**_present(row, PRODUCT_FIELDS), "prices": by_product.get(str(row["id"]), [])} for row in catalog.rows().to_dict("records")]


def _present(row: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    values = {name: _plain(name, row.get(name)) for name in names}
    return {name: value for name, value in values.items() if value not in (None, {}, [])}


def _plain(name: str, value: Any) -> Any:
    """A value as read (a numpy scalar, a float pandas made of a whole number, JSON text from a
    user's text column) as the file holds it."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and value.is_integer():  # a whole number pandas read as float (a column with NULLs)
        return int(value)
    if name in JSON_FIELDS and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps({"products": rows}, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for product in rows:
        cells = {column: _cell(product.get(name)) for column, name in PRODUCT_CSV.items()}
        if not product["prices"]:
            writer.writerow(cells)
        for price in product["prices"]:
            row = dict(cells, **{column: _cell(price.get(name)) for column, name in PRICE_CSV.items()})
            row[DEFAULT] = "true" if product.get("default_price") == price["lookup_key"] else ""
            row[AMOUNT] = _main_units(price)
            writer.writerow(row)
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _main_units(price: Mapping[str, Any]) -> str:
    smallest = price.get("unit_amount") if price.get("unit_amount") is not None else price.get("unit_amount_decimal")
    if smallest is None:
        return ""
    places = exponent(str(price["currency"]))
    value = Decimal(str(smallest)).scaleb(-places)
    if -int(value.as_tuple().exponent) < places:  # at least the currency's places: 15 -> 15.00
        value = value.quantize(Decimal(1).scaleb(-places))
    return format(value, "f")
