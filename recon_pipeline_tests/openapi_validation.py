"""Validate bodies against Stripe's official OpenAPI description, as the emulator reads it.

The description is vendored in `recon_pipeline/emulator/stripe_openapi/` (provenance in its
README); `recon_pipeline.emulator.spec` converts it to JSON Schema. These helpers turn a
body's differences from it into an AssertionError listing them.
"""

from __future__ import annotations

from typing import Any

from recon_pipeline.emulator.spec import FIXTURES_FILE as FIXTURES
from recon_pipeline.emulator.spec import SPEC_FILE as SPEC
from recon_pipeline.emulator.spec import fixtures, object_problems, response_problems, spec

__all__ = ["FIXTURES", "SPEC", "fixture_keys", "fixtures", "spec", "validate_object", "validate_response"]


def _assert_none(problems: list[str]) -> None:
    if problems:
        raise AssertionError("response does not match Stripe's schema:\n" + "\n".join(problems[:20]))


def validate_response(method: str, path_template: str, status: int, body: Any) -> None:
    _assert_none(response_problems(method, path_template, status, body))


def validate_object(name: str, body: Any) -> None:
    _assert_none(object_problems(name, body))


def fixture_keys(resource: str) -> set[str]:
    return set(fixtures()[resource])
