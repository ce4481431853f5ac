"""Validate emulator responses against Stripe's official OpenAPI description.

The vendored `recon_pipeline/emulator/stripe_openapi/` (provenance in its README) holds
the products, prices, events and webhook endpoints part of Stripe's OpenAPI 3.0
description at API version 2026-08-26.dahlia, and `fixtures3.json` today's example
objects. OpenAPI 3.0 is not quite JSON Schema, so the component schemas are converted
once: `nullable: true` becomes "or null" and `$ref`s point into a `definitions` block.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

import recon_pipeline.emulator

VENDORED = Path(recon_pipeline.emulator.__file__).resolve().parent / "stripe_openapi"
SPEC = VENDORED / "spec3-2026-08-26-products-prices.json"
FIXTURES = VENDORED / "fixtures3.json"


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
    return json.loads(SPEC.read_text())


@lru_cache(maxsize=1)
def fixtures() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text())["resources"]


@lru_cache(maxsize=1)
def definitions() -> dict[str, Any]:
    schemas = copy.deepcopy(spec()["components"]["schemas"])
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
