"""Dependencies point one way: each layer imports only the layers below it (`recon_pipeline.names`
draws them), the logic never imports the Dagster layer, and the emulator imports nothing of
the pipeline. Every import counts, those inside functions too.

`python -m recon_pipeline_tests.test_imports` prints the package's import graph by layer.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import recon_pipeline

PACKAGE = Path(recon_pipeline.__file__).parent
LAYERS = (
    ("names", "fields", "policies", "backoff", "progress"),
    ("catalog",),
    ("settings",),
    ("stripe_api",),
    ("reconcile",),
    ("repair",),
    ("sync",),
    ("alerts", "backfill", "demo"),
    ("defs", "definitions", "runs", "drill", "cli", "testing", "__main__"),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
DAGSTER_LAYER = {"defs", "definitions", "runs", "cli"}
LOGIC = {"catalog", "stripe_api", "reconcile", "repair", "sync"}


def _unit(module: str) -> str:
    """`recon_pipeline.catalog.store` -> `catalog`; the package itself -> `recon_pipeline`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports() -> list[tuple[str, str]]:
    """(importing module, imported module) for every import of the package's own modules."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recon_pipeline"):
                found.append((module, node.module))
            elif isinstance(node, ast.Import):
                found += [(module, alias.name) for alias in node.names if alias.name.startswith("recon_pipeline")]
    return found


def graph() -> dict[tuple[str, str], int]:
    edges: collections.Counter[tuple[str, str]] = collections.Counter()
    for importer, imported in imports():
        if _unit(importer) != _unit(imported):
            edges[(_unit(importer), _unit(imported))] += 1
    return dict(edges)


def test_every_unit_of_the_package_has_a_layer():
    units = {_unit(importer) for importer, _ in imports()} - {"emulator", "recon_pipeline"}
    assert units - set(RANK) == set()


def test_each_layer_imports_only_the_layers_below_it():
    upward = [
        f"{importer} -> {imported}"
        for importer, imported in imports()
        if _unit(importer) in RANK and _unit(imported) in RANK and RANK[_unit(imported)] > RANK[_unit(importer)]
    ]
    assert upward == []


def test_the_logic_never_imports_the_dagster_layer_nor_dagster():
    dagster_layer = [f"{a} -> {b}" for a, b in imports() if _unit(a) in LOGIC and _unit(b) in DAGSTER_LAYER]
    assert dagster_layer == []
    uses_dagster = [str(path.relative_to(PACKAGE)) for unit in LOGIC for path in (PACKAGE / unit).rglob("*.py") if "import dagster" in path.read_text()]
    assert uses_dagster == []


def test_the_emulator_imports_nothing_of_the_pipeline():
    assert [f"{a} -> {b}" for a, b in imports() if _unit(a) == "emulator" and _unit(b) != "emulator"] == []


def test_each_field_and_its_rules_are_written_once_in_the_registry():
    from recon_pipeline import fields

    assert set(fields.PRICE_COMPARED_FIELDS) == {*fields.IMMUTABLE_FIELDS, *fields.MUTABLE_FIELDS}
    assert fields.price_attributes()["recurring"] == ("recurring_interval", "recurring_interval_count", "recurring_usage_type")
    spelled = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if "IMMUTABLE_FIELDS = " in path.read_text() or "KEPT_WHEN_EMPTY = " in path.read_text()]
    assert spelled == ["fields.py"]


def test_the_emulators_request_handling_is_split_by_concern():
    import inspect

    from recon_pipeline.emulator import app

    concerns = [app.authenticate, app.negotiate_version, app.inject_faults, app.Idempotency.begin, app.Api.execute]
    assert all(len(inspect.getsource(concern).splitlines()) <= 30 for concern in concerns)
    assert len(inspect.getsource(app.Api.handle).splitlines()) <= 35  # the order of the concerns, nothing else
    assert len(inspect.getsource(app.create_app).splitlines()) <= 45  # the routes, nothing else


if __name__ == "__main__":
    for (importer, imported), count in sorted(graph().items(), key=lambda item: (RANK.get(item[0][0], -1), item[0])):
        print(f"{importer:>12} -> {imported:<12} {count:3}")
