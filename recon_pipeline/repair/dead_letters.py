"""The dead_letter table: what exhausted its retries, with the reason; replayable until resolved.

Its one owner: the repairer and the outbox record letters here (`record_dead_letter`),
the CLI and the checks read them, and a replay (`replay.py`) resolves them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from recon_pipeline.catalog.schema import dead_letter


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record_dead_letter(
    conn: Connection, source: str, product_id: str | None, action: str, payload: Mapping[str, Any], reason: str, attempts: int, account: str
) -> None:
    """Park something that could not be written in a Stripe account, with Stripe's reason (in the caller's transaction)."""
    conn.execute(
        insert(dead_letter).values(
            account=account,
            source=str(source),
            product_id=product_id,
            action=action,
            payload=dict(payload),
            reason=reason,
            attempts=attempts,
            failed_at=_now(),
        )
    )


def list_dead_letters(engine: Engine, include_resolved: bool = False, ids: list[int] | None = None) -> list[dict[str, Any]]:
    query = select(dead_letter).order_by(dead_letter.c.id)
    if not include_resolved:
        query = query.where(dead_letter.c.resolved_at.is_(None))
    if ids is not None:
        query = query.where(dead_letter.c.id.in_(ids))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def open_dead_letters(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(dead_letter).where(dead_letter.c.resolved_at.is_(None))).scalar_one()


def resolve(engine: Engine, letter_id: int, resolution: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(dead_letter).where(dead_letter.c.id == letter_id).values(resolved_at=_now(), resolution=resolution))


def still_failing(engine: Engine, letter_id: int, reason: str, attempts: int = 1) -> None:
    """A replay that failed again: the requests it sent added to the letter's, with the newest reason."""
    with engine.begin() as conn:
        conn.execute(
            update(dead_letter).where(dead_letter.c.id == letter_id).values(attempts=dead_letter.c.attempts + attempts, reason=reason, failed_at=_now())
        )
