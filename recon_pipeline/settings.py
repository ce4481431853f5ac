"""One settings object, read from the environment once.

Every environment variable the project knows is read here, into one `Settings`, and
nowhere else: the CLI reads it when a command starts, `recon_pipeline.definitions` when
Dagster loads the code location, and everything else is handed what it needs from it
(`build_defs(settings)`, the resources, the worker). A missing or malformed value fails
there, with a message naming the variable, the value and what to do.

With no configuration at all the project runs embedded: a SQLite catalog under the
project's data folder and the bundled Stripe emulator on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from croniter import croniter
from sqlalchemy.engine import make_url

from recon_pipeline.catalog.source import CatalogSource, CatalogSourceError
from recon_pipeline.names import DEFAULT_ACCOUNT, SettingsError
from recon_pipeline.policies import ConflictPolicy, Executor, OrphanPolicy

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"

EMULATOR_HOST = "127.0.0.1"
EMULATOR_PORT = 12111
EMULATOR_API_KEY = "sk_test_emulator"  # not a secret: the bundled emulator accepts any sk_test_ key
STRIPE_LIVE_BASE = "https://api.stripe.com"
STRIPE_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")

# Stripe's documented limits: per account 100 req/s live and 25 in a sandbox; each
# endpoint (e.g. GET /v1/products) 25 req/s on its own.
LIVE_GLOBAL_RATE = 100.0
SANDBOX_GLOBAL_RATE = 25.0
ENDPOINT_RATE = 25.0

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"
DEFAULT_PARTITIONS_START = "2026-01-01-00:00"
DEFAULT_RECONCILE_CRON = "0 * * * *"
DEFAULT_UI_URL = "http://127.0.0.1:3000"

# Every variable the project reads; an unknown RECON_ variable, or a STRIPE_/DAGSTER_/ALERT_
# one close to these, is warned about with the closest (a typo would otherwise be silently ignored).
KNOWN_VARIABLES = (
    "RECON_CATALOG_URL",
    "RECON_CATALOG_TABLE",
    "RECON_CATALOG_COLUMNS",
    "RECON_CATALOG_QUERY",
    "RECON_CATALOG_WRITABLE",
    "RECON_PRICES_TABLE",
    "RECON_PRICES_COLUMNS",
    "RECON_PRICES_QUERY",
    "STRIPE_API_KEY",
    "STRIPE_API_BASE",
    "RECON_STRIPE_ACCOUNTS",
    "STRIPE_WEBHOOK_SECRET",
    "RECON_STRIPE_RATE_LIMIT",
    "RECON_STRIPE_ENDPOINT_RATE_LIMIT",
    "RECON_STRIPE_TIMEOUT_S",
    "RECON_STRIPE_API_VERSION",
    "RECON_MAX_DRIFT_RATE",
    "RECON_MAX_REPAIR_SHARE",
    "RECON_BREAKER_FLOOR",
    "RECON_ORPHAN_POLICY",
    "RECON_PRICE_ORPHAN_POLICY",
    "RECON_CONFLICT_POLICY",
    "RECON_MAX_OUTBOX_LAG_S",
    "RECON_EVENTS_POLL_INTERVAL_S",
    "RECON_DRIFT_HISTORY_DAYS",
    "RECON_PARTITIONS_START",
    "RECON_RECONCILE_CRON",
    "RECON_EXECUTOR",
    "ALERT_WEBHOOK_URL",
    "DAGSTER_UI_URL",
    "DAGSTER_HOME",
    "DAGSTER_POSTGRES_URL",
)
# Variables read by other programs, not by us, that share our prefix.
FOREIGN_VARIABLES = ("RECON_TEST_POSTGRES_URL",)


def default_catalog_url() -> str:
    return f"sqlite:///{DATA_DIR / 'catalog.db'}"


def emulator_url(port: int = EMULATOR_PORT) -> str:
    return f"http://{EMULATOR_HOST}:{port}"


def sdk_api_version() -> str:
    """The API version the `stripe` SDK pins: what RECON_STRIPE_API_VERSION defaults to."""
    import stripe

    return str(stripe.api_version)


ACCOUNT_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")


@dataclass(frozen=True)
class StripeAccount:
    """One Stripe account the pipeline reconciles, by the name the catalog's `account` column uses.

    Its key is read from the environment variable `key_variable` (never kept here), or, for a
    connected account (`connected_id`, acct_...), the platform's STRIPE_API_KEY is used with
    the `Stripe-Account` header.
    """

    name: str = DEFAULT_ACCOUNT
    key_variable: str = "STRIPE_API_KEY"
    connected_id: str | None = None

    def api_key(self, env: Mapping[str, str] | None = None) -> str:
        """The account's key, read now from its variable. Unset (only on the bundled emulator):
        a key the emulator takes as this account's (`sk_test_acct_<name>`), or its own for `default`."""
        env = os.environ if env is None else env
        key = _text(env, self.key_variable)
        if key is not None:
            return key
        return EMULATOR_API_KEY if self.key_variable == "STRIPE_API_KEY" else f"sk_test_acct_{self.name}"


