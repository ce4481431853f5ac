"""The drift diff: its kinds, for products and prices, and the differences that are not drift."""

from __future__ import annotations

import pandas as pd
import pytest

from recon_pipeline.catalog.prices import PRICE_COLUMNS
from recon_pipeline.reconcile import (
    DRIFT_COLUMNS,
    DuplicateProductIds,
    diff_catalog,
    local_frame,
    local_price_frame,
    stripe_frame,
    stripe_price_frame,
    summarize_drift,
)


def catalog_rows(*rows: dict) -> pd.DataFrame:
    defaults = {"name": "Pro Plan", "description": "For teams", "active": True, "metadata": {"tier": "2"}}
    return local_frame(pd.DataFrame([{**defaults, **row} for row in rows]))


def stripe_products(*products: dict) -> pd.DataFrame:
    defaults = {"name": "Pro Plan", "description": "For teams", "active": True, "metadata": {"tier": "2"}, "created": 1, "default_price": None}
    return stripe_frame([{**defaults, **product} for product in products])


def catalog_prices(*rows: dict) -> pd.DataFrame:
    defaults = {"product_id": "a", "active": True, "currency": "usd", "unit_amount": 1500, "recurring_interval": "month"}
    frame = pd.DataFrame([{**defaults, **row} for row in rows], columns=list(PRICE_COLUMNS))
    for name, value in defaults.items():
        frame[name] = frame[name].where(frame[name].notna(), value) if name in ("product_id", "active", "currency") else frame[name]
    return local_price_frame(frame)


def stripe_prices(*prices: dict) -> pd.DataFrame:
    defaults = {"product": "a", "active": True, "currency": "usd", "unit_amount": 1500, "billing_scheme": "per_unit",
                "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"}, "created": 1}
    return stripe_price_frame([{**defaults, **price} for price in prices])


def kinds(drift: pd.DataFrame) -> list[tuple]:
    return list(drift[["product_id", "lookup_key", "kind", "field"]].itertuples(index=False, name=None))


def test_identical_sides_have_no_drift():
    drift = diff_catalog(catalog_rows({"id": "a"}, {"id": "b"}), stripe_products({"id": "b"}, {"id": "a"}))
    assert drift.empty
    assert list(drift.columns) == list(DRIFT_COLUMNS) == ["product_id", "lookup_key", "kind", "field", "local_value", "stripe_value"]


def test_missing_in_stripe_and_orphan_in_stripe():
    drift = diff_catalog(catalog_rows({"id": "a"}, {"id": "b"}), stripe_products({"id": "b"}, {"id": "z"}))
    assert kinds(drift) == [("a", None, "missing_in_stripe", None), ("z", None, "orphan_in_stripe", None)]


def test_an_archived_stripe_product_unknown_to_the_catalog_is_retired_not_an_orphan():
    drift = diff_catalog(catalog_rows({"id": "a"}), stripe_products({"id": "a"}, {"id": "old", "active": False}, {"id": "z"}))
    assert kinds(drift) == [("z", None, "orphan_in_stripe", None)]


def test_field_mismatch_gives_one_row_per_differing_field_with_both_values():
    drift = diff_catalog(
        catalog_rows({"id": "a", "name": "New name", "active": True, "unit_label": "seat", "marketing_features": ["SSO"]}),
        stripe_products({"id": "a", "name": "Old name", "active": False, "marketing_features": [{"name": "SSO"}, {"name": "Audit"}]}),
    )
    rows = drift.set_index("field")[["kind", "local_value", "stripe_value"]].to_dict("index")
    assert rows == {
        "active": {"kind": "field_mismatch", "local_value": "true", "stripe_value": "false"},
        "marketing_features": {"kind": "field_mismatch", "local_value": '["SSO"]', "stripe_value": '["SSO","Audit"]'},
        "name": {"kind": "field_mismatch", "local_value": "New name", "stripe_value": "Old name"},
        "unit_label": {"kind": "field_mismatch", "local_value": "seat", "stripe_value": None},
    }


