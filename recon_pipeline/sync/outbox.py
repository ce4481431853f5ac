"""Draining the outbox: catalog changes pushed to Stripe at a controlled rate, retried, dead-lettered.

A claim takes the ready rows of some products, and with them every other pending row of
those products (several changes to one product coalesce into one push). A push sends the
product's *current* catalog state, through the same planner and idempotent writes as
repair, so order within a product cannot be violated and a retried push cannot duplicate.

Claims are serialized (a transaction-scoped advisory lock on PostgreSQL, the database
write lock on SQLite) and rows are selected `FOR UPDATE SKIP LOCKED`, so two workers never
hold the same product; a claim expires after `lease_s`, so a crashed worker's rows come
back. A failed push is retried with exponential backoff and jitter (`next_attempt_at`);
after `max_attempts` it goes to `dead_letter`. A key Stripe refuses (401/403) stops the drain at
once, the claimed changes handed back untouched: retrying cannot help (see credentials.py).
"""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import stripe
from sqlalchemy import Engine, and_, func, or_, select, text, true, update

from recon_pipeline.backoff import Backoff
from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.capture import DELETE, DELETE_PRICE
from recon_pipeline.catalog.schema import OutboxStatus, outbox
from recon_pipeline.progress import Progress
from recon_pipeline.repair import Deleted, WriteSource, converge
from recon_pipeline.repair.dead_letters import record_dead_letter
from recon_pipeline.stripe_api import CredentialsRefused, StripeGateway, by_name, error_text
from recon_pipeline.sync.credentials import record_refusal, refusal

CLAIM_LOCK = 727_274  # any constant: the advisory lock that serializes claims on PostgreSQL


@dataclass(frozen=True)
class OutboxPolicy:
    max_attempts: int = 8
    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    lease_s: float = 120.0

    def next_delay(self, attempts: int) -> float:
        """Seconds until a change that has failed `attempts` times is tried again."""
        return Backoff(base_s=self.base_delay_s, cap_s=self.max_delay_s).delay(attempts - 1)


@dataclass
class DrainResult:
    """What one drain did."""

    pushed_products: int = 0
    """Products brought to their current catalog state in Stripe."""
    delivered_rows: int = 0
    """Outbox rows done with them (several changes of one product coalesce into one push)."""
    retried: int = 0
    """Products whose push failed and backs off until its next attempt."""
    dead: int = 0
    """Products whose push exhausted its attempts: in dead_letter."""
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    """Accounts whose API key Stripe refused, with why: their changes wait, untouched; the others went on."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def worker_id() -> str:
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


def claim(engine: Engine, worker: str, limit: int = 50, lease_s: float = 120.0, ready_by: dt.datetime | None = None, skip: Iterable[str] = ()) -> dict[str, list[int]]:
    """Claim up to `limit` products with rows ready by `ready_by` (default now), or claimed by a
    worker whose lease ran out (killed mid-push), but those in `skip`; returns {product_id: [outbox ids]}."""
    now = _now()
    ready_by = ready_by or now
    expired = now - dt.timedelta(seconds=lease_s)
    lease_ran_out = and_(outbox.c.status == OutboxStatus.IN_FLIGHT, outbox.c.claimed_at < expired)
    ready = or_(and_(outbox.c.status == OutboxStatus.PENDING, outbox.c.next_attempt_at <= ready_by), lease_ran_out)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK})
        elif engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before reading
        busy = select(outbox.c.product_id).where(outbox.c.status == OutboxStatus.IN_FLIGHT, outbox.c.claimed_at >= expired)
        skipped = outbox.c.product_id.not_in(list(skip)) if skip else true()
        candidates = conn.execute(
            select(outbox.c.id, outbox.c.product_id, outbox.c.attempts, outbox.c.status)
            .where(ready, outbox.c.product_id.not_in(busy), skipped)
            .order_by(outbox.c.id)
            .limit(limit * 4)
            .with_for_update(skip_locked=True)
        ).all()
        product_ids = list(dict.fromkeys(row.product_id for row in candidates))[:limit]
        if not product_ids:
            return {}
        conn.execute(
            update(outbox)
            .where(outbox.c.product_id.in_(product_ids), or_(outbox.c.status == OutboxStatus.PENDING, lease_ran_out))
            .values(status=OutboxStatus.IN_FLIGHT, claimed_by=worker, claimed_at=now)
        )
        rows = conn.execute(select(outbox.c.id, outbox.c.product_id).where(outbox.c.product_id.in_(product_ids), outbox.c.status == OutboxStatus.IN_FLIGHT, outbox.c.claimed_by == worker)).all()
    claimed: dict[str, list[int]] = {}
    for row in rows:
        claimed.setdefault(row.product_id, []).append(row.id)
    return claimed


def push_products(gateway: StripeGateway, catalog: Catalog, product_ids: list[str], run_id: str | None = None, concurrency: int = 8, deleted: Deleted | None = None) -> dict[str, str | None]:
    """Bring each product and its prices in Stripe to their current catalog state; returns {product_id: error or None}.

    Both sides are read once for the whole batch (Stripe: 100 products a request, and each
    product's prices). A push cut off midway converges on the next (see repair/apply.py).
    `deleted`: what the catalog deleted (captured deletes): archived in Stripe.
    """
    deleted = deleted or Deleted()
    converged = converge(catalog, gateway, product_ids, source=WriteSource.OUTBOX, run_id=run_id, concurrency=concurrency, dead_letters=False, verify=False, deleted=deleted)
    known = set(converged.sides.local["product_id"]) | deleted.products
    return {p: converged.errors.get(p) if p in known or p in converged.errors else f"product {p!r} is not in the catalog (or is quarantined: see the quarantine table)" for p in product_ids}


def deletions(engine: Engine, outbox_ids: Iterable[int]) -> Deleted:
    """The deletes among these outbox rows (capture queues them): product ids (with the Stripe
    account each was sold in, where the table says it), and prices' lookup keys."""
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.product_id, outbox.c.change, outbox.c.fields).where(outbox.c.id.in_(list(outbox_ids)), outbox.c.change.in_([DELETE, DELETE_PRICE]))).all()
    products = frozenset(row.product_id for row in rows if row.change == DELETE)
    prices = frozenset(str(row.fields["lookup_key"]) for row in rows if row.change == DELETE_PRICE and isinstance(row.fields, dict) and row.fields.get("lookup_key"))
    accounts = {row.product_id: str(row.fields["account"]) for row in rows if row.change == DELETE and isinstance(row.fields, dict) and row.fields.get("account")}
    return Deleted(products, prices, accounts)


