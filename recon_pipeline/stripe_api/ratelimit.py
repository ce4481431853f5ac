"""One rate budget per Stripe account, shared by every process that calls it.

Stripe limits requests per account (100/s live, 25/s in a sandbox) and, on its own, each
endpoint such as `GET /v1/products` or `POST /v1/prices` (25/s). Waiting for a slot before
sending keeps us under both instead of collecting 429s and backing off.

The limits hold for the account, not for a process: run steps, sensors, `recon-pipeline
worker` and dead-letter replays call Stripe at once. So a slot is reserved in a budget every
one of them sees:

- `SqlBudget`: a row per bucket in the catalog's database (`rate_budget`), updated in one
  short transaction with the database's clock, so machines with skewed clocks agree;
- `FileBudget`: a SQLite catalog is one machine, so a file beside it, under an exclusive
  `flock`, holds the same numbers;
- `LocalBudget`: this process only (an in-memory catalog, benchmarks, tests).

Each bucket is a reservation scheduler (GCRA): it keeps the moment its next slot is free
(`tat`, theoretical arrival time). A caller takes the next slot and sleeps until it; slots
are handed out in arrival order, with no polling and no lost wake-ups. After a quiet spell
up to `burst` requests go at once. The burst is half the rate: Stripe's own bucket allows a
full second's worth, so the other half absorbs requests that reach it closer together than
they were sent.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, create_engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from recon_pipeline.catalog.schema import rate_budget
from recon_pipeline.names import DEFAULT_ACCOUNT

# A slot further ahead than this is a leftover (a clock that jumped, a rate lowered since):
# the bucket starts afresh rather than making everyone wait for it.
STALE_AHEAD_S = 120.0
POOL_SIZE = 16  # connections to a shared budget's database per process (a repair or a drain calls Stripe from 8 threads)


def burst_for(rate: float) -> float:
    """How many requests may go at once after a quiet spell: half a second's worth, at least one."""
    return max(1.0, rate / 2)


def next_slot(tat: float | None, now: float, rate: float, burst: float) -> tuple[float, float]:
    """The bucket's new `tat` and the seconds to wait, when one request takes the next slot.

    `_POSTGRES_SLOT` is the same rule in one SQL statement; a test holds the two together."""
    if tat is None or tat < now or tat > now + STALE_AHEAD_S:
        tat = now
    tat += 1.0 / rate
    return tat, wait_for(tat, now, rate, burst)


def wait_for(tat: float, now: float, rate: float, burst: float) -> float:
    """How long the request whose slot ends at `tat` waits: none while the burst lasts."""
    return max(0.0, tat - now - burst / rate)


class Budget(Protocol):
    """Where the buckets live; `reserve` takes one slot of a bucket and says how long to wait for it."""

    def reserve(self, bucket: str, rate: float) -> float: ...


class LocalBudget:
    """Buckets in this process's memory (threads share them; other processes do not)."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, bucket: str, rate: float) -> float:
        with self._lock:
            self._tats[bucket], wait = next_slot(self._tats.get(bucket), time.monotonic(), rate, burst_for(rate))
        return wait


class FileBudget:
    """Buckets in a small JSON file, changed under an exclusive `flock`: every process of one machine.

    Times are the machine's monotonic clock (one for all its processes; a wall clock stepped
    back by NTP would hold every request for the step). After a reboot it starts again low, and
    `next_slot` forgets slots that far ahead."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # flock is per open file; threads of one process queue here first

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield fd
            finally:
                os.close(fd)  # releases the lock

    def reserve(self, bucket: str, rate: float) -> float:
        with self._locked() as fd:
            raw = os.pread(fd, 1 << 16, 0)
            try:
                tats = json.loads(raw) if raw else {}
            except ValueError:
                tats = {}  # a torn write from a killed process: start afresh, nothing else is lost
            tats[bucket], wait = next_slot(tats.get(bucket), time.monotonic(), rate, burst_for(rate))
            data = json.dumps(tats).encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        return wait


# The database's own clock, in seconds, so every machine reads the same time.
_DB_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())",
    "mysql": "unix_timestamp(sysdate(6))",
    "mariadb": "unix_timestamp(sysdate(6))",
}

# `next_slot` in one statement: the row is locked only while it runs, with no round trip in
# between, so a slot costs about a millisecond however many processes take them at once.
_POSTGRES_SLOT = text(
    """
    WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
    INSERT INTO rate_budget AS budget (bucket, tat) SELECT :bucket, now + :interval FROM clock
    ON CONFLICT (bucket) DO UPDATE SET tat = :interval + CASE
        WHEN budget.tat < (SELECT now FROM clock) OR budget.tat > (SELECT now FROM clock) + :stale THEN (SELECT now FROM clock)
        ELSE budget.tat END
    RETURNING tat, (SELECT now FROM clock)
    """
)


