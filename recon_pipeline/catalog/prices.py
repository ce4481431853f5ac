"""The prices the catalog owns: one row per Stripe price, identified by its `lookup_key`.

A product sells at several prices (monthly and yearly, several currencies, tiers, a one-time
add-on); each is a `CatalogPrice`. Its lookup key is the identity shared with Stripe: the
price in Stripe that holds the key is the catalog's, any other price is not, and is never
written. `validate_price` refuses what Stripe would refuse, naming the price, the field and
the value, before anything is written or pushed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from recon_pipeline.catalog.currencies import ISO_4217
from recon_pipeline.catalog.limits import check_metadata

INTERVALS = ("day", "week", "month", "year")
# The longest a recurring price may be: one year, in each interval.
MAX_INTERVAL_COUNT = {"day": 1095, "week": 156, "month": 36, "year": 3}  # Stripe allows up to three years between billings
BILLING_SCHEMES = ("per_unit", "tiered")
TIERS_MODES = ("graduated", "volume")
TAX_BEHAVIORS = ("inclusive", "exclusive", "unspecified")
MAX_LOOKUP_KEY_LENGTH = 200
MAX_DECIMAL_PLACES = 12


class InvalidPrice(ValueError):
    """A catalog price Stripe would refuse; the message names the price, the field and the value."""


def default_lookup_key(product_id: str) -> str:
    """The lookup key of a product's first price (the one each product had before prices had keys)."""
    return f"{product_id}:default"


@dataclass(frozen=True)
class CatalogPrice:
    """One price the catalog owns, in Stripe's terms (see the `prices` table)."""

    lookup_key: str
    product_id: str
    currency: str
    unit_amount: int | None = None
    unit_amount_decimal: str | None = None
    active: bool = True
    billing_scheme: str = "per_unit"
    tiers_mode: str | None = None
    tiers: list[dict[str, Any]] | None = None
    recurring_interval: str | None = None
    recurring_interval_count: int | None = None
    recurring_usage_type: str | None = None
    transform_quantity: dict[str, Any] | None = None
    currency_options: dict[str, dict[str, Any]] | None = None
    custom_unit_amount: dict[str, Any] | None = None
    tax_behavior: str | None = None
    nickname: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    updated_at: dt.datetime | None = None

    @property
    def recurring(self) -> bool:
        return self.recurring_interval is not None

    def as_row(self, now: dt.datetime) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["currency"] = self.currency.lower()
        row["metadata"] = dict(self.metadata or {})
        row["updated_at"] = self.updated_at or now
        if self.recurring_interval:
            row["recurring_interval_count"] = self.recurring_interval_count or 1
            row["recurring_usage_type"] = self.recurring_usage_type or "licensed"
        return row


PRICE_COLUMNS = tuple(f.name for f in fields(CatalogPrice))


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _amounts(where: str, values: Mapping[str, Any], bad) -> int:
    """Check one set of amounts (a price, a currency option, a tier); how many were given."""
    given = 0
    for name in ("unit_amount", "flat_amount"):
        amount = values.get(name)
        if amount is not None:
            given += 1
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                raise bad(f"{where}{name}", amount, "must be a whole, non-negative number of the currency's smallest unit (e.g. cents)")
        decimal_value = values.get(f"{name}_decimal")
        if decimal_value is not None:
            given += 1
            number = _decimal(decimal_value)
            if number is None or number < 0:
                raise bad(f"{where}{name}_decimal", decimal_value, "must be a non-negative decimal such as '0.125'")
            if -number.as_tuple().exponent > MAX_DECIMAL_PLACES:  # type: ignore[operator]
                raise bad(f"{where}{name}_decimal", decimal_value, f"has more than {MAX_DECIMAL_PLACES} decimal places")
            if amount is not None:
                raise bad(f"{where}{name}_decimal", decimal_value, f"and {name} are both set; give one of them")
    return given


