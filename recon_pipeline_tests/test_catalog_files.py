"""Authoring the catalog from the command line and from files: add, edit every price field, import, export."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from sqlalchemy import func, select

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.schema import outbox, prices, products
from recon_pipeline.testing import drift_rows
from recon_pipeline_tests.test_cli import cli, said

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "catalog.csv"
KEY = ("sk_test_files", "")


def _counts(url: str) -> tuple[int, int, int]:
    catalog = Catalog.open(url)
    with catalog.engine.connect() as conn:
        found = tuple(conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (products, prices, outbox))
    catalog.engine.dispose()
    return found  # type: ignore[return-value]


def _stripe_prices(emulator) -> dict[str, dict]:
    listed = httpx.get(f"{emulator.url}/v1/prices", params={"limit": 100, "expand[]": ["data.tiers", "data.currency_options"]}, auth=KEY).json()["data"]
    return {p["lookup_key"]: p for p in listed}


def test_from_an_empty_database_to_a_synced_catalog_with_the_cli_and_a_csv_file(tmp_path: Path, emulator):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    env = {"RECON_CATALOG_URL": url, "STRIPE_API_BASE": emulator.url}
    tiers = '[{"up_to": 5, "unit_amount": 2000}, {"up_to": "inf", "unit_amount": 1500}]'
    options = '{"eur": {"tiers": [{"up_to": 5, "unit_amount": 1900}, {"up_to": "inf", "unit_amount": 1400}]}}'
    added = cli("catalog", "add", "api", "--name", "API calls", "--unit-label", "call", "--price", "-", "usd", "month",
                "--tiers-mode", "volume", "--tiers", tiers, "--currency-options", options, "--tax-behavior", "exclusive", **env)  # fmt: skip
    assert added.returncode == 0 and "api: added with 1 prices and queued in the outbox" in said(added)
    imported = cli("catalog", "import", str(EXAMPLE), **env)
    assert imported.returncode == 0 and "products created 3, changed 0; prices added 5" in said(imported)
    # Every price field from the command line: an interval count, a nickname, metadata, transform_quantity.
    edited = cli("catalog", "edit", "api", "--add-price", "api_batch", "1000", "usd", "month", "--interval-count", "6", "--nickname", "Half-yearly batch",
                 "--transform-quantity", '{"divide_by": 1000, "round": "up"}', "--price-metadata", '{"batch": "yes"}', **env)  # fmt: skip
    assert edited.returncode == 0, said(edited)
    assert cli("worker", "--once", **env).returncode == 0

    found = _stripe_prices(emulator)
    assert set(found) == {"api:default", "api_batch", "starter_monthly", "starter_yearly", "team_seats", "team_quarterly", "onboarding_once"}
    seats = found["team_seats"]
    assert (seats["billing_scheme"], seats["tiers_mode"], [t["unit_amount"] for t in seats["tiers"]]) == ("tiered", "graduated", [1500, 1200, 900])
    assert [t["unit_amount"] for t in seats["currency_options"]["eur"]["tiers"]] == [1400, 1100, 800]
    assert found["starter_monthly"]["currency_options"]["gbp"]["unit_amount"] == 800
    assert (found["team_quarterly"]["recurring"]["interval_count"], found["onboarding_once"]["unit_amount"]) == (3, 49900)
    batch = found["api_batch"]
    assert (batch["recurring"]["interval_count"], batch["nickname"], batch["transform_quantity"], batch["metadata"]) == (
        6, "Half-yearly batch", {"divide_by": 1000, "round": "up"}, {"batch": "yes"}
    )  # fmt: skip
    assert found["api:default"]["tiers_mode"] == "volume"
    assert drift_rows(Catalog.open(url), emulator.url) == 0


def test_a_file_with_bad_rows_reports_each_with_its_line_and_writes_nothing(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "Product ID,Product Name,Lookup Key,Amount,Currency,Interval,Tiers\n"
        "ok,Fine,ok_m,10.00,usd,month,\n"
        "nameless,,n_m,10.00,usd,month,\n"
        "money,Money,m_m,ten,usd,month,\n"
        "when,When,w_m,10.00,usd,fortnight,\n"
        "tiers,Tiers,t_m,,usd,month,[not json\n"
        "dup,Dup,ok_m,5.00,usd,month,\n"
    )
    done = cli("catalog", "import", str(bad), RECON_CATALOG_URL=url)
    text = said(done)
    assert done.returncode == 2
    expected = [
        (3, "name is missing"),
        (4, "Amount='ten' is not a number"),
        (5, "price 'w_m': recurring_interval='fortnight'"),
        (6, "tiers is not JSON"),
        (7, "lookup key 'ok_m' is already used at line 2"),
    ]
    for line, why in expected:
        assert f"bad.csv: line {line}: {why}" in text, text
    assert "5 bad rows; nothing was written" in text
    assert _counts(url) == (0, 0, 0)


def test_an_import_refused_while_writing_leaves_nothing_written(tmp_path: Path):
    """A lookup key another catalog product already holds is found only against the catalog: the
    rows before it, already written in the transaction, are rolled back with it."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    assert cli("catalog", "add", "first", "--name", "First", "--price", "500", "usd", "month", RECON_CATALOG_URL=url).returncode == 0
    before = _counts(url)
    clash = tmp_path / "clash.json"
    products_ = [
        {"id": "new", "name": "New", "prices": [{"lookup_key": "new_m", "currency": "usd", "unit_amount": 700, "recurring_interval": "month"}]},
        {"id": "first", "name": "First", "prices": [{"lookup_key": "first:default", "currency": "usd", "unit_amount": 500, "recurring_interval": "month"}]},
        {"id": "other", "name": "Other", "prices": [{"lookup_key": "first:default", "currency": "usd", "unit_amount": 900}]},
    ]
    clash.write_text(json.dumps({"products": products_}))
    done = cli("catalog", "import", str(clash), RECON_CATALOG_URL=url)
    assert done.returncode == 2
    assert "products[2]" in said(done) and "'first:default'" in said(done)
    assert _counts(url) == before


