"""Planning repairs from drift: the writes per product, in Stripe's order, touching only what the catalog owns."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from recon_pipeline.catalog.prices import PRICE_COLUMNS
from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.reconcile import diff_catalog, local_frame, local_price_frame, stripe_frame, stripe_price_frame
from recon_pipeline.repair.plan import (
    ADOPT_PRICE_ORPHAN,
    ARCHIVE_ORPHAN,
    ARCHIVE_PRICE_ORPHAN,
    ARCHIVE_REPLACED,
    CREATE_PRICE,
    CREATE_PRODUCT,
    REPLACE_PRICE,
    REPORT_ORPHAN,
    REPORT_PRICE_ORPHAN,
    SET_DEFAULT_PRICE,
    UPDATE_PRICE,
    UPDATE_PRODUCT,
    plan_repairs,
)

STAMP = pd.Timestamp("2026-11-24T12:00:00Z")


def sides(local_rows: list[dict], stripe_products: list[dict], local_prices: Sequence[dict] = (), stripe_prices: Sequence[dict] = ()):
    base = {"name": "Pro", "description": None, "active": True, "metadata": {}, "updated_at": STAMP}
    local = local_frame(pd.DataFrame([{**base, **r} for r in local_rows]))
    remote = stripe_frame([{"name": "Pro", "description": None, "active": True, "metadata": {}, "created": 1, "default_price": None, **p} for p in stripe_products])
    price_base = {"active": True, "currency": "usd", "unit_amount": 1000, "recurring_interval": "month", "updated_at": STAMP}
    own_prices = local_price_frame(pd.DataFrame([{**price_base, **r} for r in local_prices], columns=list(PRICE_COLUMNS)))
    stripe_base = {"active": True, "currency": "usd", "unit_amount": 1000, "recurring": {"interval": "month"}, "created": 1}
    remote_prices = stripe_price_frame([{**stripe_base, **p} for p in stripe_prices])
    return diff_catalog(local, remote, own_prices, remote_prices), local, remote, own_prices, remote_prices


def actions(plan) -> list[tuple]:
    return [(a.product_id, a.action, a.lookup_key, a.fields) for a in plan.actions]


def test_product_drift_gets_its_actions():
    drift, *frames = sides(
        [{"id": "new"}, {"id": "renamed", "name": "Pro 2", "unit_label": "seat"}],
        [{"id": "renamed"}, {"id": "orphan"}],
    )
    plan = plan_repairs(drift, *frames)
    assert actions(plan) == [
        ("new", CREATE_PRODUCT, None, ()),
        ("orphan", REPORT_ORPHAN, None, ()),
        ("renamed", UPDATE_PRODUCT, None, ("name", "unit_label")),
    ]
    assert plan.actions[0].desired.version == "2026-11-24T12:00:00+00:00"
    assert plan.actions[2].desired.params(("name", "unit_label")) == {"name": "Pro 2", "unit_label": "seat"}


def test_a_new_product_gets_its_prices_then_its_default():
    drift, *frames = sides([{"id": "new", "default_price": "new_m"}], [], [{"lookup_key": "new_m", "product_id": "new"}, {"lookup_key": "new_y", "product_id": "new", "recurring_interval": "year"}])
    plan = plan_repairs(drift, *frames)
    assert actions(plan) == [
        ("new", CREATE_PRODUCT, None, ()),
        ("new", CREATE_PRICE, "new_m", ()),
        ("new", CREATE_PRICE, "new_y", ()),
        ("new", SET_DEFAULT_PRICE, "new_m", ()),
    ]


def test_a_change_of_terms_replaces_exactly_that_price_and_moves_the_default_first():
    drift, *frames = sides(
        [{"id": "a", "default_price": "a_m"}],
        [{"id": "a", "default_price": "price_m"}],
        [{"lookup_key": "a_m", "product_id": "a", "unit_amount": 1200}, {"lookup_key": "a_y", "product_id": "a", "unit_amount": 10000, "recurring_interval": "year"}],
        [
            {"id": "price_m", "product": "a", "lookup_key": "a_m"},
            {"id": "price_y", "product": "a", "lookup_key": "a_y", "unit_amount": 10000, "recurring": {"interval": "year"}},
        ],
    )
    plan = plan_repairs(drift, *frames)
    assert actions(plan) == [
        ("a", REPLACE_PRICE, "a_m", ("unit_amount",)),
        ("a", SET_DEFAULT_PRICE, "a_m", ()),
        ("a", ARCHIVE_REPLACED, "a_m", ()),
    ]
    assert plan.actions[2].found_price.price_id == "price_m"  # the yearly price is never touched


def test_mutable_fields_are_updated_in_place_and_a_set_tax_behavior_needs_a_new_price():
    drift, *frames = sides(
        [{"id": "a"}],
        [{"id": "a"}],
        [{"lookup_key": "k1", "product_id": "a", "nickname": "Monthly", "metadata": {"x": "1"}, "tax_behavior": "exclusive"}, {"lookup_key": "k2", "product_id": "a", "tax_behavior": "exclusive"}],
        [{"id": "p1", "product": "a", "lookup_key": "k1", "nickname": "Old"}, {"id": "p2", "product": "a", "lookup_key": "k2", "tax_behavior": "inclusive"}],
    )
    plan = plan_repairs(drift, *frames)
    assert actions(plan) == [
        ("a", REPLACE_PRICE, "k2", ("tax_behavior",)),
        ("a", UPDATE_PRICE, "k1", ("metadata", "nickname", "tax_behavior")),
        ("a", ARCHIVE_REPLACED, "k2", ()),
    ]


def test_unmanaged_prices_follow_their_policy_and_never_the_default():
    args = (
        [{"id": "a", "default_price": "a_m"}],
        [{"id": "a", "default_price": "price_m"}],
        [{"lookup_key": "a_m", "product_id": "a"}],
        [{"id": "price_m", "product": "a", "lookup_key": "a_m"}, {"id": "price_x", "product": "a", "lookup_key": None, "unit_amount": 500}],
    )
    drift, *frames = sides(*args)
    assert actions(plan_repairs(drift, *frames)) == [("a", REPORT_PRICE_ORPHAN, None, ())]
    assert actions(plan_repairs(drift, *frames, price_orphan_policy=OrphanPolicy.ARCHIVE)) == [("a", ARCHIVE_PRICE_ORPHAN, None, ())]
    assert actions(plan_repairs(drift, *frames, price_orphan_policy=OrphanPolicy.ADOPT)) == [("a", ADOPT_PRICE_ORPHAN, "a:price_x", ())]
    # An unmanaged price that is the default is not archived while the catalog names no other default.
    drift, *frames = sides([{"id": "a"}], [{"id": "a", "default_price": "price_x"}], [], [{"id": "price_x", "product": "a", "lookup_key": None}])
    [report] = plan_repairs(drift, *frames, price_orphan_policy=OrphanPolicy.ARCHIVE).actions
    assert report.action == REPORT_PRICE_ORPHAN and "default price" in report.describe()


def test_a_replacement_cut_off_midway_is_finished():
    # The key moved to the new price, the old one (marked, keyless) is still active and the default.
    drift, *frames = sides(
        [{"id": "a"}],
        [{"id": "a", "default_price": "price_old"}],
        [{"lookup_key": "a_m", "product_id": "a", "unit_amount": 1200}],
        [{"id": "price_new", "product": "a", "lookup_key": "a_m", "unit_amount": 1200}, {"id": "price_old", "product": "a", "lookup_key": None, "metadata": {"recon_replaced_by": "a_m"}}],
    )
    plan = plan_repairs(drift, *frames)
    assert actions(plan) == [("a", SET_DEFAULT_PRICE, "a_m", ()), ("a", ARCHIVE_REPLACED, "a_m", ())]
    assert plan.actions[1].found_price.price_id == "price_old"


def test_orphan_policy_archive_plans_a_write_but_not_for_an_already_archived_product():
    drift, *frames = sides([{"id": "a"}], [{"id": "a"}, {"id": "orphan"}, {"id": "gone", "active": False}])
    plan = plan_repairs(drift, *frames, OrphanPolicy.ARCHIVE)
    assert [(a.product_id, a.action) for a in plan.actions] == [("orphan", ARCHIVE_ORPHAN)]
    assert plan.products_to_write == 1


def test_write_share_counts_products_and_prices_written_against_the_catalog():
    drift, *frames = sides(
        [{"id": f"p{i}"} for i in range(10)] + [{"id": "p0x", "name": "n"}],
        [{"id": f"p{i}"} for i in range(10)] + [{"id": "orphan"}],
        [{"lookup_key": "p1_m", "product_id": "p1"}, {"lookup_key": "p2_m", "product_id": "p2"}],
        [{"id": "x", "product": "p1", "lookup_key": "p1_m"}],
    )
    plan = plan_repairs(drift, *frames)  # p0x missing, p2_m missing, orphan reported (no write)
    assert plan.objects_to_write == 2
    assert plan.write_share == 2 / 13
    assert plan.counts()[CREATE_PRODUCT] == 1 and plan.counts()[CREATE_PRICE] == 1 and plan.counts()[REPORT_ORPHAN] == 1
