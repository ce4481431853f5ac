"""Token buckets for Stripe's two levels of rate limits.

Stripe limits requests per account (100/s live, 25/s in a sandbox) and, on its own, each
endpoint such as `GET /v1/products` or `POST /v1/prices` (25/s). Waiting for a token
before sending keeps us under both instead of collecting 429s and backing off.
"""

from __future__ import annotations

import re
import threading
import time


class TokenBucket:
    """`rate` tokens per second, up to `burst` saved; `acquire()` blocks until one is ours.

    Tokens are reserved in arrival order (the count may go negative), so waiting threads
    are served first come, first served without polling.
    """

    def __init__(self, rate: float, burst: float | None = None):
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests/s, got {rate!r}")
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else rate)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token; returns the seconds waited for it."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)
        return wait


_ID_SEGMENT = re.compile(r"^(/v1/[a-z_]+)/[^/]+(.*)$")


def endpoint_key(method: str, path: str) -> str:
    """`GET /v1/products/prod_123` -> `GET /v1/products/{id}`: the unit Stripe limits."""
    path = path.split("?", 1)[0].rstrip("/")
    match = _ID_SEGMENT.match(path)
    if match:
        path = f"{match.group(1)}/{{id}}{match.group(2)}"
    return f"{method.upper()} {path}"


class RateLimiter:
    """A global bucket (optional) and one bucket per endpoint."""

    def __init__(self, global_rate: float | None, endpoint_rate: float | None):
        self.global_bucket = TokenBucket(global_rate) if global_rate else None
        self.endpoint_rate = endpoint_rate
        self._endpoints: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def acquire(self, endpoint: str) -> float:
        waited = 0.0
        if self.endpoint_rate:
            with self._lock:
                bucket = self._endpoints.get(endpoint)
                if bucket is None:
                    bucket = self._endpoints[endpoint] = TokenBucket(self.endpoint_rate)
            waited += bucket.acquire()
        if self.global_bucket is not None:
            waited += self.global_bucket.acquire()
        return waited