def test_export_writes_what_import_reads(tmp_path: Path):
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    assert cli("catalog", "import", str(EXAMPLE), RECON_CATALOG_URL=first).returncode == 0
    for kind in ("csv", "json"):
        exported = tmp_path / f"catalog.{kind}"
        assert cli("catalog", "export", "--output", str(exported), RECON_CATALOG_URL=first).returncode == 0
        url = second.replace("b.db", f"b_{kind}.db")
        assert cli("catalog", "import", str(exported), RECON_CATALOG_URL=url).returncode == 0
        again = cli("catalog", "export", "--format", kind, RECON_CATALOG_URL=url)
        assert again.stdout == exported.read_text()
        unchanged = cli("catalog", "import", str(exported), RECON_CATALOG_URL=first)
        assert "the catalog already says so; nothing queued" in said(unchanged)
    assert ",onboarding_once,true,499.00,usd," in cli("catalog", "export", RECON_CATALOG_URL=first).stdout  # Amount as Stripe's exports write it


def test_text_that_looks_like_json_stays_text_and_amounts_are_read_one_way(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    odd = tmp_path / "odd.json"
    odd.write_text(
        json.dumps({"products": [{"id": "t", "name": "[2024] edition", "description": '{"note": 1}', "prices": [{"lookup_key": "t_m", "currency": "usd", "unit_amount": 100, "nickname": "[beta]"}]}]})
    )
    assert cli("catalog", "import", str(odd), RECON_CATALOG_URL=url).returncode == 0
    for kind in ("json", "csv"):
        exported = tmp_path / f"out.{kind}"
        assert cli("catalog", "export", "--output", str(exported), RECON_CATALOG_URL=url).returncode == 0
        assert "the catalog already says so" in said(cli("catalog", "import", str(exported), RECON_CATALOG_URL=url))
    back = json.loads((tmp_path / "out.json").read_text())["products"][0]
    assert (back["name"], back["description"], back["prices"][0]["nickname"]) == ("[2024] edition", '{"note": 1}', "[beta]")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"products": [{"id": "w", "name": "W", "description": {"note": 1}}]}))
    assert "products[0]: description must be text" in said(cli("catalog", "import", str(wrong), RECON_CATALOG_URL=url))
    amounts = tmp_path / "amounts.csv"
    amounts.write_text('Product ID,Product Name,Lookup Key,Amount,Currency\na,A,a_1,"15,00",eur\nb,B,b_1,Infinity,usd\n')
    done = cli("catalog", "import", str(amounts), "--dry-run", RECON_CATALOG_URL=url)
    assert done.returncode == 2
    assert "line 2: Amount='15,00' is not a number" in said(done) and "line 3: Amount='Infinity' is not a number" in said(done)
