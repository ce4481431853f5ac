"""`drift_history`: every drift row ever found, appended by each reconciliation, kept N days.

A plain table in the catalog database, so "which products drifted last week, and for how
long" is a SQL query (the README shows it). This module is the table's only writer.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
from sqlalchemy import Engine, delete, insert

from recon_pipeline.catalog.schema import drift_history

CHUNK = 5000


def _text(value: object) -> str | None:
    """A drift value as text (NULL for a missing one): the history compares nothing, people read it."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return str(value)


def append_drift(engine: Engine, drift: pd.DataFrame, *, run_id: str | None, account: str, observed_at: dt.datetime, keep_days: float) -> int:
    """Appends the drift rows of one reconciliation, and deletes rows older than `keep_days`, in one transaction."""
    columns = ("product_id", "lookup_key", "kind", "field", "local_value", "stripe_value")
    rows = [
        {"run_id": run_id, "observed_at": observed_at, "account": account, **{column: _text(value) for column, value in zip(columns, values, strict=True)}}
        for values in drift.loc[:, list(columns)].itertuples(index=False, name=None)
    ]
    with engine.begin() as conn:
        conn.execute(delete(drift_history).where(drift_history.c.observed_at < observed_at - dt.timedelta(days=keep_days)))
        for start in range(0, len(rows), CHUNK):
            conn.execute(insert(drift_history), rows[start : start + CHUNK])
    return len(rows)
