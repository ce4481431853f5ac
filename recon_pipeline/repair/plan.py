"""From drift to a repair plan: one action per product and kind of write (no I/O).

| drift | action |
| --- | --- |
| missing_in_stripe | `create_product` (Stripe id derived from the catalog id, default price with it) |
| field_mismatch on name, description, active, metadata | `update_product` (only the differing fields) |
| field_mismatch on unit_amount, currency, interval | `change_price` (prices are immutable: a new Price becomes the default, the old one is archived) |
| orphan_in_stripe | per `OrphanPolicy`: `report_orphan` (no write), `archive_orphan`, `adopt_orphan` (into the catalog) |

The plan carries the desired state from the catalog and what repair needs from Stripe
(current metadata keys to remove, the old default price), so applying it needs no second
snapshot.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from recon_pipeline.catalog import CatalogProduct
from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.reconcile import FIELD_MISMATCH, MISSING_IN_STRIPE, ORPHAN_IN_STRIPE

PRODUCT_FIELDS = ("name", "description", "active", "metadata")
PRICE_FIELDS = ("unit_amount", "currency", "interval")


# Action names, in the order they are applied to one product.
CREATE_PRODUCT = "create_product"
UPDATE_PRODUCT = "update_product"
CHANGE_PRICE = "change_price"
ARCHIVE_ORPHAN = "archive_orphan"
ADOPT_ORPHAN = "adopt_orphan"
REPORT_ORPHAN = "report_orphan"
ACTION_ORDER = (CREATE_PRODUCT, UPDATE_PRODUCT, CHANGE_PRICE, ARCHIVE_ORPHAN, ADOPT_ORPHAN, REPORT_ORPHAN)
WRITES_STRIPE = {CREATE_PRODUCT, UPDATE_PRODUCT, CHANGE_PRICE, ARCHIVE_ORPHAN}


@dataclass(frozen=True)
class DesiredProduct:
    """The catalog's state of one product, as Stripe should hold it."""

    name: str
    description: str | None
    active: bool
    metadata: dict[str, str]
    unit_amount: int | None
    currency: str | None
    interval: str | None
    version: str  # the catalog row's updated_at: part of every idempotency key

    @property
    def price(self) -> tuple[int, str, str | None] | None:
        return None if self.unit_amount is None else (self.unit_amount, self.currency or "", self.interval)


@dataclass(frozen=True)
class StripeState:
    """What repair needs to know of the product in Stripe."""

    stripe_id: str
    metadata: dict[str, str]
    default_price_id: str | None
    name: str = ""
    description: str | None = None
    active: bool = True
    unit_amount: int | None = None
    currency: str | None = None
    interval: str | None = None
    updated: int | None = None  # Stripe's last-change timestamp of the product

    def as_catalog_product(self, product_id: str) -> CatalogProduct:
        """This Stripe product as a catalog row (adopting an orphan)."""
        return CatalogProduct(
            id=product_id, name=self.name, description=self.description, active=self.active, metadata=self.metadata,
            unit_amount=self.unit_amount, currency=self.currency, recurring_interval=self.interval,
        )  # fmt: skip

    @property
    def fingerprint(self) -> str:
        """The state a write replaces; part of its idempotency key.

        Writing the same catalog version over a *different* Stripe state (a dashboard edit
        made after our last push) must be a new write, not a replay of the old one.
        """
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

    @property
    def writes_stripe(self) -> bool:
        return self.action in WRITES_STRIPE

    @property
    def wanted(self) -> DesiredProduct:
        """The catalog's state this action writes (every action but an orphan's has one)."""
        if self.desired is None:
            raise ValueError(f"{self.action} of {self.product_id!r} carries no catalog state")
        return self.desired

    @property
    def found(self) -> StripeState:
        """The Stripe state this action replaces (every action but a creation has one)."""
        if self.stripe is None:
            raise ValueError(f"{self.action} of {self.product_id!r} carries no Stripe state")
        return self.stripe

    def describe(self) -> str:
        if self.action == CHANGE_PRICE and self.desired and self.stripe:
            old = _price_text(self.stripe.unit_amount, self.stripe.currency, self.stripe.interval)
            new = _price_text(self.desired.unit_amount, self.desired.currency, self.desired.interval)
            return f"{old} -> {new}"
        return ", ".join(self.fields)


@dataclass
class RepairPlan:
    actions: list[RepairAction] = field(default_factory=list)
    catalog_size: int = 0

    @property
    def products_to_write(self) -> int:
        return len({a.product_id for a in self.actions if a.writes_stripe})

    @property
    def write_share(self) -> float:
        return self.products_to_write / self.catalog_size if self.catalog_size else float(self.products_to_write > 0)

    def counts(self) -> dict[str, int]:
        return {name: sum(a.action == name for a in self.actions) for name in ACTION_ORDER}

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(a.product_id, a.action, a.describe()) for a in self.actions],
            columns=["product_id", "action", "detail"],
        )


