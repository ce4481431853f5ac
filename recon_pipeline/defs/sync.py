"""Continuous sync in Dagster: the outbox pushed, the inbox applied, the backlog watched.

    outbox ──outbox_sensor──> drain_outbox (outbox_push) ──> Stripe
    Stripe /v1/events ──apply_inbox (inbox_apply: poll, then apply)──> inbox ──> catalog
                        ^ requested by stripe_events_poller (events waiting, or a poll due)

Sensors only decide, from the catalog database; every Stripe call happens in a run.

For seconds rather than a sensor's tens of seconds, run `recon-pipeline worker` (and
`recon-pipeline webhooks`): the same code, in a loop.
"""


import datetime as dt
from dataclasses import dataclass

import dagster as dg
from stripe import StripeError

from recon_pipeline.catalog import CatalogReadOnly
from recon_pipeline.defs import run_id_of
from recon_pipeline.defs.resources import CatalogResource, ReconPolicy, StripeResource
from recon_pipeline.settings import Settings
from recon_pipeline.stripe_api import CredentialsRefused, error_text
from recon_pipeline.sync.credentials import record_refusal, refusal
from recon_pipeline.sync.inbox import InboxApplier, inbox_lag
from recon_pipeline.sync.outbox import Backlog, backlog, drain, ready_count, ready_products
from recon_pipeline.sync.poller import PollResult, last_polled, poll_account

GROUP = "sync"


@dataclass
class Queues:
    """Both queues as they are now: the outbox's backlog, and the events waiting in the inbox."""

    outbox: Backlog
    inbox_waiting: int
    inbox_age_s: float

    @classmethod
    def read(cls, catalog: CatalogResource) -> "Queues":
        return cls(backlog(catalog.engine()), *inbox_lag(catalog.engine()))

    def metadata(self) -> dict[str, dg.MetadataValue]:
        """What the UI plots: depth, in flight, oldest age, delivered per minute, dead; events waiting."""
        return {
            "outbox/depth": dg.MetadataValue.int(self.outbox.depth),
            "outbox/in_flight": dg.MetadataValue.int(self.outbox.in_flight),
            "outbox/oldest_pending_age_s": dg.MetadataValue.float(round(self.outbox.oldest_pending_age_s, 3)),
            "outbox/delivered_last_minute": dg.MetadataValue.int(self.outbox.delivered_last_minute),
            "outbox/dead": dg.MetadataValue.int(self.outbox.dead),
            "inbox/waiting": dg.MetadataValue.int(self.inbox_waiting),
            "inbox/oldest_age_s": dg.MetadataValue.float(round(self.inbox_age_s, 3)),
        }


def counts(**values: int) -> dict[str, dg.MetadataValue]:
    """Counts as integer metadata, so the UI plots each over the runs."""
    return {name: dg.MetadataValue.int(value) for name, value in values.items()}


def lag_check(name: str, key: str, age_s: float, max_age_s: float, waiting: str) -> dg.AssetCheckResult:
    """The oldest thing waiting (its age in metadata `key`) is younger than RECON_MAX_OUTBOX_LAG_S."""
    age_s = round(age_s, 3)
    return dg.AssetCheckResult(
        check_name=name,
        passed=age_s <= max_age_s,
        metadata={key: age_s, "max_age_s": max_age_s},
        description=None if age_s <= max_age_s else f"{waiting} has waited {age_s:.0f} s (> {max_age_s:.0f} s)",
    )


@dg.asset(
    group_name=GROUP,
    kinds={"stripe"},
    pool="stripe_api",
    check_specs=[
        dg.AssetCheckSpec("outbox_lag_below_threshold", asset="outbox_push", description="The oldest change waiting in the outbox is younger than RECON_MAX_OUTBOX_LAG_S (default 300 s)."),
        dg.AssetCheckSpec("outbox_dead_letters_zero", asset="outbox_push", description="No outbox change has exhausted its retries (WARN: see `recon-pipeline dead-letters list`)."),
    ],
)
def outbox_push(context: dg.AssetExecutionContext, catalog: CatalogResource, stripe: StripeResource, policy: ReconPolicy):
    """Pushes every ready outbox change to Stripe: the product's current catalog state, coalesced,
    at the client's rate limits, retried with backoff; hopeless ones go to dead_letter.

    Metadata plots the backlog: depth, oldest pending age, delivered per minute, dead rows.
    """
    with stripe.calls_each(catalog) as gateways:  # each product to the Stripe account it is sold in
        result = drain(catalog.catalog(), gateways, run_id=run_id_of(context), say=context.log.info)
    if result.refused and set(result.refused) == set(gateways):  # nothing could go out: fail once, no retry (only another key helps)
        raise dg.Failure("; ".join(result.refused.values()), allow_retries=False)
    for account, why in result.refused.items():
        context.log.warning(f"{why} (the changes of Stripe account {account} wait; the other accounts' went out)")
    for error in result.errors[:50]:
        context.log.warning(error)
    queues = Queues.read(catalog)
    yield dg.Output(
        None,
        metadata={
            **counts(pushed_products=result.pushed_products, delivered_changes=result.delivered_rows, retried=result.retried, dead=result.dead),
            "duration_s": dg.MetadataValue.float(round(result.seconds, 3)),
            **queues.metadata(),
        },
    )
    yield lag_check("outbox_lag_below_threshold", "oldest_pending_age_s", queues.outbox.oldest_pending_age_s, policy.max_outbox_lag_s, "a change in the outbox")
    dead = queues.outbox.dead
    yield dg.AssetCheckResult(
        check_name="outbox_dead_letters_zero",
        passed=dead == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"dead": dead},
        description=None if dead == 0 else f"{dead} outbox changes exhausted their retries",
    )


