"""The catalog on SQLite and PostgreSQL: schema, writes, validation, reads."""

from __future__ import annotations

import pytest
from sqlalchemy import func, inspect, select

from recon_pipeline.catalog import Catalog, CatalogProduct, InvalidProduct, init_schema, products, upsert_products
from recon_pipeline.reconcile import local_frame


@pytest.fixture
def engine(catalog: Catalog):
    return catalog.engine


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(products)).scalar_one()


def test_init_schema_is_idempotent(engine):
    init_schema(engine)
    init_schema(engine)
    assert "products" in inspect(engine).get_table_names()


def test_products_round_trip_with_unicode_and_metadata(engine):
    upsert_products(
        engine,
        [
            CatalogProduct(id="sku_1", name="Café ✓ 東京", description=None, metadata={"tier": "2"}, unit_amount=1500, currency="USD", recurring_interval="month"),
            CatalogProduct(id="sku_2", name="Free tier", active=False),
        ],
    )
    frame = local_frame(Catalog(engine).rows())
    assert frame["product_id"].tolist() == ["sku_1", "sku_2"]
    first = frame.iloc[0]
    assert (first["name"], first["metadata"], first["unit_amount"], first["currency"], first["interval"]) == (
        "Café ✓ 東京",
        '{"tier":"2"}',
        1500,
        "usd",
        "month",
    )
    assert frame.iloc[1]["active"] == False  # noqa: E712 - numpy bool
    assert frame["unit_amount"].isna().tolist() == [False, True]


def test_upsert_updates_existing_products(engine):
    upsert_products(engine, [CatalogProduct(id="sku_1", name="Old", unit_amount=100, currency="usd")])
    upsert_products(engine, [CatalogProduct(id="sku_1", name="New", unit_amount=200, currency="usd")])
    frame = Catalog(engine).rows()
    assert count(engine) == 1
    assert (frame.loc[0, "name"], frame.loc[0, "unit_amount"]) == ("New", 200)


@pytest.mark.parametrize(
    "bad, message",
    [
        (CatalogProduct(id="", name="x"), "product id '' must be a non-empty string"),
        (CatalogProduct(id="sku_9", name=""), "product 'sku_9': name='' must be a non-empty string"),
        (CatalogProduct(id="sku_9", name="x", unit_amount=-5, currency="usd"), "unit_amount=-5 must not be negative"),
        (CatalogProduct(id="sku_9", name="x", unit_amount=9.99, currency="usd"), "unit_amount=9.99 must be a whole number"),  # type: ignore[arg-type]
        (CatalogProduct(id="sku_9", name="x", unit_amount=100, currency="dollars"), "currency='dollars' must be a three-letter"),
        (CatalogProduct(id="sku_9", name="x", recurring_interval="fortnight"), "recurring_interval='fortnight' must be one of"),
        (CatalogProduct(id="sku_9", name="x", metadata={f"k{i}": "v" for i in range(51)}), "more than Stripe's 50 keys"),
        (CatalogProduct(id="sku_9", name="x", metadata={"k" * 41: "v"}), "longer than 40 characters"),
        (CatalogProduct(id="sku_9", name="x", metadata={"k": "v" * 501}), "longer than 500 characters"),
    ],
)
def test_a_bad_product_is_refused_with_its_value_and_nothing_is_written(engine, bad, message):
    good = CatalogProduct(id="sku_1", name="Fine", unit_amount=100, currency="usd")
    with pytest.raises(InvalidProduct, match=message.replace("(", r"\(").replace("[", r"\[")):
        upsert_products(engine, [good, bad])
    assert count(engine) == 0
