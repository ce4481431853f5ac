"""Products, prices and events with Stripe's semantics, on top of `EmulatorState`.

Parameters arrive checked and typed by `spec.check_params` (exactly what Stripe's
description of today's API lists). Here are the rules the description cannot say:

- prices: `billing_scheme=tiered` needs `tiers` (the last `up_to: inf`) and `tiers_mode`, and
  takes no flat amount; a per-unit price needs exactly one of `unit_amount`,
  `unit_amount_decimal`, `custom_unit_amount` (one-time only); `transform_quantity` is not for
  tiered prices; `currency_options` carry each extra currency's own amounts (the price's own
  currency is in the answer too); terms are immutable (an update only takes what the
  description lists), `tax_behavior` only from `unspecified`; a lookup key is held by one
  price, `transfer_lookup_key` moves it; the default price cannot be archived;
- products: `""` unsets what the description allows to unset, `default_price` must be an
  active price of the product; a product with prices cannot be deleted;
- lists: newest first; prices only active ones unless `active=false`; `ids` (products) and
  `lookup_keys` (prices, at most 10) do not page;
- answers: `tiers` and `currency_options` only when expanded (`expand[]=tiers`,
  `expand[]=data.currency_options`, ...; an expanded option carries its own tiers), an
  unknown expansion refused.

Every create, update and delete emits its event (`data.previous_attributes` on updates,
`request` naming the request and its idempotency key).
"""

from __future__ import annotations

import copy
import re
import secrets
import string
from decimal import Decimal
from typing import Any

from recon_pipeline.emulator import errors
from recon_pipeline.emulator.search import SearchPage, page_of
from recon_pipeline.emulator.spec import account_version, api_version, check_version
from recon_pipeline.emulator.state import EmulatorState

API_VERSION = api_version()
_ALPHABET = string.ascii_letters + string.digits
# What each object may expand: an id to the object it names (its kind), or a field shown
# only when expanded (None). A list's expansions start with `data.`.
EXPANDABLE: dict[str, dict[str, str | None]] = {
    "product": {"default_price": "price"},
    "price": {"product": "product", "tiers": None, "currency_options": None},
    "event": {},
    "webhook_endpoint": {},
}
MAX_EXPAND_DEPTH = 4
# Fields of a price shown only when expanded.
EXPAND_ONLY = {"price": ("tiers", "currency_options")}
# Fields shown only in the answer that creates the object.
SHOWN_ON_CREATE = {"webhook_endpoint": ("secret",)}
# A price's amounts in one currency: its own, or each of its `currency_options`.
CURRENCY_OPTION_FIELDS = ("custom_unit_amount", "tax_behavior", "tiers", "unit_amount", "unit_amount_decimal")
# One year, in each interval: the longest a recurring price may be.
TAX_CODE = re.compile(r"txcd_\d{8}")
MAX_INTERVAL_COUNT = {"day": 1095, "week": 156, "month": 36, "year": 3}  # today: up to three years between billings
STATEMENT_DESCRIPTOR_FORBIDDEN = set("<>\\'\"*")


def new_id(prefix: str) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(24))}"


def _decimal_text(value: int | str | None) -> str | None:
    """A decimal amount as Stripe writes it: the shortest exact form ("1500", "0.125")."""
    if value is None:
        return None
    number = Decimal(str(value))
    text = format(number.normalize(), "f")
    return text if "." in text else str(int(number))


def _sub(param: str, name: str) -> str:
    """The name of parameter `name` inside `param` (`tiers[0]` + `up_to` -> `tiers[0][up_to]`)."""
    return f"{param}[{name}]" if param else name