def test_unicode_in_another_normal_form_is_not_drift_but_other_letters_are():
    drift = diff_catalog(
        catalog_rows({"id": "a", "name": "Caf\u00e9 Cr\u00e8me"}, {"id": "b", "name": "東京 Plan ✓"}),
        stripe_products({"id": "a", "name": "Cafe\u0301 Cre\u0300me"}, {"id": "b", "name": "東京 Plan ✗"}),
    )
    assert kinds(drift) == [("b", None, "field_mismatch", "name")]
    assert drift.loc[0, "stripe_value"] == "東京 Plan ✗"


@pytest.mark.parametrize(
    "local, stripe",
    [
        ({"description": None}, {"description": None}),
        ({"description": ""}, {"description": None}),
        ({"images": None}, {"images": []}),
        ({"marketing_features": []}, {"marketing_features": None}),
        ({"shippable": None}, {"shippable": False}),
        ({"package_dimensions": {"height": 1, "length": 2, "weight": 3, "width": 4}}, {"package_dimensions": {"height": 1.0, "length": 2.0, "weight": 3.0, "width": 4.0}}),
        # Stripe cannot unset these once set: an empty catalog value does not choose.
        ({"statement_descriptor": None}, {"statement_descriptor": "OLD NAME"}),
        ({"default_price": None}, {"default_price": "price_123"}),
    ],
)
def test_product_representations_that_are_not_drift(local, stripe):
    assert diff_catalog(catalog_rows({"id": "a", **local}), stripe_products({"id": "a", **stripe})).empty


def test_description_added_on_one_side_is_drift_with_none_for_the_absent_side():
    drift = diff_catalog(catalog_rows({"id": "a", "description": None}), stripe_products({"id": "a", "description": "Edited"}))
    assert kinds(drift) == [("a", None, "field_mismatch", "description")]
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


def test_default_price_is_compared_by_lookup_key():
    local = catalog_rows({"id": "a", "default_price": "a_monthly"})
    prices = catalog_prices({"lookup_key": "a_monthly"}, {"lookup_key": "a_yearly", "unit_amount": 15000, "recurring_interval": "year"})
    stripe_side = stripe_prices({"id": "price_m", "lookup_key": "a_monthly"}, {"id": "price_y", "lookup_key": "a_yearly", "unit_amount": 15000, "recurring": {"interval": "year"}})
    assert diff_catalog(local, stripe_products({"id": "a", "default_price": "price_m"}), prices, stripe_side).empty
    drift = diff_catalog(local, stripe_products({"id": "a", "default_price": "price_y"}), prices, stripe_side)
    assert kinds(drift) == [("a", None, "field_mismatch", "default_price")]
    assert (drift.loc[0, "local_value"], drift.loc[0, "stripe_value"]) == ("a_monthly", "a_yearly")


def test_prices_missing_unmanaged_and_mismatched_by_lookup_key():
    local = catalog_rows({"id": "a"}, {"id": "b"})
    prices = catalog_prices(
        {"lookup_key": "a_monthly"},
        {"lookup_key": "a_yearly", "unit_amount": 15000, "recurring_interval": "year"},
        {"lookup_key": "b_once", "product_id": "b", "unit_amount": 900, "recurring_interval": None, "nickname": "Once"},
    )
    stripe_side = stripe_prices(
        {"id": "price_1", "lookup_key": "a_monthly", "unit_amount": 1600},
        {"id": "price_2", "lookup_key": None},  # made in the dashboard: unmanaged
        {"id": "price_3", "lookup_key": None, "active": False},  # archived and unmanaged: not drift
        {"id": "price_4", "product": "b", "lookup_key": "b_once", "unit_amount": 900, "recurring": None, "nickname": "Other", "active": False},
        {"id": "price_5", "product": "z", "lookup_key": None},  # a price of a product the catalog does not have
    )
    drift = diff_catalog(local, stripe_products({"id": "a"}, {"id": "b"}), prices, stripe_side)
    assert kinds(drift) == [
        ("a", "a_monthly", "price_field_mismatch", "unit_amount"),
        ("b", "b_once", "price_field_mismatch", "active"),
        ("b", "b_once", "price_field_mismatch", "nickname"),
        ("a", "a_yearly", "price_missing_in_stripe", None),
        ("a", None, "price_orphan_in_stripe", None),
    ]
    assert drift.set_index("kind").loc["price_orphan_in_stripe", "stripe_value"] == "price_2"
    assert drift.set_index("field").loc["unit_amount", ["local_value", "stripe_value"]].tolist() == ["1500", "1600"]