class SqlBudget:
    """Buckets as rows of `rate_budget` in the catalog's PostgreSQL (or MySQL/MariaDB): every process on every machine.

    On PostgreSQL a slot is one statement (`_POSTGRES_SLOT`), committed without waiting for
    the WAL flush: a crash loses at most the last few milliseconds of slots, which only lets
    a request or two go early once. Elsewhere it is one short transaction: lock the row, read
    it and the database's clock, write the new `tat`.
    """

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in _DB_NOW:
            raise ValueError(f"a shared rate budget needs PostgreSQL or MySQL/MariaDB, not {dialect}")
        self.engine = engine
        self._now = text(_DB_NOW[dialect])
        self._postgres = dialect == "postgresql"
        self._made: set[str] = set()  # buckets whose row this process knows exists

    def reserve(self, bucket: str, rate: float) -> float:
        if self._postgres:
            with self.engine.begin() as conn:
                conn.execute(text("SET LOCAL synchronous_commit = off"))
                tat, now = conn.execute(_POSTGRES_SLOT, {"bucket": bucket, "interval": 1.0 / rate, "stale": STALE_AHEAD_S}).one()
            return wait_for(tat, now, rate, burst_for(rate))
        if bucket not in self._made:
            self._make_row(bucket)
        with self.engine.begin() as conn:
            row = conn.execute(select(rate_budget.c.tat, self._now).where(rate_budget.c.bucket == bucket).with_for_update()).one()
            tat, wait = next_slot(row[0], float(row[1]), rate, burst_for(rate))
            conn.execute(update(rate_budget).where(rate_budget.c.bucket == bucket).values(tat=tat))
        return wait

    def _make_row(self, bucket: str) -> None:
        """The bucket's row, made in a transaction of its own: two processes locking a row that is
        not there yet would take gap locks and deadlock each other (InnoDB)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(rate_budget).values(bucket=bucket, tat=0.0))  # long past: the first slot is now
        except IntegrityError:
            pass  # another process made it
        self._made.add(bucket)


def budget_for(catalog_url: str | None) -> Budget:
    """The budget every process with this catalog shares: its database, a file beside a SQLite
    file, or this process alone (no catalog, or an in-memory one)."""
    if not catalog_url:
        return LocalBudget()
    from recon_pipeline.catalog.connect import sqlite_file

    path = sqlite_file(catalog_url)
    if path is not None:
        return FileBudget(path.with_name(path.name + "-ratelimit"))
    if catalog_url.startswith("sqlite"):
        return LocalBudget()
    return _sql_budgets(catalog_url)


_SQL_BUDGETS: dict[str, SqlBudget] = {}
_SQL_BUDGETS_LOCK = threading.Lock()


def _sql_budgets(url: str) -> SqlBudget:
    """One engine per catalog URL and process, its pool as large as a process's threads calling
    Stripe at once (a pool too small for them opens and closes connections on every slot)."""
    with _SQL_BUDGETS_LOCK:
        if url not in _SQL_BUDGETS:
            _SQL_BUDGETS[url] = SqlBudget(create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_SIZE, pool_pre_ping=True))
        return _SQL_BUDGETS[url]


_ID_SEGMENT = re.compile(r"^(/v1/[a-z_]+)/[^/]+(.*)$")


def endpoint_key(method: str, path: str) -> str:
    """`GET /v1/products/prod_123` -> `GET /v1/products/{id}`: the unit Stripe limits."""
    path = path.split("?", 1)[0].rstrip("/")
    match = _ID_SEGMENT.match(path)
    if match:
        path = f"{match.group(1)}/{{id}}{match.group(2)}"
    return f"{method.upper()} {path}"


class RateLimiter:
    """An account's global limit (optional) and the limit of each of its endpoints, in one budget."""

    def __init__(self, global_rate: float | None, endpoint_rate: float | None, budget: Budget | None = None, account: str = DEFAULT_ACCOUNT):
        for name, rate in (("global", global_rate), ("endpoint", endpoint_rate)):
            if rate is not None and rate <= 0:
                raise ValueError(f"the {name} rate must be > 0 requests/s, got {rate!r}")
        self.global_rate = global_rate
        self.endpoint_rate = endpoint_rate
        self.budget = budget or LocalBudget()
        self.account = account

    def acquire(self, endpoint: str) -> float:
        """Wait for a slot of the endpoint, then of the account; returns the seconds waited."""
        waited = 0.0
        for rate, bucket in ((self.endpoint_rate, endpoint), (self.global_rate, "*")):
            if rate:
                wait = self.budget.reserve(f"{self.account} {bucket}", rate)
                if wait > 0:
                    time.sleep(wait)
                waited += wait
        return waited