def _poll(context: dg.AssetExecutionContext, catalog: CatalogResource, stripe: StripeResource) -> PollResult:
    """Every account's new events into the inbox, each from its durable cursor. An account that
    cannot be reached keeps its cursor (the next run polls it again); the others are polled."""
    engine = catalog.engine()
    total = PollResult(cursor={}, seen=0, stored=0)
    for name, gateway in stripe.gateways().items():
        if refusal(engine, gateway):
            continue
        try:
            polled = poll_account(engine, gateway)
        except CredentialsRefused as error:
            record_refusal(engine, gateway, error)
            context.log.warning(str(error))
            continue
        except StripeError as error:
            context.log.warning(f"polling the events of {name} failed ({error_text(error)}); its cursor stays for the next run")
            continue
        total.seen, total.stored = total.seen + polled.seen, total.stored + polled.stored
        if polled.version_mismatches:
            context.log.warning(f"{polled.version_mismatches} events polled from {name} were rendered at another API version than {gateway.api_version} (see the README's upgrade runbook)")
    return total


class InboxConfig(dg.Config):
    conflict_policy: str | None = None
    """local_wins | stripe_wins | latest_wins; unset: RECON_CONFLICT_POLICY (default local_wins)."""


@dg.asset(
    group_name=GROUP,
    kinds={"sql"},
    check_specs=[
        dg.AssetCheckSpec("inbox_lag_below_threshold", asset="inbox_apply", description="No received Stripe event has waited longer than RECON_MAX_OUTBOX_LAG_S to be applied."),
        dg.AssetCheckSpec(
            "event_api_version_matches",
            asset="inbox_apply",
            description="Every event applied was rendered by Stripe at RECON_STRIPE_API_VERSION (else fields may differ in shape: see the README's upgrade runbook).",
        ),
    ],
)
def inbox_apply(context: dg.AssetExecutionContext, config: InboxConfig, catalog: CatalogResource, stripe: StripeResource, policy: ReconPolicy):
    """Polls Stripe's /v1/events of each account from its durable cursor into the inbox (the
    safety net for missed webhooks; Stripe keeps events 30 days), then applies received
    events to the catalog in order: echoes of our own writes and stale events are skipped, owned fields that Stripe changed are decided by the conflict
    policy, and every decision is written to the audit table."""
    conflict_policy = policy.conflicts(config.conflict_policy)
    polled = _poll(context, catalog, stripe)
    try:
        applier = InboxApplier(catalog.catalog(), conflict_policy, stripe.gateways(), policy.price_orphans(), stripe.gateway().api_version)
    except CatalogReadOnly as error:
        raise dg.Failure(str(error), allow_retries=False) from None
    with stripe.calls(catalog):
        result = applier.apply_pending()
    for decision in result.decisions[:50]:
        context.log.info(decision)
    if result.stripe_error:
        context.log.warning(f"Stripe unreachable ({result.stripe_error}): {result.waiting} events wait for the next run")
    queues = Queues.read(catalog)
    yield dg.Output(
        None,
        metadata={
            **counts(applied=result.applied, echoes=result.echoes, stale=result.stale, ignored=result.ignored, conflicts=result.conflicts),
            **counts(polled_events=polled.seen, polled_new=polled.stored),
            "waiting_for_stripe": dg.MetadataValue.int(result.waiting),
            "conflict_policy": dg.MetadataValue.text(conflict_policy.value),
            "events/api_version_mismatch": dg.MetadataValue.int(result.version_mismatches),
            "api_version": dg.MetadataValue.text(applier.api_version or ""),
            **queues.metadata(),
        },
    )
    yield lag_check("inbox_lag_below_threshold", "oldest_age_s", queues.inbox_age_s, policy.max_outbox_lag_s, "a received Stripe event")
    seen = ", ".join(f"{version} ({n})" for version, n in sorted(result.api_versions.items()))
    yield dg.AssetCheckResult(
        check_name="event_api_version_matches",
        passed=result.version_mismatches == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"mismatched_events": result.version_mismatches, "api_version": applier.api_version or "", "versions_seen": seen or "none"},
        description=None
        if result.version_mismatches == 0
        else f"{result.version_mismatches} events were rendered at another API version than RECON_STRIPE_API_VERSION={applier.api_version} "
        f"(seen: {seen}); a webhook endpoint or the account is on another version: follow the README's upgrade runbook",
    )


