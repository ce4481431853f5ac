"""The webhook receiver: Stripe events into the inbox, signature verified, answered fast.

`create_webhook_app(engine, secret)` is an ASGI app (`POST /webhooks/stripe`): it checks
`Stripe-Signature` with the official SDK's verifier (HMAC-SHA256, 5-minute tolerance),
stores the event in `inbox` (unique by event id) and answers 200 at once; applying is
the inbox's job. A bad signature, a stale timestamp or a malformed body is answered 400
and nothing is stored. The secret comes from STRIPE_WEBHOOK_SECRET and is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import stripe
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from recon_pipeline.names import DEFAULT_ACCOUNT
from recon_pipeline.sync.inbox import EventSource, MalformedEvent, other_version, parse_event, store_event

log = logging.getLogger(__name__)
TOLERANCE_S = 300


def create_webhook_app(
    engine: Engine,
    secret: str,
    tolerance: int = TOLERANCE_S,
    api_version: str | None = None,
    account: str = DEFAULT_ACCOUNT,
    connected: Mapping[str, str] | None = None,
) -> Starlette:
    """`api_version`: RECON_STRIPE_API_VERSION; an event rendered at another is stored and counted
    (`/health` says how many), with a warning naming the two versions.

    `account`: the Stripe account whose endpoint this is (its events are stored as its own);
    `connected`: {acct_...: name} of RECON_STRIPE_ACCOUNTS' connected accounts, whose events
    reach the platform's endpoint with their `account`."""
    connected = dict(connected or {})
    if not secret:
        raise ValueError("the webhook secret is empty; set STRIPE_WEBHOOK_SECRET (whsec_...)")
    mismatches = {"events": 0}  # events stored that were rendered at another API version

    async def receive(request: Request) -> JSONResponse:
        payload = await request.body()
        header = request.headers.get("stripe-signature", "")
        try:
            stripe.WebhookSignature.verify_header(payload.decode("utf-8"), header, secret, tolerance)
        except (stripe.SignatureVerificationError, UnicodeDecodeError) as error:
            log.warning("webhook refused: %s", getattr(error, "user_message", None) or type(error).__name__)
            return JSONResponse({"error": f"signature verification failed: {getattr(error, 'user_message', None) or error}"}, status_code=400)
        try:
            event = parse_event(payload)
        except MalformedEvent as error:
            return JSONResponse({"error": f"malformed event: {error}"}, status_code=400)
        origin = connected.get(str(event.get("account")), str(event["account"])) if event.get("account") else account
        stored = store_event(engine, event, EventSource.WEBHOOK, origin)
        if stored and other_version(event, api_version):
            mismatches["events"] += 1
            log.warning("event %s was rendered at API version %s, not RECON_STRIPE_API_VERSION=%s (see the README's upgrade runbook)", event["id"], event.get("api_version"), api_version)
        return JSONResponse({"received": True, "duplicate": not stored})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "api_version": api_version, "api_version_mismatches": mismatches["events"]})

    return Starlette(routes=[Route("/webhooks/stripe", receive, methods=["POST"]), Route("/health", health, methods=["GET"])])
