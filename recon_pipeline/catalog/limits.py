"""Stripe's limits on what a product or price may hold, checked before anything is written."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Stripe's limits: metadata 50 keys, keys up to 40 characters, values up to 500; a product's
# images, marketing features and statement descriptor.
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
MAX_NAME_LENGTH = 250
MAX_IMAGES = 8
MAX_MARKETING_FEATURES = 15
MAX_FEATURE_NAME_LENGTH = 80
MAX_STATEMENT_DESCRIPTOR = 22
MAX_UNIT_LABEL = 12
DIMENSIONS = ("height", "length", "weight", "width")
TAX_CODE = re.compile(r"txcd_\d{8}")  # a Stripe tax code's id


def check_metadata(meta: Any, bad) -> None:
    """Stripe's metadata limits; `bad(field, value, fix)` makes the error naming the row."""
    meta = meta or {}
    if not isinstance(meta, Mapping):
        raise bad("metadata", meta, "must be a mapping of strings")
    if len(meta) > MAX_METADATA_KEYS:
        raise bad("metadata", f"{len(meta)} keys", f"has more than Stripe's {MAX_METADATA_KEYS} keys")
    for key, value in meta.items():
        if len(str(key)) > MAX_METADATA_KEY_LENGTH:
            raise bad("metadata key", key, f"is longer than {MAX_METADATA_KEY_LENGTH} characters")
        if value is not None and len(str(value)) > MAX_METADATA_VALUE_LENGTH:
            raise bad(f"metadata[{key}]", str(value)[:40] + "…", f"is longer than {MAX_METADATA_VALUE_LENGTH} characters")
