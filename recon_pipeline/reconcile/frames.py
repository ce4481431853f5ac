"""Both sides of the reconciliation as one canonical frame shape.

The diff compares these frames column by column, so every representational difference
that is not a real difference is removed here, once:

- description: None and "" are the same (Stripe stores an empty description as null);
- metadata: None and {} are the same; values are strings (Stripe stores only strings);
  a key with an empty value does not exist (Stripe removes it); keys are sorted;
- currency: lower case, as Stripe returns it ("USD" == "usd");
- text: Unicode NFC, so the same visible text typed two ways is not drift;
- unit_amount: nullable integer, <NA> when the product has no price;
- interval: "" for a one-time price or no price.

Text columns are Arrow-backed strings (`TEXT_DTYPE`): the diff compares them with Arrow's
vectorized kernels without converting anything first.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

TEXT_DTYPE = pd.StringDtype("pyarrow")
COMPARED_FIELDS = ("name", "description", "active", "metadata", "unit_amount", "currency", "interval")
FRAME_COLUMNS = ("product_id", *COMPARED_FIELDS)
# Columns kept beside the compared fields of the Stripe side, for repair and for the UI.
STRIPE_EXTRA_COLUMNS = ("stripe_id", "default_price_id", "lookup_key", "created", "updated")
# Kept beside the compared fields of the catalog side: when the row last changed (repair
# keys its idempotent writes on it, so a new edit is a new write and a re-run is a replay).
LOCAL_EXTRA_COLUMNS = ("updated_at",)
TEXT_COLUMNS = ("product_id", "name", "description", "metadata", "currency", "interval")


def _with_text_dtype(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({column: TEXT_DTYPE for column in TEXT_COLUMNS})


def canonical_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return unicodedata.normalize("NFC", str(value))


def canonical_metadata(value: Any) -> str:
    """Metadata as sorted compact JSON of string values, "{}" for none."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "{}"
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, Mapping):
        raise ValueError(f"metadata {value!r} is not a mapping; store it as a JSON object")
    items = {
        canonical_text(k): canonical_text(v)
        for k, v in value.items()
        if v is not None and canonical_text(v) != ""
    }
    return json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stripe_product_id(catalog_id: str, prefix: str = "") -> str:
    """The Stripe product id derived from a catalog id, so a lost response never duplicates."""
    return f"{prefix}{catalog_id}"


def catalog_id_from_stripe(stripe_id: str, prefix: str = "") -> str:
    return stripe_id[len(prefix):] if prefix and stripe_id.startswith(prefix) else stripe_id


def local_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Canonical frame of catalog rows (columns of the `products` table)."""
    frame = pd.DataFrame(
        {
            "product_id": rows["id"].astype(object).map(str),
            "name": rows["name"].map(canonical_text),
            "description": rows["description"].map(canonical_text),
            "active": rows["active"].astype(bool),
            "metadata": rows["metadata"].map(canonical_metadata),
            "unit_amount": pd.array(rows["unit_amount"], dtype="Int64"),
            "currency": rows["currency"].map(canonical_text).str.lower(),
            "interval": rows["recurring_interval"].map(canonical_text),
            "updated_at": pd.to_datetime(rows["updated_at"], utc=True) if "updated_at" in rows else pd.NaT,
        },
        columns=[*FRAME_COLUMNS, *LOCAL_EXTRA_COLUMNS],
    )
    return _with_text_dtype(frame.reset_index(drop=True))


def stripe_frame(products: Iterable[Mapping[str, Any]], prefix: str = "") -> pd.DataFrame:
    """Canonical frame of Stripe products whose `default_price` is expanded (dict) or None."""
    records = []
    for product in products:
        price = product.get("default_price")
        if isinstance(price, str):
            raise ValueError(
                f"product {product['id']!r} has default_price {price!r} unexpanded; "
                "list products with expand[]=data.default_price"
            )
        price = price or {}
        recurring = price.get("recurring") or {}
        records.append(
            (
                catalog_id_from_stripe(product["id"], prefix),
                canonical_text(product.get("name")),
                canonical_text(product.get("description")),
                bool(product.get("active")),
                canonical_metadata(product.get("metadata")),
                price.get("unit_amount"),
                canonical_text(price.get("currency")).lower(),
                canonical_text(recurring.get("interval")),
                product["id"],
                price.get("id"),
                price.get("lookup_key"),
                product.get("created"),
                product.get("updated"),
            )
        )
    frame = pd.DataFrame.from_records(records, columns=[*FRAME_COLUMNS, *STRIPE_EXTRA_COLUMNS])
    frame["active"] = frame["active"].astype(bool)
    frame["unit_amount"] = pd.array(frame["unit_amount"], dtype="Int64")
    return _with_text_dtype(frame)
