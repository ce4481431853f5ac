"""The products the catalog owns, and what Stripe would refuse of them.

`validate_product` refuses a product Stripe would refuse, naming the product, the field and
the value, before anything is written or pushed. Its prices are `prices.CatalogPrice` rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from recon_pipeline.catalog.limits import (
    DIMENSIONS,
    MAX_FEATURE_NAME_LENGTH,
    MAX_IMAGES,
    MAX_MARKETING_FEATURES,
    MAX_NAME_LENGTH,
    MAX_STATEMENT_DESCRIPTOR,
    MAX_UNIT_LABEL,
    TAX_CODE,
    check_metadata,
)
from recon_pipeline.names import DEFAULT_ACCOUNT


class InvalidProduct(ValueError):
    """A catalog row Stripe would refuse; the message names the product, the field and the value."""


@dataclass(frozen=True)
class CatalogProduct:
    id: str
    name: str
    description: str | None = None
    active: bool = True
    metadata: dict[str, str] = field(default_factory=dict)
    marketing_features: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    package_dimensions: dict[str, float] | None = None
    shippable: bool | None = None
    statement_descriptor: str | None = None
    tax_code: str | None = None
    unit_label: str | None = None
    url: str | None = None
    default_price: str | None = None  # the lookup key of its default price; None: the catalog does not choose
    account: str = DEFAULT_ACCOUNT  # the Stripe account it is sold in (a name of RECON_STRIPE_ACCOUNTS)
    updated_at: dt.datetime | None = None

    def as_row(self, now: dt.datetime) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row.update(
            metadata=dict(self.metadata or {}),
            marketing_features=list(self.marketing_features or []),
            images=list(self.images or []),
            updated_at=self.updated_at or now,
        )
        return row


PRODUCT_COLUMNS = tuple(f.name for f in fields(CatalogProduct))


def validate_product(product: CatalogProduct) -> None:
    """Raise InvalidProduct if Stripe would refuse this product."""

    def bad(field_name: str, value: Any, fix: str) -> InvalidProduct:
        return InvalidProduct(f"product {product.id!r}: {field_name}={value!r} {fix}")

    if not isinstance(product.id, str) or not product.id.strip():
        raise InvalidProduct(f"product id {product.id!r} must be a non-empty string")
    for field_name, text_value in _texts(product):
        try:
            text_value.encode("utf-8")
        except UnicodeEncodeError:
            raise bad(field_name, text_value.encode("utf-8", "surrogateescape")[:40], "is not valid UTF-8; fix the bytes in the catalog") from None
    if not isinstance(product.name, str) or not product.name.strip():
        raise bad("name", product.name, "must be a non-empty string")
    if len(product.name) > MAX_NAME_LENGTH:
        raise bad("name", product.name[:40] + "…", f"is longer than {MAX_NAME_LENGTH} characters")
    check_metadata(product.metadata, bad)
    features = product.marketing_features or []
    if not isinstance(features, list) or len(features) > MAX_MARKETING_FEATURES or not all(isinstance(f, str) and 0 < len(f) <= MAX_FEATURE_NAME_LENGTH for f in features):
        raise bad("marketing_features", features, f"must be a list of at most {MAX_MARKETING_FEATURES} feature names of 1 to {MAX_FEATURE_NAME_LENGTH} characters")
    images = product.images or []
    if not isinstance(images, list) or len(images) > MAX_IMAGES or not all(isinstance(i, str) and i.startswith(("http://", "https://")) for i in images):
        raise bad("images", images, f"must be a list of at most {MAX_IMAGES} image URLs (http or https)")
    dimensions = product.package_dimensions
    if dimensions is not None and (not isinstance(dimensions, Mapping) or set(dimensions) != set(DIMENSIONS) or not all(_positive(dimensions[d]) for d in DIMENSIONS)):
        raise bad("package_dimensions", dimensions, f"must give {', '.join(DIMENSIONS)}, each a positive number (inches, ounces)")
    if product.shippable is not None and not isinstance(product.shippable, bool):
        raise bad("shippable", product.shippable, "must be true, false or empty")
    descriptor = product.statement_descriptor
    if descriptor is not None and (len(descriptor) > MAX_STATEMENT_DESCRIPTOR or set("<>\\'\"*") & set(descriptor) or not any(c.isalpha() for c in descriptor)):
        raise bad("statement_descriptor", descriptor, f"must be at most {MAX_STATEMENT_DESCRIPTOR} characters with a letter, and none of < > \\ ' \" *")
    if product.unit_label is not None and len(product.unit_label) > MAX_UNIT_LABEL:
        raise bad("unit_label", product.unit_label, f"is longer than {MAX_UNIT_LABEL} characters")
    if product.url is not None and not str(product.url).startswith(("http://", "https://")):
        raise bad("url", product.url, "must be an http or https URL")
    if product.tax_code is not None and not TAX_CODE.fullmatch(str(product.tax_code)):
        raise bad("tax_code", product.tax_code, "is not a Stripe tax code: txcd_ and 8 digits, e.g. txcd_10103001 (docs.stripe.com/tax/tax-codes)")


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _texts(product: CatalogProduct):
    for name in ("id", "name", "description", "statement_descriptor", "tax_code", "unit_label", "url", "default_price"):
        value = getattr(product, name)
        if isinstance(value, str):
            yield name, value
    for key, value in (product.metadata or {}).items() if isinstance(product.metadata, Mapping) else ():
        yield f"metadata key {str(key)[:20]!r}", str(key)
        if isinstance(value, str):
            yield f"metadata[{str(key)[:20]}]", value
