"""The one Stripe client wrapper (rate limits, retries, idempotency) and the products snapshot."""

from recon_pipeline.stripe_api.client import CredentialsRefused, RetryPolicy, StripeGateway, error_text, idempotency_key, should_retry
from recon_pipeline.stripe_api.ratelimit import RateLimiter, TokenBucket, endpoint_key
from recon_pipeline.stripe_api.snapshot import ProductsSnapshot, fetch_products_by_id, fetch_products_snapshot

__all__ = [
    "CredentialsRefused",
    "ProductsSnapshot",
    "RateLimiter",
    "RetryPolicy",
    "StripeGateway",
    "TokenBucket",
    "endpoint_key",
    "error_text",
    "fetch_products_by_id",
    "fetch_products_snapshot",
    "idempotency_key",
    "should_retry",
]
