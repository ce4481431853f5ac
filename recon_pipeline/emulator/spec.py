"""Stripe's API description, vendored (stripe_openapi/), as the emulator's rule book.

Every request's parameters are checked against the operation's schema in the spec: a
parameter the operation does not list is refused (`parameter_unknown`), each value is
coerced from form text to its type (integer, boolean, number, decimal, currency, enum,
nested object, array, "" to unset where the spec allows it) or refused with Stripe's error
(`parameter_invalid_integer`, ...), and required ones must be there (`parameter_missing`).
So the emulator accepts exactly what Stripe's description of today's API accepts; the
resource code then applies the rules the spec cannot say (immutability, tiers, ...).

`response_problems` validates a body the emulator returns against the response schema
(OpenAPI 3.0 converted to JSON Schema), for the tests that hold it to the spec.
"""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from recon_pipeline.emulator import errors
from recon_pipeline.emulator.currencies import ISO_4217

VENDORED = Path(__file__).resolve().parent / "stripe_openapi"
SPEC_FILE = VENDORED / "spec3-2026-08-26-products-prices.json"
FIXTURES_FILE = VENDORED / "fixtures3.json"


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    return json.loads(SPEC_FILE.read_text())


@lru_cache(maxsize=1)
def fixtures() -> dict[str, Any]:
    return json.loads(FIXTURES_FILE.read_text())["resources"]


def api_version() -> str:
    """The API version this description (and so the emulator) is of."""
    return str(spec()["info"]["version"])


@lru_cache(maxsize=1)
def published_versions() -> tuple[str, ...]:
    """Every API version Stripe has published, oldest first (vendored with its sources:
    stripe_openapi/api_versions.json). A request may name any of them, as on Stripe; the
    answer is rendered as this description has it (README: what differs between versions)."""
    return tuple(json.loads((VENDORED / "api_versions.json").read_text())["versions"])


def account_version() -> str:
    """The default API version of a new emulated account: the one the `stripe` SDK pins (the
    newest it knows), as Stripe gives a new account the latest. Events are rendered at it."""
    import stripe

    return str(stripe.api_version)


def check_version(version: str, param: str | None = None) -> str:
    """`version` if Stripe has published it; else Stripe's refusal, naming the value as sent."""
    if version in published_versions():
        return version
    raise errors.StripeApiError(400, f"Invalid Stripe API version: {version}", param=param)


# Parameters Stripe still takes that its description of today's API leaves out: the `stripe`
# SDK sends them for older integrations (`type` on a product create: a product is a service
# unless it is a good; today's product object no longer shows it).
LEGACY_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/products"): {"type": {"enum": ["good", "service"], "type": "string"}},
}


def _published_version_param() -> dict[str, Any]:
    """A webhook endpoint may be pinned to any published version (the description's list ends at its own date)."""
    return {"enum": list(published_versions()), "type": "string"}


@cache
def request_schema(method: str, template: str) -> dict[str, Any]:
    """The operation's parameters as one object schema: form body for writes, query for reads."""
    operation = spec()["paths"][template][method.lower()]
    if method.upper() in ("POST",):
        body = operation.get("requestBody", {}).get("content", {}).get("application/x-www-form-urlencoded", {}).get("schema", {})
        properties = {**body.get("properties", {}), **LEGACY_PARAMS.get((method.upper(), template), {})}
        if template == "/v1/webhook_endpoints" and "api_version" in properties:
            properties["api_version"] = _published_version_param()
        return {"type": "object", "properties": properties, "required": body.get("required", [])}
    query = [p for p in operation.get("parameters", []) if p["in"] == "query"]
    return {"type": "object", "properties": {p["name"]: p["schema"] for p in query}, "required": [p["name"] for p in query if p.get("required")]}


def check_params(method: str, template: str, params: dict[str, Any]) -> dict[str, Any]:
    """The request's parameters coerced to their types, or the error Stripe answers."""
    schema = request_schema(method, template)
    properties = schema["properties"]
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in properties:
            raise errors.unknown(name)
        out[name] = coerce(properties[name], value, name)
    for name in schema["required"]:
        if name not in params:
            raise errors.missing(name)
    return out


def _fail(param: str, message: str, code: str = "parameter_invalid_string") -> errors.StripeApiError:
    return errors.invalid(param, message, code)


