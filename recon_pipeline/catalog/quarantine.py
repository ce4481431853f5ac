"""Quarantine: catalog rows Stripe would refuse are set aside with their reason.

A bad row (a NULL or duplicated id, a negative or fractional amount, an unknown currency,
a name or metadata beyond Stripe's limits, text that is not UTF-8) must not block the rest
of the catalog, and must not be half-synced. `split_valid` keeps the good rows and
returns each bad one with a reason naming the value; `record` brings the `quarantine` table
up to date with the current set (and releases the rows fixed since), where `catalog_drift`
also finds them, so a quarantined product is never mistaken for an orphan in Stripe.
`recon-pipeline quarantine list` shows them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
from sqlalchemy import Engine, delete, insert, select, text, update

from recon_pipeline.catalog.prices import PRICE_COLUMNS, CatalogPrice, InvalidPrice, validate_price
from recon_pipeline.catalog.products import PRODUCT_COLUMNS, CatalogProduct, InvalidProduct, validate_product
from recon_pipeline.catalog.schema import quarantine
from recon_pipeline.names import DEFAULT_ACCOUNT

PRODUCT, PRICE = "product", "price"


def _json_value(row: dict[str, Any], name: str, label: str) -> Any:
    """A JSON column's value: as stored, or parsed from text (a user's table may hold JSON as text)."""
    value = row.get(name)
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else None
        except ValueError:
            raise InvalidProduct(f"{label}: {name}={value[:40]!r} is not JSON") from None
    return value


def _whole(value: Any) -> Any:
    """An amount as an int when it is whole; anything else kept as it is, so validation can name it."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    return value


