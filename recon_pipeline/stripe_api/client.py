"""The one Stripe client wrapper every path uses: rate limits, retries, idempotency.

Built on the official SDK (`stripe.StripeClient.raw_request`), created with
`max_network_retries=0` because the SDK alone does not retry a plain 429 and ignores
`Retry-After`; retrying here, we:

- wait for a slot of the per-endpoint and the account-wide limit before each request, in the
  budget every process calling the account shares (`ratelimit.py`);
- retry 429, 409, 5xx and connection errors with the project's one backoff (`backoff.py`:
  exponential, full jitter, capped), never sooner than `Retry-After` (up to 60 s, as the
  SDK), never when Stripe says `Stripe-Should-Retry: false`, always when it says `true`;
- send the caller's deterministic Idempotency-Key on writes, so a retry or a re-run
  replays instead of writing twice.

After the last attempt the SDK's own error is raised, with the server's message, code and
status kept. The API key never appears in logs, errors or repr().
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import stripe

from recon_pipeline.backoff import Backoff, retry_after_seconds
from recon_pipeline.names import DEFAULT_ACCOUNT, SettingsError
from recon_pipeline.stripe_api.ratelimit import Budget, RateLimiter, budget_for, endpoint_key

if TYPE_CHECKING:
    from recon_pipeline.settings import Settings

log = logging.getLogger(__name__)

RETRY_STATUSES = {409, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a request is tried, and the backoff between tries."""

    max_attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 30.0

    @property
    def backoff(self) -> Backoff:
        return Backoff(base_s=self.base_delay, cap_s=self.max_delay)


def idempotency_key(operation: str, object_id: str, params: Mapping[str, Any]) -> str:
    """A stable key for a write: same operation, object and parameters -> same key."""
    canonical = json.dumps([operation, object_id, params], sort_keys=True, separators=(",", ":"), default=str)
    return "recon-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


class CredentialsRefused(SettingsError):
    """Stripe refused the API key (401) or what it may do (403): no retry can help, only another key.

    The message names the setting and Stripe's status and code, never the key (Stripe's own
    message quotes part of it).
    """

    def __init__(self, error: stripe.StripeError, key_fingerprint: str | None = None, account: str = DEFAULT_ACCOUNT):
        self.key_fingerprint = key_fingerprint  # which key (of which account) it was, never the key
        self.status = error.http_status
        self.code = getattr(error, "code", None) or ("authentication_error" if error.http_status == 401 else "permission_error")
        what = "the API key" if self.status == 401 else "what the API key may do"
        where = "STRIPE_API_KEY" if account == DEFAULT_ACCOUNT else f"the key of Stripe account {account!r} (RECON_STRIPE_ACCOUNTS)"
        super().__init__(
            f"Stripe refused {what} in {where} ({self.status} {self.code}); nothing is retried with it until it "
            "changes: set a valid secret key (or grant a restricted key the products and prices permissions) and start again."
        )


def _header(error: stripe.StripeError, name: str) -> str | None:
    headers = error.headers or {}
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def should_retry(error: stripe.StripeError) -> bool:
    verdict = _header(error, "stripe-should-retry")
    if verdict == "false":
        return False
    if verdict == "true":
        return True
    if isinstance(error, stripe.APIConnectionError):
        return True
    return error.http_status in RETRY_STATUSES


def retry_after(error: stripe.StripeError) -> float | None:
    """The server's Retry-After in seconds, if it sent a usable one."""
    return retry_after_seconds(_header(error, "retry-after"))


