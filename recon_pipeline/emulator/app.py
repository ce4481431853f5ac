"""The emulator's HTTP face: Stripe's routes, auth, idempotency and faults, as an ASGI app.

Order of a request, as Stripe's edge would have it: auth (401), API version (400), outage
(503), rate limits (429), injected failure (500), then idempotency replay or execution:
parameters checked against the spec (`spec.check_params`), expansions checked, the work
done. An idempotent result is saved for a request that executed (2xx, 5xx), never for one
refused (4xx), and replayed for 24 hours of the account's clock. Injected latency is the time the work takes: a second
request with an idempotency key still in flight gets Stripe's 409 `idempotency_key_in_use`.
A dropped connection (fault `drop_rate`) cuts the response either before the work or after
it, when the write has happened and only its answer is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from recon_pipeline.emulator import errors
from recon_pipeline.emulator.faults import Faults
from recon_pipeline.emulator.params import decode
from recon_pipeline.emulator.resources import API_VERSION, Account
from recon_pipeline.emulator.spec import check_params, check_version, response_problems
from recon_pipeline.emulator.state import EmulatorState, Page
from recon_pipeline.emulator.webhooks import Deliverer, Endpoints

log = logging.getLogger(__name__)


class ConnectionDropped(Exception):
    """Raised after a response has started, so that uvicorn closes the connection mid-response."""


class _DropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


logging.getLogger("uvicorn.error").addFilter(_DropFilter())


async def _drop_connection(scope, receive, send) -> None:
    # Headers promise a body that never comes: the client sees the connection cut mid-response.
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
    raise ConnectionDropped("emulated dropped connection")


IN_FLIGHT_MESSAGE = (
    "There is currently another in-progress request using this Idempotent Key (probably because of a timeout). "
    "Please retry this request later."
)
RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits."
)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def api_key_of(header: str) -> str:
    """The API key of an Authorization header, Bearer or Basic (key as the user name), as Stripe takes it."""
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    if header.lower().startswith("basic "):
        import base64

        try:
            return base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except ValueError:
            return ""
    return ""


def _check_auth(request: Request) -> None:
    key = api_key_of(request.headers.get("authorization", ""))
    if not key:
        raise errors.StripeApiError(
            401,
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    if not key.startswith(("sk_test_", "rk_test_")):
        raise errors.StripeApiError(401, f"Invalid API Key provided: {key[:8]}{'*' * 4}{key[-4:]}")


def create_app(state: EmulatorState | None = None, faults: Faults | None = None, validate_responses: bool = False, connected_id: str | None = None) -> Starlette:
    """The emulator. With `validate_responses`, every body it answers is checked against the
    vendored spec and each difference kept in `app.state.problems` (the tests assert none)."""
    state = state if state is not None else EmulatorState()
    problems: list[str] | None = [] if validate_responses else None
    faults = faults if faults is not None else Faults()
    deliverer = Deliverer(state)
    account = Account(state, on_event=deliverer.schedule, connected_id=connected_id)
    stats: Counter = Counter()
    in_flight: set[str] = set()

    async def params_of(request: Request) -> dict[str, Any]:
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        if request.method in ("POST", "DELETE"):
            try:
                body = (await request.body()).decode("utf-8")
            except UnicodeDecodeError:
                raise errors.StripeApiError(400, "Invalid request: the body is not valid UTF-8 form data.") from None
            pairs += parse_qsl(body, keep_blank_values=True)
        return decode(pairs)

    def answer(method: str, template: str, status: int, body: Any, headers: dict[str, str]) -> Response:
        stats[f"status_{status}"] += 1
        if problems is not None:
            problems.extend(f"{method} {template} {status}: {problem}" for problem in response_problems(method, template, status, body))
        return _json(status, body, headers)

    def api(method: str, template: str, kind: str, handler: Callable[..., Any], listed: bool = False, reveals: tuple[str, ...] = ()) -> Route:
        """A route of `template` (the spec's path), its parameters checked by the spec."""
        unit = f"{method.upper()} {re.sub(r'{[^}]+}', '{id}', template)}"  # what Stripe rate-limits and the stats count: GET /v1/products/{id}

        async def endpoint(request: Request) -> Response | ASGIApp:
            request_id = "req_" + secrets.token_hex(7)
            version = request.headers.get("stripe-version")
            headers = {"Request-Id": request_id, "Stripe-Version": version or API_VERSION}
            key = unit
            stats["requests"] += 1
            stats[key] += 1
            try:
                _check_auth(request)
                if version is not None:
                    check_version(version)
                if faults.outage:
                    raise errors.StripeApiError(503, "Stripe is temporarily unavailable (emulated outage).", type_="api_error", headers={"Stripe-Should-Retry": "true"})
                if not faults.admit(key):
                    extra = {"Retry-After": str(faults.retry_after)} if faults.retry_after else {}
                    raise errors.StripeApiError(429, RATE_LIMIT_MESSAGE, code="rate_limit", headers=extra)
                if faults.should_fail():
                    raise errors.StripeApiError(500, "An unknown error occurred (emulated failure).", type_="api_error")
                if request.method == "POST" and any(request.url.path.startswith(p) for p in faults.refuse_paths or []):
                    raise errors.StripeApiError(400, "This object cannot be changed (refused by the emulator's fault injection).", code="resource_refused")
                drop = faults.drop_point()
                if drop == "before":
                    stats["dropped"] += 1
                    return _drop_connection
                raw = await params_of(request)
                idem_key = request.headers.get("idempotency-key") if request.method in ("POST", "DELETE") else None
                fingerprint = ""
                if idem_key:
                    fingerprint = hashlib.sha256(json.dumps([request.method, request.url.path, raw], sort_keys=True).encode()).hexdigest()
                    stored = state.idempotent_result(idem_key)
                    if stored is not None:
                        if stored[0] != fingerprint:
                            raise errors.StripeApiError(
                                400,
                                "Keys for idempotent requests can only be used with the same parameters they were first used with. "
                                f"Try using a key other than '{idem_key}' if you meant to execute a different request.",
                                type_="idempotency_error",
                            )
                        stats[f"status_{stored[1]}"] += 1
                        return Response(stored[2], status_code=stored[1], media_type="application/json", headers={**headers, "Idempotent-Replayed": "true", "Idempotency-Key": idem_key})
                    if idem_key in in_flight:
                        raise errors.StripeApiError(409, IN_FLIGHT_MESSAGE, type_="idempotency_error", code="idempotency_key_in_use")
                    headers["Idempotency-Key"] = idem_key
                    in_flight.add(idem_key)
                try:
                    delay = faults.delay_s()
                    if delay:
                        stats["slow"] += delay > faults.latency_ms / 1000
                        await asyncio.sleep(delay)
                    meta = {"id": request_id, "idempotency_key": idem_key}
                    with state.lock:
                        try:
                            params = check_params(request.method, template, raw)
                            expand = account.check_expand(kind, params.pop("expand", []), listed)
                            result = handler(request.path_params, params, meta)
                            status, body = 200, render(result, expand, request.url.path, reveals)
                        except errors.StripeApiError as error:
                            status, body = error.status, error.body()
                        # Stripe saves the result of a request that executed, not of one it refused (4xx).
                        if idem_key and not 400 <= status < 500:
                            state.remember(idem_key, fingerprint, status, json.dumps(body))
                finally:
                    in_flight.discard(idem_key)
                if drop == "after":
                    stats["dropped"] += 1
                    return _drop_connection
                return answer(request.method, template, status, body, headers)
            except errors.StripeApiError as error:
                return answer(request.method, template, error.status, error.body(), {**headers, **error.headers})

        return Route(template, endpoint, methods=[method])

    def render(result: Any, expand: list[str], url: str, reveals: tuple[str, ...]) -> Any:
        if isinstance(result, Page):
            return {"object": "list", "data": [account.render(obj, expand) for obj in result.data], "has_more": result.has_more, "url": url}
        return {**account.render(result, expand), **{name: result[name] for name in reveals}}

    def admin_faults_get(request: Request) -> Response:
        return JSONResponse(faults.as_dict())

    async def admin_faults_post(request: Request) -> Response:
        try:
            faults.update(await request.json())
        except (ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse(faults.as_dict())

    async def admin_fixtures(request: Request) -> Response:
        body = await request.json()
        with state.lock:
            loaded = account.load_fixtures(body.get("products", []))
        return JSONResponse({"products": loaded})

    def admin_stats(request: Request) -> Response:
        status_counts = {k.removeprefix("status_"): v for k, v in stats.items() if k.startswith("status_")}
        endpoints = {k: v for k, v in stats.items() if " " in k}
        return JSONResponse(
            {
                "requests": stats["requests"],
                "status_counts": status_counts,
                "rate_limited": status_counts.get("429", 0),
                "server_errors": status_counts.get("500", 0),
                "dropped_connections": stats["dropped"],
                "slow_requests": stats["slow"],
                "idempotency_keys_in_flight": len(in_flight),
                "endpoints": endpoints,
                "objects": {kind: sum(1 for _ in state.all(kind)) for kind in ("product", "price", "event")},
                "webhooks": {"delivered": deliverer.delivered, "failed_attempts": deliverer.failed_attempts},
            }
        )

    def admin_reset(request: Request) -> Response:
        state.reset()
        stats.clear()
        return JSONResponse({"reset": True})

    async def admin_clock(request: Request) -> Response:
        if request.method == "POST":
            try:
                state.advance_clock(int((await request.json()).get("advance_s", 0)))
            except (ValueError, TypeError, AttributeError) as error:
                return JSONResponse({"error": f"{error}; send {{\"advance_s\": <seconds, 0 or more>}}"}, status_code=400)
        return JSONResponse({"now": state.clock.now(), "offset_s": state.clock.offset_s})

    async def admin_account(request: Request) -> Response:
        """The account's default API version (what an upgrade in the dashboard changes): events are rendered at it."""
        if request.method == "POST":
            version = str((await request.json()).get("api_version", ""))
            try:
                account.api_version = check_version(version)
            except errors.StripeApiError as error:
                return JSONResponse(error.body(), status_code=error.status)
        return JSONResponse({"api_version": account.api_version})

    endpoints = Endpoints(account)
    routes = [
        api("POST", "/v1/products", "product", lambda pp, p, m: account.create_product(p, m)),
        api("GET", "/v1/products", "product", lambda pp, p, m: account.list_products(p), listed=True),
        api("GET", "/v1/products/{id}", "product", lambda pp, p, m: account.product(pp["id"])),
        api("POST", "/v1/products/{id}", "product", lambda pp, p, m: account.update_product(pp["id"], p, m)),
        api("DELETE", "/v1/products/{id}", "product", lambda pp, p, m: account.delete_product(pp["id"], m)),
        api("POST", "/v1/prices", "price", lambda pp, p, m: account.create_price(p, m)),
        api("GET", "/v1/prices", "price", lambda pp, p, m: account.list_prices(p), listed=True),
        api("GET", "/v1/prices/{price}", "price", lambda pp, p, m: account.price(pp["price"])),
        api("POST", "/v1/prices/{price}", "price", lambda pp, p, m: account.update_price(pp["price"], p, m)),
        api("GET", "/v1/events", "event", lambda pp, p, m: account.list_events(p), listed=True),
        api("GET", "/v1/events/{id}", "event", lambda pp, p, m: account.event(pp["id"])),
        api("POST", "/v1/webhook_endpoints", "webhook_endpoint", lambda pp, p, m: endpoints.create(p), reveals=("secret",)),
        api("GET", "/v1/webhook_endpoints", "webhook_endpoint", lambda pp, p, m: endpoints.list(p), listed=True),
        api("GET", "/v1/webhook_endpoints/{webhook_endpoint}", "webhook_endpoint", lambda pp, p, m: endpoints.get(pp["webhook_endpoint"])),
        api("POST", "/v1/webhook_endpoints/{webhook_endpoint}", "webhook_endpoint", lambda pp, p, m: endpoints.update(pp["webhook_endpoint"], p)),
        api("DELETE", "/v1/webhook_endpoints/{webhook_endpoint}", "webhook_endpoint", lambda pp, p, m: endpoints.delete(pp["webhook_endpoint"])),
        Route("/_emulator/faults", admin_faults_get, methods=["GET"]),
        Route("/_emulator/faults", admin_faults_post, methods=["POST"]),
        Route("/_emulator/fixtures", admin_fixtures, methods=["POST"]),
        Route("/_emulator/stats", admin_stats, methods=["GET"]),
        Route("/_emulator/reset", admin_reset, methods=["POST"]),
        Route("/_emulator/clock", admin_clock, methods=["GET", "POST"]),
        Route("/_emulator/account", admin_account, methods=["GET", "POST"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        error = errors.StripeApiError(404, f"Unrecognized request URL ({request.method}: {request.url.path}).")
        return _json(404, error.body())

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.account = account
    app.state.faults = faults
    app.state.problems = problems
    return app