def _blank(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def _product(row: dict[str, Any]) -> CatalogProduct:
    label = f"product {row.get('id')!r}"
    # Values as they are in the row, bad ones too: validate_product names what is wrong.
    return CatalogProduct(
        id=row.get("id"),  # type: ignore[arg-type]
        name=row.get("name"),  # type: ignore[arg-type]
        description=_blank(row.get("description")),
        active=bool(row.get("active", True)),
        metadata=_json_value(row, "metadata", label) or {},
        marketing_features=_json_value(row, "marketing_features", label) or [],
        images=_json_value(row, "images", label) or [],
        package_dimensions=_json_value(row, "package_dimensions", label),
        shippable=None if _blank(row.get("shippable")) is None else bool(row["shippable"]),
        statement_descriptor=_blank(row.get("statement_descriptor")),
        tax_code=_blank(row.get("tax_code")),
        unit_label=_blank(row.get("unit_label")),
        url=_blank(row.get("url")),
        default_price=_blank(row.get("default_price")),
    )


def catalog_price(row: dict[str, Any]) -> CatalogPrice:
    """A price row (from any source) as a CatalogPrice, values as they are, for validation."""
    label = f"price {row.get('lookup_key')!r}"
    try:
        count = _whole(row.get("recurring_interval_count"))
        return CatalogPrice(
            lookup_key=row.get("lookup_key"),  # type: ignore[arg-type]
            product_id=None if _blank(row.get("product_id")) is None else str(row["product_id"]),  # type: ignore[arg-type]
            currency=_blank(row.get("currency")),
            unit_amount=_whole(row.get("unit_amount")),
            unit_amount_decimal=None if _blank(row.get("unit_amount_decimal")) is None else str(row["unit_amount_decimal"]),
            active=bool(row.get("active", True)),
            billing_scheme=_blank(row.get("billing_scheme")) or "per_unit",
            tiers_mode=_blank(row.get("tiers_mode")),
            tiers=_json_value(row, "tiers", label),
            recurring_interval=_blank(row.get("recurring_interval")) or None,
            recurring_interval_count=count,
            recurring_usage_type=_blank(row.get("recurring_usage_type")),
            transform_quantity=_json_value(row, "transform_quantity", label),
            currency_options=_json_value(row, "currency_options", label),
            custom_unit_amount=_json_value(row, "custom_unit_amount", label),
            tax_behavior=_blank(row.get("tax_behavior")),
            nickname=_blank(row.get("nickname")),
            metadata=_json_value(row, "metadata", label) or {},
        )
    except InvalidProduct as error:
        raise InvalidPrice(str(error)) from None


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if value is None or isinstance(value, (bool, int, float, dict, list)):
        return None if isinstance(value, float) and pd.isna(value) else value
    return str(value)


QUARANTINE_LOCK = 727_275  # the advisory lock that serializes rewrites of the quarantine on PostgreSQL


def split_valid(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """(the rows that can be synced, [{product_id, reason, row}] for those that cannot)."""
    bad: list[dict[str, Any]] = []
    keep = []
    ids = rows["id"]
    duplicated = set(ids[ids.duplicated(keep=False) & ids.notna()].astype(str))
    for position, row in enumerate(rows.to_dict("records")):
        product_id = row.get("id")
        reason = None
        if product_id is not None and not pd.isna(product_id) and str(product_id) in duplicated:
            reason = f"product id {str(product_id)!r} appears more than once in the catalog; make it unique"
        else:
            try:
                if product_id is None or pd.isna(product_id):
                    raise InvalidProduct(f"product id {product_id!r} is NULL; every product needs an id")
                validate_product(_product(row))
            except InvalidProduct as error:
                reason = str(error)
        if reason:
            known = None if product_id is None or pd.isna(product_id) else _plain(str(product_id))
            bad.append({"product_id": known, "reason": reason, "row": {k: _plain(row.get(k)) for k in PRODUCT_COLUMNS if k in row}})
        else:
            keep.append(position)
    return rows.iloc[keep].reset_index(drop=True), bad


def sold_in(rows: pd.DataFrame) -> pd.Series:
    """Each product row's Stripe account: its `account`, or the default one where it names none."""
    if "account" not in rows:
        return pd.Series(DEFAULT_ACCOUNT, index=rows.index, dtype=object)
    return rows["account"].fillna(DEFAULT_ACCOUNT).astype(str)


def split_accounts(rows: pd.DataFrame, accounts: list[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """(the product rows sold in one of `accounts`, [{product_id, reason, row}] for those sold in another).

    A product of an account RECON_STRIPE_ACCOUNTS does not name has nowhere to be synced: it is
    quarantined with that reason, never written to another account."""
    account = sold_in(rows)
    elsewhere = ~account.isin(accounts)
    bad = [
        {
            "product_id": _plain(str(row["id"])) if row.get("id") is not None else None,
            "reason": f"product {row.get('id')!r} is sold in the Stripe account {name!r}, which RECON_STRIPE_ACCOUNTS does not name "
            f"({', '.join(accounts)}); add the account there or correct the row's account",
            "row": {k: _plain(row.get(k)) for k in PRODUCT_COLUMNS if k in row},
        }
        for (_, row), name in zip(rows[elsewhere].iterrows(), account[elsewhere], strict=True)
    ]
    return rows[~elsewhere].reset_index(drop=True), bad


def split_valid_prices(rows: pd.DataFrame, product_ids: set[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """(the price rows that can be synced, [{product_id, reason, row}] for those that cannot).

    A price can be synced when Stripe would take it and its product is a catalog product
    that can be synced; a lookup key must appear once.
    """
    bad: list[dict[str, Any]] = []
    keep = []
    keys = rows["lookup_key"]
    duplicated = set(keys[keys.duplicated(keep=False) & keys.notna()].astype(str))
    for position, row in enumerate(rows.to_dict("records")):
        key = row.get("lookup_key")
        product_id = None if _blank(row.get("product_id")) is None else str(row["product_id"])
        reason = None
        if product_id not in product_ids:
            reason = f"price {key!r}: product_id={product_id!r} is not a catalog product that can be synced (missing or quarantined)"
        elif key is not None and str(key) in duplicated:
            reason = f"price lookup_key {str(key)!r} appears more than once in the catalog; make it unique"
        else:
            try:
                validate_price(catalog_price(row))
            except InvalidPrice as error:
                reason = str(error)
        if reason:
            bad.append({"product_id": None if product_id is None else _plain(product_id), "reason": reason, "row": {k: _plain(row.get(k)) for k in PRICE_COLUMNS if k in row}})
        else:
            keep.append(position)
    return rows.iloc[keep].reset_index(drop=True), bad


RELEASED_KEPT = dt.timedelta(days=30)  # how long a released row stays listed (`quarantine list --all`)


def record(engine: Engine, bad: list[dict[str, Any]], kind: str = PRODUCT) -> None:
    """Bring the quarantine of one kind of row (product or price) up to date with the current set
    of bad rows: a row held already keeps the time it was first set aside, a new one comes in,
    and a held row no longer bad (fixed or removed in the catalog) is released, now."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # runs of several accounts' partitions rewrite it at once: one at a time
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUARANTINE_LOCK})
        held: dict[tuple, list[int]] = {}
        for r in conn.execute(select(quarantine.c.id, quarantine.c.product_id, quarantine.c.lookup_key, quarantine.c.reason).where(quarantine.c.kind == kind, quarantine.c.released_at.is_(None))):
            held.setdefault((r.product_id, r.lookup_key, r.reason), []).append(r.id)
        for item in bad:
            lookup_key = (item.get("row") or {}).get("lookup_key") if kind == PRICE else None
            lookup_key = None if lookup_key is None else str(lookup_key)
            still = held.get((item["product_id"], lookup_key, item["reason"]))
            if still:
                still.pop()
            else:
                conn.execute(insert(quarantine).values(at=now, kind=kind, lookup_key=lookup_key, **item))
        released = [row_id for ids in held.values() for row_id in ids]
        for start in range(0, len(released), 500):
            conn.execute(update(quarantine).where(quarantine.c.id.in_(released[start : start + 500])).values(released_at=now))
        conn.execute(delete(quarantine).where(quarantine.c.kind == kind, quarantine.c.released_at < now - RELEASED_KEPT))


def listed(engine: Engine, include_released: bool = False) -> list[dict[str, Any]]:
    """The quarantine's rows, products before prices, oldest first: the held ones, or every one."""
    query = select(quarantine.c.id, quarantine.c.at, quarantine.c.kind, quarantine.c.product_id, quarantine.c.lookup_key, quarantine.c.reason, quarantine.c.released_at)
    if not include_released:
        query = query.where(quarantine.c.released_at.is_(None))
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query.order_by(quarantine.c.kind.desc(), quarantine.c.at, quarantine.c.id))]
    return rows


def quarantined_ids(engine: Engine) -> set[str]:
    """The products held back from sync (their Stripe side is left alone, not an orphan)."""
    with engine.connect() as conn:
        return {r.product_id for r in conn.execute(select(quarantine.c.product_id).where(quarantine.c.kind == PRODUCT, quarantine.c.released_at.is_(None))) if r.product_id}


def quarantined_lookup_keys(engine: Engine) -> set[str]:
    """The prices held back from sync, by lookup key (their Stripe price is left alone)."""
    with engine.connect() as conn:
        return {r.lookup_key for r in conn.execute(select(quarantine.c.lookup_key).where(quarantine.c.kind == PRICE, quarantine.c.released_at.is_(None))) if r.lookup_key}
