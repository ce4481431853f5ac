"""From drift to a repair plan: the writes, per product, in Stripe's order (no I/O).

| drift | action |
| --- | --- |
| missing_in_stripe | `create_product` (Stripe id derived from the catalog id), then its prices, then its default |
| field_mismatch | `update_product` (only the differing fields); `default_price` by `set_default_price` |
| price_missing_in_stripe | `create_price` (with its lookup key) |
| price_field_mismatch, mutable fields only | `update_price` in place (active, nickname, metadata, currency_options, tax_behavior from unspecified) |
| price_field_mismatch, any immutable term | `replace_price`: the old price is marked, the replacement takes its lookup key; then `set_default_price` if it was the default, then `archive_replaced` |
| price_orphan_in_stripe | per `RECON_PRICE_ORPHAN_POLICY`: `report_price_orphan` (no write), `archive_price_orphan`, `adopt_price_orphan` |
| price_orphan_in_stripe marked `recon_replaced_by` | a replacement cut off midway, finished: `archive_replaced` (default moved first) |
| orphan_in_stripe | per `RECON_ORPHAN_POLICY`: `report_orphan`, `archive_orphan`, `adopt_orphan` |

A price change replaces exactly one price: the one holding the changed lookup key. Nothing
the catalog does not own is archived, replaced or re-keyed as a side effect.

The plan carries the desired state from the catalog and what repair needs from Stripe
(metadata keys to remove, the prices' ids), so applying it needs no second snapshot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from recon_pipeline.catalog import CatalogProduct
from recon_pipeline.catalog.prices import CatalogPrice
from recon_pipeline.fields import IMMUTABLE_FIELDS, PRODUCT_FIELDS
from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.reconcile import (
    FIELD_MISMATCH,
    MISSING_IN_STRIPE,
    ORPHAN_IN_STRIPE,
    PRICE_FIELD_MISMATCH,
    PRICE_MISSING_IN_STRIPE,
    PRICE_ORPHAN_IN_STRIPE,
    shortened,
    syncable_defaults,
)
from recon_pipeline.reconcile.diff import PREVIEW_WIDTH

# Action names, in the order they are applied to one product.
CREATE_PRODUCT = "create_product"
UPDATE_PRODUCT = "update_product"
CREATE_PRICE = "create_price"
REPLACE_PRICE = "replace_price"
UPDATE_PRICE = "update_price"
SET_DEFAULT_PRICE = "set_default_price"
ARCHIVE_REPLACED = "archive_replaced"
ARCHIVE_PRICE_ORPHAN = "archive_price_orphan"
ADOPT_PRICE_ORPHAN = "adopt_price_orphan"
REPORT_PRICE_ORPHAN = "report_price_orphan"
ARCHIVE_ORPHAN = "archive_orphan"
ADOPT_ORPHAN = "adopt_orphan"
REPORT_ORPHAN = "report_orphan"
ACTION_ORDER = (
    CREATE_PRODUCT,
    UPDATE_PRODUCT,
    CREATE_PRICE,
    REPLACE_PRICE,
    UPDATE_PRICE,
    SET_DEFAULT_PRICE,
    ARCHIVE_REPLACED,
    ARCHIVE_PRICE_ORPHAN,
    ADOPT_PRICE_ORPHAN,
    REPORT_PRICE_ORPHAN,
    ARCHIVE_ORPHAN,
    ADOPT_ORPHAN,
    REPORT_ORPHAN,
)
WRITES_STRIPE = {CREATE_PRODUCT, UPDATE_PRODUCT, CREATE_PRICE, REPLACE_PRICE, UPDATE_PRICE, SET_DEFAULT_PRICE, ARCHIVE_REPLACED, ARCHIVE_PRICE_ORPHAN, ADOPT_PRICE_ORPHAN, ARCHIVE_ORPHAN}
PRICE_ACTIONS = {CREATE_PRICE, REPLACE_PRICE, UPDATE_PRICE, ARCHIVE_REPLACED, ARCHIVE_PRICE_ORPHAN, ADOPT_PRICE_ORPHAN, REPORT_PRICE_ORPHAN}


@dataclass(frozen=True)
class DesiredProduct:
    """The catalog's state of one product, as Stripe should hold it."""

    name: str
    description: str | None
    active: bool
    metadata: dict[str, str]
    marketing_features: list[str]
    images: list[str]
    package_dimensions: dict[str, float] | None
    shippable: bool
    statement_descriptor: str | None
    tax_code: str | None
    unit_label: str | None
    url: str | None
    default_price: str | None  # lookup key; None: the catalog does not choose
    version: str  # the catalog row's updated_at: part of every idempotency key

    def params(self, names: tuple[str, ...], stripe_metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """Stripe's parameters for these fields (`""` unsets; a metadata key Stripe has and the catalog not is removed)."""
        out: dict[str, Any] = {}
        for name in names:
            value = getattr(self, name)
            if name == "metadata":
                out[name] = {**{key: "" for key in stripe_metadata or {}}, **value}
            elif name == "marketing_features":
                out[name] = [{"name": feature} for feature in value] or ""
            elif name == "images":
                out[name] = list(value) or ""
            elif name in ("active", "shippable"):
                out[name] = bool(value)
            elif value is None or value == "":
                if name != "statement_descriptor":  # cannot be unset: an empty one is no drift
                    out[name] = ""
            else:
                out[name] = value
        return out

    def as_catalog_product(self, product_id: str) -> CatalogProduct:
        return CatalogProduct(
            id=product_id,
            **{f: getattr(self, f) for f in (*PRODUCT_FIELDS, "default_price")},
        )


@dataclass(frozen=True)
class StripeState:
    """What repair needs to know of the product in Stripe (and, to adopt it, its fields)."""

    stripe_id: str
    metadata: dict[str, str]
    default_price_id: str | None
    values: DesiredProduct | None = None  # the product's fields as Stripe has them
    updated: int | None = None  # Stripe's last-change timestamp of the product
    price_ids: tuple[str, ...] = ()  # every price of the product in Stripe, active or not

    def as_catalog_product(self, product_id: str) -> CatalogProduct:
        """This Stripe product as a catalog row (adopting an orphan)."""
        assert self.values is not None
        return self.values.as_catalog_product(product_id)

    @property
    def fingerprint(self) -> str:
        """The state a write replaces; part of its idempotency key.

        Writing the same catalog version over a *different* Stripe state (a dashboard edit
        made after our last push) must be a new write, not a replay of the old one.
        """
        return state_fingerprint(asdict(self))


@dataclass(frozen=True)
class StripePrice:
    """What repair needs to know of one price in Stripe."""

    price_id: str
    lookup_key: str | None
    active: bool
    metadata: dict[str, str]
    tax_behavior: str
    replaced_by: str | None  # the lookup key of the price that replaced it (an interrupted replacement)
    values: CatalogPrice | None = None  # the price as Stripe has it, for adoption

    @property
    def fingerprint(self) -> str:
        return state_fingerprint(asdict(self))


def state_fingerprint(*parts: Any) -> str:
    """A short, stable digest of Stripe state as read (keys sorted), for idempotency keys."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RepairAction:
    product_id: str
    action: str
    fields: tuple[str, ...] = ()
    desired: DesiredProduct | None = None
    stripe: StripeState | None = None
    lookup_key: str | None = None
    price: CatalogPrice | None = None  # the catalog's price this action writes
    stripe_price: StripePrice | None = None  # the Stripe price it replaces, updates or archives
    note: str = ""

    @property
    def writes_stripe(self) -> bool:
        return self.action in WRITES_STRIPE

    @property
    def wanted(self) -> DesiredProduct:
        """The catalog's state this action writes (every product action but an orphan's has one)."""
        if self.desired is None:
            raise ValueError(f"{self.action} of {self.product_id!r} carries no catalog state")
        return self.desired

    @property
    def found(self) -> StripeState:
        """The Stripe state this action replaces (every action but a creation has one)."""
        if self.stripe is None:
            raise ValueError(f"{self.action} of {self.product_id!r} carries no Stripe state")
        return self.stripe

    @property
    def wanted_price(self) -> CatalogPrice:
        if self.price is None:
            raise ValueError(f"{self.action} of {self.lookup_key!r} carries no catalog price")
        return self.price

    @property
    def found_price(self) -> StripePrice:
        if self.stripe_price is None:
            raise ValueError(f"{self.action} of {self.lookup_key!r} carries no Stripe price")
        return self.stripe_price

    def describe(self) -> str:
        about = self.lookup_key or (self.stripe_price.price_id if self.stripe_price else "")
        detail = ", ".join(self.fields)
        return " ".join(part for part in (about, detail and f"({detail})", self.note) if part)


@dataclass
class RepairPlan:
    actions: list[RepairAction] = field(default_factory=list)
    catalog_size: int = 0  # products and prices in the catalog

    @property
    def objects_to_write(self) -> int:
        """Products and prices with a write planned: what the mass-drift breaker counts."""
        products = {a.product_id for a in self.actions if a.writes_stripe and a.action not in PRICE_ACTIONS}
        prices = {a.lookup_key or (a.stripe_price.price_id if a.stripe_price else "") for a in self.actions if a.writes_stripe and a.action in PRICE_ACTIONS}
        return len(products) + len(prices)

    @property
    def products_to_write(self) -> int:
        return len({a.product_id for a in self.actions if a.writes_stripe})

    @property
    def write_share(self) -> float:
        return self.objects_to_write / self.catalog_size if self.catalog_size else float(self.objects_to_write > 0)

    def counts(self) -> dict[str, int]:
        return {name: sum(a.action == name for a in self.actions) for name in ACTION_ORDER}

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(a.product_id, a.lookup_key, a.action, a.describe()) for a in self.actions],
            columns=["product_id", "lookup_key", "action", "detail"],
        )


class FieldChanges:
    """Each mismatched field's value in Stripe and in the catalog, from the drift table: what a
    planned update or replacement changes, before -> after."""

    def __init__(self, drift: pd.DataFrame):
        mismatched = drift[drift["kind"].isin([FIELD_MISMATCH, PRICE_FIELD_MISMATCH])]
        self._values = {
            (str(product), str(key) if kind == PRICE_FIELD_MISMATCH else "", str(name)): (stripe_value, local_value)
            for product, key, kind, name, local_value, stripe_value in zip(
                mismatched["product_id"], mismatched["lookup_key"], mismatched["kind"], mismatched["field"], mismatched["local_value"], mismatched["stripe_value"], strict=True
            )
        }

    def of(self, product_id: str, action: str, lookup_key: str | None, fields: tuple[str, ...], width: int = 2 * PREVIEW_WIDTH) -> str:
        """`field: before -> after; ...` for an action's fields, each value cut to `width`
        characters (the drift table holds them whole)."""
        key = (lookup_key or "") if action in PRICE_ACTIONS else ""
        said = []
        for name in fields:
            before, after = self._values.get((product_id, key, name), (None, None))
            if before is None and after is None:
                said.append(name)
                continue
            before, after = (shortened(value, width) for value in (before, after))
            said.append(f"{name}: {_shown(before)} -> {_shown(after)}")
        return "; ".join(said)


def _shown(value: Any) -> str:
    return "(none)" if value is None or value == "" or (isinstance(value, float) and pd.isna(value)) else repr(value) if isinstance(value, str) else str(value)


# -- canonical frame rows back to values ------------------------------------------------


def _json(value: Any, empty: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value else empty


def _blank(value: Any) -> Any:
    return None if value is None or value is pd.NA or value == "" else value


def _amount(text: str | None, name: str = "unit_amount") -> dict[str, Any]:
    """A canonical decimal amount as Stripe's parameter: whole -> `unit_amount`, else `_decimal`."""
    if not text:
        return {}
    if "." in text:
        return {f"{name}_decimal": text}
    return {name: int(text)}