def _tiers(where: str, tiers: Any, bad) -> None:
    if not isinstance(tiers, list) or not tiers:
        raise bad(f"{where}tiers", tiers, "must be a list of tiers, the last with up_to 'inf'")
    last = 0
    for i, tier in enumerate(tiers):
        if not isinstance(tier, Mapping):
            raise bad(f"{where}tiers[{i}]", tier, "must be an object with up_to and an amount")
        up_to = tier.get("up_to")
        final = i == len(tiers) - 1
        if final and up_to not in ("inf", None):
            raise bad(f"{where}tiers[{i}].up_to", up_to, "must be 'inf' on the last tier")
        if not final and (isinstance(up_to, bool) or not isinstance(up_to, int) or up_to <= last):
            raise bad(f"{where}tiers[{i}].up_to", up_to, f"must be a whole number above {last} (tiers in increasing order; only the last is 'inf')")
        last = up_to if isinstance(up_to, int) else last
        if not _amounts(f"{where}tiers[{i}].", tier, bad):
            raise bad(f"{where}tiers[{i}]", dict(tier), "needs unit_amount, unit_amount_decimal, flat_amount or flat_amount_decimal")


def _currency_amounts(where: str, values: Mapping[str, Any], tiered: bool, recurring: bool, bad) -> None:
    given = _amounts(where, values, bad)
    custom = values.get("custom_unit_amount")
    if tiered:
        _tiers(where, values.get("tiers"), bad)
        if given or custom:
            raise bad(f"{where}unit_amount", values.get("unit_amount", values.get("unit_amount_decimal")), "must be empty on a tiered price (its amounts are in tiers)")
        return
    if values.get("tiers"):
        raise bad(f"{where}tiers", "...", "are only for billing_scheme 'tiered'")
    if custom is not None:
        if recurring:
            raise bad(f"{where}custom_unit_amount", custom, "is only for one-time prices")
        if not isinstance(custom, Mapping) or not set(custom) <= {"minimum", "maximum", "preset", "enabled"}:
            raise bad(f"{where}custom_unit_amount", custom, "must be an object with minimum, maximum and preset (all optional)")
        given += 1
    if given != 1:
        raise bad(f"{where}unit_amount", values.get("unit_amount"), "needs exactly one of unit_amount, unit_amount_decimal or custom_unit_amount")


def validate_price(price: CatalogPrice) -> None:
    """Raise InvalidPrice if Stripe would refuse this price."""

    def bad(name: str, value: Any, fix: str) -> InvalidPrice:
        return InvalidPrice(f"price {price.lookup_key!r}: {name}={value!r} {fix}")

    key = price.lookup_key
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_LOOKUP_KEY_LENGTH:
        raise InvalidPrice(f"price lookup_key {key!r} must be a non-empty string of at most {MAX_LOOKUP_KEY_LENGTH} characters")
    if not isinstance(price.product_id, str) or not price.product_id.strip():
        raise bad("product_id", price.product_id, "must name a catalog product")
    currency = price.currency
    if not (isinstance(currency, str) and currency.lower() in ISO_4217):
        raise bad("currency", currency, "must be a three-letter ISO 4217 currency code Stripe knows, such as 'usd'")
    if price.billing_scheme not in BILLING_SCHEMES:
        raise bad("billing_scheme", price.billing_scheme, f"must be one of {', '.join(BILLING_SCHEMES)}")
    tiered = price.billing_scheme == "tiered"
    if tiered and price.tiers_mode not in TIERS_MODES:
        raise bad("tiers_mode", price.tiers_mode, f"must be one of {', '.join(TIERS_MODES)} on a tiered price")
    if not tiered and price.tiers_mode is not None:
        raise bad("tiers_mode", price.tiers_mode, "is only for billing_scheme 'tiered'")
    if price.recurring_interval is not None:
        if price.recurring_interval not in INTERVALS:
            raise bad("recurring_interval", price.recurring_interval, f"must be one of {', '.join(INTERVALS)}, or empty for a one-time price")
        count = price.recurring_interval_count or 1
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_INTERVAL_COUNT[price.recurring_interval]:
            raise bad("recurring_interval_count", count, f"must be 1 to {MAX_INTERVAL_COUNT[price.recurring_interval]} (at most three years)")
        if (price.recurring_usage_type or "licensed") != "licensed":
            raise bad("recurring_usage_type", price.recurring_usage_type, "must be 'licensed' (metered prices need a Stripe meter, which the catalog does not model)")
    elif price.recurring_interval_count is not None or price.recurring_usage_type is not None:
        raise bad("recurring_interval_count", price.recurring_interval_count, "needs a recurring_interval")
    _currency_amounts("", {f: getattr(price, f) for f in ("unit_amount", "unit_amount_decimal", "tiers", "custom_unit_amount")}, tiered, price.recurring, bad)
    transform = price.transform_quantity
    if transform is not None:
        divide_by = transform.get("divide_by") if isinstance(transform, Mapping) else None
        if tiered or isinstance(divide_by, bool) or not isinstance(divide_by, int) or divide_by < 1 or transform.get("round") not in ("up", "down"):
            raise bad("transform_quantity", transform, "must be {divide_by: a whole number >= 1, round: 'up' or 'down'}, and not on a tiered price")
    for option_currency, option in (price.currency_options or {}).items():
        where = f"currency_options.{option_currency}."
        if str(option_currency).lower() not in ISO_4217:
            raise bad("currency_options", option_currency, "keys must be ISO 4217 currency codes")
        if not isinstance(option, Mapping):
            raise bad(where.rstrip("."), option, "must be an object of amounts")
        _currency_amounts(where, option, tiered, price.recurring, bad)
        if option.get("tax_behavior") not in (None, *TAX_BEHAVIORS):
            raise bad(f"{where}tax_behavior", option.get("tax_behavior"), f"must be one of {', '.join(TAX_BEHAVIORS)}")
    if price.tax_behavior not in (None, *TAX_BEHAVIORS):
        raise bad("tax_behavior", price.tax_behavior, f"must be one of {', '.join(TAX_BEHAVIORS)}")
    check_metadata(price.metadata, bad)


