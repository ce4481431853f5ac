"""Products, prices and events with Stripe's semantics, on top of `EmulatorState`.

Objects carry today's field set (Stripe's current fixtures, vendored in stripe_openapi/).
Every create, update and delete emits its event, with `data.previous_attributes` on
updates and `request` naming the request and its idempotency key.
"""

from __future__ import annotations

import copy
import secrets
import string
import time
from typing import Any

from recon_pipeline.catalog.currencies import ISO_4217
from recon_pipeline.emulator import errors
from recon_pipeline.emulator.state import EmulatorState

API_VERSION = "2024-06-20"
INTERVALS = ("day", "week", "month", "year")
_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(24))}"


def now() -> int:
    return int(time.time())


# -- parameter parsing -----------------------------------------------------------------
def check_known(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed and name != "expand":
            raise errors.unknown(name)


def as_bool(params: dict[str, Any], name: str) -> bool | None:
    if name not in params:
        return None
    value = params[name]
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise errors.invalid(name, f"Invalid boolean: {value}", "parameter_invalid_boolean")


def as_int(params: dict[str, Any], name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
    if name not in params:
        return None
    value = params[name]
    try:
        number = int(value)
        if str(number) != str(value).strip() and not isinstance(value, int):
            raise ValueError
    except (TypeError, ValueError):
        raise errors.invalid(name, f"Invalid integer: {value}", "parameter_invalid_integer") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f"greater than or equal to {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise errors.invalid(name, f"Invalid integer: {value}. Must be {bounds}.", "parameter_invalid_integer")
    return number


def as_text(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise errors.invalid(name, f"Invalid string: {value!r}")
    return value


def apply_metadata(current: dict[str, str], update: Any, param: str = "metadata") -> dict[str, str]:
    """Stripe's merge: keys set, `metadata[k]=` removes k, `metadata=` clears all."""
    if update == "":
        return {}
    if not isinstance(update, dict):
        raise errors.invalid(param, "Invalid object", "parameter_invalid_object")
    merged = dict(current)
    for key, value in update.items():
        if len(key) > 40:
            raise errors.invalid(f"{param}[{key}]", f"Metadata keys can have up to 40 characters; `{key}` has {len(key)}.")
        if value in ("", None):
            merged.pop(key, None)
            continue
        value = str(value)
        if len(value) > 500:
            raise errors.invalid(f"{param}[{key}]", f"Metadata values can have up to 500 characters, but you passed in a value that is {len(value)} characters.")
        merged[key] = value
    if len(merged) > 50:
        raise errors.invalid(param, f"Metadata can have up to 50 keys, but you passed in {len(merged)} keys.")
    return merged


def created_filter(params: dict[str, Any]) -> dict[str, int] | None:
    value = params.get("created")
    if value is None:
        return None
    if isinstance(value, dict):
        out: dict[str, int] = {}
        for op in value:
            if op not in ("gt", "gte", "lt", "lte"):
                raise errors.unknown(f"created[{op}]")
            bound = as_int(value, op)
            if bound is not None:
                out[op] = bound
        return out
    exact = as_int(params, "created")
    return None if exact is None else {"gte": exact, "lte": exact}


def list_limit(params: dict[str, Any]) -> int:
    limit = as_int(params, "limit", 1, 100)
    return 10 if limit is None else limit


def expand_list(params: dict[str, Any]) -> list[str]:
    value = params.get("expand", [])
    return value if isinstance(value, list) else [value]


# -- the account -----------------------------------------------------------------------
class Account:
    """Stripe's product catalog API for one account."""

    def __init__(self, state: EmulatorState, on_event=None):
        self.state = state
        self.on_event = on_event  # called with each new event (webhook delivery)

    # events ------------------------------------------------------------------------------
    def emit(self, type_: str, obj: dict[str, Any], request: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        event = self.state.put(
            "event",
            {
                "id": new_id("evt"),
                "object": "event",
                "api_version": API_VERSION,
                "created": now(),
                "data": data,
                "livemode": False,
                "pending_webhooks": 0,
                "request": {"id": request.get("id"), "idempotency_key": request.get("idempotency_key")},
                "type": type_,
            },
        )
        if self.on_event is not None:
            self.on_event(event)

    # products ------------------------------------------------------------------------------
    def product(self, product_id: str, param: str = "id") -> dict[str, Any]:
        product = self.state.get("product", product_id)
        if product is None:
            raise errors.no_such("product", product_id, param)
        return product

    def price(self, price_id: str, param: str = "id") -> dict[str, Any]:
        price = self.state.get("price", price_id)
        if price is None:
            raise errors.no_such("price", price_id, param)
        return price

    def create_product(self, params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"id", "name", "description", "active", "metadata", "default_price_data", "type", "url", "unit_label", "statement_descriptor", "tax_code", "images", "shippable"})
        name = as_text(params, "name")
        if not name:
            raise errors.missing("name")
        product_id = as_text(params, "id") or new_id("prod")
        if self.state.get("product", product_id) is not None:
            raise errors.StripeApiError(400, "Product already exists.", code="resource_already_exists", param="id")
        created = now()
        product: dict[str, Any] = {
            "id": product_id,
            "object": "product",
            "active": True if as_bool(params, "active") is None else as_bool(params, "active"),
            "created": created,
            "default_price": None,
            "description": as_text(params, "description") or None,
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": apply_metadata({}, params.get("metadata", {})),
            "name": name,
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": as_text(params, "statement_descriptor"),
            "tax_code": as_text(params, "tax_code"),
            "type": "service",
            "unit_label": as_text(params, "unit_label"),
            "updated": created,
            "url": as_text(params, "url"),
        }
        price_data = params.get("default_price_data")
        price = None
        if price_data is not None:
            if not isinstance(price_data, dict):
                raise errors.invalid("default_price_data", "Invalid object", "parameter_invalid_object")
            price = self._new_price(product_id, price_data, "default_price_data")
            product["default_price"] = price["id"]
        self.state.put("product", product)
        self.emit("product.created", product, request)
        if price is not None:
            self.state.put("price", price)
            self.emit("price.created", price, request)
        return product

    def update_product(self, product_id: str, params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"name", "description", "active", "metadata", "default_price", "url", "unit_label", "statement_descriptor", "tax_code", "images", "shippable"})
        current = self.product(product_id)
        updated = copy.deepcopy(current)
        if "name" in params:
            if not as_text(params, "name"):
                raise errors.invalid(
                    "name",
                    "You passed an empty string for 'name'. We assume empty values are an attempt to unset a parameter; "
                    "however 'name' cannot be unset. You should remove 'name' from your request or supply a non-empty value.",
                    "parameter_invalid_empty",
                )
            updated["name"] = params["name"]
        if "description" in params:
            updated["description"] = as_text(params, "description") or None
        if "active" in params:
            updated["active"] = as_bool(params, "active")
        if "metadata" in params:
            updated["metadata"] = apply_metadata(current["metadata"], params["metadata"])
        if "default_price" in params:
            price_id = as_text(params, "default_price") or None
            if price_id is not None:
                price = self.price(price_id, "default_price")
                if price["product"] != product_id:
                    raise errors.invalid("default_price", f"The price `{price_id}` does not belong to product `{product_id}`.")
                if not price["active"]:
                    raise errors.invalid("default_price", f"The price `{price_id}` is archived and cannot be the default price.")
            updated["default_price"] = price_id
        previous = {k: current[k] for k in updated if updated[k] != current[k]}
        if previous:
            updated["updated"] = max(now(), current["updated"])
            self.state.put("product", updated)
            self.emit("product.updated", updated, request, previous)
        return updated

    def delete_product(self, product_id: str, request: dict[str, Any]) -> dict[str, Any]:
        product = self.product(product_id)
        if any(p["product"] == product_id for p in self.state.all("price")):
            raise errors.StripeApiError(400, "This product cannot be deleted because it has one or more user-created prices.")
        self.state.delete("product", product_id)
        self.emit("product.deleted", product, request)
        return {"id": product_id, "object": "product", "deleted": True}

    def list_products(self, params: dict[str, Any]):
        check_known(params, {"limit", "starting_after", "ending_before", "active", "created", "ids", "shippable", "url", "type"})
        active = as_bool(params, "active")
        ids = params.get("ids")
        if ids is not None and not isinstance(ids, list):
            ids = [ids]
        wanted = set(ids) if ids is not None else None
        self._check_cursor("product", params)

        def match(p: dict[str, Any]) -> bool:
            return (active is None or p["active"] == active) and (wanted is None or p["id"] in wanted)

        return self.state.list("product", list_limit(params), created_filter(params), params.get("starting_after"), params.get("ending_before"), match)

    def _check_cursor(self, kind: str, params: dict[str, Any]) -> None:
        for name in ("starting_after", "ending_before"):
            if params.get(name) and self.state.get(kind, params[name]) is None:
                raise errors.no_such(kind, params[name], name)
        if params.get("starting_after") and params.get("ending_before"):
            raise errors.invalid("ending_before", "You may only specify one of these parameters: ending_before, starting_after.")

    # prices --------------------------------------------------------------------------------
    def _new_price(self, product_id: str, params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        def name(p: str) -> str:
            return f"{prefix}[{p}]" if prefix else p

        currency = params.get("currency")
        if not currency:
            raise errors.missing(name("currency"))
        if not (isinstance(currency, str) and currency.lower() in ISO_4217):
            raise errors.invalid(name("currency"), f"Invalid currency: {str(currency).lower()}. Stripe currently supports these currencies: usd, eur, gbp, cad, ...", "parameter_invalid_string")
        amount = as_int(params, "unit_amount", 0, 99_999_999)
        if amount is None:
            raise errors.missing(name("unit_amount"))
        recurring = params.get("recurring")
        if recurring is not None:
            if not isinstance(recurring, dict) or "interval" not in recurring:
                raise errors.missing(name("recurring[interval]"))
            if recurring["interval"] not in INTERVALS:
                raise errors.invalid(name("recurring[interval]"), f"Invalid recurring[interval]: must be one of {', '.join(INTERVALS)}")
            recurring = {
                "interval": recurring["interval"],
                "interval_count": as_int(recurring, "interval_count", 1) or 1,
                "meter": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            }
        return {
            "id": new_id("price"),
            "object": "price",
            "active": True if as_bool(params, "active") is None else as_bool(params, "active"),
            "billing_scheme": "per_unit",
            "created": now(),
            "currency": currency.lower(),
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": None,
            "metadata": apply_metadata({}, params.get("metadata", {}), name("metadata")),
            "nickname": as_text(params, "nickname"),
            "product": product_id,
            "recurring": recurring,
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": amount,
            "unit_amount_decimal": str(amount),
        }

    def _take_lookup_key(self, lookup_key: str | None, transfer: bool, request: dict[str, Any], price_id: str | None = None) -> None:
        if not lookup_key:
            return
        holders = [p for p in self.state.all("price") if p["lookup_key"] == lookup_key and p["id"] != price_id]
        if holders and not transfer:
            raise errors.invalid("lookup_key", f"A price (`{holders[0]['id']}`) already uses that lookup key.")
        for holder in holders:
            moved = {**holder, "lookup_key": None}
            self.state.put("price", moved)
            self.emit("price.updated", moved, request, {"lookup_key": lookup_key})

    def create_price(self, params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"product", "unit_amount", "currency", "recurring", "lookup_key", "transfer_lookup_key", "metadata", "nickname", "active", "tax_behavior", "billing_scheme"})
        product_id = as_text(params, "product")
        if not product_id:
            raise errors.missing("product")
        self.product(product_id, "product")
        price = self._new_price(product_id, params)
        lookup_key = as_text(params, "lookup_key")
        self._take_lookup_key(lookup_key, bool(as_bool(params, "transfer_lookup_key")), request)
        price["lookup_key"] = lookup_key or None
        self.state.put("price", price)
        self.emit("price.created", price, request)
        return price

    def update_price(self, price_id: str, params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"active", "metadata", "lookup_key", "transfer_lookup_key", "nickname", "tax_behavior"})
        current = self.price(price_id)
        updated = copy.deepcopy(current)
        if "active" in params:
            active = as_bool(params, "active")
            if not active:
                product = self.state.get("product", current["product"])
                if product is not None and product.get("default_price") == price_id:
                    raise errors.invalid("active", "This price cannot be archived because it is the default price of its product.")
            updated["active"] = active
        if "metadata" in params:
            updated["metadata"] = apply_metadata(current["metadata"], params["metadata"])
        if "nickname" in params:
            updated["nickname"] = as_text(params, "nickname") or None
        if "lookup_key" in params:
            lookup_key = as_text(params, "lookup_key") or None
            self._take_lookup_key(lookup_key, bool(as_bool(params, "transfer_lookup_key")), request, price_id)
            updated["lookup_key"] = lookup_key
        previous = {k: current[k] for k in updated if updated[k] != current[k]}
        if previous:
            self.state.put("price", updated)
            self.emit("price.updated", updated, request, previous)
        return updated

    def list_prices(self, params: dict[str, Any]):
        check_known(params, {"limit", "starting_after", "ending_before", "active", "created", "product", "lookup_keys", "type", "currency", "recurring"})
        active = as_bool(params, "active")
        product = params.get("product")
        type_ = params.get("type")
        lookup_keys = params.get("lookup_keys")
        if lookup_keys is not None and not isinstance(lookup_keys, list):
            lookup_keys = [lookup_keys]
        wanted = set(lookup_keys) if lookup_keys is not None else None
        self._check_cursor("price", params)

        def match(p: dict[str, Any]) -> bool:
            return (
                (active is None or p["active"] == active)
                and (product is None or p["product"] == product)
                and (type_ is None or p["type"] == type_)
                and (wanted is None or p["lookup_key"] in wanted)
            )

        return self.state.list("price", list_limit(params), created_filter(params), params.get("starting_after"), params.get("ending_before"), match)

    # events ----------------------------------------------------------------------------------
    def event(self, event_id: str) -> dict[str, Any]:
        event = self.state.get("event", event_id)
        if event is None:
            raise errors.no_such("event", event_id)
        return event

    def list_events(self, params: dict[str, Any]):
        check_known(params, {"limit", "starting_after", "ending_before", "created", "type", "types", "delivery_success"})
        types = params.get("types")
        if types is not None and not isinstance(types, list):
            types = [types]
        type_ = params.get("type")
        if type_ and types:
            raise errors.invalid("types", "You may only specify one of these parameters: type, types.")
        self._check_cursor("event", params)

        def match(e: dict[str, Any]) -> bool:
            if types is not None:
                return e["type"] in types
            if type_ is None:
                return True
            if type_.endswith("*"):
                return e["type"].startswith(type_[:-1])
            return e["type"] == type_

        return self.state.list("event", list_limit(params), created_filter(params), params.get("starting_after"), params.get("ending_before"), match)

    # fixtures (admin) ------------------------------------------------------------------------
    def load_fixtures(self, products: list[dict[str, Any]]) -> int:
        """Bulk-load products (each with an optional default price), keeping their `created`; no events."""
        product_objs, price_objs = [], []
        for item in products:
            created = int(item.get("created") or now())
            product = {
                "id": item.get("id") or new_id("prod"),
                "object": "product",
                "active": bool(item.get("active", True)),
                "created": created,
                "default_price": None,
                "description": item.get("description") or None,
                "images": [],
                "livemode": False,
                "marketing_features": [],
                "metadata": {str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
                "name": item["name"],
                "package_dimensions": None,
                "shippable": None,
                "statement_descriptor": None,
                "tax_code": None,
                "type": "service",
                "unit_label": None,
                "updated": created,
                "url": None,
            }
            spec = item.get("price")
            if spec:
                price = self._new_price(
                    product["id"],
                    {
                        "currency": spec["currency"],
                        "unit_amount": spec["unit_amount"],
                        **({"recurring": {"interval": spec["recurring_interval"]}} if spec.get("recurring_interval") else {}),
                    },
                )
                price["created"] = int(spec.get("created") or created)
                price["lookup_key"] = spec.get("lookup_key")
                product["default_price"] = price["id"]
                price_objs.append(price)
            product_objs.append(product)
        self.state.put_many("product", product_objs)
        self.state.put_many("price", price_objs)
        return len(product_objs)
