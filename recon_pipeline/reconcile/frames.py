"""Both sides of the reconciliation as canonical frames: products, and prices by lookup key.

The diff compares these frames column by column, so every representational difference
that is not a real difference is removed here, once:

- text: Unicode NFC; None and "" are the same (Stripe stores an empty description as null);
- metadata: None and {} are the same; values are strings; a key with an empty value does
  not exist (Stripe removes it); keys sorted;
- currency: lower case ("USD" == "usd");
- lists (images, marketing features): empty and missing are the same; a marketing feature
  is its name (Stripe answers `[{"name": ...}]`);
- shippable: unset and false are the same; package dimensions as numbers ("20" == 20.0);
- amounts: one decimal string, whichever of `unit_amount` and `unit_amount_decimal` holds it
  ("1500" == 1500 == "1500.000");
- tiers: each tier's amounts as decimals, and the last tier's `up_to` "inf" (Stripe answers
  null, the catalog writes "inf");
- currency_options: only the price's *other* currencies (Stripe's expanded answer repeats
  its own), each option's tax_behavior `unspecified` when unset;
- tax_behavior: unset is `unspecified`; a one-time price has no interval, count or usage type.

Text columns are Arrow-backed strings (`TEXT_DTYPE`): the diff compares them with Arrow's
vectorized kernels without converting anything first.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd
import pyarrow as pa

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.quarantine import sold_in, split_accounts, split_valid, split_valid_prices
from recon_pipeline.catalog.store import of_account
from recon_pipeline.fields import COMPARED_FIELDS, PRICE_COMPARED_FIELDS  # the registry: `_price_record` builds a price in PRICE_COMPARED_FIELDS' order

TEXT_DTYPE = pd.StringDtype("pyarrow")
FRAME_COLUMNS = ("product_id", *COMPARED_FIELDS)
# Kept beside the compared fields of the Stripe side, for repair and for the UI.
STRIPE_EXTRA_COLUMNS = ("stripe_id", "default_price_id", "created", "updated")
# Kept beside the compared fields of the catalog side: when the row last changed (repair
# keys its idempotent writes on it, so a new edit is a new write and a re-run is a replay).
LOCAL_EXTRA_COLUMNS = ("updated_at",)
TEXT_COLUMNS = tuple(c for c in FRAME_COLUMNS if c != "active")

PRICE_FRAME_COLUMNS = ("lookup_key", *PRICE_COMPARED_FIELDS)
# The Stripe price's id, when it was created, and the lookup key of the price that replaced
# it (metadata `recon_replaced_by`, written by repair before it moves the key).
STRIPE_PRICE_EXTRA_COLUMNS = ("price_id", "created", "replaced_by")
PRICE_TEXT_COLUMNS = tuple(c for c in PRICE_FRAME_COLUMNS if c != "active")
REPLACED_BY = "recon_replaced_by"


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA


def canonical_text(value: Any) -> str:
    if _is_null(value):
        return ""
    return unicodedata.normalize("NFC", str(value))


def _loaded(value: Any) -> Any:
    """A JSON value as stored: parsed when it is text (a user's table may keep JSON as text)."""
    if isinstance(value, str):
        return json.loads(value) if value.strip() else None
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_metadata(value: Any) -> str:
    """Metadata as sorted compact JSON of string values, "{}" for none."""
    value = None if _is_null(value) else _loaded(value)
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise ValueError(f"metadata {value!r} is not a mapping; store it as a JSON object")
    items = {canonical_text(k): canonical_text(v) for k, v in value.items() if not _is_null(v) and canonical_text(v) != ""}
    return _dumps(items)


def canonical_decimal(value: Any) -> str:
    """An amount as its shortest exact decimal text ("1500", "0.125"), "" for none."""
    if _is_null(value) or value == "":
        return ""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    text = format(number.normalize(), "f")
    return text if "." in text else str(int(number))


def canonical_amount(amount: Any, amount_decimal: Any) -> str:
    return canonical_decimal(amount) if not _is_null(amount) else canonical_decimal(amount_decimal)


def canonical_list(value: Any, item: Callable[[Any], Any] = canonical_text) -> str:
    value = None if _is_null(value) else _loaded(value)
    return _dumps([item(v) for v in value]) if value else "[]"


def _feature_name(feature: Any) -> str:
    return canonical_text(feature.get("name") if isinstance(feature, Mapping) else feature)


def canonical_features(value: Any) -> str:
    """Marketing features as their names, in order."""
    return canonical_list(value, _feature_name)


def canonical_dimensions(value: Any) -> str:
    value = None if _is_null(value) else _loaded(value)
    if not value:
        return ""
    return _dumps({k: float(v) for k, v in value.items()})


def canonical_flag(value: Any) -> str:
    """A flag that is false when unset (shippable): "true" or "false"."""
    return "true" if not _is_null(value) and bool(value) else "false"


def _tiers(value: Any) -> list[dict[str, str]]:
    value = None if _is_null(value) else _loaded(value)
    return [
        {
            "flat_amount": canonical_amount(tier.get("flat_amount"), tier.get("flat_amount_decimal")),
            "unit_amount": canonical_amount(tier.get("unit_amount"), tier.get("unit_amount_decimal")),
            "up_to": "inf" if tier.get("up_to") in (None, "inf") else str(int(tier["up_to"])),
        }
        for tier in value or []
    ]


def canonical_tiers(value: Any) -> str:
    tiers = _tiers(value)
    return _dumps(tiers) if tiers else ""


def canonical_custom_amount(value: Any) -> str:
    value = None if _is_null(value) else _loaded(value)
    if not value:
        return ""
    return _dumps({k: canonical_decimal(value.get(k)) for k in ("maximum", "minimum", "preset")})


def canonical_transform(value: Any) -> str:
    value = None if _is_null(value) else _loaded(value)
    if not value:
        return ""
    return _dumps({"divide_by": str(int(value["divide_by"])), "round": canonical_text(value.get("round"))})


def canonical_tax_behavior(value: Any) -> str:
    return canonical_text(value) or "unspecified"


def canonical_currency_options(value: Any, own_currency: Any) -> str:
    """The price's other currencies: currency -> its amounts, tiers, tax behavior."""
    value = None if _is_null(value) else _loaded(value)
    own = canonical_text(own_currency).lower()
    options = {}
    for currency, option in (value or {}).items():
        if currency.lower() == own:
            continue
        entry = {"tax_behavior": canonical_tax_behavior(option.get("tax_behavior")), "unit_amount": canonical_amount(option.get("unit_amount"), option.get("unit_amount_decimal"))}
        if option.get("tiers"):
            entry["tiers"] = _tiers(option["tiers"])  # type: ignore[assignment]
        if option.get("custom_unit_amount"):
            entry["custom_unit_amount"] = canonical_custom_amount(option["custom_unit_amount"])
        options[currency.lower()] = entry
    return _dumps(options) if options else ""


def _mapped(series: pd.Series, function: Callable[[Any], str], empty: str) -> pd.Series:
    """`function` of each value, `empty` for a missing one; only present values are visited (most optional columns are empty)."""
    present = series.notna()
    out = pd.Series(empty, index=series.index, dtype=object)
    if present.any():
        out[present] = series[present].map(function)
    return out


def stripe_product_id(catalog_id: str, prefix: str = "") -> str:
    """The Stripe product id derived from a catalog id, so a lost response never duplicates."""
    return f"{prefix}{catalog_id}"


def catalog_id_from_stripe(stripe_id: str, prefix: str = "") -> str:
    return stripe_id[len(prefix):] if prefix and stripe_id.startswith(prefix) else stripe_id


def _typed(frame: pd.DataFrame, text_columns: Iterable[str]) -> pd.DataFrame:
    return frame.astype({column: TEXT_DTYPE for column in text_columns})


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    return rows[name] if name in rows else pd.Series(None, index=rows.index, dtype=object)


def local_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Canonical frame of catalog product rows (columns of the `products` table)."""
    col = lambda name: _column(rows, name)
    frame = pd.DataFrame(
        {
            "product_id": rows["id"].astype(object).map(str),
            "name": rows["name"].map(canonical_text),
            "description": _mapped(col("description"), canonical_text, ""),
            "active": rows["active"].astype(bool),
            "metadata": _mapped(col("metadata"), canonical_metadata, "{}"),
            "marketing_features": _mapped(col("marketing_features"), canonical_features, "[]"),
            "images": _mapped(col("images"), canonical_list, "[]"),
            "package_dimensions": _mapped(col("package_dimensions"), canonical_dimensions, ""),
            "shippable": _mapped(col("shippable"), canonical_flag, "false"),
            "statement_descriptor": _mapped(col("statement_descriptor"), canonical_text, ""),
            "tax_code": _mapped(col("tax_code"), canonical_text, ""),
            "unit_label": _mapped(col("unit_label"), canonical_text, ""),
            "url": _mapped(col("url"), canonical_text, ""),
            "default_price": _mapped(col("default_price"), canonical_text, ""),
            "updated_at": pd.to_datetime(rows["updated_at"], utc=True) if "updated_at" in rows else pd.NaT,
        },
        columns=[*FRAME_COLUMNS, *LOCAL_EXTRA_COLUMNS],
    )
    return _typed(frame.reset_index(drop=True), TEXT_COLUMNS)


def _product_record(product: Mapping[str, Any], prefix: str) -> tuple:
    price = product.get("default_price")
    price_id = price.get("id") if isinstance(price, Mapping) else price
    tax_code = product.get("tax_code")
    return (
        catalog_id_from_stripe(product["id"], prefix),
        canonical_text(product.get("name")),
        canonical_text(product.get("description")),
        bool(product.get("active")),
        canonical_metadata(product.get("metadata")),
        canonical_features(product.get("marketing_features")),
        canonical_list(product.get("images")),
        canonical_dimensions(product.get("package_dimensions")),
        canonical_flag(product.get("shippable")),
        canonical_text(product.get("statement_descriptor")),
        canonical_text(tax_code.get("id") if isinstance(tax_code, Mapping) else tax_code),
        canonical_text(product.get("unit_label")),
        canonical_text(product.get("url")),
        # The default price's id: the diff reads its lookup key from the prices snapshot.
        canonical_text(price_id),
        product["id"],
        price_id,
        product.get("created"),
        product.get("updated"),
    )


# The Arrow type of each canonical column of the Stripe side; text columns become TEXT_DTYPE
# in the frame, the others (ids kept for repair, `created`) plain pandas columns.
STRIPE_PRODUCT_SCHEMA = pa.schema(
    [(c, pa.bool_() if c == "active" else pa.string()) for c in FRAME_COLUMNS]
    + [("stripe_id", pa.string()), ("default_price_id", pa.string()), ("created", pa.int64()), ("updated", pa.int64())]
)
STRIPE_PRICE_SCHEMA = pa.schema(
    [(c, pa.bool_() if c == "active" else pa.string()) for c in PRICE_FRAME_COLUMNS]
    + [("price_id", pa.string()), ("created", pa.int64()), ("replaced_by", pa.string())]
)
FRAME_TEXT_COLUMNS = frozenset((*TEXT_COLUMNS, *PRICE_TEXT_COLUMNS, "price_id", "replaced_by"))


def _record_batch(records: list[tuple], schema: pa.Schema) -> pa.RecordBatch:
    """Rows (tuples in the schema's order) as one Arrow record batch, column by column."""
    columns = list(zip(*records, strict=True)) if records else [()] * len(schema)
    return pa.RecordBatch.from_arrays([pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)], schema=schema)


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """A canonical Arrow table as the frame the diff and repair read: text columns stay in
    Arrow (no copy, however many batches the table has), the rest become pandas columns."""
    return pd.DataFrame(
        {
            f.name: pd.arrays.ArrowStringArray(table.column(f.name)) if f.name in FRAME_TEXT_COLUMNS else table.column(f.name).to_pandas()
            for f in table.schema
        }
    )


def stripe_product_batch(products: Iterable[Mapping[str, Any]], prefix: str = "") -> pa.RecordBatch:
    """Stripe products (their `default_price` an id, or expanded) as canonical rows in Arrow."""
    return _record_batch([_product_record(p, prefix) for p in products], STRIPE_PRODUCT_SCHEMA)


def stripe_frame(products: Iterable[Mapping[str, Any]], prefix: str = "") -> pd.DataFrame:
    """Canonical frame of Stripe products (their `default_price` an id, or expanded)."""
    return arrow_to_frame(pa.Table.from_batches([stripe_product_batch(products, prefix)]))


def local_price_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Canonical frame of catalog price rows (columns of the `prices` table)."""
    col = lambda name: _column(rows, name)
    currency = rows["currency"].map(canonical_text).str.lower()
    recurring = col("recurring_interval").map(canonical_text)
    is_recurring = recurring != ""
    amount = [canonical_amount(a, d) for a, d in zip(col("unit_amount"), col("unit_amount_decimal"), strict=True)]
    options = [canonical_currency_options(o, c) if not _is_null(o) else "" for o, c in zip(col("currency_options"), currency, strict=True)]
    count = col("recurring_interval_count").map(lambda v: "" if _is_null(v) else str(int(v)))
    usage = col("recurring_usage_type").map(canonical_text)
    frame = pd.DataFrame(
        {
            "lookup_key": rows["lookup_key"].astype(object).map(str),
            "product_id": rows["product_id"].astype(object).map(str),
            "active": col("active").map(lambda v: True if _is_null(v) else bool(v)).astype(bool),
            "currency": currency,
            "unit_amount": amount,
            "billing_scheme": col("billing_scheme").map(lambda v: canonical_text(v) or "per_unit"),
            "tiers_mode": _mapped(col("tiers_mode"), canonical_text, ""),
            "tiers": _mapped(col("tiers"), canonical_tiers, ""),
            "recurring_interval": recurring,
            # A recurring price counts 1 and is licensed unless it says otherwise.
            "recurring_interval_count": count.where(~is_recurring | (count != ""), "1").where(is_recurring, ""),
            "recurring_usage_type": usage.where(~is_recurring | (usage != ""), "licensed").where(is_recurring, ""),
            "transform_quantity": _mapped(col("transform_quantity"), canonical_transform, ""),
            "currency_options": options,
            "custom_unit_amount": _mapped(col("custom_unit_amount"), canonical_custom_amount, ""),
            "tax_behavior": col("tax_behavior").map(canonical_tax_behavior),
            "nickname": _mapped(col("nickname"), canonical_text, ""),
            "metadata": _mapped(col("metadata"), canonical_metadata, "{}"),
            "updated_at": pd.to_datetime(col("updated_at"), utc=True),
        },
        columns=[*PRICE_FRAME_COLUMNS, *LOCAL_EXTRA_COLUMNS],
    )
    return _typed(frame.reset_index(drop=True), PRICE_TEXT_COLUMNS)


def _price_record(price: Mapping[str, Any], prefix: str) -> tuple:
    """One Stripe price as a row of PRICE_FRAME_COLUMNS then STRIPE_PRICE_EXTRA_COLUMNS (a tuple: millions of them)."""
    recurring = price.get("recurring") or {}
    product = price.get("product")
    product_id = product.get("id") if isinstance(product, Mapping) else product
    metadata = price.get("metadata") or {}
    return (
        canonical_text(price.get("lookup_key")),
        catalog_id_from_stripe(canonical_text(product_id), prefix),
        bool(price.get("active")),
        canonical_text(price.get("currency")).lower(),
        canonical_amount(price.get("unit_amount"), price.get("unit_amount_decimal")),
        canonical_text(price.get("billing_scheme")) or "per_unit",
        canonical_text(price.get("tiers_mode")),
        canonical_tiers(price.get("tiers")),
        canonical_text(recurring.get("interval")),
        str(int(recurring.get("interval_count") or 1)) if recurring else "",
        canonical_text(recurring.get("usage_type") or "licensed") if recurring else "",
        canonical_transform(price.get("transform_quantity")),
        canonical_currency_options(price.get("currency_options"), price.get("currency")),
        canonical_custom_amount(price.get("custom_unit_amount")),
        canonical_tax_behavior(price.get("tax_behavior")),
        canonical_text(price.get("nickname")),
        canonical_metadata(metadata),
        price["id"],
        price.get("created"),
        canonical_text(metadata.get(REPLACED_BY)),
    )


def stripe_price_frame(prices: Iterable[Mapping[str, Any]], prefix: str = "") -> pd.DataFrame:
    """Canonical frame of Stripe prices, listed with `tiers` and `currency_options` expanded.

    A price without a lookup key has "" in `lookup_key`: it is not the catalog's.
    """
    return arrow_to_frame(pa.Table.from_batches([stripe_price_batch(prices, prefix)]))


def stripe_price_batch(prices: Iterable[Mapping[str, Any]], prefix: str = "") -> pa.RecordBatch:
    """Stripe prices (listed with `tiers` and `currency_options` expanded) as canonical rows in Arrow."""
    return _record_batch([_price_record(p, prefix) for p in prices], STRIPE_PRICE_SCHEMA)


def _joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Canonical frames of consecutive chunks as one (Arrow text columns are joined as chunks, not copied)."""
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def local_product_chunks(catalog: Catalog, accounts: list[str], account: str | None, bad: list[dict[str, Any]]) -> Iterator[pd.DataFrame]:
    """The canonical frames of the catalog's products that can be synced, a chunk at a time
    (only one chunk's raw rows held); each one set aside is added to `bad` ({product_id,
    reason, row}).

    A product sold in an account `accounts` does not name is set aside; with `account`, the
    frames hold that account's products only (the others are still checked)."""
    for chunk in catalog.row_chunks():
        rows, elsewhere = split_accounts(chunk, accounts)
        rows, invalid = split_valid(rows)
        bad += elsewhere + invalid
        if account is not None:
            rows = rows[sold_in(rows) == account].reset_index(drop=True)
        yield local_frame(rows)


def local_price_chunks(catalog: Catalog, syncable: set[str], of_products: set[str], bad: list[dict[str, Any]]) -> Iterator[pd.DataFrame]:
    """The canonical frames of the catalog's prices of `of_products`, a chunk at a time; every
    price that cannot be synced is added to `bad`. A price of a product not in `syncable`
    (missing or quarantined) is set aside."""
    for chunk in catalog.price_row_chunks():
        rows, invalid = split_valid_prices(chunk, syncable)
        bad += invalid
        wanted = pd.Series([str(product) in of_products for product in rows["product_id"]], index=rows.index, dtype=bool)
        yield local_price_frame(rows[wanted].reset_index(drop=True))


def read_local_products(catalog: Catalog, accounts: list[str], account: str | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """(the canonical frame of `local_product_chunks`, the products set aside)."""
    bad: list[dict[str, Any]] = []
    return _joined(list(local_product_chunks(catalog, accounts, account, bad))), bad


def read_local_prices(catalog: Catalog, syncable: set[str], of_products: set[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """(the canonical frame of `local_price_chunks`, the prices set aside)."""
    bad: list[dict[str, Any]] = []
    return _joined(list(local_price_chunks(catalog, syncable, of_products, bad))), bad


def catalog_frames(catalog: Catalog, ids: Iterable[str] | None = None, account: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The canonical frames of the catalog's products and prices that can be synced (all, or the
    given products; of one Stripe account, or of every one).

    Every reader that compares or pushes catalog state uses this, so a bad row is skipped
    the same way everywhere (local_products and local_prices also record why, in `quarantine`).
    """
    wanted = None if ids is None else [str(i) for i in ids]
    rows, price_rows = of_account(catalog.rows(wanted), catalog.price_rows(wanted), account)
    product_rows, _ = split_valid(rows)
    price_rows, _ = split_valid_prices(price_rows, set(product_rows["id"].astype(str)))
    return local_frame(product_rows), local_price_frame(price_rows)
