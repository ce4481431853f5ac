"""The emulator's account: objects in Stripe's list order, idempotency records, persistence.

Objects of each kind (product, price, event) are kept with a sort key `(created, seq)`:
Stripe lists newest first, and objects created in the same second come out newest first
too, which `seq` (insertion order) reproduces. A sorted key list per kind makes a page of
a `created` window a bisect plus a short walk.

The account's clock (`EmulatorClock`) is the wall clock plus an offset a test can advance
(`POST /_emulator/clock`): objects' `created`, and the 24 hours after which Stripe prunes an
idempotency key, are read from it.

With a path, every change is written through to a SQLite file (WAL), so the account,
its events, its idempotency records and its clock offset survive a restart.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

KINDS = ("product", "price", "event", "webhook_endpoint")
# Stripe prunes an idempotency key once it is at least 24 hours old.
IDEMPOTENCY_TTL_S = 24 * 3600


class EmulatorClock:
    """Wall-clock seconds plus an offset: time in the emulated account."""

    def __init__(self, offset_s: int = 0):
        self.offset_s = offset_s

    def now(self) -> int:
        return int(time.time()) + self.offset_s


@dataclass
class Page:
    data: list[dict[str, Any]]
    has_more: bool


class EmulatorState:
    def __init__(self, path: str | None = None):
        self.path = path
        self.lock = threading.RLock()
        self._objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        self._keys: dict[str, list[tuple[int, int, str]]] = {k: [] for k in KINDS}
        self._key_of: dict[str, dict[str, tuple[int, int, str]]] = {k: {} for k in KINDS}
        self._idempotency: dict[str, tuple[str, int, str, int]] = {}
        self.clock = EmulatorClock()
        self._seq = 0
        self._db: sqlite3.Connection | None = None
        if path:
            self._open(path)

    # -- persistence ----------------------------------------------------------------------
    def _open(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS objects (kind TEXT, id TEXT, seq INTEGER, created INTEGER, body TEXT, PRIMARY KEY (kind, id))"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, fingerprint TEXT, status INTEGER, body TEXT)")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(idempotency)")}
        if "saved_at" not in columns:  # a state file from before keys expired: they count from now
            self._db.execute(f"ALTER TABLE idempotency ADD COLUMN saved_at INTEGER NOT NULL DEFAULT {int(time.time())}")
        self._db.execute("CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT)")
        for (value,) in self._db.execute("SELECT value FROM settings WHERE name = 'clock_offset_s'"):
            self.clock.offset_s = int(value)
        for kind, seq, created, body in self._db.execute("SELECT kind, seq, created, body FROM objects ORDER BY seq"):
            self._index(kind, json.loads(body), created, seq)
            self._seq = max(self._seq, seq)
        for key, fingerprint, status, body, saved_at in self._db.execute("SELECT key, fingerprint, status, body, saved_at FROM idempotency"):
            self._idempotency[key] = (fingerprint, status, body, saved_at)

    def _persist(self, rows: list[tuple[str, str, int, int, str]]) -> None:
        if self._db is not None and rows:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO objects (kind, id, seq, created, body) VALUES (?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    # -- objects --------------------------------------------------------------------------
    def _index(self, kind: str, obj: dict[str, Any], created: int, seq: int) -> None:
        object_id = obj["id"]
        old = self._key_of[kind].get(object_id)
        if old is not None:
            keys = self._keys[kind]
            del keys[bisect.bisect_left(keys, old)]
        key = (created, seq, object_id)
        bisect.insort(self._keys[kind], key)
        self._key_of[kind][object_id] = key
        self._objects[kind][object_id] = obj

    def put(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Insert (new id: next in list order) or replace (same position) an object."""
        self.put_many(kind, [obj])
        return obj

    def put_many(self, kind: str, objs: list[dict[str, Any]]) -> None:
        with self.lock:
            rows = []
            for obj in objs:
                existing = self._key_of[kind].get(obj["id"])
                if existing is None:
                    self._seq += 1
                    seq = self._seq
                else:
                    seq = existing[1]
                self._index(kind, obj, int(obj["created"]), seq)
                rows.append((kind, obj["id"], seq, int(obj["created"]), json.dumps(obj)))
            self._persist(rows)

    def delete(self, kind: str, object_id: str) -> None:
        with self.lock:
            key = self._key_of[kind].pop(object_id)
            keys = self._keys[kind]
            del keys[bisect.bisect_left(keys, key)]
            self._objects[kind].pop(object_id)
            if self._db is not None:
                self._db.execute("DELETE FROM objects WHERE kind = ? AND id = ?", (kind, object_id))

    def get(self, kind: str, object_id: str) -> dict[str, Any] | None:
        return self._objects[kind].get(object_id)

    def newest_first(self, kind: str) -> Iterator[dict[str, Any]]:
        """Every object of a kind in list order: newest first."""
        objects = self._objects[kind]
        return iter([objects[key[2]] for key in reversed(self._keys[kind])])

    def all(self, kind: str) -> Iterator[dict[str, Any]]:
        return iter(list(self._objects[kind].values()))

    def list(
        self,
        kind: str,
        limit: int,
        created: dict[str, int] | None = None,
        starting_after: str | None = None,
        ending_before: str | None = None,
        match: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Page:
        """A page newest first, as Stripe pages: `starting_after` walks older, `ending_before` newer."""
        with self.lock:
            keys = self._keys[kind]
            lo, hi = 0, len(keys)
            created = created or {}
            if "gte" in created:
                lo = max(lo, bisect.bisect_left(keys, (created["gte"], -1, "")))
            if "gt" in created:
                lo = max(lo, bisect.bisect_left(keys, (created["gt"] + 1, -1, "")))
            if "lte" in created:
                hi = min(hi, bisect.bisect_left(keys, (created["lte"] + 1, -1, "")))
            if "lt" in created:
                hi = min(hi, bisect.bisect_left(keys, (created["lt"], -1, "")))
            objects = self._objects[kind]
            if ending_before is not None:
                start = bisect.bisect_right(keys, self._key_of[kind][ending_before])
                found: list[dict[str, Any]] = []
                i = max(start, lo)
                while i < hi and len(found) <= limit:
                    obj = objects[keys[i][2]]
                    if match is None or match(obj):
                        found.append(obj)
                    i += 1
                has_more = len(found) > limit
                return Page(list(reversed(found[:limit])), has_more)
            if starting_after is not None:
                hi = min(hi, bisect.bisect_left(keys, self._key_of[kind][starting_after]))
            found = []
            i = hi - 1
            while i >= lo and len(found) <= limit:
                obj = objects[keys[i][2]]
                if match is None or match(obj):
                    found.append(obj)
                i -= 1
            return Page(found[:limit], len(found) > limit)

    # -- clock ----------------------------------------------------------------------------
    def advance_clock(self, seconds: int) -> int:
        """Move the account's time forward (never back: Stripe's `created` only grows)."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward; got advance_s={seconds}")
        with self.lock:
            self.clock.offset_s += seconds
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO settings VALUES ('clock_offset_s', ?)", (str(self.clock.offset_s),))
            self._prune_idempotency()
        return self.clock.now()

    # -- idempotency ----------------------------------------------------------------------
    def idempotent_result(self, key: str) -> tuple[str, int, str] | None:
        """(fingerprint, status, body) saved under `key`, unless it is 24 hours old."""
        saved = self._idempotency.get(key)
        if saved is None or saved[3] <= self.clock.now() - IDEMPOTENCY_TTL_S:
            return None
        return saved[:3]

    def remember(self, key: str, fingerprint: str, status: int, body: str) -> None:
        with self.lock:
            saved_at = self.clock.now()
            self._idempotency[key] = (fingerprint, status, body, saved_at)
            if self._db is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO idempotency (key, fingerprint, status, body, saved_at) VALUES (?, ?, ?, ?, ?)",
                    (key, fingerprint, status, body, saved_at),
                )
            if len(self._idempotency) % 1024 == 0:
                self._prune_idempotency()

    def _prune_idempotency(self) -> None:
        cutoff = self.clock.now() - IDEMPOTENCY_TTL_S
        expired = [key for key, saved in self._idempotency.items() if saved[3] <= cutoff]
        for key in expired:
            del self._idempotency[key]
        if self._db is not None and expired:
            self._db.execute("DELETE FROM idempotency WHERE saved_at <= ?", (cutoff,))

    def reset(self) -> None:
        with self.lock:
            for kind in KINDS:
                self._objects[kind].clear()
                self._keys[kind].clear()
                self._key_of[kind].clear()
            self._idempotency.clear()
            self.clock.offset_s = 0
            if self._db is not None:
                self._db.execute("DELETE FROM objects")
                self._db.execute("DELETE FROM idempotency")
                self._db.execute("DELETE FROM settings")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
