"""Every Stripe product with its default price, fetched concurrently over `created` ranges.

Stripe lists newest first, 100 objects a page, and a cursor (`starting_after`) makes plain
pagination strictly sequential: at 200 ms a request that is 500 products/s, a fifth of what
the endpoint's 25 requests/s allow. So the list is split into disjoint `created` windows
that are paged at the same time:

1. The first page (newest 100) gives the density: its products span `s` seconds.
2. Everything older is covered by windows `[lo, hi]` issued backwards from that page,
   each about `PAGES_PER_WINDOW` pages wide by that density, `concurrency` at a time; a
   window is paged to the end (`has_more=false`) with `starting_after`, so products that
   share a second are never split across windows. The products of the first page's last
   second that did not fit on it are one more window, continued with `starting_after`.
3. A window that comes back empty means a gap (or the account's beginning): a `limit=1`
   probe with `created[lte]` finds the next older product and the windows jump to it; an
   empty probe proves nothing older exists, and no more windows are issued.

Windows are disjoint and together cover every second from the newest product down to the
oldest, so each product is listed exactly once; ids are still de-duplicated defensively
and the duplicates counted. Window widths adapt: a window of many pages halves the next
ones, a window of one page doubles them. When every product shares one second this
degrades to sequential pagination of that one window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import stripe

from recon_pipeline.reconcile.frames import stripe_frame, stripe_price_frame
from recon_pipeline.stripe_api import StripeGateway, error_text

PAGE = 100
PAGES_PER_WINDOW = 5
# Prices are listed with what is only in an answer that expands it.
PRICE_EXPAND = ["data.tiers", "data.currency_options"]
Convert = Callable[[list[dict[str, Any]]], pd.DataFrame]
Listed = Callable[[int], None]  # told how many objects a page brought (progress)


@dataclass
class Snapshot:
    """One list of the whole account, as a canonical frame (each page converted as it came)."""

    frame: pd.DataFrame
    pages: int = 0
    requests: int = 0
    complete: bool = False
    duplicates: int = 0
    seconds: float = 0.0


@dataclass
class _Window:
    lo: int
    hi: int
    starting_after: str | None = None
    frames: list[pd.DataFrame] = field(default_factory=list)
    count: int = 0
    pages: int = 0
    complete: bool = False


def _page_window(gateway: StripeGateway, path: str, base: dict[str, Any], convert: Convert, window: _Window, progress: Listed) -> _Window:
    params: dict[str, Any] = {**base, "limit": PAGE, "created": {"gte": window.lo, "lte": window.hi}}
    if window.starting_after:
        params["starting_after"] = window.starting_after
    while True:
        page = gateway.request("get", path, params)
        window.pages += 1
        if page["data"]:
            window.frames.append(convert(page["data"]))  # the page's dicts are dropped here
            window.count += len(page["data"])
            progress(len(page["data"]))
        if not page.get("has_more") or not page["data"]:
            window.complete = True
            return window
        params["starting_after"] = page["data"][-1]["id"]


def _older_than(gateway: StripeGateway, path: str, base: dict[str, Any], created_lte: int) -> int | None:
    """The `created` of the newest object at or before the given second, or None."""
    if created_lte < 0:
        return None
    params = {k: v for k, v in base.items() if k != "expand"}
    page = gateway.request("get", path, {**params, "limit": 1, "created": {"lte": created_lte}})
    return page["data"][0]["created"] if page["data"] else None


def _nothing(count: int) -> None:
    pass


def fetch_snapshot(
    gateway: StripeGateway, path: str, base: dict[str, Any], convert: Convert, id_column: str, concurrency: int = 8, progress: Listed = _nothing
) -> Snapshot:
    """Every object of a list endpoint (`base`: its filters and expansions), paged concurrently over `created` windows.
    `progress` is told how many objects each page brought."""
    started = time.perf_counter()
    requests_before = gateway.stats["requests"]
    first = gateway.request("get", path, {**base, "limit": PAGE})
    progress(len(first["data"]))
    frames = [convert(first["data"])]
    pages = 1
    all_complete = True

    if first.get("has_more") and first["data"]:
        newest, last = first["data"][0], first["data"][-1]
        seconds_per_page = max(1, newest["created"] - last["created"] + 1)
        width = seconds_per_page * PAGES_PER_WINDOW
        frontier = last["created"] - 1  # inclusive upper bound of the next window
        exhausted = frontier < 0

        def page(window: _Window) -> Future:
            return pool.submit(_page_window, gateway, path, base, convert, window, progress)

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            # The rest of the first page's last second, continued after its last object.
            running: set[Future] = {page(_Window(last["created"], last["created"], last["id"]))}
            while running or not exhausted:
                while not exhausted and len(running) < concurrency:
                    lo = max(0, frontier - width + 1)
                    running.add(page(_Window(lo, frontier)))
                    frontier = lo - 1
                    exhausted = frontier < 0
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.remove(future)
                    window = future.result()
                    frames += window.frames
                    pages += window.pages
                    all_complete &= window.complete
                    if window.pages > PAGES_PER_WINDOW * 2:
                        width = max(1, width // 2)
                    elif window.pages <= 1 and window.count:
                        width *= 2
                    if not window.count and not exhausted:
                        # A gap: jump the next window to the next older object, or stop.
                        next_created = _older_than(gateway, path, base, frontier)
                        if next_created is None:
                            exhausted = True
                        else:
                            frontier = next_created

    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    unique = ~frame[id_column].duplicated()
    duplicates = int((~unique).sum())
    if duplicates:
        frame = frame[unique].reset_index(drop=True)
    return Snapshot(frame, pages, int(gateway.stats["requests"] - requests_before), all_complete, duplicates, time.perf_counter() - started)


def fetch_products_snapshot(gateway: StripeGateway, concurrency: int = 8, progress: Listed = _nothing) -> Snapshot:
    """Every product of the account (active and archived), as the canonical products frame."""
    return fetch_snapshot(gateway, "/v1/products", {}, stripe_frame, "stripe_id", concurrency, progress)


def fetch_prices_snapshot(gateway: StripeGateway, concurrency: int = 8, progress: Listed = _nothing) -> Snapshot:
    """Every price of the account, active and archived (Stripe lists them apart), with tiers
    and currency options expanded, as the canonical prices frame."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(
            pool.map(
                lambda active: fetch_snapshot(gateway, "/v1/prices", {"active": active, "expand": PRICE_EXPAND}, stripe_price_frame, "price_id", concurrency, progress),
                (True, False),
            )
        )
    frame = pd.concat([part.frame for part in parts], ignore_index=True)
    unique = ~frame["price_id"].duplicated()
    if not unique.all():
        frame = frame[unique].reset_index(drop=True)
    return Snapshot(
        frame,
        sum(p.pages for p in parts),
        sum(p.requests for p in parts),
        all(p.complete for p in parts),
        sum(p.duplicates for p in parts) + int((~unique).sum()),
        time.perf_counter() - started,
    )


