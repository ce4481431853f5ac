"""The sync worker's loop: push the outbox, apply the inbox, and outlive a database restart.

`recon-pipeline worker` runs this. A pass that loses the catalog database (a PostgreSQL
restart, a dropped connection, a failover) is not fatal: the worker says so, waits with
exponential backoff and jitter, and carries on. Its cut-off drain has stopped by then, so it
hands its own claims back at once (a worker killed outright leaves them to its lease);
every push is idempotent, so pushing a product again is safe. Stripe being unreachable is
not fatal either: pushes back off in the outbox, and inbox events wait, in order, for a pass
that can fetch their prices. A key Stripe refuses (401/403) is: the worker says so and
stops, since only another key can help; the changes wait in the outbox. With several
Stripe accounts, one account's refused key pauses only that account's changes (said once);
the worker stops when no account is left.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from recon_pipeline.backoff import Backoff
from recon_pipeline.catalog import Catalog
from recon_pipeline.stripe_api import CredentialsRefused, StripeGateway, by_name
from recon_pipeline.sync.credentials import record_refusal
from recon_pipeline.sync.inbox import InboxApplier
from recon_pipeline.sync.outbox import backlog, drain, release_claims


@dataclass
class WorkerTotals:
    """What a worker did over its life."""

    passes: int = 0
    pushed_products: int = 0
    applied_events: int = 0
    database_errors: int = 0
    """Passes cut off by the catalog database going away (each waited with backoff)."""
    stripe_errors: int = 0
    """Passes whose inbox events waited because Stripe could not be reached."""
    refused: str | None = None
    """Why the worker stopped: Stripe refused the API key (nothing retries with it)."""


def run_worker(
    catalog: Catalog,
    gateway: StripeGateway | Mapping[str, StripeGateway],
    applier: InboxApplier,
    *,
    name: str,
    concurrency: int = 8,
    batch_size: int = 100,
    interval_s: float = 0.2,
    once: bool = False,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
    max_backoff_s: float = 10.0,
) -> WorkerTotals:
    """Pass after pass until `stop` is set (or one busy-free pass with `once`).

    `gateway`: the Stripe account, or one gateway per account (by name): the outbox pushes
    each product to its own account."""
    stop = stop or threading.Event()
    engine = catalog.engine
    backoff = Backoff(base_s=0.5, cap_s=max_backoff_s)
    totals = WorkerTotals()
    failures_in_a_row = 0
    stripe_failures_in_a_row = 0
    refused_accounts: set[str] = set()
    while not stop.is_set():
        try:
            if failures_in_a_row:
                released = release_claims(engine, name)
                say(f"catalog database reachable again; {released} claimed changes handed back")
                failures_in_a_row = 0
            pushed = drain(catalog, gateway, worker=name, concurrency=concurrency, batch_size=batch_size)
            if pushed.refused and set(pushed.refused) == set(by_name(gateway)):  # no account left to push to: stop, as below
                waiting = backlog(engine)
                why = "; ".join(pushed.refused.values())
                say(f"{why} ({waiting.depth + waiting.in_flight} changes wait in the outbox; nothing is lost)")
                totals.refused = why
                return totals
            for account in sorted(set(pushed.refused) - refused_accounts):  # said once; the other accounts go on
                say(f"{pushed.refused[account]} (the changes of Stripe account {account} wait in the outbox; the other accounts go on)")
            refused_accounts |= set(pushed.refused)
            applied = applier.apply_pending()
        except CredentialsRefused as refused:
            record_refusal(engine, next(iter(by_name(gateway).values())), refused)  # by the refused key's own fingerprint, whichever account's it is
            waiting = backlog(engine)
            say(f"{refused} ({waiting.depth + waiting.in_flight} changes wait in the outbox; nothing is lost)")
            totals.refused = str(refused)
            return totals
        except DBAPIError as error:
            failures_in_a_row += 1
            totals.database_errors += 1
            delay = backoff.delay(failures_in_a_row)
            reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
            say(f"catalog database unreachable ({reason}); retrying in {delay:.1f} s")
            engine.dispose()  # drop every pooled connection: after a restart they are all dead
            stop.wait(delay)
            continue
        totals.passes += 1
        totals.pushed_products += pushed.pushed_products
        totals.applied_events += applied.applied
        busy = pushed.pushed_products or pushed.retried or pushed.dead or applied.applied
        if applied.stripe_error:
            totals.stripe_errors += 1
            say(f"Stripe unreachable while applying the inbox ({applied.stripe_error}); {applied.waiting} events wait for the next pass")
            stop.wait(backoff.delay(stripe_failures_in_a_row))
            stripe_failures_in_a_row += 1
        else:
            stripe_failures_in_a_row = 0
        if applied.version_mismatches:
            versions = dict(applied.api_versions)
            say(f"{applied.version_mismatches} events were rendered at another API version than RECON_STRIPE_API_VERSION={applier.api_version} ({versions}); see the README's upgrade runbook")
        if busy:
            say(
                f"pushed {pushed.pushed_products} products ({pushed.delivered_rows} changes), retried {pushed.retried}, dead {pushed.dead}; "
                f"inbox applied {applied.applied}, echoes {applied.echoes}, stale {applied.stale}, conflicts {applied.conflicts}"
            )
        if once:
            break
        stop.wait(interval_s)
    return totals
