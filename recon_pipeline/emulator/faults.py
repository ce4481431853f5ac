"""Fault injection: rate limits (global and per endpoint), a failure rate, latency, slow and
dropped connections, an outage.

Live-adjustable: the server reads the same `Faults` object on every request, and the
admin endpoint `POST /_emulator/faults` changes it.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

FAULT_FIELDS = (
    "rate_limit",
    "endpoint_rate_limit",
    "failure_rate",
    "latency_ms",
    "slow_rate",
    "slow_ms",
    "drop_rate",
    "outage",
    "retry_after",
    "refuse_paths",
)


@dataclass
class Faults:
    rate_limit: float | None = None
    endpoint_rate_limit: float | None = None
    failure_rate: float = 0.0
    latency_ms: int = 0
    slow_rate: float = 0.0  # share of requests that take slow_ms more (longer than a client's timeout, say)
    slow_ms: int = 5000
    drop_rate: float = 0.0  # share of requests whose connection is cut: half before, half after the work is done
    outage: bool = False
    retry_after: float | None = None
    refuse_paths: list[str] = field(default_factory=list)  # writes to these paths answer 400, as Stripe refusing an object
    _buckets: dict[str, list[float]] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FAULT_FIELDS}

    def update(self, values: dict[str, Any]) -> None:
        unknown = set(values) - set(FAULT_FIELDS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULT_FIELDS)}")
        with self._lock:
            for name, value in values.items():
                setattr(self, name, value)
            self._buckets.clear()  # new limits start with full buckets

    def clear(self) -> None:
        """Every fault back to its default: the emulator answers like a healthy Stripe."""
        healthy = Faults()
        self.update({name: getattr(healthy, name) for name in FAULT_FIELDS})

    def _take(self, key: str, rate: float) -> bool:
        # A token bucket with burst = rate, as Stripe's limiter allows short bursts.
        now = time.monotonic()
        tokens, updated = self._buckets.get(key, [rate, now])
        tokens = min(rate, tokens + (now - updated) * rate)
        if tokens < 1:
            self._buckets[key] = [tokens, now]
            return False
        self._buckets[key] = [tokens - 1, now]
        return True

    def admit(self, endpoint: str) -> bool:
        """False when this request is over the global or the endpoint's rate limit."""
        with self._lock:
            if self.endpoint_rate_limit and not self._take(endpoint, float(self.endpoint_rate_limit)):
                return False
            return not self.rate_limit or self._take("*", float(self.rate_limit))

    def should_fail(self) -> bool:
        return self.failure_rate > 0 and random.random() < self.failure_rate

    def delay_s(self) -> float:
        """How long this request's work takes: the latency, plus slow_ms for a slow one."""
        slow = self.slow_rate > 0 and random.random() < self.slow_rate
        return (self.latency_ms + (self.slow_ms if slow else 0)) / 1000

    def drop_point(self) -> str | None:
        """None, or where this request's connection is cut: "before" or "after" the work is done."""
        if self.drop_rate <= 0 or random.random() >= self.drop_rate:
            return None
        return random.choice(("before", "after"))
