"""Is the reconciliation overdue? Plain time arithmetic for catalog_drift's freshness check.

The hourly schedule refreshes catalog_drift; no refresh for the freshness window (2 hours)
means the scheduler or the daemon is silent. Before the first reconciliation there is no
"last" to count from, so the window counts from when the watch began (the freshness
sensor's first tick): a fresh install is not overdue in its first minute, only when its
first reconciliation is late too.
"""

from __future__ import annotations

WINDOW_S = 2 * 3600.0


def overdue(last_reconciled: float | None, watching_since: float, now: float, window_s: float = WINDOW_S) -> bool:
    """Whether more than `window_s` seconds passed since the last reconciliation (or, before the first, since the watch began)."""
    return now - (last_reconciled if last_reconciled is not None else watching_since) > window_s


def fresh(last_reconciled: float | None, now: float, window_s: float = WINDOW_S) -> bool:
    """Whether there was a reconciliation within the window (none at all is not fresh)."""
    return last_reconciled is not None and not overdue(last_reconciled, last_reconciled, now, window_s)
