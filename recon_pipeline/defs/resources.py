"""Dagster resources: the catalog, the Stripe account, the policies, the alert webhook.

`build_resources(settings)` configures them from the one `Settings`. A value that came from
the environment is passed as `EnvVar` (Dagster reads it when a run starts), so secrets
never appear in run config, the UI or logs; the literal is used only for the embedded
defaults (the emulator's URL and its non-secret key, the SQLite catalog).
"""


import contextlib
import threading
from collections.abc import Iterator

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy import Engine

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.source import CatalogSource, price_rows, product_rows
from recon_pipeline.policies import ConflictPolicy, OrphanPolicy
from recon_pipeline.reconcile.snapshot import CONCURRENCY
from recon_pipeline.settings import CATALOG_TAG, EMULATOR_API_KEY, Settings, StripeAccount, account_key_and_rate, catalog_fingerprint, cron_interval_s, emulator_notice, parse_accounts
from recon_pipeline.stripe_api import CredentialsRefused, RetryPolicy, StripeGateway, budget_for
from recon_pipeline.sync.credentials import record_refusal, refusal


class CatalogResource(dg.ConfigurableResource):
    """The local product catalog: its database (a SQLAlchemy URL) and where products and prices
    are read from: our `products` and `prices` tables, or your own tables (with their column
    mappings) or queries."""

    url: str
    table: str | None = None
    columns: dict[str, str] = {}  # noqa: RUF012 (pydantic copies a field's default; it is never shared)
    query: str | None = None
    prices_table: str | None = None
    prices_columns: dict[str, str] = {}  # noqa: RUF012
    prices_query: str | None = None

    _catalog: Catalog | None = PrivateAttr(default=None)
    _opening: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """In a run, tag the run with the catalog it reads (`recon/catalog`), so the sensors of each
        deployment act only on their own catalog's runs, whoever launched them (UI, CLI, schedule)."""
        run = context.run
        if run is not None and context.instance is not None and run.tags.get(CATALOG_TAG) != self.fingerprint():
            context.instance.add_run_tags(run.run_id, {CATALOG_TAG: self.fingerprint()})

    def fingerprint(self) -> str:
        """This catalog's `recon/catalog` tag value (no password, no host in clear)."""
        return catalog_fingerprint(self.url)

    def made(self, run: dg.DagsterRun | None) -> bool:
        """Whether a run was made against this catalog (a run without the tag, from before it existed, counts as ours)."""
        return run is not None and run.tags.get(CATALOG_TAG, self.fingerprint()) == self.fingerprint()

    def catalog(self) -> Catalog:
        with self._opening:  # opened once, whichever thread of a step asks first
            if self._catalog is None:
                source = CatalogSource(product_rows(self.table, dict(self.columns), self.query), price_rows(self.prices_table, dict(self.prices_columns), self.prices_query))
                self._catalog = Catalog.open(self.url, source)
            return self._catalog

    def engine(self) -> Engine:
        return self.catalog().engine


class StripeResource(dg.ConfigurableResource):
    """A Stripe account (or the bundled emulator), reached through the one client wrapper.

    `calls(catalog)` is how assets use it: a key Stripe refuses (401/403) is remembered and
    fails the run once, with no retry; `refused(catalog)` lets sensors and schedules launch
    nothing while the key in use is one Stripe refused. Its rate limits are the account's: one
    budget, kept in the catalog's database (`budget_url`), that every process calling it shares.
    """

    api_key: str
    api_base: str
    global_rate: float
    endpoint_rate: float
    snapshot_concurrency: int = CONCURRENCY  # created-windows paged at once per list (reconcile/snapshot.py)
    max_attempts: int = 8
    timeout_s: float = 30.0
    api_version: str = ""  # RECON_STRIPE_API_VERSION; empty: the one the stripe SDK pins
    budget_url: str = ""  # the catalog's URL: the rate budget every process shares lives there; empty: this process's own

    accounts: str = ""  # RECON_STRIPE_ACCOUNTS (names and variable names, no secret); empty: one account, `default`
    rate_limit_set: bool = False  # RECON_STRIPE_RATE_LIMIT was set: global_rate holds for every account

    _gateways: dict[str, StripeGateway] | None = PrivateAttr(default=None)
    _building: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def gateways(self) -> dict[str, StripeGateway]:
        """A gateway per account, by name (one, `default`, unless RECON_STRIPE_ACCOUNTS names several).
        An account's own key is read from its variable when the run starts, never from config."""
        with self._building:  # steps read the catalog and list Stripe from threads of their own
            if self._gateways is None:
                self._gateways = self._build_gateways()
            return self._gateways

    def _build_gateways(self) -> dict[str, StripeGateway]:
        if self.api_key == EMULATOR_API_KEY:  # said in each run's log, so nobody mistakes the emulator's answers for Stripe's
            dg.get_dagster_logger().warning(emulator_notice(self.api_base))
        gateways = {}
        for account in parse_accounts(self.accounts or None, None, emulator=self.api_key == EMULATOR_API_KEY):
            api_key, global_rate = account_key_and_rate(account, self.api_key, self.global_rate, self.rate_limit_set)
            gateways[account.name] = StripeGateway(
                api_key=api_key,
                api_base=self.api_base,
                global_rate=global_rate,
                endpoint_rate=self.endpoint_rate,
                retry=RetryPolicy(max_attempts=self.max_attempts),
                timeout=self.timeout_s,
                api_version=self.api_version or None,
                budget=budget_for(self.budget_url),
                account=account.name,
                stripe_account=account.connected_id,
            )
        return gateways

    def gateway(self, account: str | None = None) -> StripeGateway:
        """That account's gateway; None: the first account's (the only one, unless RECON_STRIPE_ACCOUNTS names several)."""
        gateways = self.gateways()
        if account is None:
            return next(iter(gateways.values()))
        if account not in gateways:
            raise dg.Failure(f"there is no Stripe account {account!r}; RECON_STRIPE_ACCOUNTS names {', '.join(gateways)}.", allow_retries=False)
        return gateways[account]

    @contextlib.contextmanager
    def calls(self, catalog: CatalogResource, account: str | None = None) -> Iterator[StripeGateway]:
        """One account's gateway (None: the first); see `calls_each`."""
        gateway = self.gateway(account)
        with self.calls_each(catalog):
            yield gateway

    @contextlib.contextmanager
    def calls_each(self, catalog: CatalogResource) -> Iterator[dict[str, StripeGateway]]:
        """Every account's gateway; a refused key (of any account) is remembered and fails the run once."""
        gateways = self.gateways()
        try:
            yield gateways
        except CredentialsRefused as refused:
            record_refusal(catalog.engine(), self.gateway(), refused)  # by the refused key's own fingerprint
            raise dg.Failure(str(refused), allow_retries=False) from None

    def refused(self, catalog: CatalogResource) -> str | None:
        """Why a key in use was refused, if one was (every account's is checked)."""
        return next((why for gateway in self.gateways().values() if (why := refusal(catalog.engine(), gateway))), None)


