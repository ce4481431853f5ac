"""Every Stripe product and price, listed concurrently over `created` ranges, into Arrow as pages arrive.

Stripe lists newest first, 100 objects a page, and a cursor (`starting_after`) makes plain
pagination strictly sequential: at 200 ms a request that is 500 objects/s, a fifth of what
the endpoint's 25 requests/s allow. So the list is split into disjoint `created` windows
that are paged at the same time:

1. The first page (newest 100) gives the density: its objects span `s` seconds.
2. Everything older is covered by windows `[lo, hi]` issued backwards from that page,
   each about `PAGES_PER_WINDOW` pages wide by that density, `concurrency` at a time; a
   window is paged to its end with `starting_after`, so objects that share a second are
   never split across windows. The objects of the first page's last second that did not
   fit on it are one more window, continued with `starting_after`.
3. A window that comes back empty means a gap (or the account's beginning): a `limit=1`
   probe with `created[lte]` finds the next older object and the windows jump to it; an
   empty probe proves nothing older exists, and no more windows are issued.
4. Once no window is left to issue, a free slot splits the running window with the most
   seconds left: the running one keeps the newer half (its floor `lo` is raised, which
   its next pages honour), a new window takes the older half. So the list never ends with
   one window paging alone while the endpoint's budget goes unused.

Each window's last page is partly empty, so the list costs about half a request per window
beyond its full pages; wide windows keep that small (2.5% at 20 pages a window), and the
splitting in 4 keeps wide windows from making a slow tail. Windows are disjoint and
together cover every second from the newest object down to the oldest, so each object is
listed exactly once; ids are still de-duplicated defensively and the duplicates counted.

Each page becomes an Arrow record batch of the canonical columns as it arrives (the page's
dicts are dropped then). Given a `TableWriter`, the batches go straight into a Parquet file
and the snapshot holds none of them (how the reconcile_catalog job lists millions of
objects in little memory); otherwise they are joined into one frame, without a copy.
Requests, retries and waits are counted per list (`Snapshot.stats`), not per client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import pyarrow as pa
import stripe

from recon_pipeline.reconcile.frames import arrow_to_frame, stripe_frame, stripe_price_batch, stripe_price_frame, stripe_product_batch
from recon_pipeline.reconcile.tables import ParquetTable, TableWriter
from recon_pipeline.stripe_api import StripeGateway, Tally, error_text

PAGE = 100
PAGES_PER_WINDOW = 20
SPLIT_PAGES_LEFT = 8  # a running window is split at the end only with about this many pages left
CONCURRENCY = 16  # windows paged at once per list: above rate x request time (25/s x ~0.35 s), so the rate limit binds, not the threads
# Prices are listed with what is only in an answer that expands it.
PRICE_EXPAND = ["data.tiers", "data.currency_options"]
Convert = Callable[[list[dict[str, Any]]], pa.RecordBatch]
Listed = Callable[[int], None]  # told how many objects a page brought (progress)
Put = Callable[[pa.RecordBatch], None]  # where each page's batch goes (any thread)


@dataclass
class Snapshot:
    """One list of the whole account (each page converted as it came): a canonical frame, or,
    when written as it came, the Parquet file (`table`) and no frame."""

    frame: pd.DataFrame | None
    rows: int = 0
    table: ParquetTable | None = None
    pages: int = 0
    requests: int = 0
    complete: bool = False
    duplicates: int = 0
    seconds: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)  # this list's own requests, retries, 429s, throttle_wait_s

    def whole(self) -> pd.DataFrame:
        """The canonical frame, read from the file when the pages were written as they came."""
        if self.frame is not None:
            return self.frame
        assert self.table is not None, "a snapshot has a frame or a file"
        return self.table.frame()

    @property
    def requests_per_object(self) -> float:
        return self.requests / self.rows if self.rows else float(self.requests)


@dataclass
class _Window:
    lo: int
    hi: int
    starting_after: str | None = None
    count: int = 0
    pages: int = 0
    complete: bool = False
    reached: int | None = None  # `created` of the oldest object listed so far
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def seconds_left(self) -> int:
        with self.lock:
            top = self.hi if self.reached is None else self.reached - 1
            return top - self.lo + 1

    def split(self) -> _Window:
        """Hand the older half of what is left (two seconds or more) to a new window."""
        with self.lock:
            top = self.hi if self.reached is None else self.reached - 1
            middle = (self.lo + top) // 2
            older = _Window(self.lo, middle)
            self.lo = middle + 1
            return older

    def keep(self, data: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        """The objects of a page still inside the window (its floor may have been raised since
        the request left), and whether the window has passed its floor."""
        with self.lock:
            inside = [obj for obj in data if obj["created"] >= self.lo]
            if inside:
                self.reached = inside[-1]["created"]
            return inside, len(inside) < len(data)


def _page_window(
    gateway: StripeGateway, path: str, base: dict[str, Any], convert: Convert, put: Put, window: _Window, progress: Listed, tally: Tally
) -> _Window:
    params: dict[str, Any] = {**base, "limit": PAGE}
    if window.starting_after:
        params["starting_after"] = window.starting_after
    while True:
        params["created"] = {"gte": window.lo, "lte": window.hi}
        page = gateway.request("get", path, params, tally=tally)
        window.pages += 1
        data, past_floor = window.keep(page["data"])
        if data:
            put(convert(data))  # the page's dicts are dropped here
            window.count += len(data)
            progress(len(data))
        if past_floor or not page.get("has_more") or not page["data"]:
            window.complete = True
            return window
        params["starting_after"] = page["data"][-1]["id"]


def _older_than(gateway: StripeGateway, path: str, base: dict[str, Any], created_lte: int, tally: Tally) -> int | None:
    """The `created` of the newest object at or before the given second, or None."""
    if created_lte < 0:
        return None
    params = {k: v for k, v in base.items() if k != "expand"}
    page = gateway.request("get", path, {**params, "limit": 1, "created": {"lte": created_lte}}, tally=tally)
    return page["data"][0]["created"] if page["data"] else None


def _nothing(count: int) -> None:
    pass


def fetch_snapshot(
    gateway: StripeGateway,
    path: str,
    base: dict[str, Any],
    convert: Convert,
    id_column: str,
    concurrency: int = CONCURRENCY,
    progress: Listed = _nothing,
    into: TableWriter | None = None,
) -> Snapshot:
    """Every object of a list endpoint (`base`: its filters and expansions), paged concurrently over `created` windows.
    `progress` is told how many objects each page brought. With `into`, the pages are written
    there and not kept: the caller closes it, and finds duplicates in the file (`on_disk`)."""
    started = time.perf_counter()
    tally = Tally()
    batches: list[pa.RecordBatch] = []
    put: Put = batches.append if into is None else into.write
    first = gateway.request("get", path, {**base, "limit": PAGE}, tally=tally)
    progress(len(first["data"]))
    put(convert(first["data"]))
    rows, pages = len(first["data"]), 1
    all_complete = True

    if first.get("has_more") and first["data"]:
        newest, last = first["data"][0], first["data"][-1]
        seconds_per_page = max(1, newest["created"] - last["created"] + 1)
        width = seconds_per_page * PAGES_PER_WINDOW
        frontier = last["created"] - 1  # inclusive upper bound of the next window
        exhausted = frontier < 0

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            running: dict[Future, _Window] = {}

            def page(window: _Window) -> None:
                running[pool.submit(_page_window, gateway, path, base, convert, put, window, progress, tally)] = window

            # The rest of the first page's last second, continued after its last object.
            page(_Window(last["created"], last["created"], last["id"]))
            while running or not exhausted:
                while not exhausted and len(running) < concurrency:
                    lo = max(0, frontier - width + 1)
                    page(_Window(lo, frontier))
                    frontier = lo - 1
                    exhausted = frontier < 0
                while exhausted and 0 < len(running) < concurrency:
                    widest = max(running.values(), key=_Window.seconds_left)
                    # Worth it only with several pages left (each split costs about half a request).
                    if widest.seconds_left() < max(2, SPLIT_PAGES_LEFT * width / PAGES_PER_WINDOW):
                        break
                    page(widest.split())
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    del running[future]
                    window = future.result()
                    rows += window.count
                    pages += window.pages
                    all_complete &= window.complete
                    if window.pages > PAGES_PER_WINDOW * 2:
                        width = max(1, width // 2)
                    elif window.pages <= PAGES_PER_WINDOW // 4 and window.count:
                        width *= 2
                    if not window.count and not exhausted:
                        # A gap: jump the next window to the next older object, or stop.
                        next_created = _older_than(gateway, path, base, frontier, tally)
                        if next_created is None:
                            exhausted = True
                        else:
                            frontier = next_created

    seconds, requests = time.perf_counter() - started, int(tally.stats["requests"])
    if into is not None:
        return Snapshot(None, rows, None, pages, requests, all_complete, 0, seconds, tally.stats)
    frame, duplicates = _deduplicated(arrow_to_frame(pa.Table.from_batches(batches)), id_column)
    return Snapshot(frame, len(frame), None, pages, requests, all_complete, duplicates, seconds, tally.stats)


def _deduplicated(frame: pd.DataFrame, id_column: str) -> tuple[pd.DataFrame, int]:
    """The frame with each id once, and how many rows repeated an id."""
    unique = ~frame[id_column].duplicated()
    duplicates = int((~unique).sum())
    return (frame[unique].reset_index(drop=True) if duplicates else frame), duplicates


def on_disk(snapshot: Snapshot, into: TableWriter, id_column: str) -> Snapshot:
    """A snapshot written to `into`, its file closed: the table, and the ids listed more than once."""
    table = into.close()
    ((repeated,),) = table.query(f"SELECT count(*) - count(DISTINCT {id_column}) FROM side")
    return replace(snapshot, table=table, rows=table.rows, duplicates=snapshot.duplicates + int(repeated))


def fetch_products_snapshot(gateway: StripeGateway, concurrency: int = CONCURRENCY, progress: Listed = _nothing, into: TableWriter | None = None) -> Snapshot:
    """Every product of the account (active and archived), as the canonical products frame
    (or, with `into`, as a Parquet file of its rows)."""
    snapshot = fetch_snapshot(gateway, "/v1/products", {}, stripe_product_batch, "stripe_id", concurrency, progress, into)
    return snapshot if into is None else on_disk(snapshot, into, "stripe_id")


def fetch_prices_snapshot(gateway: StripeGateway, concurrency: int = CONCURRENCY, progress: Listed = _nothing, into: TableWriter | None = None) -> Snapshot:
    """Every price of the account, active and archived (Stripe lists them apart), with tiers
    and currency options expanded, as the canonical prices frame (or, with `into`, as a
    Parquet file of its rows)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(
            pool.map(
                lambda active: fetch_snapshot(
                    gateway, "/v1/prices", {"active": active, "expand": PRICE_EXPAND}, stripe_price_batch, "price_id", concurrency, progress, into
                ),
                (True, False),
            )
        )
    stats = {name: sum(part.stats.get(name, 0) for part in parts) for name in parts[0].stats}
    both = Snapshot(
        None,
        sum(p.rows for p in parts),
        None,
        sum(p.pages for p in parts),
        sum(p.requests for p in parts),
        all(p.complete for p in parts),
        sum(p.duplicates for p in parts),
        time.perf_counter() - started,
        stats,
    )
    if into is not None:
        return on_disk(both, into, "price_id")
    assert parts[0].frame is not None and parts[1].frame is not None
    frame = pd.concat([part.frame for part in parts], ignore_index=True) if len(parts[1].frame) else parts[0].frame
    frame, repeated = _deduplicated(frame, "price_id")
    return replace(both, frame=frame, rows=len(frame), duplicates=both.duplicates + repeated)


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
