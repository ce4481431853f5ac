"""The emulator's HTTP face: Stripe's routes, auth, idempotency and faults, as an ASGI app.

Order of a request, as Stripe's edge would have it: auth (401), API version (400), outage
(503), rate limits (429), injected failure (500), then idempotency replay or execution:
parameters checked against the spec (`spec.check_params`), expansions checked, the work
done. An idempotent result is saved for a request that executed (2xx, 5xx), never for one
refused (4xx), and replayed for 24 hours of the account's clock. Injected latency is the time the work takes: a second
request with an idempotency key still in flight gets Stripe's 409 `idempotency_key_in_use`.
A dropped connection (fault `drop_rate`) cuts the response either before the work or after
it, when the write has happened and only its answer is lost.

Each concern is one piece below: `authenticate`, `negotiate_version`, `inject_faults`,
`Idempotency`, and `Api.execute` (validation, then the account's work); `Api.handle` runs them
in that order, `create_app` only lists the routes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from recon_pipeline.emulator.search import SearchPage
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
        try:
            return base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except ValueError:
            return ""
    return ""


def authenticate(request: Request) -> None:
    """Auth: a test secret key, Bearer or Basic, as Stripe's 401s say it."""
    key = api_key_of(request.headers.get("authorization", ""))
    if not key:
        raise errors.StripeApiError(
            401,
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    if not key.startswith(("sk_test_", "rk_test_")):
        raise errors.StripeApiError(401, f"Invalid API Key provided: {key[:8]}{'*' * 4}{key[-4:]}")


def negotiate_version(request: Request) -> None:
    """Version: a Stripe-Version header must name a version the emulator answers as (400 otherwise)."""
    version = request.headers.get("stripe-version")
    if version is not None:
        check_version(version)


def inject_faults(faults: Faults, request: Request, unit: str) -> str | None:
    """Faults, in Stripe's order: outage (503), rate limits (429), failure (500), a refused path
    (400); returns where a dropped connection cuts the answer ("before" or "after" the work), if it does."""
    if faults.outage:
        raise errors.StripeApiError(503, "Stripe is temporarily unavailable (emulated outage).", type_="api_error", headers={"Stripe-Should-Retry": "true"})
    if not faults.admit(unit):
        extra = {"Retry-After": str(faults.retry_after)} if faults.retry_after else {}
        raise errors.StripeApiError(429, RATE_LIMIT_MESSAGE, code="rate_limit", headers=extra)
    if faults.should_fail():
        raise errors.StripeApiError(500, "An unknown error occurred (emulated failure).", type_="api_error")
    if request.method == "POST" and any(request.url.path.startswith(p) for p in faults.refuse_paths or []):
        raise errors.StripeApiError(400, "This object cannot be changed (refused by the emulator's fault injection).", code="resource_refused")
    return faults.drop_point()


async def form_params(request: Request) -> dict[str, Any]:
    """The request's parameters: its query string, and for a write its form body, decoded as Stripe nests them."""
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    if request.method in ("POST", "DELETE"):
        try:
            body = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise errors.StripeApiError(400, "Invalid request: the body is not valid UTF-8 form data.") from None
        pairs += parse_qsl(body, keep_blank_values=True)
    return decode(pairs)


@dataclass
class Idempotency:
    """Stripe's idempotency keys: a key replays the first result of its request (same parameters
    only), another request with a key still in flight gets 409, and only executed requests (2xx,
    5xx) are remembered, never refused ones (4xx)."""

    state: EmulatorState
    in_flight: set[str] = field(default_factory=set)

    def begin(self, request: Request, raw: Mapping[str, Any], headers: dict[str, str]) -> tuple[str | None, str, Response | None]:
        """(the key, the request's fingerprint, the replayed answer if the key has one)."""
        key = request.headers.get("idempotency-key") if request.method in ("POST", "DELETE") else None
        if not key:
            return None, "", None
        fingerprint = hashlib.sha256(json.dumps([request.method, request.url.path, raw], sort_keys=True).encode()).hexdigest()
        stored = self.state.idempotent_result(key)
        if stored is not None:
            if stored[0] != fingerprint:
                raise errors.StripeApiError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. "
                    f"Try using a key other than '{key}' if you meant to execute a different request.",
                    type_="idempotency_error",
                )
            replayed = Response(stored[2], status_code=stored[1], media_type="application/json", headers={**headers, "Idempotent-Replayed": "true", "Idempotency-Key": key})
            return key, fingerprint, replayed
        if key in self.in_flight:
            raise errors.StripeApiError(409, IN_FLIGHT_MESSAGE, type_="idempotency_error", code="idempotency_key_in_use")
        headers["Idempotency-Key"] = key
        self.in_flight.add(key)
        return key, fingerprint, None

    def remember(self, key: str | None, fingerprint: str, status: int, body: Any) -> None:
        if key and not 400 <= status < 500:
            self.state.remember(key, fingerprint, status, json.dumps(body))

    def end(self, key: str | None) -> None:
        if key:
            self.in_flight.discard(key)


