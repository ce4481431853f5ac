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
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from recon_pipeline.stripe_api.client import StripeGateway

PAGE = 100
PAGES_PER_WINDOW = 5
EXPAND = ["data.default_price"]


@dataclass
class ProductsSnapshot:
    products: list[dict[str, Any]] = field(default_factory=list)
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
    products: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
    complete: bool = False


def _page_window(gateway: StripeGateway, window: _Window) -> _Window:
    params: dict[str, Any] = {"limit": PAGE, "expand": EXPAND, "created": {"gte": window.lo, "lte": window.hi}}
    if window.starting_after:
        params["starting_after"] = window.starting_after
    while True:
        page = gateway.request("get", "/v1/products", params)
        window.pages += 1
        window.products.extend(page["data"])
        if not page.get("has_more") or not page["data"]:
            window.complete = True
            return window
        params["starting_after"] = page["data"][-1]["id"]


def _older_than(gateway: StripeGateway, created_lte: int) -> int | None:
    """The `created` of the newest product at or before the given second, or None."""
    if created_lte < 0:
        return None
    page = gateway.request("get", "/v1/products", {"limit": 1, "created": {"lte": created_lte}})
    return page["data"][0]["created"] if page["data"] else None


def fetch_products_snapshot(gateway: StripeGateway, concurrency: int = 8) -> ProductsSnapshot:
    started = time.perf_counter()
    requests_before = gateway.stats["requests"]
    snapshot = ProductsSnapshot()
    first = gateway.request("get", "/v1/products", {"limit": PAGE, "expand": EXPAND})
    snapshot.pages = 1
    windows: list[_Window] = []
    all_complete = True

    if first.get("has_more") and first["data"]:
        newest, last = first["data"][0], first["data"][-1]
        seconds_per_page = max(1, newest["created"] - last["created"] + 1)
        width = seconds_per_page * PAGES_PER_WINDOW
        frontier = last["created"] - 1  # inclusive upper bound of the next window
        exhausted = frontier < 0

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            # The rest of the first page's last second, continued after its last product.
            running: set[Future] = {pool.submit(_page_window, gateway, _Window(last["created"], last["created"], last["id"]))}
            while running or not exhausted:
                while not exhausted and len(running) < concurrency:
                    lo = max(0, frontier - width + 1)
                    running.add(pool.submit(_page_window, gateway, _Window(lo, frontier)))
                    frontier = lo - 1
                    exhausted = frontier < 0
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.remove(future)
                    window = future.result()
                    windows.append(window)
                    all_complete &= window.complete
                    if window.pages > PAGES_PER_WINDOW * 2:
                        width = max(1, width // 2)
                    elif window.pages <= 1 and window.products:
                        width *= 2
                    if not window.products and not exhausted:
                        # A gap: jump the next window to the next older product, or stop.
                        next_created = _older_than(gateway, frontier)
                        if next_created is None:
                            exhausted = True
                        else:
                            frontier = next_created

    seen: set[str] = set()
    for product in [*first["data"], *(p for w in windows for p in w.products)]:
        if product["id"] in seen:
            snapshot.duplicates += 1
            continue
        seen.add(product["id"])
        snapshot.products.append(product)
    snapshot.pages += sum(w.pages for w in windows)
    snapshot.requests = int(gateway.stats["requests"] - requests_before)
    snapshot.complete = all_complete
    snapshot.seconds = time.perf_counter() - started
    return snapshot


def fetch_products_by_id(gateway: StripeGateway, stripe_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The given products with their default price expanded, 100 ids a request."""
    ids = list(stripe_ids)
    products: list[dict[str, Any]] = []
    for start in range(0, len(ids), PAGE):
        page = gateway.request("get", "/v1/products", params={"ids": ids[start : start + PAGE], "limit": PAGE, "expand": EXPAND})
        products.extend(page["data"])
    return products