def _tiers(canonical: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {"up_to": "inf" if tier["up_to"] == "inf" else int(tier["up_to"]), **_amount(tier.get("unit_amount")), **_amount(tier.get("flat_amount"), "flat_amount")}
        for tier in canonical
    ]


def _custom(canonical: str) -> dict[str, Any] | None:
    values = _json(canonical, None)
    return None if values is None else {k: int(v) for k, v in values.items() if v}


def price_from_row(row: pd.Series) -> CatalogPrice:
    """A price of a canonical prices frame (either side) as a CatalogPrice."""
    options = {}
    for currency, option in _json(row["currency_options"], {}).items():
        entry: dict[str, Any] = {**_amount(option.get("unit_amount"))}
        if option.get("tax_behavior") not in (None, "unspecified"):
            entry["tax_behavior"] = option["tax_behavior"]
        if option.get("tiers"):
            entry["tiers"] = _tiers(option["tiers"])
        if option.get("custom_unit_amount"):
            entry["custom_unit_amount"] = _custom(option["custom_unit_amount"])
        options[currency] = entry
    recurring = _blank(row["recurring_interval"])
    transform = _json(row["transform_quantity"], None)
    updated_at = row.get("updated_at")
    return CatalogPrice(
        lookup_key=_blank(row["lookup_key"]) or "",
        product_id=row["product_id"],
        currency=row["currency"],
        **_amount(_blank(row["unit_amount"])),
        active=bool(row["active"]),
        billing_scheme=row["billing_scheme"],
        tiers_mode=_blank(row["tiers_mode"]),
        tiers=_tiers(_json(row["tiers"], [])) or None,
        recurring_interval=recurring,
        recurring_interval_count=int(row["recurring_interval_count"]) if recurring else None,
        recurring_usage_type=_blank(row["recurring_usage_type"]) if recurring else None,
        transform_quantity=None if transform is None else {"divide_by": int(transform["divide_by"]), "round": transform["round"]},
        currency_options=options or None,
        custom_unit_amount=_custom(row["custom_unit_amount"]),
        tax_behavior=None if row["tax_behavior"] == "unspecified" else row["tax_behavior"],
        nickname=_blank(row["nickname"]),
        metadata=_json(row["metadata"], {}),
        updated_at=None if updated_at is None or pd.isna(updated_at) else pd.Timestamp(updated_at).to_pydatetime(),
    )


