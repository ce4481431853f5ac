"""The emulator's own routes, as the README documents them: each row of its table is sent, body
as written, and the answer must have the keys the README shows (values depend on the moment)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `(GET|POST) (/_emulator/[a-z]+)` \| (`(?P<body>.*?)`)? *\| (?P<answer>.*) \|$")


def documented_routes() -> list[tuple[str, str, dict | None, str]]:
    """(method, path, body, answer) for each row of "The emulator's own routes"."""
    section = README.read_text().split("### The emulator's own routes", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            body = json.loads(match["body"]) if match["body"] else None
            rows.append((match.group(1), match.group(2), body, match["answer"]))
    return rows


def test_the_readme_documents_every_route_the_emulator_has():
    from recon_pipeline.emulator.app import create_app

    served = {(method, route.path) for route in create_app().routes if route.path.startswith("/_emulator/") for method in route.methods or () if method != "HEAD"}
    served |= {("GET", "/_emulator/accounts"), ("POST", "/_emulator/accounts")}  # the account router's own
    assert {(method, path) for method, path, _, _ in documented_routes()} == served


@pytest.mark.parametrize("method, path, body, answer", documented_routes(), ids=lambda value: value if isinstance(value, str) and value.startswith("/") else None)
def test_each_documented_route_answers_as_written(emulator, method, path, body, answer):
    if path == "/_emulator/stats":  # something to count
        httpx.get(f"{emulator.url}/v1/products", auth=("sk_test_routes", ""))
    response = httpx.request(method, f"{emulator.url}{path}", json=body) if body is not None else httpx.request(method, f"{emulator.url}{path}")
    assert response.status_code == 200, response.text
    got = response.json()
    shown = re.match(r"`(\{.*?\})`", answer)
    if shown:  # the README shows the answer: the same keys, nested ones too
        expected = json.loads(shown.group(1))
        assert set(got) == set(expected)
        for key, value in expected.items():
            if isinstance(value, dict) and key not in ("status_counts", "endpoints"):
                assert set(got[key]) == set(value), key
    else:  # "every fault as it now is": what GET shows, with the body applied
        assert path == "/_emulator/faults" and all(got[key] == value for key, value in (body or {}).items())
    if path == "/_emulator/account":
        assert got["api_version"] == (body or {}).get("api_version", got["api_version"])


def test_an_unknown_fault_is_refused_naming_the_known_ones(emulator):
    response = httpx.post(f"{emulator.url}/_emulator/faults", json={"latency": 5})
    assert response.status_code == 400 and "unknown faults ['latency']" in response.json()["error"] and "latency_ms" in response.json()["error"]