@dataclass(frozen=True)
class Operation:
    """One of Stripe's routes: the spec's path, the kind of object, and the work (validation and dispatch)."""

    method: str
    template: str
    kind: str
    handler: Callable[..., Any]
    listed: bool = False
    reveals: tuple[str, ...] = ()
    searched: bool = False  # a search: `expand[]=total_count` counts the matches

    @property
    def unit(self) -> str:
        """What Stripe rate-limits and the stats count: `GET /v1/products/{id}`."""
        return f"{self.method} {re.sub(r'{[^}]+}', '{id}', self.template)}"


class Api:
    """Requests to Stripe's routes, one concern after the other (see the module docstring):
    `authenticate`, `negotiate_version`, `inject_faults`, `Idempotency`, then `execute`
    (validation against the spec, then the account's work)."""

    def __init__(self, state: EmulatorState, faults: Faults, account: Account, problems: list[str] | None):
        self.state, self.faults, self.account, self.problems = state, faults, account, problems
        self.stats: Counter = Counter()
        self.idempotency = Idempotency(state)

    def route(self, operation: Operation) -> Route:
        async def endpoint(request: Request) -> Response | ASGIApp:
            return await self.handle(request, operation)

        return Route(operation.template, endpoint, methods=[operation.method])

    async def handle(self, request: Request, operation: Operation) -> Response | ASGIApp:
        request_id = "req_" + secrets.token_hex(7)
        headers = {"Request-Id": request_id, "Stripe-Version": request.headers.get("stripe-version") or API_VERSION}
        self.stats["requests"] += 1
        self.stats[operation.unit] += 1
        try:
            authenticate(request)
            negotiate_version(request)
            drop = inject_faults(self.faults, request, operation.unit)
            if drop == "before":
                return self._dropped()
            raw = await form_params(request)
            key, fingerprint, replayed = self.idempotency.begin(request, raw, headers)
            if replayed is not None:
                self.stats[f"status_{replayed.status_code}"] += 1
                return replayed
            try:
                await self._latency()
                status, body = self.execute(request, operation, raw, {"id": request_id, "idempotency_key": key})
                self.idempotency.remember(key, fingerprint, status, body)
            finally:
                self.idempotency.end(key)
            if drop == "after":
                return self._dropped()
            return self.answer(operation, status, body, headers)
        except errors.StripeApiError as error:
            return self.answer(operation, error.status, error.body(), {**headers, **error.headers})

    def execute(self, request: Request, operation: Operation, raw: dict[str, Any], meta: dict[str, Any]) -> tuple[int, Any]:
        """Validation (parameters and expansions, by the spec), then the work, under the state's lock."""
        with self.state.lock:
            try:
                params = check_params(request.method, operation.template, raw)
                paths = params.pop("expand", [])
                counted = operation.searched and "total_count" in paths
                expand = self.account.check_expand(operation.kind, [p for p in paths if not (counted and p == "total_count")], operation.listed)
                result = operation.handler(request.path_params, params, meta)
                return 200, self.render(result, expand, request.url.path, operation.reveals, counted)
            except errors.StripeApiError as error:
                return error.status, error.body()

    def render(self, result: Any, expand: list[str], url: str, reveals: tuple[str, ...], counted: bool = False) -> Any:
        if isinstance(result, Page):
            return {"object": "list", "data": [self.account.render(obj, expand) for obj in result.data], "has_more": result.has_more, "url": url}
        if isinstance(result, SearchPage):
            data = [self.account.render(obj, expand) for obj in result.data]
            found = {"object": "search_result", "data": data, "has_more": result.has_more, "next_page": result.next_page, "url": url}
            return {**found, "total_count": result.total_count} if counted else found
        return {**self.account.render(result, expand), **{name: result[name] for name in reveals}}

    def answer(self, operation: Operation, status: int, body: Any, headers: dict[str, str]) -> Response:
        self.stats[f"status_{status}"] += 1
        if self.problems is not None:
            self.problems.extend(f"{operation.method} {operation.template} {status}: {problem}" for problem in response_problems(operation.method, operation.template, status, body))
        return _json(status, body, headers)

    async def _latency(self) -> None:
        """Injected latency is the time the work takes (an idempotency key stays in flight meanwhile)."""
        delay = self.faults.delay_s()
        if delay:
            self.stats["slow"] += delay > self.faults.latency_ms / 1000
            await asyncio.sleep(delay)

    def _dropped(self) -> ASGIApp:
        self.stats["dropped"] += 1
        return _drop_connection


