"""How long to wait before trying again: one rule for every retry loop in the project.

Exponential backoff with full jitter (a uniform wait between 0 and `base * 2**attempt`,
capped), so clients that failed together do not retry together. A server's `Retry-After`
is honoured, up to a cap of its own as in Stripe's SDK (60 s): a bogus or hostile value
cannot park a worker for an hour. Used by the Stripe client, the outbox, the sync worker
and alert delivery.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

# stripe-python's _http_client.MAX_RETRY_AFTER: a longer Retry-After is not waited for in full.
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.25
    cap_s: float = 30.0
    retry_after_cap_s: float = MAX_RETRY_AFTER_S
    # Where the jitter comes from (a number in [0, 1)); tests pass a fixed one.
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0 for the first failure)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** min(max(attempt, 0), 62))
        wait = self.jitter() * ceiling
        if retry_after:
            wait = max(wait, min(retry_after, self.retry_after_cap_s))
        return wait


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds, or None when absent or not a number."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
