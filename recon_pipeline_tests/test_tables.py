"""Sides written to Parquet as they arrive, and the diff over those files (issue 23)."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pyarrow.parquet as pq
import pytest

from recon_pipeline.reconcile.diff import find_drift
from recon_pipeline.reconcile.frames import STRIPE_PRICE_SCHEMA, stripe_price_batch
from recon_pipeline.reconcile.tables import ROW_GROUP_ROWS, ParquetTable, TableWriter
from recon_pipeline_tests.test_diff import catalog_prices, catalog_rows, kinds, stripe_prices, stripe_products


def _price(i: int) -> dict:
    return {"id": f"price_{i:06d}", "product": f"p{i // 3}", "lookup_key": f"k{i:06d}", "active": True, "currency": "usd", "unit_amount": i, "created": i}


def test_pages_from_many_threads_make_one_file_of_every_row_in_few_row_groups(tmp_path):
    writer = TableWriter(tmp_path / "prices.parquet", STRIPE_PRICE_SCHEMA)
    pages = [[_price(i) for i in range(start, start + 100)] for start in range(0, 50_000, 100)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda page: writer.write(stripe_price_batch(page)), pages))
    table = writer.close()
    assert table.rows == 50_000 == len(table)
    metadata = pq.ParquetFile(table.path).metadata
    assert metadata.num_rows == 50_000 and metadata.num_row_groups <= 50_000 // ROW_GROUP_ROWS + 2  # not one per page
    assert table.query("SELECT count(DISTINCT price_id), min(unit_amount::BIGINT), max(unit_amount::BIGINT) FROM side") == [(50_000, 0, 49_999)]
    assert sorted(table.values("price_id"))[:2] == ["price_000000", "price_000001"]


def test_a_side_of_no_rows_is_a_file_with_its_columns(tmp_path):
    table = TableWriter(tmp_path / "empty.parquet", STRIPE_PRICE_SCHEMA).close()
    assert table.rows == 0 and table.frame().columns.tolist() == STRIPE_PRICE_SCHEMA.names
    from_frames = TableWriter(tmp_path / "local.parquet").write_all([catalog_rows({"id": "a"}).iloc[:0]])
    assert from_frames.rows == 0 and "product_id" in from_frames.frame().columns
    with pytest.raises(ValueError, match="nothing was written and no schema given"):
        TableWriter(tmp_path / "unknown.parquet").close()


def test_a_side_kept_by_another_io_manager_is_its_frame(tmp_path):
    """Pickled (Dagster's default IO manager), a ParquetTable becomes its frame: the file is the step's own."""
    local = catalog_rows({"id": "a"}, {"id": "b", "name": "Béta"})
    table = TableWriter(tmp_path / "local.parquet").write_all([local])
    restored = pickle.loads(pickle.dumps(table))
    (tmp_path / "local.parquet").unlink()
    assert isinstance(restored, pd.DataFrame)
    assert restored["product_id"].tolist() == ["a", "b"] and restored["name"].tolist() == ["Pro Plan", "Béta"]


def _sides() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    local = catalog_rows({"id": "a", "default_price": "a_m"}, {"id": "b", "name": "B"}, {"id": "c"})
    prices = catalog_prices({"lookup_key": "a_m"}, {"lookup_key": "b_m", "product_id": "b"}, {"lookup_key": "c_m", "product_id": "c"})
    stripe = stripe_products({"id": "a", "default_price": "price_a"}, {"id": "b", "name": "B renamed"}, {"id": "c"}, {"id": "q", "name": "Held"}, {"id": "z"})
    stripe_side = stripe_prices(
        {"id": "price_a", "lookup_key": "a_m"},
        {"id": "price_b", "product": "b", "lookup_key": "b_m", "unit_amount": 1600},
        {"id": "price_c", "product": "c", "lookup_key": "c_m", "unit_amount": 1700},  # its key is held below
        {"id": "price_q", "product": "q", "lookup_key": None},
    )
    return local, stripe, prices, stripe_side


def test_the_diff_over_parquet_files_finds_what_it_finds_over_frames_and_leaves_alone_what_is_held(tmp_path):
    sides = _sides()
    files = [TableWriter(tmp_path / f"{n}.parquet").write_all([side]) for n, side in enumerate(sides)]
    over_frames = find_drift(*sides, leave_alone={"q"}, leave_alone_keys={"c_m"})
    over_files = find_drift(*files, leave_alone={"q"}, leave_alone_keys={"c_m"})
    pd.testing.assert_frame_equal(over_files.drift, over_frames.drift)
    assert kinds(over_files.drift) == [
        ("b", None, "field_mismatch", "name"),
        ("z", None, "orphan_in_stripe", None),
        ("b", "b_m", "price_field_mismatch", "unit_amount"),
        ("c", "c_m", "price_missing_in_stripe", None),  # its Stripe price is held: as if not listed
    ]
    assert (over_files.local_count, over_files.stripe_count) == (3, 4)  # q is left alone
    # Without holding anything back, q is an orphan and c's price a mismatch.
    everything = kinds(find_drift(*files).drift)
    assert ("q", None, "orphan_in_stripe", None) in everything and ("c", "c_m", "price_field_mismatch", "unit_amount") in everything


def test_a_parquet_side_with_missing_values_compares_as_the_frame_does(tmp_path):
    """A text left null in a file (another tool wrote it) is "" and a null flag false, as in a frame."""
    local, stripe, prices, stripe_side = _sides()
    holed = local.astype(object).where(local["product_id"] != "c", None).assign(product_id=local["product_id"])
    file = ParquetTable(str(tmp_path / "holed.parquet"), len(holed))
    holed.to_parquet(file.path, index=False)
    assert kinds(find_drift(file, stripe, prices, stripe_side).drift) == kinds(find_drift(holed, stripe, prices, stripe_side).drift)