def _finish(engine: Engine, product_id: str, ids: list[int], error: str | None, policy: OutboxPolicy, result: DrainResult, account: str) -> None:
    now = _now()
    with engine.begin() as conn:
        if error is None:
            conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(status=OutboxStatus.DONE, done_at=now, last_error=None))
            result.pushed_products += 1
            result.delivered_rows += len(ids)
            return
        attempts = (conn.execute(select(func.max(outbox.c.attempts)).where(outbox.c.id.in_(ids))).scalar() or 0) + 1
        if attempts >= policy.max_attempts:
            conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(status=OutboxStatus.DEAD, attempts=attempts, last_error=error))
            record_dead_letter(conn, WriteSource.OUTBOX, product_id, "push", {"outbox_ids": ids}, error, attempts, account)
            result.dead += 1
        else:
            retry_at = now + dt.timedelta(seconds=policy.next_delay(attempts))
            conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(status=OutboxStatus.PENDING, attempts=attempts, next_attempt_at=retry_at, last_error=error, claimed_by=None))
            result.retried += 1
        result.errors.append(f"{product_id}: {error}")


def drain(
    catalog: Catalog,
    gateway: StripeGateway | Mapping[str, StripeGateway],
    worker: str | None = None,
    policy: OutboxPolicy | None = None,
    concurrency: int = 8,
    max_products: int | None = None,
    run_id: str | None = None,
    batch_size: int = 100,
    say: Callable[[str], None] | None = None,
) -> DrainResult:
    """Push every ready product, batch after batch, `concurrency` writes at a time, until none is ready (or the cap).
    `say`: where progress goes (about every 10 s: products done of those ready at the start, rate, ETA).

    `gateway`: the one Stripe account, or one gateway per account (by name): each product is
    pushed to the account the catalog sells it in, and only there. An account whose API key
    Stripe refused (now, or before: `stripe_refusals`) is left alone: its changes wait, no
    attempt counted, and the other accounts' go on (`result.refused` says which and why)."""
    gateways = by_name(gateway)
    engine = catalog.engine
    worker = worker or worker_id()
    policy = policy or OutboxPolicy()
    result = DrainResult()
    started = time.perf_counter()
    # What was ready when the drain began: a change backing off waits for the next drain.
    began = _now()

    progress = Progress("outbox products pushed", ready_count(engine, products=True), say) if say else None
    held: set[str] = set()  # products of refused accounts: handed back, and not claimed again in this drain

    def hold(products: list[str]) -> None:
        # No attempt is counted and nothing is dead-lettered: the changes wait for a key Stripe takes.
        release_claims(engine, worker, products)
        held.update(products)

    while max_products is None or result.pushed_products + result.retried + result.dead < max_products:
        batch = claim(engine, worker, limit=batch_size, lease_s=policy.lease_s, ready_by=began, skip=held)
        if not batch:
            break
        errors: dict[str, str | None] = {}
        deleted = deletions(engine, [i for ids in batch.values() for i in ids])
        grouped = by_account(catalog, list(batch), gateways, deleted.accounts)
        sold_in = {product: account for account, products in grouped.items() for product in products}
        for account, products in grouped.items():
            if account not in gateways:
                errors.update({p: f"product {p!r} is sold in the Stripe account {account!r}, which RECON_STRIPE_ACCOUNTS does not name; add it there" for p in products})
                continue
            why = result.refused.get(account) or refusal(engine, gateways[account])
            if why:
                result.refused[account] = why
                hold(products)
                continue
            try:
                errors.update(push_products(gateways[account], catalog, products, run_id, concurrency, deleted))
            except CredentialsRefused as refused:
                record_refusal(engine, gateways[account], refused)
                result.refused[account] = str(refused)
                hold(products)
            except stripe.StripeError as exc:
                errors.update({p: error_text(exc) for p in products})
            except Exception as exc:  # a push must never leave its rows claimed forever
                errors.update({p: f"{type(exc).__name__}: {exc}" for p in products})
        for product_id, ids in batch.items():
            if product_id not in held:
                _finish(engine, product_id, ids, errors.get(product_id), policy, result, sold_in[product_id])
        if progress:
            progress.advance(len(batch) - len(held & set(batch)))
    result.seconds = time.perf_counter() - started
    if progress and progress.done:
        progress.say(progress.summary())
    return result