def parse_accounts(raw: str | None, env: Mapping[str, str] | None, emulator: bool) -> tuple[StripeAccount, ...]:
    """RECON_STRIPE_ACCOUNTS: `name=VARIABLE` (the account's key is in $VARIABLE) or `name=acct_...`
    (a connected account, reached with STRIPE_API_KEY), separated by commas. Unset: one account,
    `default`, with STRIPE_API_KEY. `env` None: this process's environment (a run reading the
    accounts its resource names)."""
    env = os.environ if env is None else env
    if raw is None:
        return (StripeAccount(),)
    accounts: list[StripeAccount] = []
    example = "e.g. RECON_STRIPE_ACCOUNTS='us=STRIPE_API_KEY_US,eu=STRIPE_API_KEY_EU,fr=acct_1Fr'"
    for item in (part.strip() for part in raw.split(",")):
        name, sep, target = (x.strip() for x in item.partition("="))
        if any(part.startswith(STRIPE_KEY_PREFIXES) for part in (name, target)):
            # Never echoed: it is a secret. The key belongs in a variable of its own.
            raise SettingsError(f"RECON_STRIPE_ACCOUNTS holds what looks like a Stripe secret key; put each key in an environment variable of its own and name the variable here, {example}.")
        if not sep or not name or not target:
            raise SettingsError(f"RECON_STRIPE_ACCOUNTS: {item!r} is not name=VARIABLE or name=acct_...; {example}.")
        if not ACCOUNT_NAME.fullmatch(name):
            raise SettingsError(f"RECON_STRIPE_ACCOUNTS: the account name {name!r} must be lower case letters, digits and _ (up to 31, a letter first); it is the catalog's `account` value.")
        if name in {a.name for a in accounts}:
            raise SettingsError(f"RECON_STRIPE_ACCOUNTS names the account {name!r} twice; give each account one entry.")
        if target in {a.connected_id or a.key_variable for a in accounts}:
            # Two names for one account would each see the other's products as orphans.
            raise SettingsError(f"RECON_STRIPE_ACCOUNTS gives {target} to two accounts; each account needs a key (or acct_ id) of its own.")
        if target.startswith("acct_"):
            accounts.append(StripeAccount(name, "STRIPE_API_KEY", target))
            continue
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", target):
            raise SettingsError(f"RECON_STRIPE_ACCOUNTS: {name}={target!r} is neither an environment variable's name (upper case) nor a connected account id (acct_...); {example}.")
        key = _text(env, target)
        if key is None and not emulator:
            raise SettingsError(f"RECON_STRIPE_ACCOUNTS: the key of account {name!r} is read from {target}, which is not set; set it to that account's secret key.")
        if key is not None and not key.startswith(STRIPE_KEY_PREFIXES):
            raise SettingsError(f"{target} (the key of account {name!r}) does not look like a Stripe secret key (sk_test_..., sk_live_..., rk_...); copy it from that account's dashboard.")
        accounts.append(StripeAccount(name, target))
    return tuple(accounts)


CATALOG_TAG = "recon/catalog"


