"""The catalog is read in chunks streamed from the database (issue 23): the same frames and the
same quarantine as one whole read, and a duplicate key is caught even where a chunk ends."""

from __future__ import annotations

import pandas as pd

from recon_pipeline.catalog import Catalog, store
from recon_pipeline.catalog.quarantine import split_valid_prices
from recon_pipeline.catalog.source import CatalogSource
from recon_pipeline.reconcile.frames import local_price_frame, read_local_prices, read_local_products
from recon_pipeline_tests.conftest import Database


def _shop(database: Database) -> Catalog:
    """A user's own tables, without a unique key on the price code (so duplicates can exist)."""
    database.run(
        "CREATE TABLE shop_items (sku VARCHAR(32) PRIMARY KEY, title VARCHAR(200) NOT NULL, is_live INTEGER NOT NULL);\n"
        "CREATE TABLE shop_prices (code VARCHAR(64) NOT NULL, sku VARCHAR(32) NOT NULL, curr VARCHAR(3) NOT NULL, cents INTEGER, every VARCHAR(8));\n"
        + "".join(f"INSERT INTO shop_items VALUES ('S-{i:02d}', 'Item {i}', 1);\n" for i in range(12))
        + "".join(f"INSERT INTO shop_prices VALUES ('s{i:02d}_{n}', 'S-{i:02d}', 'usd', {100 + i}, 'month');\n" for i in range(12) for n in range(3))
        # The same code twice (and once more in another case, as a case-insensitive collation sorts it among them).
        + "INSERT INTO shop_prices VALUES ('s05_1', 'S-05', 'eur', 999, NULL);\nINSERT INTO shop_prices VALUES ('S05_1', 'S-05', 'eur', 998, NULL);\n"
        # A price of a product the catalog does not have.
        + "INSERT INTO shop_prices VALUES ('ghost_1', 'S-99', 'usd', 100, NULL);\n"
    )
    source = CatalogSource.from_settings(
        table_name="shop_items",
        columns="id=sku,name=title,active=is_live",
        prices_table="shop_prices",
        prices_columns="lookup_key=code,product_id=sku,currency=curr,unit_amount=cents,recurring_interval=every",
    )
    return Catalog.open(database.url, source)


def test_chunked_reads_give_the_whole_reads_frames_and_quarantine(database: Database, monkeypatch):
    catalog = _shop(database)
    try:
        whole_rows = catalog.price_rows()
        whole_kept, whole_bad = split_valid_prices(whole_rows, {f"S-{i:02d}" for i in range(12)})
        for size in [*range(2, 40), 50_000]:  # every place a chunk can end
            sizes = [len(chunk) for chunk in catalog.price_row_chunks(size)]
            assert sum(sizes) == len(whole_rows) == 39 and (size >= 39 or len(sizes) > 1)
            products, bad_products = read_local_products(catalog, ["default"])
            assert len(products) == 12 and not bad_products
            monkeypatch.setattr(store, "CHUNK_ROWS", size)
            prices, bad = read_local_prices(catalog, set(products["product_id"]), set(products["product_id"]))
            pd.testing.assert_frame_equal(prices, local_price_frame(whole_kept))
            assert sorted(b["reason"] for b in bad) == sorted(b["reason"] for b in whole_bad)
            held = {b["row"]["lookup_key"] for b in bad}
            assert {"s05_1", "ghost_1"} <= held and not {"s04_2", "s06_0"} & held, held
    finally:
        catalog.engine.dispose()


def test_an_empty_catalog_reads_as_one_empty_chunk(catalog: Catalog):
    assert [len(chunk) for chunk in catalog.row_chunks(10)] == [0]
    products, bad = read_local_products(catalog, ["default"])
    prices, bad_prices = read_local_prices(catalog, set(), set())
    assert products.empty and prices.empty and not bad and not bad_prices
    assert list(prices.columns) == list(local_price_frame(catalog.price_rows()).columns)