def by_account(catalog: Catalog, product_ids: list[str], gateways: Mapping[str, StripeGateway], deleted_from: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """The products grouped by the Stripe account they are sold in; one the catalog no longer
    has goes with the account its captured delete names (`deleted_from`), else with the first
    account (its push then says it is not in the catalog)."""
    accounts = {**(deleted_from or {}), **catalog.accounts_of(product_ids)}
    first = next(iter(gateways))
    grouped: dict[str, list[str]] = {}
    for product_id in product_ids:
        grouped.setdefault(accounts.get(product_id, first), []).append(product_id)
    return grouped


def release_claims(engine: Engine, worker: str, products: Iterable[str] | None = None) -> int:
    """Hand back a worker's own claims (all, or those of `products`), so they need not wait out the lease."""
    mine = and_(outbox.c.status == OutboxStatus.IN_FLIGHT, outbox.c.claimed_by == worker)
    if products is not None:
        mine = and_(mine, outbox.c.product_id.in_(list(products)))
    with engine.begin() as conn:
        return conn.execute(update(outbox).where(mine).values(status=OutboxStatus.PENDING, claimed_by=None)).rowcount


@dataclass
class Backlog:
    depth: int
    in_flight: int
    oldest_pending_age_s: float
    delivered_last_minute: int
    dead: int


def backlog(engine: Engine) -> Backlog:
    """Queue depth, age of the oldest pending change, rate and dead rows, for the UI."""
    now = _now()
    with engine.connect() as conn:
        counts: dict[str, int] = {status: count for status, count in conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status))}
        oldest = conn.execute(select(func.min(outbox.c.created_at)).where(outbox.c.status.in_([OutboxStatus.PENDING, OutboxStatus.IN_FLIGHT]))).scalar()
        recent = conn.execute(select(func.count()).where(outbox.c.status == OutboxStatus.DONE, outbox.c.done_at >= now - dt.timedelta(minutes=1))).scalar()
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return Backlog(
        depth=int(counts.get(OutboxStatus.PENDING, 0)),
        in_flight=int(counts.get(OutboxStatus.IN_FLIGHT, 0)),
        oldest_pending_age_s=(now - oldest).total_seconds() if oldest else 0.0,
        delivered_last_minute=int(recent or 0),
        dead=int(counts.get(OutboxStatus.DEAD, 0)),
    )


def ready_products(engine: Engine, limit: int = 1000) -> list[str]:
    """Up to `limit` products with changes ready now (their accounts tell whether a drain could push any)."""
    with engine.connect() as conn:
        ready = select(outbox.c.product_id).where(outbox.c.status == OutboxStatus.PENDING, outbox.c.next_attempt_at <= _now()).distinct().limit(limit)
        return list(conn.execute(ready).scalars())


def ready_count(engine: Engine, products: bool = False) -> int:
    """Changes (or, with `products`, the products they are of) pending and past their `next_attempt_at`: what a drain would push now."""
    with engine.connect() as conn:
        counted = func.count(outbox.c.product_id.distinct()) if products else func.count()
        ready = select(counted).where(outbox.c.status == OutboxStatus.PENDING, outbox.c.next_attempt_at <= _now())
        return conn.execute(ready).scalar_one()