drain_outbox = dg.define_asset_job("drain_outbox", selection=dg.AssetSelection.assets(outbox_push), description="Push the outbox to Stripe.")
apply_inbox = dg.define_asset_job("apply_inbox", selection=dg.AssetSelection.assets(inbox_apply), description="Apply received Stripe events to the catalog.")


def _in_progress(context: dg.SensorEvaluationContext, job_name: str) -> bool:
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=job_name, statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]),
        limit=1,
    )
    return bool(runs)


@dg.sensor(job=drain_outbox, minimum_interval_seconds=5, default_status=dg.DefaultSensorStatus.RUNNING)
def outbox_sensor(context: dg.SensorEvaluationContext, catalog: CatalogResource, stripe: StripeResource):
    """Requests a `drain_outbox` run when changes are ready in the outbox and no drain is running.

    Ready means pending and past its `next_attempt_at`, so a change backing off after a
    failure does not launch empty runs. No run key: the in-progress check is the guard,
    and a retried change must be able to launch another run. Nothing is launched while
    Stripe refuses the API key in use: the changes wait for a key it takes.
    """
    engine = catalog.engine()
    ready = ready_count(engine)
    if not ready:
        return dg.SkipReason("no change is ready in the outbox")
    refused = {name: why for name, gateway in stripe.gateways().items() if (why := refusal(engine, gateway))}
    if refused and not set(catalog.catalog().accounts_of(ready_products(engine)).values()) - set(refused):
        return dg.SkipReason(f"{ready} changes ready, but {'; '.join(refused.values())}")
    if _in_progress(context, "drain_outbox"):
        return dg.SkipReason(f"{ready} changes ready; a drain is already running")
    return dg.RunRequest(tags={"recon/outbox_ready": str(ready)})


@dg.sensor(job=apply_inbox, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def stripe_events_poller(context: dg.SensorEvaluationContext, catalog: CatalogResource, stripe: StripeResource, policy: ReconPolicy):
    """Requests an `apply_inbox` run when received events wait in the inbox, or when an account's
    events were last polled more than RECON_EVENTS_POLL_INTERVAL_S ago (the run polls Stripe's
    /v1/events from its durable cursor, the safety net for missed webhooks, then applies).

    Decides only, from the catalog database: it never calls Stripe, so a slow or throttling
    Stripe cannot time a tick out. Requests nothing while a run is in progress, nor for an
    account whose API key Stripe refused."""
    engine = catalog.engine()
    usable = [name for name, gateway in stripe.gateways().items() if not refusal(engine, gateway)]
    if not usable:
        return dg.SkipReason(stripe.refused(catalog) or "Stripe refused every account's API key")
    waiting, _ = inbox_lag(engine)
    polled = last_polled(engine)
    now = dt.datetime.now(dt.UTC)
    due = [name for name in usable if name not in polled or (now - polled[name]).total_seconds() >= policy.events_poll_interval_s]
    if not waiting and not due:
        return dg.SkipReason(f"no event waits, and every account was polled within {policy.events_poll_interval_s:g} s")
    if _in_progress(context, "apply_inbox"):
        return dg.SkipReason(f"{waiting} events wait, {len(due)} accounts due a poll; apply_inbox is already running")
    return dg.RunRequest(tags={"recon/inbox_waiting": str(waiting), "recon/poll_due": ",".join(due) or "none"})


def build_defs(settings: Settings) -> dg.Definitions:
    """Continuous sync: the outbox and inbox assets, their jobs and the sensors that launch them."""
    return dg.Definitions(assets=[outbox_push, inbox_apply], jobs=[drain_outbox, apply_inbox], sensors=[outbox_sensor, stripe_events_poller])