def price_version(price: CatalogPrice) -> str:
    return "" if price.updated_at is None else pd.Timestamp(price.updated_at).isoformat()


def _product_values(row: pd.Series, version: str) -> DesiredProduct:
    dimensions = _json(row["package_dimensions"], None)
    return DesiredProduct(
        name=row["name"],
        description=_blank(row["description"]),
        active=bool(row["active"]),
        metadata=_json(row["metadata"], {}),
        marketing_features=_json(row["marketing_features"], []),
        images=_json(row["images"], []),
        package_dimensions=dimensions,
        shippable=row["shippable"] == "true",
        statement_descriptor=_blank(row["statement_descriptor"]),
        tax_code=_blank(row["tax_code"]),
        unit_label=_blank(row["unit_label"]),
        url=_blank(row["url"]),
        default_price=_blank(row["default_price"]),
        version=version,
    )


def desired_from_row(row: pd.Series) -> DesiredProduct:
    updated_at = row.get("updated_at")
    return _product_values(row, "" if updated_at is None or pd.isna(updated_at) else pd.Timestamp(updated_at).isoformat())


def stripe_state_from_row(row: pd.Series) -> StripeState:
    updated = row.get("updated")
    return StripeState(
        stripe_id=row["stripe_id"],
        metadata=_json(row["metadata"], {}),
        default_price_id=_blank(row["default_price_id"]),
        values=dataclasses.replace(_product_values(row, ""), default_price=None),  # an id here, not a key of the catalog's
        updated=None if updated is None or pd.isna(updated) else int(updated),
    )


