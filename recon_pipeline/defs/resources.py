"""Dagster resources for the two sides: the local catalog and the Stripe account.

Configured from the environment by `build_resources()`; secrets are passed as
`EnvVar`, so they never appear in run config, the UI or logs.
"""


import os

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy import Engine

from recon_pipeline.catalog import init_schema, make_engine
from recon_pipeline.settings import Settings
from recon_pipeline.stripe_api import RetryPolicy, StripeGateway


class CatalogResource(dg.ConfigurableResource):
    """The local product catalog: a SQLAlchemy URL (SQLite or PostgreSQL)."""

    url: str

    _engine: Engine | None = PrivateAttr(default=None)

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url)
            init_schema(self._engine)
        return self._engine


class StripeResource(dg.ConfigurableResource):
    """A Stripe account (or the bundled emulator), reached through the one client wrapper."""

    api_key: str
    api_base: str
    global_rate: float
    endpoint_rate: float
    snapshot_concurrency: int = 8
    max_attempts: int = 8
    timeout_s: float = 30.0

    _gateway: StripeGateway | None = PrivateAttr(default=None)

    def gateway(self) -> StripeGateway:
        if self._gateway is None:
            self._gateway = StripeGateway(
                api_key=self.api_key,
                api_base=self.api_base,
                global_rate=self.global_rate,
                endpoint_rate=self.endpoint_rate,
                retry=RetryPolicy(max_attempts=self.max_attempts),
                timeout=self.timeout_s,
            )
        return self._gateway


def _from_env_or(name: str, value: str) -> str | dg.EnvVar:
    # EnvVar keeps the value out of run config and the UI; the literal is used only for
    # the embedded defaults (the emulator's URL and its non-secret key).
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else value


def build_resources(settings: Settings | None = None) -> dict[str, object]:
    from recon_pipeline.defs.partition_store import PartitionStore

    settings = settings or Settings.from_env()
    catalog_url = _from_env_or("RECON_CATALOG_URL", settings.catalog_url)
    return {
        "catalog": CatalogResource(url=catalog_url),
        "partition_store": PartitionStore(url=catalog_url),
        "stripe": StripeResource(
            api_key=_from_env_or("STRIPE_API_KEY", settings.stripe_api_key),
            api_base=_from_env_or("STRIPE_API_BASE", settings.stripe_api_base),
            global_rate=settings.global_rate,
            endpoint_rate=settings.endpoint_rate,
            timeout_s=settings.stripe_timeout_s,
        ),
    }
