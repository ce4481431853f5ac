"""The demo: a catalog and a Stripe account (the bundled emulator) with deliberate drift.

`plan_demo()` builds both sides from a seed and records, independently of the diff, exactly
which drift it put in; `seed_demo()` writes them. The demo then checks that the drift
`catalog_drift` finds is exactly the drift seeded.

Besides real drift the data carries differences that are *not* drift, so the demo also
shows that they are not reported: upper-case currency codes in the catalog, empty vs
missing descriptions and metadata, and Unicode names written in two normal forms.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine

from recon_pipeline.catalog import CatalogProduct, init_schema, replace_products

ADJECTIVES = ["Basic", "Pro", "Team", "Enterprise", "Starter", "Premium", "Café", "Crème", "Nordic", "Ünïcode", "東京", "Growth"]
NOUNS = ["Plan", "Seat", "Add-on", "Bundle", "Licence", "Support", "Storage", "Credits", "Report", "Workspace"]
CATEGORIES = ["software", "service", "hardware", "training"]

# How many products get each kind of drift (disjoint sets of products).
# 60 of 1,000 products: above the 1% drift check, below the 10% mass-drift breaker.
DRIFT_PLAN = {
    "missing_in_stripe": 15,
    "orphan_in_stripe": 8,
    "name": 10,
    "description": 6,
    "active": 5,
    "metadata": 6,
    "unit_amount": 6,
    "currency": 2,
    "interval": 2,
}
PRICE_FIELDS = ("unit_amount", "currency", "interval")
FIELD_KINDS = ("name", "description", "active", "metadata", *PRICE_FIELDS)


@dataclass
class DemoData:
    catalog: list[CatalogProduct]
    stripe: list[dict[str, Any]]  # emulator fixture products
    expected: Counter = field(default_factory=Counter)  # drift/<kind> and field_mismatch/<field>

    @property
    def expected_by_kind(self) -> dict[str, int]:
        return {
            "missing_in_stripe": self.expected["missing_in_stripe"],
            "orphan_in_stripe": self.expected["orphan_in_stripe"],
            "field_mismatch": sum(self.expected[f] for f in FIELD_KINDS),
            "total": sum(self.expected.values()),
        }


def _catalog_product(i: int, rng: random.Random) -> CatalogProduct:
    name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {i}"
    has_price = rng.random() > 0.03
    currency = rng.choice(["usd", "usd", "usd", "eur", "gbp"])
    return CatalogProduct(
        id=f"sku_{i:05d}",
        name=name,
        description=None if rng.random() < 0.1 else f"{name}: everything a {rng.choice(CATEGORIES)} team needs.",
        active=rng.random() > 0.05,
        metadata={} if rng.random() < 0.1 else {"category": rng.choice(CATEGORIES), "tier": str(rng.randint(1, 3))},
        unit_amount=rng.randrange(500, 50_000, 100) if has_price else None,
        # Upper case in the catalog is not drift: Stripe lower-cases currencies.
        currency=(currency.upper() if rng.random() < 0.2 else currency) if has_price else None,
        recurring_interval=rng.choice([None, "month", "month", "year"]) if has_price else None,
    )


def _stripe_fixture(p: CatalogProduct, created: int) -> dict[str, Any]:
    name = p.name
    if not name.isascii():
        # The same visible text in another Unicode normal form is not drift.
        name = unicodedata.normalize("NFD", name)
    return {
        "id": p.id,
        "name": name,
        "description": p.description if p.description is not None else None,
        "active": p.active,
        "metadata": dict(p.metadata),
        "created": created,
        "price": None
        if p.unit_amount is None
        else {
            "unit_amount": p.unit_amount,
            "currency": (p.currency or "").lower(),
            "recurring_interval": p.recurring_interval,
            "lookup_key": p.id,
            "created": created,
        },
    }


def _drift(kind: str, fixture: dict[str, Any], rng: random.Random) -> None:
    price = fixture["price"]
    if kind == "name":
        fixture["name"] = fixture["name"] + " (old)"
    elif kind == "description":
        fixture["description"] = "Edited in the Stripe dashboard" if fixture["description"] is None else None
    elif kind == "active":
        fixture["active"] = not fixture["active"]
    elif kind == "metadata":
        fixture["metadata"] = {**fixture["metadata"], "tier": "legacy"}
    elif kind == "unit_amount":
        price["unit_amount"] += 100
    elif kind == "currency":
        price["currency"] = "cad" if price["currency"] != "cad" else "usd"
    elif kind == "interval":
        price["recurring_interval"] = "year" if price["recurring_interval"] == "month" else "month"
    else:  # pragma: no cover - DRIFT_PLAN and this function move together
        raise ValueError(kind)


def plan_demo(n_products: int = 1000, seed: int = 7, now: dt.datetime | None = None) -> DemoData:
    """Both sides of the demo and the exact drift between them."""
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    year_ago = int(now.timestamp()) - 365 * 24 * 3600
    catalog = [_catalog_product(i, rng) for i in range(1, n_products + 1)]
    data = DemoData(catalog=catalog, stripe=[])

    # Disjoint products per drift kind; price drift only where there is a price to drift.
    unassigned = list(range(n_products))
    rng.shuffle(unassigned)
    assigned: dict[int, str] = {}
    for kind, count in DRIFT_PLAN.items():
        if kind == "orphan_in_stripe":
            continue
        eligible = [i for i in unassigned if kind not in PRICE_FIELDS or catalog[i].unit_amount is not None]
        if kind == "interval":
            eligible = [i for i in eligible if catalog[i].recurring_interval in ("month", "year")]
        chosen = eligible[:count]
        for i in chosen:
            assigned[i] = kind
            unassigned.remove(i)
        data.expected[kind] += len(chosen)

    for i, product in enumerate(catalog):
        drift_kind = assigned.get(i)
        if drift_kind == "missing_in_stripe":
            continue
        fixture = _stripe_fixture(product, rng.randint(year_ago, int(now.timestamp())))
        if drift_kind:
            _drift(drift_kind, fixture, rng)
        data.stripe.append(fixture)

    for j in range(1, DRIFT_PLAN["orphan_in_stripe"] + 1):
        orphan = CatalogProduct(id=f"legacy_{j:03d}", name=f"Legacy plan {j}", unit_amount=990, currency="usd", recurring_interval="month")
        data.stripe.append(_stripe_fixture(orphan, rng.randint(year_ago, int(now.timestamp()))))
    data.expected["orphan_in_stripe"] += DRIFT_PLAN["orphan_in_stripe"]
    return data


def seed_demo(engine: Engine, emulator_url: str, data: DemoData) -> None:
    """Replace the catalog's products and the emulator's account with the demo's."""
    init_schema(engine)
    replace_products(engine, data.catalog)
    with httpx.Client(base_url=emulator_url, timeout=60) as admin:
        admin.post("/_emulator/reset").raise_for_status()
        admin.post("/_emulator/fixtures", json={"products": data.stripe}).raise_for_status()
