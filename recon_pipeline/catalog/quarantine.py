"""Quarantine: catalog rows Stripe would refuse are set aside with their reason.

A bad row (a NULL or duplicated id, a negative or fractional amount, an unknown currency,
a name or metadata beyond Stripe's limits, text that is not UTF-8) must not block the rest
of the catalog, and must not be half-synced. `split_valid` keeps the good rows and
returns each bad one with a reason naming the value; `record` stores the current set in
the `quarantine` table, where `catalog_drift` also finds them, so a quarantined product
is never mistaken for an orphan in Stripe.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
from sqlalchemy import Engine, delete, insert, select

from recon_pipeline.catalog.schema import quarantine
from recon_pipeline.catalog.store import CatalogProduct, InvalidProduct, validate_product

FIELDS = ("id", "name", "description", "active", "metadata", "unit_amount", "currency", "recurring_interval")


def _product(row: dict[str, Any]) -> CatalogProduct:
    metadata = row.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata) if metadata.strip() else {}
        except ValueError:
            raise InvalidProduct(f"product {row.get('id')!r}: metadata={metadata[:40]!r} is not a JSON object") from None
    amount = row.get("unit_amount")
    if amount is None or pd.isna(amount):
        amount = None
    elif float(amount).is_integer():
        amount = int(amount)
    else:
        amount = float(amount)  # kept as it is, so validation can name it
    # Values as they are in the row, bad ones too: validate_product names what is wrong.
    fields: dict[str, Any] = dict(
        id=row.get("id"),
        name=row.get("name"),
        description=row.get("description"),
        active=bool(row.get("active", True)),
        metadata=metadata or {},
        unit_amount=amount,
        currency=row.get("currency"),
        recurring_interval=row.get("recurring_interval"),
    )
    return CatalogProduct(**fields)


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if value is None or isinstance(value, (bool, int, float, dict, list)):
        return None if isinstance(value, float) and pd.isna(value) else value
    return str(value)


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
            bad.append({"product_id": None if product_id is None or pd.isna(product_id) else _plain(str(product_id)), "reason": reason, "row": {k: _plain(row.get(k)) for k in FIELDS}})
        else:
            keep.append(position)
    return rows.iloc[keep].reset_index(drop=True), bad


def record(engine: Engine, bad: list[dict[str, Any]]) -> None:
    """Replace the quarantine with the current set of bad rows."""
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(delete(quarantine))
        for item in bad:
            conn.execute(insert(quarantine).values(at=now, **item))


def quarantined_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {r.product_id for r in conn.execute(select(quarantine.c.product_id)) if r.product_id}
