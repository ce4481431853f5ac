"""Keys Stripe refused: remembered (by digest), so nothing calls Stripe with them again.

A 401 or 403 cannot be cured by retrying: the worker would back off and dead-letter every
change, and each scheduled or sensor-launched run would fail and alert again. Instead the
first refusal is recorded here; the worker stops saying why, runs fail once, and sensors
and schedules launch nothing while the key in use is the refused one. A different key
starts afresh; the same key is tried once more only when a command starts
(`check_key`), in case Stripe accepts it again (a restricted key given its permissions).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from recon_pipeline.catalog.schema import stripe_refusals
from recon_pipeline.names import DEFAULT_ACCOUNT
from recon_pipeline.stripe_api import CredentialsRefused, StripeGateway


def record_refusal(engine: Engine, gateway: StripeGateway, refused: CredentialsRefused) -> None:
    values = {"key_fingerprint": refused.key_fingerprint or gateway.key_fingerprint, "refused_at": dt.datetime.now(dt.UTC), "status": refused.status or 401, "code": refused.code}
    try:
        with engine.begin() as conn:
            conn.execute(stripe_refusals.insert().values(**values))
    except IntegrityError:
        pass  # already remembered


def refusal(engine: Engine, gateway: StripeGateway) -> str | None:
    """Why the key in use was refused, if it was; None for a key Stripe has not refused."""
    with engine.connect() as conn:
        row = conn.execute(select(stripe_refusals).where(stripe_refusals.c.key_fingerprint == gateway.key_fingerprint)).mappings().first()
    if row is None:
        return None
    what = "the API key" if row["status"] == 401 else "what the API key may do"
    where = "STRIPE_API_KEY" if gateway.account == DEFAULT_ACCOUNT else f"the key of Stripe account {gateway.account!r}"
    return f"Stripe refused {what} in {where} ({row['status']} {row['code']}) at {row['refused_at']:%Y-%m-%d %H:%M} UTC; nothing calls Stripe with it until it changes"


def check_key(engine: Engine, gateway: StripeGateway) -> None:
    """At a command's start: a key refused before is tried once more (one read); refused again, CredentialsRefused."""
    if refusal(engine, gateway) is None:
        return
    gateway.request("get", "/v1/products", {"limit": 1})  # raises CredentialsRefused if it still is
    with engine.begin() as conn:
        conn.execute(delete(stripe_refusals).where(stripe_refusals.c.key_fingerprint == gateway.key_fingerprint))
