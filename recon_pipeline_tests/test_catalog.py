"""The catalog on SQLite and PostgreSQL: schema, writes, validation, reads of products and prices."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, inspect, select

from recon_pipeline.catalog import (
    Catalog,
    CatalogPrice,
    CatalogProduct,
    InvalidPrice,
    InvalidProduct,
    init_schema,
    prices,
    products,
    replace_products,
    upsert_prices,
    upsert_products,
)
from recon_pipeline.reconcile import local_frame, local_price_frame

TIERS = [{"up_to": 10, "unit_amount": 500}, {"up_to": "inf", "unit_amount_decimal": "412.5", "flat_amount": 100}]


@pytest.fixture
def engine(catalog: Catalog):
    return catalog.engine


def count(engine, table=products) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_init_schema_is_idempotent(engine):
    init_schema(engine)
    init_schema(engine)
    assert {"products", "prices"} <= set(inspect(engine).get_table_names())


def test_products_round_trip_with_unicode_metadata_and_todays_fields(engine):
    upsert_products(
        engine,
        [
            CatalogProduct(
                id="sku_1",
                name="Café ✓ 東京",
                metadata={"tier": "2"},
                marketing_features=["SSO", "Audit log"],
                images=["https://example.com/a.png"],
                package_dimensions={"height": 1, "length": 2.5, "weight": 3, "width": 4},
                shippable=True,
                statement_descriptor="CAFE TOKYO",
                unit_label="seat",
                url="https://example.com/cafe",
                tax_code="txcd_10103001",
            ),
            CatalogProduct(id="sku_2", name="Free tier", active=False),
        ],
    )
    frame = local_frame(Catalog(engine).rows())
    assert frame["product_id"].tolist() == ["sku_1", "sku_2"]
    first = frame.iloc[0]
    assert (first["name"], first["metadata"], first["marketing_features"], first["shippable"], first["unit_label"]) == (
        "Café ✓ 東京",
        '{"tier":"2"}',
        '["SSO","Audit log"]',
        "true",
        "seat",
    )
    assert json.loads(first["package_dimensions"]) == {"height": 1.0, "length": 2.5, "weight": 3.0, "width": 4.0}
    second = frame.iloc[1]
    assert (bool(second["active"]), second["marketing_features"], second["shippable"], second["default_price"]) == (False, "[]", "false", "")


def test_prices_round_trip_in_canonical_form(engine):
    replace_products(
        engine,
        [CatalogProduct(id="pro", name="Pro", default_price="pro_monthly")],
        [
            CatalogPrice(lookup_key="pro_monthly", product_id="pro", currency="USD", unit_amount=1500, recurring_interval="month",
                         currency_options={"eur": {"unit_amount": 1400}, "usd": {"unit_amount": 1500}}),
            CatalogPrice(lookup_key="pro_seats", product_id="pro", currency="usd", billing_scheme="tiered", tiers_mode="graduated", tiers=TIERS, recurring_interval="month"),
            CatalogPrice(lookup_key="pro_usage", product_id="pro", currency="usd", unit_amount_decimal="0.1250", transform_quantity={"divide_by": 1000, "round": "up"}),
        ],
    )
    frame = local_price_frame(Catalog(engine).price_rows()).set_index("lookup_key")
    monthly, seats, usage = frame.loc["pro_monthly"], frame.loc["pro_seats"], frame.loc["pro_usage"]
    # The own currency listed among the options is left out; a recurring price counts 1, licensed.
    assert (monthly["currency"], monthly["unit_amount"], monthly["currency_options"]) == ("usd", "1500", '{"eur":{"tax_behavior":"unspecified","unit_amount":"1400"}}')
    assert (monthly["recurring_interval_count"], monthly["recurring_usage_type"], monthly["tax_behavior"]) == ("1", "licensed", "unspecified")
    assert json.loads(seats["tiers"]) == [{"flat_amount": "", "unit_amount": "500", "up_to": "10"}, {"flat_amount": "100", "unit_amount": "412.5", "up_to": "inf"}]
    assert (usage["unit_amount"], usage["recurring_interval"], json.loads(usage["transform_quantity"])) == ("0.125", "", {"divide_by": "1000", "round": "up"})


def test_upsert_updates_existing_products_and_prices(engine):
    upsert_products(engine, [CatalogProduct(id="sku_1", name="Old")])
    upsert_products(engine, [CatalogProduct(id="sku_1", name="New")])
    upsert_prices(engine, [CatalogPrice(lookup_key="k", product_id="sku_1", currency="usd", unit_amount=100)])
    upsert_prices(engine, [CatalogPrice(lookup_key="k", product_id="sku_1", currency="usd", unit_amount=200)])
    catalog = Catalog(engine)
    assert (count(engine), count(engine, prices)) == (1, 1)
    assert (catalog.rows().loc[0, "name"], catalog.price_rows().loc[0, "unit_amount"]) == ("New", 200)


@pytest.mark.parametrize(
    "bad, message",
    [
        (CatalogProduct(id="", name="x"), "product id '' must be a non-empty string"),
        (CatalogProduct(id="sku_9", name=""), "product 'sku_9': name='' must be a non-empty string"),
        (CatalogProduct(id="sku_9", name="x", metadata={f"k{i}": "v" for i in range(51)}), "more than Stripe's 50 keys"),
        (CatalogProduct(id="sku_9", name="x", metadata={"k" * 41: "v"}), "longer than 40 characters"),
        (CatalogProduct(id="sku_9", name="x", metadata={"k": "v" * 501}), "longer than 500 characters"),
        (CatalogProduct(id="sku_9", name="x", images=["ftp://x"]), "images=['ftp://x'] must be a list of at most 8 image URLs"),
        (CatalogProduct(id="sku_9", name="x", marketing_features=["f"] * 16), "at most 15 feature names"),
        (CatalogProduct(id="sku_9", name="x", package_dimensions={"height": 1}), "package_dimensions={'height': 1} must give height, length, weight, width"),
        (CatalogProduct(id="sku_9", name="x", statement_descriptor="<script>"), "statement_descriptor='<script>' must be at most 22"),
        (CatalogProduct(id="sku_2", name="X", tax_code="saas"), "tax_code='saas' is not a Stripe tax code: txcd_ and 8 digits"),
        (CatalogProduct(id="sku_9", name="x", unit_label="a very long label"), "unit_label='a very long label' is longer than 12"),
    ],
)
def test_a_bad_product_is_refused_with_its_value_and_nothing_is_written(engine, bad, message):
    good = CatalogProduct(id="sku_1", name="Fine")
    with pytest.raises(InvalidProduct, match=message.replace("(", r"\(").replace("[", r"\[")):
        upsert_products(engine, [good, bad])
    assert count(engine) == 0


def price(**fields) -> CatalogPrice:
    return CatalogPrice(**{"lookup_key": "k", "product_id": "sku_1", "currency": "usd", "unit_amount": 100, **fields})


@pytest.mark.parametrize(
    "bad, message",
    [
        (price(unit_amount=-5), "unit_amount=-5 must be a whole, non-negative number"),
        (price(unit_amount=9.99), "unit_amount=9.99 must be a whole, non-negative number"),
        (price(currency="dollars"), "currency='dollars' must be a three-letter ISO 4217"),
        (price(recurring_interval="fortnight"), "recurring_interval='fortnight' must be one of day, week, month, year"),
        (price(recurring_interval="month", recurring_interval_count=37), "recurring_interval_count=37 must be 1 to 36"),
        (price(unit_amount=None), "needs exactly one of unit_amount, unit_amount_decimal or custom_unit_amount"),
        (price(unit_amount_decimal="1.5"), "unit_amount_decimal='1.5' and unit_amount are both set"),
        (price(unit_amount=None, unit_amount_decimal="0.0000000000001"), "more than 12 decimal places"),
        (price(unit_amount=None, billing_scheme="tiered", tiers_mode="graduated", tiers=[{"up_to": 5, "unit_amount": 1}]), "up_to=5 must be 'inf' on the last tier"),
        (price(unit_amount=None, billing_scheme="tiered", tiers=TIERS), "tiers_mode=None must be one of graduated, volume"),
        (price(billing_scheme="tiered", tiers_mode="volume", tiers=TIERS), "must be empty on a tiered price"),
        (price(transform_quantity={"divide_by": 0, "round": "up"}), "transform_quantity="),
        (price(currency_options={"eur": {}}), "currency_options.eur.unit_amount=None needs exactly one"),
        (price(recurring_interval="month", custom_unit_amount={"preset": 500}, unit_amount=None), "custom_unit_amount={'preset': 500} is only for one-time prices"),
        (price(lookup_key=""), "price lookup_key '' must be a non-empty string"),
    ],
)
def test_a_bad_price_is_refused_with_its_value_and_nothing_is_written(engine, bad, message):
    upsert_products(engine, [CatalogProduct(id="sku_1", name="Fine")])
    with pytest.raises(InvalidPrice, match=message.replace("(", r"\(").replace("[", r"\[").replace("{", r"\{").replace(".", r"\.")):
        upsert_prices(engine, [price(lookup_key="fine"), bad])
    assert count(engine, prices) == 0


def test_a_price_of_a_product_the_catalog_lacks_is_refused(engine):
    with pytest.raises(InvalidPrice, match="product_id='ghost' is not a catalog product"):
        replace_products(engine, [CatalogProduct(id="sku_1", name="Fine")], [price(product_id="ghost")])
    assert count(engine) == 0