def _price_text(amount: int | None, currency: str | None, interval: str | None) -> str:
    if amount is None:
        return "no price"
    return f"{amount} {currency}" + (f"/{interval}" if interval else "")


def _json(value: Any) -> dict[str, str]:
    return json.loads(value) if isinstance(value, str) and value else {}


def _blank(value: Any) -> Any:
    return None if value is None or value is pd.NA or value == "" else value


def desired_from_row(row: pd.Series) -> DesiredProduct:
    amount = row["unit_amount"]
    updated_at = row.get("updated_at")
    return DesiredProduct(
        name=row["name"],
        description=_blank(row["description"]),
        active=bool(row["active"]),
        metadata=_json(row["metadata"]),
        unit_amount=None if pd.isna(amount) else int(amount),
        currency=_blank(row["currency"]),
        interval=_blank(row["interval"]),
        version="" if updated_at is None or pd.isna(updated_at) else pd.Timestamp(updated_at).isoformat(),
    )


def stripe_state_from_row(row: pd.Series) -> StripeState:
    amount = row["unit_amount"]
    return StripeState(
        stripe_id=row["stripe_id"],
        metadata=_json(row["metadata"]),
        default_price_id=_blank(row["default_price_id"]),
        name=row["name"],
        description=_blank(row["description"]),
        active=bool(row["active"]),
        unit_amount=None if pd.isna(amount) else int(amount),
        currency=_blank(row["currency"]),
        interval=_blank(row["interval"]),
        updated=None if pd.isna(row.get("updated")) else int(row.get("updated")),
    )


def plan_repairs(
    drift: pd.DataFrame,
    local: pd.DataFrame,
    stripe: pd.DataFrame,
    orphan_policy: OrphanPolicy = OrphanPolicy.REPORT,
) -> RepairPlan:
    """The actions that bring Stripe to the catalog's state for every product in `drift`."""
    local_by_id = local.set_index("product_id", drop=False)
    stripe_by_id = stripe.set_index("product_id", drop=False)
    actions: list[RepairAction] = []

    for product_id, rows in drift.groupby("product_id", sort=True):
        kinds = set(rows["kind"])
        if MISSING_IN_STRIPE in kinds:
            actions.append(RepairAction(product_id, CREATE_PRODUCT, (), desired_from_row(local_by_id.loc[product_id])))
            continue
        if ORPHAN_IN_STRIPE in kinds:
            action = {
                OrphanPolicy.REPORT: REPORT_ORPHAN,
                OrphanPolicy.ARCHIVE: ARCHIVE_ORPHAN,
                OrphanPolicy.ADOPT: ADOPT_ORPHAN,
            }[OrphanPolicy(orphan_policy)]
            stripe_row = stripe_by_id.loc[product_id]
            if action == ARCHIVE_ORPHAN and not bool(stripe_row["active"]):
                action = REPORT_ORPHAN  # already archived: nothing to write
            actions.append(RepairAction(product_id, action, (), None, stripe_state_from_row(stripe_row)))
            continue
        fields = set(rows.loc[rows["kind"] == FIELD_MISMATCH, "field"])
        desired = desired_from_row(local_by_id.loc[product_id])
        state = stripe_state_from_row(stripe_by_id.loc[product_id])
        product_fields = tuple(f for f in PRODUCT_FIELDS if f in fields)
        price_fields = tuple(f for f in PRICE_FIELDS if f in fields)
        if product_fields:
            actions.append(RepairAction(product_id, UPDATE_PRODUCT, product_fields, desired, state))
        if price_fields:
            actions.append(RepairAction(product_id, CHANGE_PRICE, price_fields, desired, state))

    return RepairPlan(actions=actions, catalog_size=len(local))


def with_price_tidy(plan: RepairPlan, product_ids, local: pd.DataFrame, stripe: pd.DataFrame) -> RepairPlan:
    """Add a price step for each of `product_ids` whose earlier push was cut off.

    A price change is three writes (new price, default switched, old price archived); cut
    off after the switch, the product no longer drifts, yet its old price is still active.
    For a product being retried, the price step runs again whatever the diff says: it reuses
    the default price (no new one) and archives every other active price.
    """
    planned = {a.product_id for a in plan.actions if a.action in (CREATE_PRODUCT, CHANGE_PRICE)}
    local_by_id = local.set_index("product_id", drop=False)
    stripe_by_id = stripe.set_index("product_id", drop=False)
    extra = []
    for product_id in sorted(set(product_ids) - planned):
        if product_id in local_by_id.index and product_id in stripe_by_id.index:
            desired = desired_from_row(local_by_id.loc[product_id])
            if desired.unit_amount is not None:
                extra.append(RepairAction(product_id, CHANGE_PRICE, (), desired, stripe_state_from_row(stripe_by_id.loc[product_id])))
    return RepairPlan(actions=plan.actions + extra, catalog_size=plan.catalog_size)
