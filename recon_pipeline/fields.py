"""The field registry: each product and price field once, with what it is.

Frames, the diff, the repair plan, the inbox and the catalog's own rules derive their field
lists from here, so adding a field (or making one mutable) is one line:

- `compared`: the diff compares it (every field here is: the catalog owns it);
- `mutable`: a price field Stripe changes in place (else a change is a new price);
- `kept_when_empty`: Stripe cannot unset it once set, so the catalog leaving it empty does
  not choose, and that is no drift;
- `stripe`: the Stripe attributes that carry it (an event's `previous_attributes` names these).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    name: str
    stripe: tuple[str, ...] = ()  # empty: Stripe calls it `name` too
    mutable: bool = True
    kept_when_empty: bool = False

    @property
    def attributes(self) -> tuple[str, ...]:
        return self.stripe or (self.name,)


# A product's fields, in the frames' order; all of them owned by the catalog and written in place.
PRODUCT = (
    Field("name"),
    Field("description"),
    Field("active"),
    Field("metadata"),
    Field("marketing_features"),
    Field("images"),
    Field("package_dimensions"),
    Field("shippable"),
    Field("statement_descriptor", kept_when_empty=True),
    Field("tax_code"),
    Field("unit_label"),
    Field("url"),
    Field("default_price", kept_when_empty=True),  # a lookup key; set_default_price writes it
)

# A price's fields, in the frames' order (the Stripe price's record is built in this order).
PRICE = (
    Field("product_id", stripe=("product",), mutable=False),
    Field("active"),
    Field("currency", mutable=False),
    Field("unit_amount", stripe=("unit_amount", "unit_amount_decimal"), mutable=False),
    Field("billing_scheme", mutable=False),
    Field("tiers_mode", mutable=False),
    Field("tiers", mutable=False),
    Field("recurring_interval", stripe=("recurring",), mutable=False),
    Field("recurring_interval_count", stripe=("recurring",), mutable=False),
    Field("recurring_usage_type", stripe=("recurring",), mutable=False),
    Field("transform_quantity", mutable=False),
    Field("currency_options"),
    Field("custom_unit_amount", mutable=False),
    Field("tax_behavior"),  # in place while Stripe's is still `unspecified`
    Field("nickname", kept_when_empty=True),
    Field("metadata"),
)

COMPARED_FIELDS = tuple(f.name for f in PRODUCT)
PRODUCT_FIELDS = tuple(f.name for f in PRODUCT if f.name != "default_price")  # what update_product writes
PRICE_COMPARED_FIELDS = tuple(f.name for f in PRICE)
IMMUTABLE_FIELDS = tuple(f.name for f in PRICE if not f.mutable)  # a change to one of them is a new price
MUTABLE_FIELDS = tuple(f.name for f in PRICE if f.mutable)  # changed in place on the price
KEPT_WHEN_EMPTY = tuple(dict.fromkeys(f.name for f in (*PRODUCT, *PRICE) if f.kept_when_empty))


def price_attributes() -> dict[str, tuple[str, ...]]:
    """Stripe price attribute -> the price fields it carries, where the two names differ."""
    found: dict[str, tuple[str, ...]] = {}
    for f in PRICE:
        for attribute in f.attributes:
            if attribute != f.name:
                found[attribute] = (*found.get(attribute, ()), f.name)
    return found