def admin_routes(api: Api, deliverer: Deliverer) -> list[Route]:
    """The emulator's own routes under /_emulator/: faults, fixtures, stats, reset, clock, account."""
    state, faults, account, stats, in_flight = api.state, api.faults, api.account, api.stats, api.idempotency.in_flight

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

    return [
        Route("/_emulator/faults", admin_faults_get, methods=["GET"]),
        Route("/_emulator/faults", admin_faults_post, methods=["POST"]),
        Route("/_emulator/fixtures", admin_fixtures, methods=["POST"]),
        Route("/_emulator/stats", admin_stats, methods=["GET"]),
        Route("/_emulator/reset", admin_reset, methods=["POST"]),
        Route("/_emulator/clock", admin_clock, methods=["GET", "POST"]),
        Route("/_emulator/account", admin_account, methods=["GET", "POST"]),
    ]


def create_app(state: EmulatorState | None = None, faults: Faults | None = None, validate_responses: bool = False, connected_id: str | None = None) -> Starlette:
    """The emulator. With `validate_responses`, every body it answers is checked against the
    vendored spec and each difference kept in `app.state.problems` (the tests assert none)."""
    state = state if state is not None else EmulatorState()
    problems: list[str] | None = [] if validate_responses else None
    faults = faults if faults is not None else Faults()
    deliverer = Deliverer(state)
    account = Account(state, on_event=deliverer.schedule, connected_id=connected_id)
    api = Api(state, faults, account, problems)
    endpoints = Endpoints(account)
    operations = [
        Operation("GET", "/v1/products/search", "product", lambda pp, p, m: account.search("product", p), listed=True, searched=True),
        Operation("GET", "/v1/prices/search", "price", lambda pp, p, m: account.search("price", p), listed=True, searched=True),
        Operation("POST", "/v1/products", "product", lambda pp, p, m: account.create_product(p, m)),
        Operation("GET", "/v1/products", "product", lambda pp, p, m: account.list_products(p), listed=True),
        Operation("GET", "/v1/products/{id}", "product", lambda pp, p, m: account.product(pp["id"])),
        Operation("POST", "/v1/products/{id}", "product", lambda pp, p, m: account.update_product(pp["id"], p, m)),
        Operation("DELETE", "/v1/products/{id}", "product", lambda pp, p, m: account.delete_product(pp["id"], m)),
        Operation("POST", "/v1/prices", "price", lambda pp, p, m: account.create_price(p, m)),
        Operation("GET", "/v1/prices", "price", lambda pp, p, m: account.list_prices(p), listed=True),
        Operation("GET", "/v1/prices/{price}", "price", lambda pp, p, m: account.price(pp["price"])),
        Operation("POST", "/v1/prices/{price}", "price", lambda pp, p, m: account.update_price(pp["price"], p, m)),
        Operation("GET", "/v1/events", "event", lambda pp, p, m: account.list_events(p), listed=True),
        Operation("GET", "/v1/events/{id}", "event", lambda pp, p, m: account.event(pp["id"])),
        Operation("POST", "/v1/webhook_endpoints", "webhook_endpoint", lambda pp, p, m: endpoints.create(p), reveals=("secret",)),
        Operation("GET", "/v1/webhook_endpoints", "webhook_endpoint", lambda pp, p, m: endpoints.list(p), listed=True),
        Operation("GET", "/v1/webhook_endpoints/{webhook_endpoint}", "webhook_endpoint", lambda pp, p, m: endpoints.get(pp["webhook_endpoint"])),
        Operation("POST", "/v1/webhook_endpoints/{webhook_endpoint}", "webhook_endpoint", lambda pp, p, m: endpoints.update(pp["webhook_endpoint"], p)),
        Operation("DELETE", "/v1/webhook_endpoints/{webhook_endpoint}", "webhook_endpoint", lambda pp, p, m: endpoints.delete(pp["webhook_endpoint"])),
    ]
    routes = [
        *(api.route(operation) for operation in operations),
        *admin_routes(api, deliverer),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        error = errors.StripeApiError(404, f"Unrecognized request URL ({request.method}: {request.url.path}).")
        return _json(404, error.body())

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.account = account
    app.state.faults = faults
    app.state.problems = problems
    return app
