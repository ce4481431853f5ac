"""The drift diff: its kinds, and the differences that are not drift."""

from __future__ import annotations

import pandas as pd
import pytest

from recon_pipeline.reconcile import (
    DuplicateProductIds,
    diff_catalog,
    local_frame,
    stripe_frame,
    summarize_drift,
)


def catalog_rows(*rows: dict) -> pd.DataFrame:
    defaults = {
        "name": "Pro Plan",
        "description": "For teams",
        "active": True,
        "metadata": {"tier": "2"},
        "unit_amount": 1500,
        "currency": "usd",
        "recurring_interval": "month",
    }
    return local_frame(pd.DataFrame([{**defaults, **row} for row in rows]))


def stripe_products(*products: dict) -> pd.DataFrame:
    out = []
    for product in products:
        price = product.pop("price", "default")
        if price == "default":
            price = {"id": f"price_{product['id']}", "unit_amount": 1500, "currency": "usd", "recurring": {"interval": "month"}, "lookup_key": product["id"]}
        out.append({"name": "Pro Plan", "description": "For teams", "active": True, "metadata": {"tier": "2"}, "created": 1, **product, "default_price": price})
    return stripe_frame(out)


def kinds(drift: pd.DataFrame) -> list[tuple]:
    return list(drift[["product_id", "kind", "field"]].itertuples(index=False, name=None))


def test_identical_sides_have_no_drift():
    drift = diff_catalog(catalog_rows({"id": "a"}, {"id": "b"}), stripe_products({"id": "b"}, {"id": "a"}))
    assert drift.empty
    assert list(drift.columns) == ["product_id", "kind", "field", "local_value", "stripe_value"]


def test_missing_in_stripe_and_orphan_in_stripe():
    drift = diff_catalog(catalog_rows({"id": "a"}, {"id": "b"}), stripe_products({"id": "b"}, {"id": "z"}))
    assert kinds(drift) == [("a", "missing_in_stripe", None), ("z", "orphan_in_stripe", None)]


def test_an_archived_stripe_product_unknown_to_the_catalog_is_retired_not_an_orphan():
    drift = diff_catalog(catalog_rows({"id": "a"}), stripe_products({"id": "a"}, {"id": "old", "active": False}, {"id": "z"}))
    assert kinds(drift) == [("z", "orphan_in_stripe", None)]


def test_field_mismatch_gives_one_row_per_differing_field_with_both_values():
    drift = diff_catalog(
        catalog_rows({"id": "a", "name": "New name", "active": True, "unit_amount": 2000}),
        stripe_products({"id": "a", "name": "Old name", "active": False}),
    )
    rows = drift.set_index("field")[["kind", "local_value", "stripe_value"]].to_dict("index")
    assert rows == {
        "active": {"kind": "field_mismatch", "local_value": "true", "stripe_value": "false"},
        "name": {"kind": "field_mismatch", "local_value": "New name", "stripe_value": "Old name"},
        "unit_amount": {"kind": "field_mismatch", "local_value": "2000", "stripe_value": "1500"},
    }


def test_unicode_in_another_normal_form_is_not_drift_but_other_letters_are():
    drift = diff_catalog(
        catalog_rows({"id": "a", "name": "Caf\u00e9 Cr\u00e8me"}, {"id": "b", "name": "東京 Plan ✓"}),
        stripe_products({"id": "a", "name": "Cafe\u0301 Cre\u0300me"}, {"id": "b", "name": "東京 Plan ✗"}),
    )
    assert kinds(drift) == [("b", "field_mismatch", "name")]
    assert drift.loc[0, "stripe_value"] == "東京 Plan ✗"


@pytest.mark.parametrize("local_description", [None, ""])
def test_missing_and_empty_description_are_the_same(local_description):
    drift = diff_catalog(
        catalog_rows({"id": "a", "description": local_description}),
        stripe_products({"id": "a", "description": None}),
    )
    assert drift.empty


def test_description_added_on_one_side_is_drift_with_none_for_the_absent_side():
    drift = diff_catalog(catalog_rows({"id": "a", "description": None}), stripe_products({"id": "a", "description": "Edited"}))
    assert kinds(drift) == [("a", "field_mismatch", "description")]
    assert drift.loc[0, "local_value"] is None and drift.loc[0, "stripe_value"] == "Edited"


