"""The audit trail: every change applied to either side and every conflict decision.

Catalog edits (`changes.py`: by command or by the Python API), captured writes (the capture
triggers, with the database user) and the inbox's decisions each write rows (`record`);
`recon-pipeline audit` reads them (`trail`): who changed what, before and after, and why.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from recon_pipeline.catalog.schema import audit
from recon_pipeline.names import SettingsError

_AGO = re.compile(r"^(\d+)\s*([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def record(conn: Connection, actor: str, product_id: str, field: str | None, before: Any, after: Any, decision: str, reason: str, event_id: str | None) -> None:
    """One decision, in the caller's transaction."""
    change = {"product_id": product_id, "field": field, "before": before, "after": after}
    conn.execute(insert(audit).values(at=dt.datetime.now(dt.UTC), actor=actor, **change, decision=decision, reason=reason, event_id=event_id))


@dataclass
class AuditEntry:
    at: dt.datetime
    actor: str
    product_id: str | None
    field: str | None
    before: Any
    after: Any
    decision: str
    reason: str
    event_id: str | None

    def line(self) -> str:
        """`2026-11-25 14:02:11  sku_1  name: 'Old' -> 'New'  by stripe  conflict_local_wins: why (evt_...)`."""
        at = self.at if self.at.tzinfo else self.at.replace(tzinfo=dt.UTC)
        what = f"{self.field}: {_shown(self.before)} -> {_shown(self.after)}" if self.field else f"{_shown(self.before)} -> {_shown(self.after)}"
        event = f" ({self.event_id})" if self.event_id else ""
        return f"{at:%Y-%m-%d %H:%M:%S}  {self.product_id or '-'}  {what}  by {self.actor}  {self.decision}: {self.reason}{event}"


def _shown(value: Any) -> str:
    return "none" if value is None else repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """`--since`: an ISO date or time (UTC unless it says otherwise), or an age such as 30m, 6h, 7d."""
    now = now or dt.datetime.now(dt.UTC)
    ago = _AGO.match(text.strip())
    if ago:
        return now - dt.timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise SettingsError(f"--since {text!r} is neither a date or time (2026-11-24, 2026-11-24T10:00) nor an age (30m, 6h, 7d).") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def trail(engine: Engine, product_id: str | None = None, since: dt.datetime | None = None, limit: int = 200) -> list[AuditEntry]:
    """The newest `limit` entries, oldest first: of one product, or all; since a moment, or ever."""
    query = select(audit).order_by(audit.c.id.desc()).limit(limit)
    if product_id is not None:
        query = query.where(audit.c.product_id == product_id)
    if since is not None:
        query = query.where(audit.c.at >= since)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [AuditEntry(**{k: row[k] for k in AuditEntry.__dataclass_fields__}) for row in reversed(rows)]