def stripe_price_from_row(row: pd.Series) -> StripePrice:
    return StripePrice(
        price_id=row["price_id"],
        lookup_key=_blank(row["lookup_key"]),
        active=bool(row["active"]),
        metadata=_json(row["metadata"], {}),
        tax_behavior=row["tax_behavior"],
        replaced_by=_blank(row["replaced_by"]),
        values=price_from_row(row),
    )


# -- the plan -----------------------------------------------------------------------------


def _needs_replacement(fields: set[str], wanted: CatalogPrice, found: StripePrice) -> bool:
    """A change Stripe takes only as a new price: an immutable term, or a mutable one it cannot
    set in place (a tax behavior already specified)."""
    if fields & set(IMMUTABLE_FIELDS):
        return True
    return "tax_behavior" in fields and found.tax_behavior != "unspecified"


@dataclass(frozen=True)
class Deleted:
    """What the catalog deleted (capture saw the rows go): product ids, and prices' lookup keys."""

    products: frozenset[str] = frozenset()
    prices: frozenset[str] = frozenset()
    accounts: Mapping[str, str] = field(default_factory=dict)  # a deleted product's Stripe account, where its row said


def plan_repairs(
    drift: pd.DataFrame,
    local: pd.DataFrame,
    stripe: pd.DataFrame,
    local_prices: pd.DataFrame,
    stripe_prices: pd.DataFrame,
    orphan_policy: OrphanPolicy = OrphanPolicy.REPORT,
    price_orphan_policy: OrphanPolicy = OrphanPolicy.REPORT,
    deleted: Deleted | None = None,
) -> RepairPlan:
    """The actions that bring Stripe to the catalog's state for every product in `drift`.

    `deleted`: products and prices the catalog deleted (captured deletes): the catalog's
    own, so their Stripe objects are archived whatever the orphan policies say."""
    deleted = deleted or Deleted()
    local = syncable_defaults(local, local_prices)
    local_by_id = local.set_index("product_id", drop=False)
    stripe_by_id = stripe.set_index("product_id", drop=False)
    prices_by_key = local_prices.set_index("lookup_key", drop=False)
    stripe_by_price = stripe_prices.set_index("price_id", drop=False)
    stripe_by_key = stripe_prices[stripe_prices["lookup_key"] != ""].set_index("lookup_key", drop=False)
    price_ids_by_product = stripe_prices.groupby("product_id")["price_id"].agg(list).to_dict() if len(stripe_prices) else {}
    actions: list[RepairAction] = []

    for product_id, rows in drift.groupby("product_id", sort=True):
        kinds = set(rows["kind"])
        if ORPHAN_IN_STRIPE in kinds:
            policy = OrphanPolicy.ARCHIVE if product_id in deleted.products else OrphanPolicy(orphan_policy)
            actions.append(_orphan(product_id, stripe_by_id.loc[product_id], policy))
            continue
        desired = desired_from_row(local_by_id.loc[product_id])
        created = MISSING_IN_STRIPE in kinds
        state = None
        if not created:
            stripe_id = stripe_by_id.loc[product_id, "stripe_id"]
            state = dataclasses.replace(stripe_state_from_row(stripe_by_id.loc[product_id]), price_ids=tuple(sorted(price_ids_by_product.get(stripe_id, ()))))
        product_actions: list[RepairAction] = []
        if created:
            product_actions.append(RepairAction(product_id, CREATE_PRODUCT, (), desired))
        fields = tuple(f for f in PRODUCT_FIELDS if f in set(rows.loc[rows["kind"] == FIELD_MISMATCH, "field"]))
        if fields:
            product_actions.append(RepairAction(product_id, UPDATE_PRODUCT, fields, desired, state))

        default_moves_from: set[str] = set()
        for key in rows.loc[rows["kind"] == PRICE_MISSING_IN_STRIPE, "lookup_key"]:
            product_actions.append(RepairAction(product_id, CREATE_PRICE, (), desired, state, key, price_from_row(prices_by_key.loc[key])))
        mismatched = rows[rows["kind"] == PRICE_FIELD_MISMATCH]
        for key, price_rows in mismatched.groupby("lookup_key", sort=True):
            wanted = price_from_row(prices_by_key.loc[key])
            found = stripe_price_from_row(stripe_by_key.loc[key])
            price_fields = set(price_rows["field"])
            if _needs_replacement(price_fields, wanted, found):
                product_actions.append(RepairAction(product_id, REPLACE_PRICE, tuple(sorted(price_fields)), desired, state, key, wanted, found))
                product_actions.append(RepairAction(product_id, ARCHIVE_REPLACED, (), desired, state, key, wanted, found))
                if state is not None and state.default_price_id == found.price_id:
                    default_moves_from.add(key)
            else:
                product_actions.append(RepairAction(product_id, UPDATE_PRICE, tuple(sorted(price_fields)), desired, state, key, wanted, found))

        for price_id in rows.loc[rows["kind"] == PRICE_ORPHAN_IN_STRIPE, "stripe_value"]:
            found = stripe_price_from_row(stripe_by_price.loc[price_id])
            is_default = state is not None and state.default_price_id == price_id
            if found.replaced_by:
                # A replacement cut off midway: finish it (this price was the catalog's).
                product_actions.append(RepairAction(product_id, ARCHIVE_REPLACED, (), desired, state, found.replaced_by, None, found, "finishing a replacement"))
                if is_default:
                    default_moves_from.add(found.replaced_by)
                continue
            policy = OrphanPolicy.ARCHIVE if found.lookup_key and found.lookup_key in deleted.prices else OrphanPolicy(price_orphan_policy)
            moves = desired.default_price is not None and desired.default_price != found.lookup_key
            if policy is OrphanPolicy.ARCHIVE and found.active and (not is_default or moves):
                product_actions.append(RepairAction(product_id, ARCHIVE_PRICE_ORPHAN, (), desired, state, found.lookup_key, None, found))
            elif policy is OrphanPolicy.ADOPT:
                product_actions.append(RepairAction(product_id, ADOPT_PRICE_ORPHAN, (), desired, state, found.lookup_key or f"{product_id}:{found.price_id}", None, found))
            else:
                why = "the product's default price (name another default in the catalog to archive it)" if policy is OrphanPolicy.ARCHIVE else f"price orphan policy: {policy.value}"
                product_actions.append(RepairAction(product_id, REPORT_PRICE_ORPHAN, (), desired, state, found.lookup_key, None, found, f"unmanaged: {why}"))

        # The default follows the catalog; with no choice there, a replaced default is followed to its replacement.
        default_drift = "default_price" in set(rows.loc[rows["kind"] == FIELD_MISMATCH, "field"])
        target = desired.default_price if desired.default_price else (sorted(default_moves_from)[0] if default_moves_from else None)
        if target and (created or default_drift or default_moves_from):
            product_actions.append(RepairAction(product_id, SET_DEFAULT_PRICE, (), desired, state, target))
        actions += sorted(product_actions, key=lambda a: ACTION_ORDER.index(a.action))

    size = len(local) + len(local_prices)
    return RepairPlan(actions=actions, catalog_size=size)


def _orphan(product_id: str, stripe_row: pd.Series, policy: OrphanPolicy) -> RepairAction:
    action = {OrphanPolicy.REPORT: REPORT_ORPHAN, OrphanPolicy.ARCHIVE: ARCHIVE_ORPHAN, OrphanPolicy.ADOPT: ADOPT_ORPHAN}[policy]
    if action == ARCHIVE_ORPHAN and not bool(stripe_row["active"]):
        action = REPORT_ORPHAN  # already archived: nothing to write
    return RepairAction(product_id, action, (), None, stripe_state_from_row(stripe_row))