@pytest.mark.parametrize(
    "local_metadata, stripe_metadata",
    [
        (None, {}),
        ({}, None),
        ({"a": "1", "b": "2"}, {"b": "2", "a": "1"}),  # key order
        ({"tier": 2}, {"tier": "2"}),  # Stripe stores strings
        ({"tier": "2", "gone": ""}, {"tier": "2"}),  # an empty value removes the key in Stripe
        ({"tier": "2", "gone": None}, {"tier": "2"}),
    ],
)
def test_metadata_representations_that_are_not_drift(local_metadata, stripe_metadata):
    drift = diff_catalog(catalog_rows({"id": "a", "metadata": local_metadata}), stripe_products({"id": "a", "metadata": stripe_metadata}))
    assert drift.empty


def test_metadata_value_change_is_drift():
    drift = diff_catalog(catalog_rows({"id": "a", "metadata": {"tier": "2"}}), stripe_products({"id": "a", "metadata": {"tier": "legacy"}}))
    assert kinds(drift) == [("a", "field_mismatch", "metadata")]
    assert drift.loc[0, "local_value"] == '{"tier":"2"}'


def test_currency_case_is_not_drift_but_another_currency_is():
    drift = diff_catalog(
        catalog_rows({"id": "a", "currency": "USD"}, {"id": "b", "currency": "EUR"}),
        stripe_products({"id": "a"}, {"id": "b"}),
    )
    assert kinds(drift) == [("b", "field_mismatch", "currency")]
    assert (drift.loc[0, "local_value"], drift.loc[0, "stripe_value"]) == ("eur", "usd")


def test_product_without_price_on_one_side_is_price_drift():
    drift = diff_catalog(
        catalog_rows({"id": "a", "unit_amount": None, "currency": None, "recurring_interval": None}, {"id": "b"}),
        stripe_products({"id": "a"}, {"id": "b", "price": None}),
    )
    assert kinds(drift) == [
        ("a", "field_mismatch", "currency"),
        ("a", "field_mismatch", "interval"),
        ("a", "field_mismatch", "unit_amount"),
        ("b", "field_mismatch", "currency"),
        ("b", "field_mismatch", "interval"),
        ("b", "field_mismatch", "unit_amount"),
    ]
    assert drift.loc[2, "local_value"] is None and drift.loc[2, "stripe_value"] == "1500"


def test_one_time_price_versus_recurring_is_interval_drift():
    drift = diff_catalog(catalog_rows({"id": "a", "recurring_interval": None}), stripe_products({"id": "a"}))
    assert kinds(drift) == [("a", "field_mismatch", "interval")]


def test_empty_sides():
    empty_local = local_frame(pd.DataFrame(columns=["id", "name", "description", "active", "metadata", "unit_amount", "currency", "recurring_interval"]))
    empty_stripe = stripe_frame([])
    assert diff_catalog(empty_local, empty_stripe).empty
    assert kinds(diff_catalog(empty_local, stripe_products({"id": "z"}))) == [("z", "orphan_in_stripe", None)]
    assert kinds(diff_catalog(catalog_rows({"id": "a"}), empty_stripe)) == [("a", "missing_in_stripe", None)]


def test_duplicate_ids_are_refused_naming_them():
    with pytest.raises(DuplicateProductIds, match=r"catalog has duplicate product ids \['a'\]"):
        diff_catalog(catalog_rows({"id": "a"}, {"id": "a"}), stripe_products({"id": "a"}))
    with pytest.raises(DuplicateProductIds, match=r"Stripe has duplicate product ids \['b'\]"):
        diff_catalog(catalog_rows({"id": "a"}), stripe_products({"id": "b"}, {"id": "b"}))


def test_summary_counts_kinds_and_rate_over_all_products():
    drift = diff_catalog(
        catalog_rows({"id": "a"}, {"id": "b", "name": "x", "active": False}, {"id": "c"}, {"id": "d"}),
        stripe_products({"id": "b"}, {"id": "c"}, {"id": "d"}, {"id": "z"}),
    )
    summary = summarize_drift(drift, local_count=4, stripe_count=4)
    assert {k: summary[k] for k in ("missing_in_stripe", "orphan_in_stripe", "field_mismatch", "total")} == {
        "missing_in_stripe": 1,
        "orphan_in_stripe": 1,
        "field_mismatch": 2,
        "total": 4,
    }
    assert summary["products_with_drift"] == 3  # a, b (two fields), z
    assert summary["products_total"] == 5
    assert summary["drift_rate"] == pytest.approx(3 / 5)
    assert summary["field_mismatch_by_field"] == {"active": 1, "name": 1}
