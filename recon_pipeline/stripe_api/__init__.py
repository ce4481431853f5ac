"""The one Stripe client wrapper (rate limits, retries, idempotency) and the account's snapshots."""

from recon_pipeline.stripe_api.client import CredentialsRefused, RetryPolicy, StripeGateway, Tally, by_name, error_text, idempotency_key, should_retry
from recon_pipeline.stripe_api.ratelimit import FileBudget, LocalBudget, RateLimiter, SqlBudget, budget_for, endpoint_key

__all__ = [
    "CredentialsRefused",
    "FileBudget",
    "LocalBudget",
    "RateLimiter",
    "RetryPolicy",
    "SqlBudget",
    "StripeGateway",
    "Tally",
    "budget_for",
    "by_name",
    "endpoint_key",
    "error_text",
    "idempotency_key",
    "should_retry",
]
