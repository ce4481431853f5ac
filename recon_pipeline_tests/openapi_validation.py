"""Validate emulator responses against Stripe's official OpenAPI description.

../shared/stripe-openapi/spec3.json is OpenAPI 3.0 (2023-08-16); fixtures3.json holds
today's example objects. OpenAPI 3.0 is not quite JSON Schema, so the component schemas
are converted once: `nullable: true` becomes "or null", `$ref`s point into a
`definitions` block, and one documented version gap is bridged (see VERSION_GAP).
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

SHARED = Path(__file__).resolve().parents[2] / "shared" / "stripe-openapi"

# The 2023 spec requires `product.features`; today's API (and the fixtures, and stripe
# 16.x) replaced it with `marketing_features`. The emulator answers like today's API, so
# `features` is dropped from the required list and nothing else is loosened.
VERSION_GAP = {"product": {"features"}}


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = value.replace("#/components/schemas/", "#/definitions/")
        elif key != "nullable":
            out[key] = _convert(value)
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    return json.loads((SHARED / "spec3.json").read_text())


@lru_cache(maxsize=1)
def fixtures() -> dict[str, Any]:
    return json.loads((SHARED / "fixtures3.json").read_text())["resources"]


@lru_cache(maxsize=1)
def definitions() -> dict[str, Any]:
    schemas = copy.deepcopy(spec()["components"]["schemas"])
    for name, dropped in VERSION_GAP.items():
        schemas[name]["required"] = [r for r in schemas[name]["required"] if r not in dropped]
    return {name: _convert(schema) for name, schema in schemas.items()}


def response_schema(method: str, path_template: str, status: int) -> dict[str, Any]:
    responses = spec()["paths"][path_template][method.lower()]["responses"]
    response = responses.get(str(status)) or responses["default"]
    return _convert(response["content"]["application/json"]["schema"])


def validate(schema: dict[str, Any], body: Any) -> None:
    """Raise AssertionError listing every violation."""
    validator = jsonschema.Draft7Validator({**schema, "definitions": definitions()})
    problems = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if problems:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in problems[:20]]
        raise AssertionError("response does not match Stripe's schema:\n" + "\n".join(lines))


def validate_response(method: str, path_template: str, status: int, body: Any) -> None:
    validate(response_schema(method, path_template, status), body)


def validate_object(name: str, body: Any) -> None:
    validate({"$ref": f"#/definitions/{name}"}, body)


def fixture_keys(resource: str) -> set[str]:
    return set(fixtures()[resource])
