"""Planning repairs from drift: one action per product and kind of write."""

from __future__ import annotations

import pandas as pd

from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.reconcile import diff_catalog, local_frame, stripe_frame
from recon_pipeline.repair.plan import ARCHIVE_ORPHAN, CHANGE_PRICE, CREATE_PRODUCT, REPORT_ORPHAN, UPDATE_PRODUCT, plan_repairs


def sides(local_rows: list[dict], stripe_products: list[dict]):
    base: dict[str, object] = {"name": "Pro", "description": None, "active": True, "metadata": {}, "unit_amount": 1000, "currency": "usd", "recurring_interval": "month"}
    base["updated_at"] = pd.Timestamp("2026-11-24T12:00:00Z")
    local = local_frame(pd.DataFrame([{**base, **r} for r in local_rows]))
    remote = stripe_frame(
        [
            {
                "name": "Pro",
                "description": None,
                "active": True,
                "metadata": {},
                "created": 1,
                **p,
                "default_price": p.get("default_price", {"id": f"price_{p['id']}", "unit_amount": 1000, "currency": "usd", "recurring": {"interval": "month"}}),
            }
            for p in stripe_products
        ]
    )
    return diff_catalog(local, remote), local, remote


def test_each_kind_of_drift_gets_its_action():
    drift, local, remote = sides(
        [{"id": "new"}, {"id": "renamed", "name": "Pro 2"}, {"id": "repriced", "unit_amount": 2000}, {"id": "both", "name": "X", "currency": "eur"}],
        [{"id": "renamed"}, {"id": "repriced"}, {"id": "both"}, {"id": "orphan"}],
    )
    plan = plan_repairs(drift, local, remote)
    assert [(a.product_id, a.action, a.fields) for a in plan.actions] == [
        ("both", UPDATE_PRODUCT, ("name",)),
        ("both", CHANGE_PRICE, ("currency",)),
        ("new", CREATE_PRODUCT, ()),
        ("orphan", REPORT_ORPHAN, ()),
        ("renamed", UPDATE_PRODUCT, ("name",)),
        ("repriced", CHANGE_PRICE, ("unit_amount",)),
    ]
    change = plan.actions[-1]
    assert change.describe() == "1000 usd/month -> 2000 usd/month"
    assert change.stripe.default_price_id == "price_repriced"
    assert plan.actions[2].desired.version == "2026-11-24T12:00:00+00:00"


def test_orphan_policy_archive_plans_a_write_but_not_for_an_already_archived_product():
    drift, local, remote = sides([{"id": "a"}], [{"id": "a"}, {"id": "orphan"}])
    plan = plan_repairs(drift, local, remote, OrphanPolicy.ARCHIVE)
    assert [(a.product_id, a.action) for a in plan.actions] == [("orphan", ARCHIVE_ORPHAN)]
    assert plan.products_to_write == 1


def test_write_share_counts_products_written_against_the_catalog():
    drift, local, remote = sides(
        [{"id": f"p{i}"} for i in range(10)] + [{"id": "p0x", "name": "n"}],
        [{"id": f"p{i}"} for i in range(10)] + [{"id": "orphan"}],
    )
    plan = plan_repairs(drift, local, remote)  # p0x missing, orphan reported (no write)
    assert plan.products_to_write == 1
    assert plan.write_share == 1 / 11
    assert plan.counts()[CREATE_PRODUCT] == 1 and plan.counts()[REPORT_ORPHAN] == 1