@pytest.mark.parametrize(
    "local, stripe",
    [
        ({"unit_amount": None, "unit_amount_decimal": "1500.000"}, {"unit_amount": 1500, "unit_amount_decimal": "1500"}),
        ({"unit_amount": None, "unit_amount_decimal": "0.1250"}, {"unit_amount": None, "unit_amount_decimal": "0.125"}),
        ({"currency": "USD"}, {"currency": "usd"}),
        ({"tax_behavior": None}, {"tax_behavior": "unspecified"}),
        # Only the other currencies count, whether or not an answer repeats the price's own.
        ({"currency_options": {"eur": {"unit_amount": 1400}}}, {"currency_options": {"usd": {"unit_amount": 1500, "tax_behavior": "unspecified"},
                                  "eur": {"unit_amount": 1400, "unit_amount_decimal": "1400"}}}),
        ({"currency_options": {"eur": {"unit_amount": 1400}, "usd": {"unit_amount": 1500}}}, {"currency_options": {"eur": {"unit_amount": 1400}}}),
        ({"currency_options": None}, {"currency_options": {"usd": {"unit_amount": 1500}}}),
        # The last tier's up_to: "inf" in the catalog, null in Stripe's answer.
        (
            {"unit_amount": None, "billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": [{"up_to": 10, "unit_amount": 5}, {"up_to": "inf", "unit_amount": 4}]},
            {"unit_amount": None, "billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": [{"up_to": 10, "unit_amount": 5, "unit_amount_decimal": "5"},
                                                                     {"up_to": None, "unit_amount": 4, "unit_amount_decimal": "4"}]},
        ),
        ({"recurring_interval_count": None}, {"recurring": {"interval": "month"}}),
        ({"nickname": None}, {"nickname": "Set in the dashboard"}),  # Stripe cannot unset a nickname
    ],
)
def test_price_representations_that_are_not_drift(local, stripe):
    drift = diff_catalog(catalog_rows({"id": "a"}), stripe_products({"id": "a"}), catalog_prices({"lookup_key": "k", **local}), stripe_prices({"id": "p", "lookup_key": "k", **stripe}))
    assert drift.empty, drift.to_dict("records")


@pytest.mark.parametrize(
    "local, stripe, field",
    [
        ({"currency_options": {"eur": {"unit_amount": 1400}}}, {"currency_options": {"eur": {"unit_amount": 1300}}}, "currency_options"),
        ({"recurring_interval_count": 3}, {"recurring": {"interval": "month", "interval_count": 1}}, "recurring_interval_count"),
        ({"transform_quantity": {"divide_by": 100, "round": "up"}}, {"transform_quantity": None}, "transform_quantity"),
        ({"tax_behavior": "exclusive"}, {"tax_behavior": "unspecified"}, "tax_behavior"),
        ({"product_id": "b"}, {"product": "a"}, "product_id"),
        ({"metadata": {"plan": "pro"}}, {"metadata": {}}, "metadata"),
    ],
)
def test_each_price_field_difference_is_one_row(local, stripe, field):
    local_products = catalog_rows({"id": "a"}, {"id": "b"})
    drift = diff_catalog(local_products, stripe_products({"id": "a"}, {"id": "b"}), catalog_prices({"lookup_key": "k", **local}), stripe_prices({"id": "p", "lookup_key": "k", **stripe}))
    assert kinds(drift) == [(local.get("product_id", "a"), "k", "price_field_mismatch", field)]