def stripe_price_params(price: CatalogPrice, stripe_product_id: str) -> dict[str, Any]:
    """The parameters that create this price in Stripe (with its lookup key, taken over if held)."""
    params: dict[str, Any] = {
        "product": stripe_product_id,
        "currency": price.currency.lower(),
        "lookup_key": price.lookup_key,
        "transfer_lookup_key": True,
        "active": price.active,
    }
    if price.billing_scheme == "tiered":
        params.update(billing_scheme="tiered", tiers_mode=price.tiers_mode, tiers=[_tier_param(t) for t in price.tiers or []])
    for name in ("unit_amount", "unit_amount_decimal", "nickname", "tax_behavior"):
        if getattr(price, name) is not None:
            params[name] = getattr(price, name)
    if price.custom_unit_amount is not None:
        params["custom_unit_amount"] = {"enabled": True, **{k: v for k, v in price.custom_unit_amount.items() if k != "enabled" and v is not None}}
    if price.recurring_interval:
        params["recurring"] = {"interval": price.recurring_interval, "interval_count": price.recurring_interval_count or 1, "usage_type": price.recurring_usage_type or "licensed"}
    if price.transform_quantity:
        params["transform_quantity"] = dict(price.transform_quantity)
    options = currency_options_params(price)
    if options:
        params["currency_options"] = options
    if price.metadata:
        params["metadata"] = dict(price.metadata)
    return params


def currency_options_params(price: CatalogPrice) -> dict[str, dict[str, Any]]:
    """The price's other currencies as Stripe takes them (its own currency left out)."""
    own = price.currency.lower()
    out = {}
    for currency, option in (price.currency_options or {}).items():
        if currency.lower() == own:
            continue
        values = {k: v for k, v in option.items() if v is not None and k in ("unit_amount", "unit_amount_decimal", "tax_behavior")}
        if option.get("tiers"):
            values["tiers"] = [_tier_param(t) for t in option["tiers"]]
        if option.get("custom_unit_amount"):
            values["custom_unit_amount"] = {"enabled": True, **{k: v for k, v in option["custom_unit_amount"].items() if k != "enabled" and v is not None}}
        out[currency.lower()] = values
    return out


def _tier_param(tier: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in tier.items() if k in ("unit_amount", "unit_amount_decimal", "flat_amount", "flat_amount_decimal") and v is not None}
    out["up_to"] = "inf" if tier.get("up_to") in (None, "inf") else tier["up_to"]
    return out