class Tally:
    """Counts of the requests one piece of work made through a gateway (one list of a snapshot), apart
    from the gateway's totals: several lists share a client, each reports its own."""

    NAMES = ("requests", "retries", "rate_limited", "server_errors", "throttle_wait_s")

    def __init__(self) -> None:
        self._counts: dict[str, float] = dict.fromkeys(self.NAMES, 0)
        self._lock = threading.Lock()

    def add(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    @property
    def stats(self) -> dict[str, float]:
        with self._lock:
            return dict(self._counts)


class StripeGateway:
    """Requests to one Stripe account (or the emulator), within its limits, retried."""

    def __init__(
        self,
        api_key: str,
        api_base: str,
        global_rate: float | None = None,
        endpoint_rate: float | None = 25.0,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        api_version: str | None = None,
        budget: Budget | None = None,
        account: str = DEFAULT_ACCOUNT,
        stripe_account: str | None = None,
    ):
        self._api_key = api_key
        self.api_version = api_version or str(stripe.api_version)  # Stripe-Version of every request
        self.api_base = api_base.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.account = account  # the name RECON_STRIPE_ACCOUNTS and the catalog's `account` column give it
        self.stripe_account = stripe_account  # a connected account (acct_...), reached with the platform's key
        self.limiter = RateLimiter(global_rate, endpoint_rate, budget, account)  # budget None: this process's own
        http_client = stripe.RequestsClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": self.api_base},
            max_network_retries=0,
            http_client=http_client,
            stripe_version=self.api_version,
            stripe_account=stripe_account,
        )
        self._tally = Tally()

    @classmethod
    def from_settings(cls, settings: Settings, account: str | None = None) -> StripeGateway:
        """An account the settings name (the first, `default` unless RECON_STRIPE_ACCOUNTS says
        otherwise; the bundled emulator by default), at its limits, in the budget shared by every
        process using the same catalog."""
        chosen = settings.account(account) if account else settings.accounts[0]
        api_key, global_rate = settings.key_and_rate(chosen)
        return cls(
            api_key=api_key,
            api_base=settings.stripe_api_base,
            global_rate=global_rate,
            endpoint_rate=settings.endpoint_rate,
            timeout=settings.stripe_timeout_s,
            api_version=settings.stripe_api_version,
            budget=budget_for(settings.catalog_url),
            account=chosen.name,
            stripe_account=chosen.connected_id,
        )

    @classmethod
    def for_each_account(cls, settings: Settings) -> dict[str, StripeGateway]:
        """A gateway per account of RECON_STRIPE_ACCOUNTS, by name."""
        return {name: cls.from_settings(settings, name) for name in settings.account_names}

    def __repr__(self) -> str:
        return f"StripeGateway(account={self.account!r}, api_base={self.api_base!r})"

    @property
    def key_fingerprint(self) -> str:
        """A short digest that tells API keys apart without being one (a refused key is remembered by
        it); with a connected account, of the key and that account (the platform may still be let in)."""
        who = self._api_key if self.stripe_account is None else f"{self._api_key}|{self.stripe_account}"
        return hashlib.sha256(who.encode()).hexdigest()[:16]

    @property
    def stats(self) -> dict[str, float]:
        return self._tally.stats

    def request(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, idempotency_key: str | None = None, tally: Tally | None = None
    ) -> dict[str, Any]:
        """One API call, as a plain dict; retried as described in the module docstring. A write
        (anything but GET) must carry a deterministic idempotency key: without one a retry could
        write twice, so it is refused before anything is sent. `tally`: counted there too."""
        tallies = (self._tally,) if tally is None else (self._tally, tally)

        def count(name: str, amount: float = 1) -> None:
            for each in tallies:
                each.add(name, amount)

        if method.lower() != "get" and not idempotency_key:
            raise ValueError(f"{method.upper()} {path} without an idempotency key: every write to Stripe carries one (see repair/apply.py's keys)")
        endpoint = endpoint_key(method, path)
        params = dict(params or {})
        if idempotency_key:
            params["idempotency_key"] = idempotency_key  # an SDK request option, not a form field
        for attempt in range(self.retry.max_attempts):
            count("throttle_wait_s", self.limiter.acquire(endpoint))
            count("requests")
            try:
                response = self._client.raw_request(method.lower(), path, **params)
                return json.loads(response.body)
            except (stripe.AuthenticationError, stripe.PermissionError) as error:
                raise CredentialsRefused(error, self.key_fingerprint, self.account) from None
            except stripe.StripeError as error:
                if error.http_status == 429:
                    count("rate_limited")
                elif error.http_status and error.http_status >= 500:
                    count("server_errors")
                if attempt + 1 >= self.retry.max_attempts or not should_retry(error):
                    error.recon_attempts = attempt + 1  # type: ignore[attr-defined]  # what a dead letter records: the requests sent
                    raise
                delay = self.retry.backoff.delay(attempt, retry_after(error))
                log.info("%s answered %s (%s); retry %d in %.2fs", endpoint, error.http_status, error.code, attempt + 1, delay)
                count("retries")
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def attempts_of(error: BaseException) -> int:
        """How many requests a failed call sent (retries included); 1 for a failure it did not send."""
        return int(getattr(error, "recon_attempts", 1))

    def list_all(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every object of a list endpoint, following has_more/starting_after."""
        params = {"limit": 100, **(params or {})}
        while True:
            page = self.request("get", path, params)
            yield from page["data"]
            if not page.get("has_more") or not page["data"]:
                return
            params["starting_after"] = page["data"][-1]["id"]


def by_name(gateway: StripeGateway | Mapping[str, StripeGateway]) -> dict[str, StripeGateway]:
    """One gateway, or each account's: as {account name: gateway}."""
    return dict(gateway) if isinstance(gateway, Mapping) else {gateway.account: gateway}


def error_text(exc: stripe.StripeError) -> str:
    """The server's own message and code, never the request's credentials."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "user_message", None) or str(exc)
    status = getattr(exc, "http_status", None)
    return f"{status or 'no response'} {code or type(exc).__name__}: {message}"