class ReconPolicy(dg.ConfigurableResource):
    """The thresholds the checks hold and the policies repair and sync follow by default."""

    max_drift_rate: float = 0.01
    max_repair_share: float = 0.10
    breaker_floor: int = 25
    orphan_policy: str = OrphanPolicy.REPORT.value
    price_orphan_policy: str = OrphanPolicy.REPORT.value
    conflict_policy: str = ConflictPolicy.LOCAL_WINS.value
    max_outbox_lag_s: float = 300.0
    events_poll_interval_s: float = 60.0
    drift_history_days: float = 90.0
    reconcile_interval_s: float = 3600.0  # the shortest gap between two runs of RECON_RECONCILE_CRON

    def orphans(self, override: str | None = None) -> OrphanPolicy:
        """The orphan policy of a run: its config's, or the default; a bad name fails the run, naming it."""
        return _choice(OrphanPolicy, override or self.orphan_policy, "orphan_policy")

    def price_orphans(self, override: str | None = None) -> OrphanPolicy:
        """The policy for unmanaged prices of catalog products: the run config's, or the default."""
        return _choice(OrphanPolicy, override or self.price_orphan_policy, "price_orphan_policy")

    def conflicts(self, override: str | None = None) -> ConflictPolicy:
        """The conflict policy of a run: its config's, or the default."""
        return _choice(ConflictPolicy, override or self.conflict_policy, "conflict_policy")


def _choice(choices, value: str, name: str):
    try:
        return choices(value)
    except ValueError:
        raise dg.Failure(f"{name}={value!r} is not one of {', '.join(c.value for c in choices)}.", allow_retries=False) from None


class AlertsResource(dg.ConfigurableResource):
    """Where failed checks and runs are posted (ALERT_WEBHOOK_URL; empty: only logged), and
    the Dagster UI that the alerts link to."""

    webhook_url: str = ""
    ui_url: str = "http://127.0.0.1:3000"


def _from_env(settings: Settings, name: str, value: str) -> str | dg.EnvVar:
    return dg.EnvVar(name) if name in settings.set_in_env else value


def build_resources(settings: Settings) -> dict[str, object]:
    from recon_pipeline.defs.parquet_io import ParquetIOManager
    from recon_pipeline.defs.partition_store import PartitionStore

    catalog_url = _from_env(settings, "RECON_CATALOG_URL", settings.catalog_url)
    source = settings.catalog_source
    return {
        "catalog": CatalogResource(
            url=catalog_url,
            table=source.products.table,
            columns=dict(source.products.columns),
            query=source.products.query,
            prices_table=source.prices.table,
            prices_columns=dict(source.prices.columns),
            prices_query=source.prices.query,
        ),
        "partition_store": PartitionStore(url=catalog_url),
        "io_manager": ParquetIOManager(),
        "stripe": StripeResource(
            api_key=_from_env(settings, "STRIPE_API_KEY", settings.stripe_api_key),
            api_base=_from_env(settings, "STRIPE_API_BASE", settings.stripe_api_base),
            global_rate=settings.global_rate,
            endpoint_rate=settings.endpoint_rate,
            timeout_s=settings.stripe_timeout_s,
            api_version=settings.stripe_api_version,
            budget_url=catalog_url,
            accounts=",".join(f"{a.name}={a.connected_id or a.key_variable}" for a in settings.accounts) if settings.accounts != (StripeAccount(),) else "",
            rate_limit_set="RECON_STRIPE_RATE_LIMIT" in settings.set_in_env,
        ),
        "policy": ReconPolicy(
            max_drift_rate=settings.max_drift_rate,
            max_repair_share=settings.max_repair_share,
            breaker_floor=settings.breaker_floor,
            orphan_policy=settings.orphan_policy.value,
            price_orphan_policy=settings.price_orphan_policy.value,
            conflict_policy=settings.conflict_policy.value,
            max_outbox_lag_s=settings.max_outbox_lag_s,
            events_poll_interval_s=settings.events_poll_interval_s,
            drift_history_days=settings.drift_history_days,
            reconcile_interval_s=cron_interval_s(settings.reconcile_cron),
        ),
        "alerts": AlertsResource(
            webhook_url=_from_env(settings, "ALERT_WEBHOOK_URL", settings.alert_webhook_url or ""),
            ui_url=settings.dagster_ui_url,
        ),
    }
