"""The demo: a SaaS company's catalog and its Stripe account (the bundled emulator), with drift.

`plan_demo()` builds both sides from a seed and records, independently of the diff, exactly
which drift it put in; `seed_demo()` writes them. The demo then checks that the drift
`catalog_drift` finds is exactly the drift seeded.

The catalog is what a SaaS company sells: plans with a monthly and a yearly price (EUR and
GBP as currency options on some), per-seat plans with a graduated tiered price, one-time
add-ons, usage priced in fractions of a cent per 1,000 units, marketing features. Drift of
every kind is seeded, on products and on prices, and one unmanaged price (made in the
dashboard, without a lookup key the catalog owns), which repair must leave alone.

Besides real drift the data carries differences that are *not* drift, so the demo also
shows that they are not reported: upper-case currency codes in the catalog, empty vs
missing descriptions and metadata, Unicode names written in two normal forms, the price's
own currency repeated in its currency options, "0.1250" for 0.125.
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

from recon_pipeline.catalog import CatalogPrice, CatalogProduct, init_schema, replace_products
from recon_pipeline.catalog.prices import stripe_price_params
from recon_pipeline.reconcile.diff import DRIFT_KINDS

ADJECTIVES = ["Basic", "Pro", "Team", "Enterprise", "Starter", "Premium", "Café", "Crème", "Nordic", "Ünïcode", "東京", "Growth"]
NOUNS = ["Plan", "Seat", "Add-on", "Bundle", "Licence", "Support", "Storage", "Credits", "Report", "Workspace"]
CATEGORIES = ["software", "service", "hardware", "training"]
FEATURES = ["Unlimited projects", "SSO", "Audit log", "Priority support", "API access", "99.9% uptime SLA", "Custom roles"]
SEAT_TIERS: list[dict[str, Any]] = [{"up_to": 10, "unit_amount": 1200}, {"up_to": 50, "unit_amount": 1000}, {"up_to": "inf", "unit_amount": 800}]

# How many products get each kind of drift (disjoint sets of products): about 6% of them,
# above the 1% drift check, below the 10% mass-drift breaker.
DRIFT_PLAN = {
    "missing_in_stripe": 15,
    "orphan_in_stripe": 8,
    "field_mismatch/name": 10,
    "field_mismatch/description": 6,
    "field_mismatch/active": 5,
    "field_mismatch/metadata": 5,
    "field_mismatch/marketing_features": 3,
    "field_mismatch/default_price": 3,
    "price_missing_in_stripe": 4,
    "price_orphan_in_stripe": 1,
    "price_field_mismatch/unit_amount": 5,
    "price_field_mismatch/currency_options": 2,
    "price_field_mismatch/tiers": 1,
    "price_field_mismatch/nickname": 2,
    "price_field_mismatch/active": 2,
    "price_field_mismatch/tax_behavior": 1,
}
# Which products each kind can drift: a plan has a yearly price (and features), a seat
# plan tiers, plans with currency options; any product with a price can drift its amount.
ELIGIBLE = {
    "field_mismatch/marketing_features": "plan",
    "field_mismatch/default_price": "plan",
    "price_missing_in_stripe": "plan",
    "price_field_mismatch/currency_options": "plan_options",
    "price_field_mismatch/tiers": "seats",
    "price_field_mismatch/nickname": "plan",
    "price_field_mismatch/active": "plan",
    "price_field_mismatch/tax_behavior": "plan",
    "price_field_mismatch/unit_amount": "priced",
    "price_orphan_in_stripe": "priced",
}


@dataclass
class DemoProduct:
    product: CatalogProduct
    prices: list[CatalogPrice]
    shape: str  # plan | plan_options | seats | addon | usage | basic | none


@dataclass
class DemoData:
    catalog: list[DemoProduct]
    stripe: list[dict[str, Any]]  # emulator fixture products, with their prices
    expected: Counter = field(default_factory=Counter)  # <kind> and <kind>/<field>
    unmanaged: list[str] = field(default_factory=list)  # products with a price made in the dashboard

    @property
    def products(self) -> list[CatalogProduct]:
        return [d.product for d in self.catalog]

    @property
    def prices(self) -> list[CatalogPrice]:
        return [p for d in self.catalog for p in d.prices]

    @property
    def expected_by_kind(self) -> dict[str, int]:
        """Drift rows seeded of each kind (a kind with fields: their sum), and `total`."""
        by_kind = {kind: sum(n for k, n in self.expected.items() if k == kind or k.startswith(f"{kind}/")) for kind in DRIFT_KINDS}
        return by_kind | {"total": sum(by_kind.values())}

    def rows(self) -> list[tuple[str, int]]:
        """(kind or `  field`, count seeded) in the report's order, and the total."""
        out: list[tuple[str, int]] = []
        for kind in DRIFT_KINDS:
            out.append((kind, self.expected_by_kind[kind]))
            out += [(f"  {k.split('/', 1)[1]}", self.expected[k]) for k in sorted(self.expected) if k.startswith(f"{kind}/")]
        return [*out, ("total", self.expected_by_kind["total"])]