def test_empty_sides():
    empty_local = local_frame(pd.DataFrame(columns=["id", "name", "description", "active", "metadata"]))
    empty_stripe = stripe_frame([])
    assert diff_catalog(empty_local, empty_stripe, catalog_prices(), stripe_prices()).empty
    assert kinds(diff_catalog(empty_local, stripe_products({"id": "z"}))) == [("z", None, "orphan_in_stripe", None)]
    assert kinds(diff_catalog(catalog_rows({"id": "a"}), empty_stripe)) == [("a", None, "missing_in_stripe", None)]


def test_duplicate_ids_and_lookup_keys_are_refused_naming_them():
    with pytest.raises(DuplicateProductIds, match=r"catalog has duplicate product ids \['a'\]"):
        diff_catalog(catalog_rows({"id": "a"}, {"id": "a"}), stripe_products({"id": "a"}))
    with pytest.raises(DuplicateProductIds, match=r"Stripe has duplicate product ids \['b'\]"):
        diff_catalog(catalog_rows({"id": "a"}), stripe_products({"id": "b"}, {"id": "b"}))
    with pytest.raises(DuplicateProductIds, match=r"Stripe has duplicate price lookup keys \['k'\]"):
        diff_catalog(catalog_rows({"id": "a"}), stripe_products({"id": "a"}), catalog_prices(), stripe_prices({"id": "p1", "lookup_key": "k"}, {"id": "p2", "lookup_key": "k"}))


def test_summary_counts_kinds_fields_and_rate_over_all_products():
    drift = diff_catalog(
        catalog_rows({"id": "a"}, {"id": "b", "name": "x", "active": False}, {"id": "c"}, {"id": "d"}),
        stripe_products({"id": "b"}, {"id": "c"}, {"id": "d"}, {"id": "z"}),
        catalog_prices({"lookup_key": "c_m", "product_id": "c"}),
        stripe_prices({"id": "p", "product": "c", "lookup_key": "c_m", "unit_amount": 1}, {"id": "q", "product": "d", "lookup_key": None}),
    )
    summary = summarize_drift(drift, local_count=4, stripe_count=4)
    assert {k: summary[k] for k in ("missing_in_stripe", "orphan_in_stripe", "field_mismatch", "price_field_mismatch", "price_orphan_in_stripe", "total")} == {
        "missing_in_stripe": 1,
        "orphan_in_stripe": 1,
        "field_mismatch": 2,
        "price_field_mismatch": 1,
        "price_orphan_in_stripe": 1,
        "total": 6,
    }
    assert summary["products_with_drift"] == 5  # a, b (two fields), c (its price), d (an unmanaged price), z
    assert summary["products_total"] == 5
    assert summary["drift_rate"] == pytest.approx(5 / 5)
    assert summary["field_mismatch_by_field"] == {"active": 1, "name": 1}
    assert summary["price_field_mismatch_by_field"] == {"unit_amount": 1}


def test_the_drift_line_counts_apart_what_the_orphan_policies_only_report():
    from recon_pipeline.runs import drift_line, reported_by_policy
    from recon_pipeline.settings import Settings

    unmanaged = pd.DataFrame({"kind": ["price_orphan_in_stripe"], "field": [None]})
    assert drift_line(unmanaged, reported_by_policy(Settings.from_env({}))) == "drift 0 rows (1 reported by policy: price_orphan_in_stripe)"
    assert drift_line(unmanaged, reported_by_policy(Settings.from_env({"RECON_PRICE_ORPHAN_POLICY": "archive"}))) == "drift 1 rows (price_orphan_in_stripe 1)"
    mixed = pd.DataFrame({"kind": ["field_mismatch", "orphan_in_stripe", "price_orphan_in_stripe"], "field": ["name", None, None]})
    assert drift_line(mixed, reported_by_policy(Settings.from_env({}))) == "drift 1 rows (field_mismatch 1; 2 reported by policy: orphan_in_stripe 1, price_orphan_in_stripe 1)"
    assert drift_line(mixed.iloc[:0]) == "drift 0 rows"