def _amount(params: dict[str, Any], param: str, field: str = "unit_amount") -> tuple[int | None, str | None]:
    """(amount, amount_decimal) of `field` (unit_amount, flat_amount) from whichever of the two was given."""
    decimal_field = f"{field}_decimal"
    if field in params and decimal_field in params:
        raise errors.invalid(_sub(param, decimal_field), f"You may only specify one of these parameters: {_sub(param, field)}, {_sub(param, decimal_field)}.")
    if field in params:
        amount = params[field]
        if amount < 0:
            raise errors.invalid(_sub(param, field), f"Invalid integer: {amount}. Must be greater than or equal to 0.", "parameter_invalid_integer")
        return amount, str(amount)
    if decimal_field in params:
        text = _decimal_text(params[decimal_field])
        assert text is not None
        number = Decimal(text)
        if number < 0:
            raise errors.invalid(_sub(param, decimal_field), f"Invalid decimal: {params[decimal_field]}. Must be greater than or equal to 0.", "parameter_invalid_integer")
        return (int(number) if number == number.to_integral_value() else None), text
    return None, None


def _tiers(raw: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    """Tiers in Stripe's answer shape (the last `up_to` null), after Stripe's checks."""
    if not raw:
        raise errors.missing(param)
    tiers, last_up_to = [], 0
    for i, tier in enumerate(raw):
        path = _sub(param, str(i))
        up_to = tier["up_to"]
        final = i == len(raw) - 1
        if (up_to == "inf") != final:
            raise errors.invalid(_sub(path, "up_to"), "Only the last tier may have `up_to` set to `inf`, and it must.")
        if up_to != "inf" and up_to <= last_up_to:
            raise errors.invalid(_sub(path, "up_to"), f"Tier `up_to` values must increase; tier {i} has up_to={up_to}.")
        unit, unit_decimal = _amount(tier, path)
        flat, flat_decimal = _amount(tier, path, "flat_amount")
        if unit_decimal is None and flat_decimal is None:
            raise errors.invalid(path, f"Each tier needs `unit_amount`, `unit_amount_decimal`, `flat_amount` or `flat_amount_decimal` ({path}).")
        tiers.append({"flat_amount": flat, "flat_amount_decimal": flat_decimal, "unit_amount": unit, "unit_amount_decimal": unit_decimal, "up_to": None if final else up_to})
        last_up_to = up_to if up_to != "inf" else last_up_to
    return tiers


def _custom_amount(raw: dict[str, Any] | None, param: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not raw.get("enabled"):
        raise errors.invalid(_sub(param, "enabled"), "custom_unit_amount[enabled] must be true to set a custom unit amount.")
    low, high, preset = raw.get("minimum"), raw.get("maximum"), raw.get("preset")
    if low is not None and high is not None and low > high:
        raise errors.invalid(_sub(param, "minimum"), "custom_unit_amount[minimum] must be less than or equal to custom_unit_amount[maximum].")
    return {"maximum": high, "minimum": low, "preset": preset}


class Account:
    """Stripe's product catalog API for one account."""

    def __init__(self, state: EmulatorState, on_event=None, api_version: str | None = None, connected_id: str | None = None):
        self.state = state
        self.connected_id = connected_id  # a connected account's id: its events say so (`account`)
        self.on_event = on_event  # called with each new event (webhook delivery)
        # The account's default API version: events are rendered at it (an upgrade in the dashboard changes it).
        self.api_version = check_version(api_version) if api_version else account_version()

    def now(self) -> int:
        return self.state.clock.now()

    # events ------------------------------------------------------------------------------
    def emit(self, type_: str, obj: dict[str, Any], request: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
        data: dict[str, Any] = {"object": self.render(obj, [])}
        if previous is not None:
            data["previous_attributes"] = {k: v for k, v in previous.items() if k not in EXPAND_ONLY.get(obj["object"], ())}
        event = self.state.put(
            "event",
            {
                "id": new_id("evt"),
                "object": "event",
                **({"account": self.connected_id} if self.connected_id else {}),
                "api_version": self.api_version,
                "created": self.now(),
                "data": data,
                "livemode": False,
                "pending_webhooks": 0,
                "request": {"id": request.get("id"), "idempotency_key": request.get("idempotency_key")},
                "type": type_,
            },
        )
        if self.on_event is not None:
            self.on_event(event)

    # answers -----------------------------------------------------------------------------
    def render(self, obj: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        """An object as Stripe answers it: expand-only fields left out, unless expanded
        (paths already checked by `check_expand`)."""
        kind = obj.get("object", "")
        hidden = EXPAND_ONLY.get(kind, ()) + SHOWN_ON_CREATE.get(kind, ())
        out = {k: v for k, v in obj.items() if k not in hidden}
        for path in expand:
            head, _, rest = path.partition(".")
            if head == "tiers":
                out["tiers"] = copy.deepcopy(obj["tiers"]) if obj["tiers"] is not None else []
            elif head == "currency_options":
                # Each option as Stripe shows it: its tiers when the price is tiered.
                out["currency_options"] = {c: {k: v for k, v in o.items() if v is not None or k != "tiers"} for c, o in copy.deepcopy(obj["currency_options"]).items()}
            elif obj.get(head):
                target = self.price(obj[head]) if EXPANDABLE[kind][head] == "price" else self.product(obj[head])
                out[head] = self.render(target, [rest] if rest else [])
        return out

    def check_expand(self, kind: str, expand: list[str], listed: bool) -> list[str]:
        """The expansions that apply to each object (a list's `data.` removed), or Stripe's refusal."""
        paths = []
        for path in expand:
            if listed:
                if not path.startswith("data."):
                    raise errors.invalid("expand", f"This property cannot be expanded ({path}). You may want to try expanding 'data.{path}' instead.")
                path = path[len("data.") :]
            if path.count(".") >= MAX_EXPAND_DEPTH:
                raise errors.invalid("expand", f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property. Property: {path}")
            target: str | None = kind
            for part in path.split("."):
                if target is None or part not in EXPANDABLE.get(target, {}):
                    raise errors.invalid("expand", f"This property cannot be expanded ({path}).")
                target = EXPANDABLE[target][part]
            paths.append(path)
        return paths

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

    @staticmethod
    def _product_fields(params: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        """The product fields a create or update sets (`""` unsets where the description allows)."""
        fields: dict[str, Any] = {}
        for name in ("name", "active", "shippable"):
            if name in params:
                fields[name] = params[name]
        for name in ("description", "statement_descriptor", "tax_code", "unit_label", "url"):
            if name in params:
                fields[name] = params[name] or None
        if fields.get("tax_code") and not TAX_CODE.fullmatch(fields["tax_code"]):
            # Stripe's tax codes are txcd_ and 8 digits; their list is not vendored, so a well-formed unknown one passes.
            raise errors.StripeApiError(400, f"No such tax code: '{fields['tax_code']}'", code="resource_missing", param="tax_code")
        if "images" in params:
            images = params["images"] or []
            if len(images) > 8:
                raise errors.invalid("images", f"You may set up to 8 images; you passed {len(images)}.")
            fields["images"] = images
        if "marketing_features" in params:
            features = params["marketing_features"] or []
            if len(features) > 15:
                raise errors.invalid("marketing_features", f"You may set up to 15 marketing features; you passed {len(features)}.")
            fields["marketing_features"] = [{"name": feature["name"]} for feature in features]
        if "package_dimensions" in params:
            dimensions = params["package_dimensions"]
            fields["package_dimensions"] = None if dimensions in ("", None) else {k: float(dimensions[k]) for k in ("height", "length", "weight", "width")}
        if "metadata" in params:
            fields["metadata"] = apply_metadata(current.get("metadata", {}), params["metadata"])
        if "name" in fields and not fields["name"]:
            raise errors.cannot_unset("name")
        descriptor = fields.get("statement_descriptor")
        if descriptor and (len(descriptor) > 22 or STATEMENT_DESCRIPTOR_FORBIDDEN & set(descriptor)):
            raise errors.invalid("statement_descriptor", "The statement descriptor may be up to 22 characters and may not include <, >, \\, \", ' or *.")
        if fields.get("unit_label") and len(fields["unit_label"]) > 12:
            raise errors.invalid("unit_label", "unit_label may be up to 12 characters.")
        return fields

    def _new_product(self, product_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        created = self.now()
        return {
            "id": product_id,
            "object": "product",
            "active": True,
            "created": created,
            "default_price": None,
            "description": None,
            "images": [],
            "livemode": False,
            "marketing_features": [],
            "metadata": {},
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": None,
            "updated": created,
            "url": None,
            **fields,
        }

    def create_product(self, params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        product_id = params.get("id") or new_id("prod")
        if self.state.get("product", product_id) is not None:
            raise errors.StripeApiError(400, "Product already exists.", code="resource_already_exists", param="id")
        product = self._new_product(product_id, self._product_fields(params, {}))
        price = None
        if "default_price_data" in params:
            price = self._new_price(product_id, params["default_price_data"], "default_price_data")
            product["default_price"] = price["id"]
        self.state.put("product", product)
        self.emit("product.created", product, request)
        if price is not None:
            self.state.put("price", price)
            self.emit("price.created", price, request)
        return product

    def update_product(self, product_id: str, params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        current = self.product(product_id)
        updated = {**copy.deepcopy(current), **self._product_fields(params, current)}
        if "default_price" in params:
            price_id = params["default_price"]
            if not price_id:
                raise errors.cannot_unset("default_price")
            price = self.price(price_id, "default_price")
            if price["product"] != product_id:
                raise errors.invalid("default_price", f"The price `{price_id}` does not belong to product `{product_id}`.")
            if not price["active"]:
                raise errors.invalid("default_price", f"The price `{price_id}` is archived and cannot be the default price.")
            updated["default_price"] = price_id
        previous = previous_attributes(current, updated)
        if previous:
            updated["updated"] = max(self.now(), current["updated"])
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
        ids = params.get("ids")
        if ids is not None and (params.get("starting_after") or params.get("ending_before")):
            raise errors.invalid("ids", "You may not page through a list of `ids`: pass at most the ids of one page, without starting_after or ending_before.")
        wanted = set(ids) if ids is not None else None
        active, shippable, url = params.get("active"), params.get("shippable"), params.get("url")
        self.check_cursor("product", params)

        def match(p: dict[str, Any]) -> bool:
            return (
                (active is None or p["active"] == active)
                and (wanted is None or p["id"] in wanted)
                and (shippable is None or p["shippable"] == shippable)
                and (url is None or p["url"] == url)
            )

        return self.state.list("product", params.get("limit", 10), params.get("created"), params.get("starting_after"), params.get("ending_before"), match)

    def search(self, kind: str, params: dict[str, Any]) -> SearchPage:
        """`GET /v1/products/search`, `/v1/prices/search`: Stripe's query language (search.py)."""
        return page_of(self.state.newest_first(kind), params["query"], kind, params.get("limit", 10), params.get("page"))

    def check_cursor(self, kind: str, params: dict[str, Any]) -> None:
        if params.get("starting_after") and params.get("ending_before"):
            raise errors.invalid("ending_before", "You may only specify one of these parameters: ending_before, starting_after.")
        for name in ("starting_after", "ending_before"):
            if params.get(name) and self.state.get(kind, params[name]) is None:
                raise errors.no_such(kind, params[name], name)
        if not 1 <= params.get("limit", 10) <= 100:
            raise errors.invalid("limit", f"Invalid integer: {params['limit']}. Must be between 1 and 100.", "parameter_invalid_integer")

    # prices --------------------------------------------------------------------------------
    def _currency_option(self, raw: dict[str, Any], tiered: bool, recurring: bool, param: str) -> dict[str, Any]:
        """One currency's amounts (the price's own, or one of `currency_options`), checked."""
        unit, unit_decimal = _amount(raw, param)
        custom = _custom_amount(raw.get("custom_unit_amount"), _sub(param, "custom_unit_amount"))
        tiers = _tiers(raw["tiers"], _sub(param, "tiers")) if "tiers" in raw else None
        if tiered and tiers is None:
            raise errors.missing(_sub(param, "tiers"))
        if not tiered and tiers is not None:
            raise errors.invalid(_sub(param, "tiers"), "Tiers can only be used with billing_scheme=tiered.")
        if tiered and (unit_decimal is not None or custom is not None):
            raise errors.invalid(_sub(param, "unit_amount"), "A tiered price takes its amounts from `tiers`, not `unit_amount`.")
        if not tiered and unit_decimal is None and custom is None:
            raise errors.missing(_sub(param, "unit_amount"))
        if custom is not None and recurring:
            raise errors.invalid(_sub(param, "custom_unit_amount"), "custom_unit_amount is not supported for recurring prices.")
        return {"custom_unit_amount": custom, "tax_behavior": raw.get("tax_behavior", "unspecified"), "tiers": tiers, "unit_amount": unit, "unit_amount_decimal": unit_decimal}

    def _new_price(self, product_id: str, params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        """A price from create parameters (`prefix`: `default_price_data` when made with its product)."""
        currency = params["currency"].lower()
        scheme = params.get("billing_scheme", "per_unit")
        tiered = scheme == "tiered"
        recurring = params.get("recurring")
        if tiered and "tiers_mode" not in params:
            raise errors.missing(_sub(prefix, "tiers_mode"))
        if not tiered and ("tiers" in params or "tiers_mode" in params):
            raise errors.invalid(_sub(prefix, "tiers"), "Tiers can only be used with billing_scheme=tiered.")
        if tiered and "transform_quantity" in params:
            raise errors.invalid(_sub(prefix, "transform_quantity"), "transform_quantity is not supported with billing_scheme=tiered.")
        if recurring is not None:
            count = recurring.get("interval_count", 1)
            if not 1 <= count <= MAX_INTERVAL_COUNT[recurring["interval"]]:
                message = "Invalid recurring[interval_count]: the maximum interval allowed is three years (3 years, 36 months, or 156 weeks)."
                raise errors.invalid(_sub(prefix, "recurring[interval_count]"), message, "parameter_invalid_integer")
            usage = recurring.get("usage_type", "licensed")
            if usage == "metered" and not recurring.get("meter"):
                raise errors.missing(_sub(prefix, "recurring[meter]"))
            recurring = {"interval": recurring["interval"], "interval_count": count, "meter": recurring.get("meter"), "trial_period_days": None, "usage_type": usage}
        own = self._currency_option({k: v for k, v in params.items() if k in CURRENCY_OPTION_FIELDS}, tiered, recurring is not None, prefix)
        options = {currency: own}
        for option_currency, raw in (params.get("currency_options") or {}).items():
            param = _sub(prefix, f"currency_options[{option_currency}]")
            if option_currency.lower() == currency:
                raise errors.invalid(param, f"currency_options may not include the price's own currency ({currency}).")
            options[option_currency.lower()] = self._currency_option(raw, tiered, recurring is not None, param)
        transform = params.get("transform_quantity")
        if transform is not None and transform["divide_by"] < 1:
            raise errors.invalid(_sub(prefix, "transform_quantity[divide_by]"), "transform_quantity[divide_by] must be at least 1.", "parameter_invalid_integer")
        lookup_key = params.get("lookup_key")
        return {
            "id": new_id("price"),
            "object": "price",
            "active": params.get("active", True),
            "billing_scheme": scheme,
            "created": self.now(),
            "currency": currency,
            "currency_options": options,
            "custom_unit_amount": own["custom_unit_amount"],
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": apply_metadata({}, params.get("metadata", {}), _sub(prefix, "metadata")),
            "nickname": params.get("nickname"),
            "product": product_id,
            "recurring": recurring,
            "tax_behavior": own["tax_behavior"],
            "tiers": own["tiers"],
            "tiers_mode": params.get("tiers_mode"),
            "transform_quantity": transform,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": own["unit_amount"],
            "unit_amount_decimal": own["unit_amount_decimal"],
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
        if ("product" in params) == ("product_data" in params):
            if "product" in params:
                raise errors.invalid("product_data", "You may only specify one of these parameters: product, product_data.")
            raise errors.missing("product")
        product = None
        if "product_data" in params:
            data = params["product_data"]
            product = self._new_product(data.get("id") or new_id("prod"), self._product_fields(data, {}))
            if self.state.get("product", product["id"]) is not None:
                raise errors.StripeApiError(400, "Product already exists.", code="resource_already_exists", param="product_data[id]")
            product_id = product["id"]
        else:
            product_id = params["product"]
            self.product(product_id, "product")
        price = self._new_price(product_id, params)
        self._take_lookup_key(price["lookup_key"], bool(params.get("transfer_lookup_key")), request)
        if product is not None:
            self.state.put("product", product)
            self.emit("product.created", product, request)
        self.state.put("price", price)
        self.emit("price.created", price, request)
        return price

    def update_price(self, price_id: str, params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        current = self.price(price_id)
        updated = copy.deepcopy(current)
        if "active" in params:
            if not params["active"]:
                product = self.state.get("product", current["product"])
                if product is not None and product.get("default_price") == price_id:
                    raise errors.invalid("active", "This price cannot be archived because it is the default price of its product.")
            updated["active"] = params["active"]
        if "metadata" in params:
            updated["metadata"] = apply_metadata(current["metadata"], params["metadata"])
        if "nickname" in params:
            updated["nickname"] = params["nickname"] or None
        if "tax_behavior" in params and params["tax_behavior"] != current["tax_behavior"]:
            if current["tax_behavior"] != "unspecified":
                raise errors.invalid("tax_behavior", f"tax_behavior cannot be changed once it is `{current['tax_behavior']}`; create a new price instead.")
            updated["tax_behavior"] = params["tax_behavior"]
            updated["currency_options"][current["currency"]]["tax_behavior"] = params["tax_behavior"]
        if "currency_options" in params:
            extra = params["currency_options"] or {}
            own = updated["currency_options"][current["currency"]]
            options = {current["currency"]: own}
            for option_currency, raw in extra.items():
                if option_currency.lower() == current["currency"]:
                    raise errors.invalid(f"currency_options[{option_currency}]", f"currency_options may not include the price's own currency ({current['currency']}).")
                options[option_currency.lower()] = self._currency_option(raw, current["billing_scheme"] == "tiered", current["recurring"] is not None, f"currency_options[{option_currency}]")
            updated["currency_options"] = options
        if "lookup_key" in params:
            lookup_key = params["lookup_key"] or None
            self._take_lookup_key(lookup_key, bool(params.get("transfer_lookup_key")), request, price_id)
            updated["lookup_key"] = lookup_key
        previous = previous_attributes(current, updated)
        if previous:
            self.state.put("price", updated)
            self.emit("price.updated", updated, request, previous)
        return updated

    def list_prices(self, params: dict[str, Any]):
        lookup_keys = params.get("lookup_keys")
        if lookup_keys is not None and len(lookup_keys) > 10:
            raise errors.invalid("lookup_keys", f"You may pass at most 10 lookup_keys; you passed {len(lookup_keys)}.")
        wanted = set(lookup_keys) if lookup_keys is not None else None
        # Stripe lists active prices unless told `active=false`.
        active = params.get("active", True)
        product, type_ = params.get("product"), params.get("type")
        currency = params["currency"].lower() if params.get("currency") else None
        recurring = params.get("recurring") or {}
        self.check_cursor("price", params)

        def match(p: dict[str, Any]) -> bool:
            terms = p["recurring"] or {}
            return (
                p["active"] == active
                and (product is None or p["product"] == product)
                and (type_ is None or p["type"] == type_)
                and (wanted is None or p["lookup_key"] in wanted)
                and (currency is None or p["currency"] == currency)
                and all(terms.get(k) == v for k, v in recurring.items())
                and (not recurring or bool(terms))
            )

        return self.state.list("price", params.get("limit", 10), params.get("created"), params.get("starting_after"), params.get("ending_before"), match)

    # events ----------------------------------------------------------------------------------
    def event(self, event_id: str) -> dict[str, Any]:
        event = self.state.get("event", event_id)
        if event is None:
            raise errors.no_such("event", event_id)
        return event

    def list_events(self, params: dict[str, Any]):
        types, type_ = params.get("types"), params.get("type")
        if type_ and types:
            raise errors.invalid("types", "You may only specify one of these parameters: type, types.")
        self.check_cursor("event", params)

        def match(e: dict[str, Any]) -> bool:
            if types is not None:
                return e["type"] in types
            if type_ is None:
                return True
            if type_.endswith("*"):
                return e["type"].startswith(type_[:-1])
            return e["type"] == type_

        return self.state.list("event", params.get("limit", 10), params.get("created"), params.get("starting_after"), params.get("ending_before"), match)

    # fixtures (admin) ------------------------------------------------------------------------
    def load_fixtures(self, products: list[dict[str, Any]]) -> int:
        """Bulk-load products, keeping their `created`; no events.

        Each product: id, name, created, active, description, metadata and any product field;
        `price` (unit_amount, currency, recurring_interval, lookup_key: its default price) and
        `prices` (a list of price-create parameters in Stripe's shape, typed, plus `created`);
        `default_price`: the lookup key of the default (else the first price is).
        """
        product_objs, price_objs = [], []
        for item in products:
            created = int(item.get("created") or self.now())
            fields: dict[str, Any] = {k: item[k] for k in ("images", "marketing_features", "package_dimensions", "shippable", "statement_descriptor", "tax_code", "unit_label", "url") if k in item}
            product = self._new_product(
                item.get("id") or new_id("prod"),
                {
                    "name": item["name"],
                    "active": bool(item.get("active", True)),
                    "description": item.get("description") or None,
                    "metadata": {str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
                    "created": created,
                    "updated": created,
                    **fields,
                },
            )
            specs = list(item.get("prices") or [])
            if item.get("price"):
                simple = item["price"]
                recurring = {"recurring": {"interval": simple["recurring_interval"]}} if simple.get("recurring_interval") else {}
                specs.insert(0, {"currency": simple["currency"], "unit_amount": simple["unit_amount"], "lookup_key": simple.get("lookup_key"), "created": simple.get("created"), **recurring})
            for n, spec in enumerate(specs):
                price = self._new_price(product["id"], {k: v for k, v in spec.items() if k != "created" and v is not None})
                price["created"] = int(spec.get("created") or created)
                wanted = item.get("default_price")
                if (wanted is None and n == 0) or (wanted is not None and price["lookup_key"] == wanted):
                    product["default_price"] = price["id"]
                price_objs.append(price)
            product_objs.append(product)
        self.state.put_many("product", product_objs)
        self.state.put_many("price", price_objs)
        return len(product_objs)


def previous_attributes(current: dict[str, Any], updated: dict[str, Any]) -> dict[str, Any]:
    """What an update changed, as Stripe's events say it: each changed field's old value;
    for metadata, only the keys that changed (null for a key that was not there)."""
    previous: dict[str, Any] = {}
    for name, value in updated.items():
        old = current.get(name)
        if value == old:
            continue
        if name == "metadata":
            old = old or {}
            previous[name] = {key: old.get(key) for key in sorted(set(old) | set(value)) if old.get(key) != value.get(key)}
        else:
            previous[name] = old
    return previous


def apply_metadata(current: dict[str, str], update: Any, param: str = "metadata") -> dict[str, str]:
    """Stripe's merge: keys set, `metadata[k]=` removes k, `metadata=` clears all."""
    if update == "":
        return {}
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