def _money(rng: random.Random, low: int, high: int) -> int:
    return rng.randrange(low, high, 100)


def _catalog_product(i: int, rng: random.Random) -> DemoProduct:
    product_id = f"sku_{i:05d}"
    name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {i}"
    roll = rng.random()
    shape = "plan" if roll < 0.3 else "plan_options" if roll < 0.4 else "seats" if roll < 0.5 else "addon" if roll < 0.7 else "usage" if roll < 0.75 else "none" if roll < 0.78 else "basic"
    currency = rng.choice(["usd", "usd", "usd", "eur", "gbp"])
    # Upper case in the catalog is not drift: Stripe lower-cases currencies.
    shown = currency.upper() if rng.random() < 0.2 else currency
    prices: list[CatalogPrice] = []
    if shape in ("plan", "plan_options"):
        monthly = _money(rng, 900, 9_900)
        options: dict[str, dict[str, Any]] | None = None
        if shape == "plan_options":
            others: dict[str, dict[str, Any]] = {c: {"unit_amount": monthly * 9 // 10} for c in ("eur", "gbp") if c != currency}
            # Listing the price's own currency in its options too is not drift.
            options = {**others, currency: {"unit_amount": monthly}} if rng.random() < 0.5 else others
        common: dict[str, Any] = {"product_id": product_id, "currency": shown, "recurring_interval_count": 1, "recurring_usage_type": "licensed", "tax_behavior": "exclusive"}
        prices = [
            CatalogPrice(lookup_key=f"{product_id}_monthly", unit_amount=monthly, recurring_interval="month", nickname=f"{name}, monthly", currency_options=options, **common),
            CatalogPrice(
                lookup_key=f"{product_id}_yearly",
                unit_amount=monthly * 10,
                recurring_interval="year",
                nickname=f"{name}, yearly",
                currency_options=None if options is None else {c: {"unit_amount": o["unit_amount"] * 10} for c, o in options.items()},
                **common,
            ),
        ]
    elif shape == "seats":
        prices = [
            CatalogPrice(
                lookup_key=f"{product_id}_seats", product_id=product_id, currency=shown, billing_scheme="tiered", tiers_mode="graduated",
                tiers=[dict(t) for t in SEAT_TIERS], recurring_interval="month", recurring_interval_count=1, recurring_usage_type="licensed",
            )
        ]  # fmt: skip
    elif shape == "addon":
        prices = [CatalogPrice(lookup_key=f"{product_id}_once", product_id=product_id, currency=shown, unit_amount=_money(rng, 500, 50_000))]
    elif shape == "usage":
        prices = [
            CatalogPrice(
                lookup_key=f"{product_id}_per_1k", product_id=product_id, currency=shown, unit_amount_decimal="0.1250", recurring_interval="month",
                recurring_interval_count=1, recurring_usage_type="licensed", transform_quantity={"divide_by": 1000, "round": "up"},
            )
        ]  # fmt: skip
    elif shape == "basic":
        prices = [CatalogPrice(lookup_key=f"{product_id}:default", product_id=product_id, currency=shown, unit_amount=_money(rng, 500, 50_000), recurring_interval="month")]
    product = CatalogProduct(
        id=product_id,
        name=name,
        description=None if rng.random() < 0.1 else f"{name}: everything a {rng.choice(CATEGORIES)} team needs.",
        active=rng.random() > 0.05,
        metadata={} if rng.random() < 0.1 else {"category": rng.choice(CATEGORIES), "tier": str(rng.randint(1, 3))},
        marketing_features=rng.sample(FEATURES, rng.randint(2, 4)) if shape.startswith("plan") else [],
        default_price=prices[0].lookup_key if prices else None,
    )
    return DemoProduct(product, prices, shape)


def _stripe_price(price: CatalogPrice, created: int) -> dict[str, Any]:
    params = stripe_price_params(price, price.product_id)
    for internal in ("product", "transfer_lookup_key"):
        params.pop(internal)
    return {**params, "created": created}


def _stripe_fixture(demo: DemoProduct, created: int) -> dict[str, Any]:
    p = demo.product
    name = p.name if p.name.isascii() else unicodedata.normalize("NFD", p.name)  # another normal form: not drift
    return {
        "id": p.id,
        "name": name,
        "description": p.description,
        "active": p.active,
        "metadata": dict(p.metadata),
        "marketing_features": [{"name": f} for f in p.marketing_features],
        "created": created,
        "default_price": p.default_price,
        "prices": [_stripe_price(price, created) for price in demo.prices],
    }


def _drift(kind: str, fixture: dict[str, Any]) -> None:
    """Change the Stripe side so that exactly one drift row of `kind` appears."""
    prices = {price.get("lookup_key"): price for price in fixture["prices"]}
    first = fixture["prices"][0] if fixture["prices"] else None
    yearly = next((p for key, p in prices.items() if key and key.endswith("_yearly")), None)
    if kind == "field_mismatch/name":
        fixture["name"] += " (old)"
    elif kind == "field_mismatch/description":
        fixture["description"] = "Edited in the Stripe dashboard" if fixture["description"] is None else None
    elif kind == "field_mismatch/active":
        fixture["active"] = not fixture["active"]
    elif kind == "field_mismatch/metadata":
        fixture["metadata"] = {**fixture["metadata"], "tier": "legacy"}
    elif kind == "field_mismatch/marketing_features":
        fixture["marketing_features"] = fixture["marketing_features"][:1]
    elif kind == "field_mismatch/default_price":
        fixture["default_price"] = yearly["lookup_key"]  # type: ignore[index]
    elif kind == "price_missing_in_stripe":
        fixture["prices"].remove(yearly)
    elif kind == "price_orphan_in_stripe":
        # Made in the dashboard: no lookup key, so not the catalog's.
        unmanaged = {k: v for k, v in first.items() if k not in ("lookup_key", "nickname")}  # type: ignore[union-attr]
        fixture["prices"].append({**unmanaged, "nickname": "Black Friday (made in the dashboard)", "metadata": {"campaign": "bf"}})
    elif kind == "price_field_mismatch/unit_amount":
        if "unit_amount" in first:  # type: ignore[operator]
            first["unit_amount"] += 100  # type: ignore[index]
        else:
            first["unit_amount_decimal"] = "0.15"  # type: ignore[index]
    elif kind == "price_field_mismatch/currency_options":
        option = next(iter(first["currency_options"].values()))  # type: ignore[index]
        option["unit_amount"] += 100
    elif kind == "price_field_mismatch/tiers":
        first["tiers"][-1] = {**first["tiers"][-1], "unit_amount": 700}  # type: ignore[index]
    elif kind == "price_field_mismatch/nickname":
        yearly["nickname"] = "Renamed in the dashboard"  # type: ignore[index]
    elif kind == "price_field_mismatch/active":
        yearly["active"] = False  # type: ignore[index]
    elif kind == "price_field_mismatch/tax_behavior":
        yearly.pop("tax_behavior")  # type: ignore[union-attr]
    else:  # pragma: no cover - DRIFT_PLAN and this function move together
        raise ValueError(kind)


def _eligible(kind: str, demo: DemoProduct) -> bool:
    need = ELIGIBLE.get(kind)
    if need is None:
        return True
    if need == "plan":
        return demo.shape in ("plan", "plan_options")
    if need == "priced":
        return demo.shape not in ("none", "seats") and bool(demo.prices)
    return demo.shape == need


def plan_demo(n_products: int = 1000, seed: int = 7, now: dt.datetime | None = None) -> DemoData:
    """Both sides of the demo and the exact drift between them."""
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    year_ago = int(now.timestamp()) - 365 * 24 * 3600
    catalog = [_catalog_product(i, rng) for i in range(1, n_products + 1)]
    data = DemoData(catalog=catalog, stripe=[])

    unassigned = list(range(n_products))
    rng.shuffle(unassigned)
    assigned: dict[int, str] = {}
    for kind, count in DRIFT_PLAN.items():
        if kind == "orphan_in_stripe":
            continue
        chosen = [i for i in unassigned if _eligible(kind, catalog[i])][:count]
        for i in chosen:
            assigned[i] = kind
            unassigned.remove(i)
        data.expected[kind] += len(chosen)

    for i, demo in enumerate(catalog):
        seeded = assigned.get(i)
        if seeded == "missing_in_stripe":
            data.expected["price_missing_in_stripe"] += len(demo.prices)  # its prices are missing too
            continue
        fixture = _stripe_fixture(demo, rng.randint(year_ago, int(now.timestamp())))
        if seeded:
            _drift(seeded, fixture)
            if seeded == "price_orphan_in_stripe":
                data.unmanaged.append(demo.product.id)
        data.stripe.append(fixture)

    for j in range(1, DRIFT_PLAN["orphan_in_stripe"] + 1):
        orphan = DemoProduct(CatalogProduct(id=f"legacy_{j:03d}", name=f"Legacy plan {j}", default_price=f"legacy_{j:03d}:default"), [], "basic")
        orphan.prices = [CatalogPrice(lookup_key=f"legacy_{j:03d}:default", product_id=orphan.product.id, currency="usd", unit_amount=990, recurring_interval="month")]
        data.stripe.append(_stripe_fixture(orphan, rng.randint(year_ago, int(now.timestamp()))))
    data.expected["orphan_in_stripe"] += DRIFT_PLAN["orphan_in_stripe"]
    return data


def seed_demo(engine: Engine, emulator_url: str, data: DemoData) -> None:
    """Replace the catalog's products and prices and the emulator's account with the demo's."""
    init_schema(engine)
    replace_products(engine, data.products, data.prices)
    with httpx.Client(base_url=emulator_url, timeout=120) as admin:
        admin.post("/_emulator/reset").raise_for_status()
        admin.post("/_emulator/fixtures", json={"products": data.stripe}).raise_for_status()


def unmanaged_prices(emulator_url: str, data: DemoData) -> list[dict[str, Any]]:
    """The dashboard-made prices the demo seeded, as Stripe has them now (repair leaves them alone)."""
    found = []
    with httpx.Client(base_url=emulator_url, timeout=30, auth=("sk_test_demo", "")) as client:
        for product_id in data.unmanaged:
            prices = client.get("/v1/prices", params={"product": product_id, "limit": 100}).json()["data"]
            found += [p for p in prices if not p.get("lookup_key")]
    return found