def fetch_products_by_id(gateway: StripeGateway, stripe_ids: Iterable[str]) -> pd.DataFrame:
    """The given products, 100 ids a request, as the canonical products frame."""
    ids = list(stripe_ids)
    products: list[dict[str, Any]] = []
    for start in range(0, len(ids), PAGE):
        page = gateway.request("get", "/v1/products", params={"ids": ids[start : start + PAGE], "limit": PAGE})
        products.extend(page["data"])
    return stripe_frame(products)


def fetch_prices_of(
    gateway: StripeGateway, wanted: Mapping[str, Iterable[str]], concurrency: int = 8, unread: dict[str, str] | None = None
) -> pd.DataFrame:
    """The prices of the given products that a sync needs, as the canonical prices frame.

    `wanted`: Stripe product id -> the lookup keys the catalog owns on it. A product's active
    prices are read (one request, 100 prices); its archived ones only when a key it owns is
    not among them (a price archived in the dashboard still holds its key). A product the
    catalog owns no price of is not read: none of its prices can be the catalog's.

    `unread`: when given, a product whose prices Stripe would not list (after the client's
    retries) is put there with the reason, and the others are still returned; else it raises.
    """

    def of(product: str, keys: set[str]) -> list[dict[str, Any]]:
        params = {"product": product, "limit": PAGE, "expand": PRICE_EXPAND}
        try:
            found = list(gateway.list_all("/v1/prices", params={**params, "active": True}))
            if keys - {p.get("lookup_key") for p in found}:
                found += gateway.list_all("/v1/prices", params={**params, "active": False})
        except stripe.StripeError as error:
            if unread is None:
                raise
            unread[product] = error_text(error)
            return []
        return found

    jobs = {product: set(keys) for product, keys in wanted.items() if keys}
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        prices = [price for page in pool.map(lambda item: of(*item), jobs.items()) for price in page]
    return stripe_price_frame(prices)