def coerce(schema: dict[str, Any], value: Any, param: str) -> Any:
    """One value from form text to what `schema` says, or Stripe's error naming `param`."""
    if "anyOf" in schema:
        first: errors.StripeApiError | None = None
        for option in schema["anyOf"]:
            try:
                return coerce(option, value, param)
            except errors.StripeApiError as error:
                first = first or error
        assert first is not None
        raise first
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, value, param)
    if kind == "array":
        return _array(schema, value, param)
    if kind == "integer":
        if isinstance(value, bool) or not re.fullmatch(r"-?\d+", str(value).strip()):
            raise _fail(param, f"Invalid integer: {value}", "parameter_invalid_integer")
        return int(value)
    if kind == "number":
        try:
            return float(str(value))
        except ValueError:
            raise _fail(param, f"Invalid decimal: {value}", "parameter_invalid_integer") from None
    if kind == "boolean":
        if value in (True, False):
            return value
        if value not in ("true", "false"):
            raise _fail(param, f"Invalid boolean: {value}", "parameter_invalid_boolean")
        return value == "true"
    if not isinstance(value, str):
        raise _fail(param, f"Invalid string: {value!r}")
    return _string(schema, value, param)


def _string(schema: dict[str, Any], value: str, param: str) -> str:
    enum = schema.get("enum")
    if value == "" and enum is None:
        # `""` unsets a parameter; one the description does not let unset is refused so.
        raise errors.cannot_unset(param)
    if enum is not None and value not in enum:
        if enum == [""]:
            raise _fail(param, f"Invalid {param}: {value!r}")
        listed = ", ".join(enum[:-1]) + (f", or {enum[-1]}" if len(enum) > 1 else enum[-1])
        raise _fail(param, f"Invalid {param}: must be one of {listed}")
    limit = schema.get("maxLength")
    if limit is not None and len(value) > limit:
        raise _fail(param, f"Invalid string: {value[:20]}...; must be at most {limit} characters", "string_length_exceeds_maximum")
    fmt = schema.get("format")
    if fmt == "decimal":
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise _fail(param, f"Invalid decimal: {value}", "parameter_invalid_integer") from None
        if not number.is_finite() or number.as_tuple().exponent < -12:  # type: ignore[operator]
            raise _fail(param, f"Invalid decimal: {value}; at most 12 decimal places", "parameter_invalid_integer")
    if fmt == "currency" and value.lower() not in ISO_4217:
        raise _fail(param, f"Invalid currency: {value.lower()}. Stripe currently supports these currencies: usd, eur, gbp, cad, ...")
    return value


def _object(schema: dict[str, Any], value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(param, "Invalid object", "parameter_invalid_object")
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    out = {}
    for key, item in value.items():
        path = f"{param}[{key}]"
        if key in properties:
            out[key] = coerce(properties[key], item, path)
        elif extra:
            # A free-form map (metadata): `key=""` removes the key.
            out[key] = item if item == "" else coerce(extra if isinstance(extra, dict) else {}, item, path)
        else:
            raise errors.unknown(path)
    for key in schema.get("required", []):
        if key not in value:
            raise errors.missing(f"{param}[{key}]")
    return out


def _array(schema: dict[str, Any], value: Any, param: str) -> list[Any]:
    if isinstance(value, str) or not isinstance(value, list):
        raise _fail(param, "Invalid array", "parameter_invalid_array")
    items = schema.get("items", {})
    return [coerce(items, item, f"{param}[{i}]") for i, item in enumerate(value)]


# -- responses, for the tests -----------------------------------------------------------------


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 -> JSON Schema: `nullable` becomes "or null", refs point into `definitions`."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = value.replace("#/components/schemas/", "#/definitions/")
        elif key != "nullable":
            out[key] = _to_json_schema(value)
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") else out


@lru_cache(maxsize=1)
def definitions() -> dict[str, Any]:
    return {name: _to_json_schema(schema) for name, schema in copy.deepcopy(spec()["components"]["schemas"]).items()}


def _validator(schema: dict[str, Any]) -> Any:
    import jsonschema  # a test tool: only a validating emulator needs it

    return jsonschema.Draft7Validator({**schema, "definitions": definitions()})


@cache
def _response_validator(method: str, template: str, status: int) -> Any:
    responses = spec()["paths"][template][method.lower()]["responses"]
    response = responses.get(str(status)) or responses["default"]
    return _validator(_to_json_schema(response["content"]["application/json"]["schema"]))


@cache
def _object_validator(name: str) -> Any:
    return _validator({"$ref": f"#/definitions/{name}"})


def _problems(validator: Any, body: Any) -> list[str]:
    found = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in found]


def response_problems(method: str, template: str, status: int, body: Any) -> list[str]:
    """Every way `body` differs from the response schema of the operation and status (none: [])."""
    return _problems(_response_validator(method, template, status), body)


def object_problems(name: str, body: Any) -> list[str]:
    """Every way `body` differs from the spec's schema `name` (product, price, ...)."""
    return _problems(_object_validator(name), body)
