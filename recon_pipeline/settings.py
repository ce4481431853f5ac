"""One settings object, read from the environment.

Every entry point (CLI, Dagster resources, benchmarks) reads configuration here, so a
missing or malformed variable fails fast with a message that names it.

With no configuration at all the project runs embedded: a SQLite catalog under the
project's data folder and the bundled Stripe emulator on 127.0.0.1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from recon_pipeline.catalog.source import CatalogSource

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"

EMULATOR_HOST = "127.0.0.1"
EMULATOR_PORT = 12111
EMULATOR_API_KEY = "sk_test_emulator"  # not a secret: the bundled emulator accepts any sk_test_ key
STRIPE_LIVE_BASE = "https://api.stripe.com"

# Stripe's documented limits: per account 100 req/s live and 25 in a sandbox; each
# endpoint (e.g. GET /v1/products) 25 req/s on its own.
LIVE_GLOBAL_RATE = 100.0
SANDBOX_GLOBAL_RATE = 25.0
ENDPOINT_RATE = 25.0


CONFLICT_POLICIES = ("local_wins", "stripe_wins", "latest_wins")
# How a run executes its steps: Dagster's default (subprocesses on the run's machine), one
# process, a Kubernetes Job per step (dagster-k8s) or Celery workers (dagster-celery).
EXECUTORS = ("multiprocess", "in_process", "k8s", "celery")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


def default_catalog_url() -> str:
    return f"sqlite:///{DATA_DIR / 'catalog.db'}"


def emulator_url(port: int = EMULATOR_PORT) -> str:
    return f"http://{EMULATOR_HOST}:{port}"


@dataclass(frozen=True)
class Settings:
    catalog_url: str
    stripe_api_key: str = field(repr=False)
    stripe_api_base: str
    global_rate: float
    endpoint_rate: float
    max_drift_rate: float
    uses_emulator: bool
    conflict_policy: str = "local_wins"
    webhook_secret: str | None = field(default=None, repr=False)
    max_outbox_lag_s: float = 300.0
    stripe_timeout_s: float = 30.0
    catalog_source: "CatalogSource" = field(default_factory=lambda: _own_schema())
    executor: str = "multiprocess"

    @property
    def stripe_key_is_set(self) -> bool:
        return self.stripe_api_key != EMULATOR_API_KEY

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        catalog_url = _text(env, "RECON_CATALOG_URL") or default_catalog_url()
        if "://" not in catalog_url:
            raise SettingsError(
                f"RECON_CATALOG_URL={catalog_url!r} is not a SQLAlchemy URL; use e.g. "
                "'sqlite:///data/catalog.db' or 'postgresql+psycopg2://postgres@127.0.0.1:5432/catalog'."
            )

        api_key = _text(env, "STRIPE_API_KEY")
        api_base = _text(env, "STRIPE_API_BASE")
        if api_key is None:
            # Embedded default: the bundled emulator, no account needed.
            api_key = EMULATOR_API_KEY
            api_base = api_base or emulator_url()
        elif not api_key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
            raise SettingsError(
                "STRIPE_API_KEY does not look like a Stripe secret key (it must start with "
                "sk_test_, sk_live_, rk_test_ or rk_live_); copy it from the Stripe dashboard."
            )
        api_base = (api_base or STRIPE_LIVE_BASE).rstrip("/")
        if not api_base.startswith(("http://", "https://")):
            raise SettingsError(
                f"STRIPE_API_BASE={api_base!r} must be an http(s) URL, e.g. {emulator_url()} "
                f"for the bundled emulator or {STRIPE_LIVE_BASE}."
            )

        live = api_key.startswith(("sk_live_", "rk_live_"))
        global_rate = _positive_float(
            env, "RECON_STRIPE_RATE_LIMIT", LIVE_GLOBAL_RATE if live else SANDBOX_GLOBAL_RATE
        )
        endpoint_rate = _positive_float(env, "RECON_STRIPE_ENDPOINT_RATE_LIMIT", ENDPOINT_RATE)
        max_drift_rate = _fraction(env, "RECON_MAX_DRIFT_RATE", 0.01)
        conflict_policy = _text(env, "RECON_CONFLICT_POLICY") or "local_wins"
        if conflict_policy not in CONFLICT_POLICIES:
            raise SettingsError(f"RECON_CONFLICT_POLICY={conflict_policy!r} is not a policy; use one of {', '.join(CONFLICT_POLICIES)}.")
        executor = _text(env, "RECON_EXECUTOR") or "multiprocess"
        if executor not in EXECUTORS:
            raise SettingsError(f"RECON_EXECUTOR={executor!r} is not an executor; use one of {', '.join(EXECUTORS)}.")
        webhook_secret = _text(env, "STRIPE_WEBHOOK_SECRET")
        if webhook_secret is not None and not webhook_secret.startswith("whsec_"):
            raise SettingsError("STRIPE_WEBHOOK_SECRET does not look like a webhook signing secret (whsec_...); copy it from the webhook endpoint.")
        from recon_pipeline.catalog.source import CatalogSource, CatalogSourceError

        try:
            source = CatalogSource.from_settings(
                _text(env, "RECON_CATALOG_TABLE"), _text(env, "RECON_CATALOG_COLUMNS"), _text(env, "RECON_CATALOG_QUERY")
            )
        except CatalogSourceError as error:
            raise SettingsError(str(error)) from None
        return cls(
            catalog_url=catalog_url,
            catalog_source=source,
            stripe_api_key=api_key,
            stripe_api_base=api_base,
            global_rate=global_rate,
            endpoint_rate=endpoint_rate,
            max_drift_rate=max_drift_rate,
            uses_emulator=api_key == EMULATOR_API_KEY,
            conflict_policy=conflict_policy,
            webhook_secret=webhook_secret,
            max_outbox_lag_s=_positive_float(env, "RECON_MAX_OUTBOX_LAG_S", 300.0, "seconds"),
            stripe_timeout_s=_positive_float(env, "RECON_STRIPE_TIMEOUT_S", 30.0, "seconds"),
            executor=executor,
        )


def _own_schema():
    from recon_pipeline.catalog.source import CatalogSource

    return CatalogSource()


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _number(env: Mapping[str, str], name: str, default: float, hint: str) -> tuple[float, str | None]:
    raw = _text(env, name)
    if raw is None:
        return default, None
    try:
        return float(raw), raw
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number; {hint}") from None


def _positive_float(env: Mapping[str, str], name: str, default: float, unit: str = "requests per second") -> float:
    value, raw = _number(env, name, default, f"set it in {unit}, e.g. {default:g}.")
    if not value > 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0 ({unit}).")
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    value, raw = _number(env, name, default, "use a fraction such as 0.01 for 1%.")
    if not 0 <= value <= 1:
        raise SettingsError(f"{name}={raw!r} must be a fraction between 0 and 1, e.g. 0.01 for 1%.")
    return value
