"""Several emulated Stripe accounts behind one port, each with its own objects, events, faults and stats.

Stripe keeps every account apart: a key belongs to one account, and a platform's key reaches
a connected account through the `Stripe-Account` header. The emulator does the same:

- `Stripe-Account: acct_...` -> that account, a connected one: its events carry `account`;
- a key `sk_test_acct_<name>` (or `rk_test_acct_<name>`) -> the account `acct_<name>`;
- any other test key -> the emulator's own account (the one every single-account test uses).

An account reached by its own key is made the first time it is used (a key always belongs
to an account). A connected account must be connected first, as on Stripe:
`POST /_emulator/accounts {"id": "acct_..."}` (or any `/_emulator/` call with its
`Stripe-Account` header, fixtures included); an API request for one that is not gets Stripe's
403. `GET /_emulator/accounts` lists them. The admin endpoints take the same header, so a
test can set one account's faults. With a state file, each account keeps its own beside it
(`state.db` -> `state.acct_eu.db`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from recon_pipeline.emulator.app import _json, api_key_of
from recon_pipeline.emulator.errors import StripeApiError

ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9_]{1,64}")
OWN_ACCOUNT = "acct_emulator"
_KEY_ACCOUNT = re.compile(r"^(?:sk|rk)_test_(acct_[A-Za-z0-9_]{1,64})$")


def account_of(headers: dict[bytes, bytes]) -> tuple[str, bool]:
    """Which account a request addresses, by its Stripe-Account header (a connected account:
    True) or its key (False)."""
    connected = headers.get(b"stripe-account", b"").decode("latin-1").strip()
    if connected:
        return connected, True
    match = _KEY_ACCOUNT.match(api_key_of(headers.get(b"authorization", b"").decode("latin-1")))
    return (match.group(1), False) if match else (OWN_ACCOUNT, False)


def state_path_of(path: str | None, account: str) -> str | None:
    """Where an account's state lives beside the emulator's own state file (None: in memory)."""
    if path is None or account == OWN_ACCOUNT:
        return path
    file = Path(path)
    return str(file.with_name(f"{file.stem}.{account}{file.suffix}"))


class AccountRouter:
    """An ASGI app handing each request to its account's emulator app (made on first use)."""

    def __init__(self, own: Starlette, make: Callable[[str, bool], Starlette], states: list | None = None):
        self.apps: dict[str, Starlette] = {OWN_ACCOUNT: own}
        self.states = states if states is not None else []  # every account's EmulatorState, for closing
        self._make = make
        self._lock = threading.Lock()

    def app_for(self, account: str, connected: bool = False) -> Starlette:
        """The account's app; made now if it was never addressed (`connected`: through Stripe-Account,
        so its events carry `account`, as a connected account's do)."""
        with self._lock:
            if account not in self.apps:
                self.apps[account] = self._make(account, connected)
            return self.apps[account]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.apps[OWN_ACCOUNT](scope, receive, send)
            return
        if scope["path"] == "/_emulator/accounts":
            response = await self._accounts(Request(scope, receive))
            await response(scope, receive, send)
            return
        headers = dict(scope["headers"])
        account, connected = account_of(headers)
        if not ACCOUNT_ID.fullmatch(account):
            error = StripeApiError(400, f"The Stripe-Account header {account!r} is not an account id (acct_...).", code="account_invalid")
            await _json(error.status, error.body())(scope, receive, send)
            return
        if connected and account not in self.apps and not scope["path"].startswith("/_emulator/"):
            key = api_key_of(headers.get(b"authorization", b"").decode("latin-1"))
            await _json(403, not_connected(key, account).body())(scope, receive, send)
            return
        await self.app_for(account, connected)(scope, receive, send)

    async def _accounts(self, request: Request) -> Response:
        """`POST /_emulator/accounts {"id": "acct_..."}` connects an account (again: no change);
        `GET` lists every account the emulator holds."""
        if request.method == "POST":
            try:
                account = (await request.json())["id"]
            except (ValueError, TypeError, KeyError):
                return _json(400, {"error": 'send {"id": "acct_..."}: the connected account\'s id'})
            if not isinstance(account, str) or not ACCOUNT_ID.fullmatch(account):
                return _json(400, {"error": f"{account!r} is not an account id (acct_ and up to 64 letters, digits or _)"})
            self.app_for(account, connected=True)
            return _json(200, {"id": account, "connected": True})
        if request.method != "GET":
            return _json(405, {"error": "GET or POST"})
        return _json(200, {"accounts": sorted(self.apps)})

    @property
    def state(self):
        """The emulator's own account's app state (what single-account callers read)."""
        return self.apps[OWN_ACCOUNT].state


def not_connected(key: str, account: str) -> StripeApiError:
    """Stripe's answer to a `Stripe-Account` the key cannot reach (not connected, or no such account)."""
    shown = f"{key[:8]}{'*' * max(0, len(key) - 12)}{key[-4:]}" if len(key) > 12 else key
    return StripeApiError(
        403,
        f"The provided key '{shown}' does not have access to account '{account}' (or that account does not exist). Application access may have been revoked.",
        code="account_invalid",
    )