def catalog_fingerprint(url: str) -> str:
    """Which catalog, without saying where or how to log in: the first 12 hex digits of the
    sha256 of RECON_CATALOG_URL less its password. Runs carry it as the `recon/catalog` tag,
    and sensors act only on runs of their own catalog."""
    try:
        plain = make_url(url)._replace(password=None).render_as_string(hide_password=False)  # URL is a named tuple
    except Exception:  # not a URL SQLAlchemy parses: the catalog resource says so when it connects
        plain = url
    return hashlib.sha256(plain.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Settings:
    """Everything the project is configured with. Secrets are kept out of `repr()`."""

    catalog_url: str = field(default_factory=default_catalog_url, repr=False)  # may carry a password
    catalog_source: CatalogSource = field(default_factory=CatalogSource)
    stripe_api_key: str = field(default=EMULATOR_API_KEY, repr=False)
    stripe_api_base: str = field(default_factory=emulator_url)
    global_rate: float = SANDBOX_GLOBAL_RATE
    endpoint_rate: float = ENDPOINT_RATE
    stripe_timeout_s: float = 30.0
    stripe_api_version: str = field(default_factory=sdk_api_version)  # sent as Stripe-Version on every request
    accounts: tuple[StripeAccount, ...] = (StripeAccount(),)  # RECON_STRIPE_ACCOUNTS; one, `default`, unless it is set
    max_drift_rate: float = 0.01
    max_repair_share: float = 0.10
    breaker_floor: int = 25  # the breaker holds a repair only above this many objects too (and above the share)
    orphan_policy: OrphanPolicy = OrphanPolicy.REPORT
    price_orphan_policy: OrphanPolicy = OrphanPolicy.REPORT
    conflict_policy: ConflictPolicy = ConflictPolicy.LOCAL_WINS
    max_outbox_lag_s: float = 300.0
    events_poll_interval_s: float = 60.0  # how often stripe_events_poller asks for a poll of /v1/events (in an apply_inbox run)
    drift_history_days: float = 90.0  # how long drift_history keeps a row
    webhook_secret: str | None = field(default=None, repr=False)
    alert_webhook_url: str | None = field(default=None, repr=False)
    dagster_ui_url: str = DEFAULT_UI_URL
    partitions_start: str = DEFAULT_PARTITIONS_START
    reconcile_cron: str = DEFAULT_RECONCILE_CRON
    executor: Executor = Executor.MULTIPROCESS
    dagster_home: Path | None = None
    dagster_postgres_url: str | None = field(default=None, repr=False)
    # Names of the variables that were set: their values reach Dagster as EnvVar references,
    # so secrets never appear in run config or the UI.
    set_in_env: frozenset[str] = frozenset()
    # Things worth saying that do not stop anything (an unknown RECON_ variable).
    warnings: tuple[str, ...] = ()

    @property
    def instance_home(self) -> Path:
        """The deployment's Dagster instance, decided here once for every command, `make dev` and
        `make serve`: DAGSTER_HOME; else, with DAGSTER_POSTGRES_URL (production storage),
        ./.dagster_serve; else ./.dagster_home (Dagster's SQLite storage)."""
        if self.dagster_home is not None:
            return self.dagster_home
        return PROJECT_ROOT / (".dagster_serve" if self.dagster_postgres_url else ".dagster_home")

    @property
    def instance_config(self) -> Path:
        """The project's dagster.yaml for that instance: deploy/dagster.yaml (PostgreSQL) with DAGSTER_POSTGRES_URL, else ./dagster.yaml."""
        return PROJECT_ROOT / "deploy" / "dagster.yaml" if self.dagster_postgres_url else PROJECT_ROOT / "dagster.yaml"

    @property
    def uses_emulator(self) -> bool:
        return self.stripe_api_key == EMULATOR_API_KEY

    @property
    def stripe_key_is_set(self) -> bool:
        return not self.uses_emulator

    @property
    def account_names(self) -> list[str]:
        return [account.name for account in self.accounts]

    @property
    def several_accounts(self) -> bool:
        """More than one account: the per-account assets are partitioned by `account`."""
        return len(self.accounts) > 1

    def key_and_rate(self, account: StripeAccount) -> tuple[str, float]:
        """An account's key and global limit (see `account_key_and_rate`)."""
        return account_key_and_rate(account, self.stripe_api_key, self.global_rate, "RECON_STRIPE_RATE_LIMIT" in self.set_in_env)

    def account(self, name: str) -> StripeAccount:
        """The account of that name; a name not in RECON_STRIPE_ACCOUNTS is refused, naming those that are."""
        for account in self.accounts:
            if account.name == name:
                return account
        raise SettingsError(f"there is no Stripe account {name!r}; RECON_STRIPE_ACCOUNTS names {', '.join(self.account_names)}.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable; raises SettingsError naming the first bad one."""
        env = os.environ if env is None else env
        catalog_url = _text(env, "RECON_CATALOG_URL") or default_catalog_url()
        if "://" not in catalog_url:
            raise SettingsError(f"RECON_CATALOG_URL={catalog_url!r} is not a SQLAlchemy URL; use e.g. 'sqlite:///data/catalog.db' or 'postgresql+psycopg2://postgres@127.0.0.1:5432/catalog'.")

        api_key = _text(env, "STRIPE_API_KEY")
        api_base = _text(env, "STRIPE_API_BASE")
        if api_key is None:
            # Embedded default: the bundled emulator, no account needed.
            api_key = EMULATOR_API_KEY
            api_base = api_base or emulator_url()
        elif not api_key.startswith(STRIPE_KEY_PREFIXES):
            raise SettingsError("STRIPE_API_KEY does not look like a Stripe secret key (it must start with sk_test_, sk_live_, rk_test_ or rk_live_); copy it from the Stripe dashboard.")
        api_base = (api_base or STRIPE_LIVE_BASE).rstrip("/")
        if not api_base.startswith(("http://", "https://")):
            raise SettingsError(f"STRIPE_API_BASE={api_base!r} must be an http(s) URL, e.g. {emulator_url()} for the bundled emulator or {STRIPE_LIVE_BASE}.")

        webhook_secret = _text(env, "STRIPE_WEBHOOK_SECRET")
        if webhook_secret is not None and not webhook_secret.startswith("whsec_"):
            raise SettingsError("STRIPE_WEBHOOK_SECRET does not look like a webhook signing secret (whsec_...); copy it from the webhook endpoint.")
        alert_url = _text(env, "ALERT_WEBHOOK_URL")
        if alert_url is not None and not alert_url.startswith(("http://", "https://")):
            # Never echo it: a Slack webhook URL carries its token.
            raise SettingsError("ALERT_WEBHOOK_URL must be an http(s) URL (e.g. a Slack incoming webhook); unset it to only log alerts.")
        ui_url = (_text(env, "DAGSTER_UI_URL") or DEFAULT_UI_URL).rstrip("/")
        if not ui_url.startswith(("http://", "https://")):
            raise SettingsError(f"DAGSTER_UI_URL={ui_url!r} must be an http(s) URL, e.g. {DEFAULT_UI_URL}.")
        postgres_url = _text(env, "DAGSTER_POSTGRES_URL")
        if postgres_url is not None and not postgres_url.startswith(("postgresql://", "postgres://")):
            raise SettingsError("DAGSTER_POSTGRES_URL must look like postgresql://USER:PASSWORD@HOST:5432/DATABASE (dagster-postgres takes a plain postgresql:// URL, without +psycopg2).")
        home = _text(env, "DAGSTER_HOME")
        catalog_source = _catalog_source(env)
        conflict_policy = _choice(env, "RECON_CONFLICT_POLICY", ConflictPolicy, ConflictPolicy.LOCAL_WINS)
        orphan_policy = _choice(env, "RECON_ORPHAN_POLICY", OrphanPolicy, OrphanPolicy.REPORT)
        price_orphan_policy = _choice(env, "RECON_PRICE_ORPHAN_POLICY", OrphanPolicy, OrphanPolicy.REPORT)
        _policies_fit_the_catalog(catalog_source, conflict_policy, orphan_policy, price_orphan_policy)

        return cls(
            catalog_url=catalog_url,
            catalog_source=catalog_source,
            stripe_api_key=api_key,
            stripe_api_base=api_base,
            global_rate=_positive(env, "RECON_STRIPE_RATE_LIMIT", global_rate_for(api_key)),
            endpoint_rate=_positive(env, "RECON_STRIPE_ENDPOINT_RATE_LIMIT", ENDPOINT_RATE),
            stripe_timeout_s=_positive(env, "RECON_STRIPE_TIMEOUT_S", 30.0, "seconds"),
            stripe_api_version=_api_version(env),
            accounts=_accounts(env, emulator=api_key == EMULATOR_API_KEY),
            max_drift_rate=_fraction(env, "RECON_MAX_DRIFT_RATE", 0.01),
            max_repair_share=_fraction(env, "RECON_MAX_REPAIR_SHARE", 0.10),
            breaker_floor=_count(env, "RECON_BREAKER_FLOOR", 25, "objects (products and prices) a repair may write whatever the share"),
            orphan_policy=orphan_policy,
            price_orphan_policy=price_orphan_policy,
            conflict_policy=conflict_policy,
            max_outbox_lag_s=_positive(env, "RECON_MAX_OUTBOX_LAG_S", 300.0, "seconds"),
            events_poll_interval_s=_positive(env, "RECON_EVENTS_POLL_INTERVAL_S", 60.0, "seconds"),
            drift_history_days=_positive(env, "RECON_DRIFT_HISTORY_DAYS", 90.0, "days"),
            webhook_secret=webhook_secret,
            alert_webhook_url=alert_url,
            dagster_ui_url=ui_url,
            partitions_start=_partition_start(env),
            reconcile_cron=_cron(env),
            executor=_choice(env, "RECON_EXECUTOR", Executor, Executor.MULTIPROCESS),
            dagster_home=Path(home).expanduser().resolve() if home else None,
            dagster_postgres_url=postgres_url,
            set_in_env=frozenset(name for name in KNOWN_VARIABLES if _text(env, name) is not None),
            warnings=tuple(_unknown_variables(env)),
        )


def _accounts(env: Mapping[str, str], emulator: bool) -> tuple[StripeAccount, ...]:
    accounts = parse_accounts(_text(env, "RECON_STRIPE_ACCOUNTS"), env, emulator)
    own_keys = [a.key_variable for a in accounts if a.key_variable != "STRIPE_API_KEY" and _text(env, a.key_variable)]
    if emulator and own_keys and _text(env, "STRIPE_API_BASE") is None:
        # Without STRIPE_API_KEY (and STRIPE_API_BASE) the pipeline runs on the bundled emulator: real keys must not go there.
        raise SettingsError(
            f"{own_keys[0]} (a key RECON_STRIPE_ACCOUNTS names) is set but STRIPE_API_KEY is not, so the pipeline would call the "
            "bundled emulator with it; set STRIPE_API_KEY too (the platform's key, or any of your accounts' keys)."
        )
    return accounts


def global_rate_for(api_key: str) -> float:
    """Stripe's global limit for an account with this key: 100 requests/s live, 25 in a sandbox."""
    return LIVE_GLOBAL_RATE if api_key.startswith(("sk_live_", "rk_live_")) else SANDBOX_GLOBAL_RATE


def account_key_and_rate(account: StripeAccount, stripe_api_key: str, global_rate: float, rate_limit_set: bool) -> tuple[str, float]:
    """An account's key (STRIPE_API_KEY's, for it and its connected accounts; else read from its
    variable now) and its global limit: `global_rate` (RECON_STRIPE_RATE_LIMIT, or derived from
    STRIPE_API_KEY) when set or when the key is STRIPE_API_KEY's, else Stripe's for its kind of key."""
    api_key = stripe_api_key if account.key_variable == "STRIPE_API_KEY" else account.api_key()
    return api_key, global_rate if rate_limit_set or api_key == stripe_api_key else global_rate_for(api_key)


def environment_for_children(**overrides: str) -> dict[str, str]:
    """The environment a child process (dagster dev, the daemon, the emulator) starts with:
    this one, so it reads the same settings, with the given variables set."""
    return {**os.environ, **overrides}


def _api_version(env: Mapping[str, str]) -> str:
    value = _text(env, "RECON_STRIPE_API_VERSION")
    if value is None:
        return sdk_api_version()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?", value):
        raise SettingsError(
            f"RECON_STRIPE_API_VERSION={value!r} is not a Stripe API version; write it as Stripe names them, e.g. {sdk_api_version()!r} (the version of the installed stripe SDK, the default)."
        )
    return value


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _catalog_source(env: Mapping[str, str]) -> CatalogSource:
    try:
        table, columns, query, prices_table, prices_columns, prices_query = (_text(env, f"RECON_{kind}_{part}") for kind in ("CATALOG", "PRICES") for part in ("TABLE", "COLUMNS", "QUERY"))
        return CatalogSource.from_settings(table, columns, query, prices_table, prices_columns, prices_query, writable=_flag(env, "RECON_CATALOG_WRITABLE"))
    except CatalogSourceError as error:
        raise SettingsError(str(error)) from None


def _policies_fit_the_catalog(source: CatalogSource, conflict: ConflictPolicy, orphans: OrphanPolicy, price_orphans: OrphanPolicy) -> None:
    """A policy that writes into the user's own catalog needs it writable (said by every command and at load)."""
    if source.is_own_schema:
        return
    if conflict.writes_catalog and not source.writable:
        what = "your query" if source.query else f"your table {source.table!r}"
        fix = (
            "map your tables instead (RECON_CATALOG_TABLE and RECON_CATALOG_COLUMNS) and set RECON_CATALOG_WRITABLE=true"
            if source.query
            else "set RECON_CATALOG_WRITABLE=true to let Stripe's edits be written into its mapped columns"
        )
        raise SettingsError(f"RECON_CONFLICT_POLICY={conflict.value} writes Stripe's edits into the catalog, which is {what} and read-only: {fix}, or use local_wins.")
    for name, policy in (("RECON_ORPHAN_POLICY", orphans), ("RECON_PRICE_ORPHAN_POLICY", price_orphans)):
        if policy is OrphanPolicy.ADOPT:
            raise SettingsError(f"{name}=adopt inserts Stripe's objects into the catalog, and the pipeline never inserts rows into your own tables; use report (or archive).")


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = _text(env, name)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise SettingsError(f"{name}={raw!r} is not true or false.")
    return raw.lower() in ("true", "1", "yes")


def _number(env: Mapping[str, str], name: str, default: float, hint: str) -> tuple[float, str | None]:
    raw = _text(env, name)
    if raw is None:
        return default, None
    try:
        return float(raw), raw
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number; {hint}") from None


def _positive(env: Mapping[str, str], name: str, default: float, unit: str = "requests per second") -> float:
    value, raw = _number(env, name, default, f"set it in {unit}, e.g. {default:g}.")
    if not value > 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0 ({unit}).")
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    value, raw = _number(env, name, default, f"use a fraction such as {default:g} for {default:.0%}.")
    if not 0 <= value <= 1:
        raise SettingsError(f"{name}={raw!r} must be a fraction between 0 and 1, e.g. {default:g} for {default:.0%}.")
    return value


def _count(env: Mapping[str, str], name: str, default: int, what: str) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise SettingsError(f"{name}={raw!r} must be a whole number, 0 or more: the {what}, e.g. {default}.")
    return int(raw)


Choice = TypeVar("Choice", bound=StrEnum)


def _choice(env: Mapping[str, str], name: str, choices: type[Choice], default: Choice) -> Choice:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        return choices(raw)
    except ValueError:
        names = [c.value for c in choices]
        close = difflib.get_close_matches(raw, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SettingsError(f"{name}={raw!r} is not one of {', '.join(names)}{hint}.") from None


def _partition_start(env: Mapping[str, str]) -> str:
    raw = _text(env, "RECON_PARTITIONS_START")
    if raw is None:
        return DEFAULT_PARTITIONS_START
    try:
        dt.datetime.strptime(raw, PARTITION_FORMAT)
    except ValueError:
        raise SettingsError(f"RECON_PARTITIONS_START={raw!r} is not an hour in the form YYYY-MM-DD-HH:MM (UTC), e.g. {DEFAULT_PARTITIONS_START}.") from None
    return raw


# A cron field: `*`, a number or name, a range, a step, or a list of them; with each field's bounds.
_CRON_FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = {3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}
_CRON_PART = re.compile(r"^(\*|(\w+)(?:-(\w+))?)(?:/(\d+))?$")


def cron_interval_s(cron: str, ticks: int = 500) -> float:
    """The shortest time between two of a cron schedule's next `ticks` runs (UTC), in seconds."""
    times = croniter(cron, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    return min(b - a for a, b in itertools.pairwise(times.get_next(float) for _ in range(ticks)))


def is_cron(text: str) -> bool:
    """Whether `text` is a five-field cron schedule that Dagster's scheduler takes (names for months and weekdays allowed)."""
    fields = text.split()
    if len(fields) != 5:
        return False
    for index, (field_text, (low, high)) in enumerate(zip(fields, _CRON_FIELDS, strict=True)):
        names = _CRON_NAMES.get(index, [])
        for part in field_text.lower().split(","):
            match = _CRON_PART.match(part)
            if match is None or match.group(4) == "0":
                return False
            for value in filter(None, match.group(2, 3)):
                number = names.index(value) + (1 if index == 3 else 0) if value in names else int(value) if value.isdigit() else -1
                if not low <= number <= high:
                    return False
    return True


def _cron(env: Mapping[str, str]) -> str:
    raw = _text(env, "RECON_RECONCILE_CRON")
    if raw is None:
        return DEFAULT_RECONCILE_CRON
    if not is_cron(raw):
        raise SettingsError(f"RECON_RECONCILE_CRON={raw!r} is not a cron schedule; use five fields, e.g. {DEFAULT_RECONCILE_CRON!r} (hourly).")
    return raw


# Names other projects and Stripe's own examples use for what recon-pipeline reads under another name.
OTHER_NAMES = {
    "STRIPE_SECRET_KEY": "STRIPE_API_KEY",
    "STRIPE_KEY": "STRIPE_API_KEY",
    "STRIPE_SECRET": "STRIPE_API_KEY",
    "STRIPE_ENDPOINT_SECRET": "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_VERSION": "RECON_STRIPE_API_VERSION",
}
# Prefixes our variables share with other programs' (Stripe's CLI, Dagster): only a name close to ours is a near-miss.
SHARED_PREFIXES = ("STRIPE_", "DAGSTER_", "ALERT_")


def _unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A warning for each variable that looks meant for recon-pipeline but is not one it reads:
    any unknown RECON_ name, and a STRIPE_, DAGSTER_ or ALERT_ name close to one of ours
    (or another project's name for it) while ours is not set."""
    said = []
    named = set(re.findall(r"=([A-Z][A-Z0-9_]*)", env.get("RECON_STRIPE_ACCOUNTS", "")))  # the accounts' key variables
    for name in sorted(env):
        if name in KNOWN_VARIABLES or name in FOREIGN_VARIABLES or name in named or name.startswith(tuple(f"{known}_" for known in KNOWN_VARIABLES)):
            continue
        if name.startswith("RECON_"):
            close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1)
            said.append(f"{name} is not a recon-pipeline setting" + (f"; did you mean {close[0]}?" if close else "; it is ignored."))
        elif name.startswith(SHARED_PREFIXES):
            meant = OTHER_NAMES.get(name) or next(iter(difflib.get_close_matches(name, KNOWN_VARIABLES, n=1, cutoff=0.8)), None)
            if meant and _text(env, meant) is None:
                said.append(f"{name} is set but recon-pipeline does not read it; did you mean {meant}? ({meant} is not set)")
    return said


def emulator_notice(api_base: str) -> str:
    """What a run says when no STRIPE_API_KEY is set: the bundled emulator stands in for Stripe."""
    return f"STRIPE_API_KEY is not set, so the bundled Stripe emulator ({api_base}) stands in for Stripe and nothing reaches a Stripe account; set STRIPE_API_KEY to sync with yours."
