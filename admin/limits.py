"""Bounded requests, authentication first: what the admin API checks before it reads a body.

Reading first and checking later let anyone make the process hold a body of any size: 400 MB
without a token were read whole (the process grew by 1.2 GB) before the answer was 401. So
``RequestLimits``, a plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` would put a
stream of its own in between), decides from the request line and headers alone:

1. ``/v1`` routes need a valid bearer token. Without one the answer is 401 at once; the
   ``Principal`` found is left in ``scope["state"]`` for the routes (``authenticated``), which do
   not look the token up again. The console (``/console``) serves pages that hold no data and
   needs none.
2. A client that keeps failing authentication is answered 429 (``FailureLimiter``).
3. A body may not exceed its route's limit (``BODY_LIMITS``): a ``Content-Length`` above it is
   answered 413 without reading; a body that does not declare its length is counted while it
   arrives, and refused 413 as soon as it passes the limit, with nothing more read.

Every refusal closes the connection: the body the client is still sending is never drained.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smtp_discovery.admin import errors
from smtp_discovery.admin.tokens import Principal
from smtp_discovery.platform.clock import Clock, SystemClock

KIB = 1024
MIB = 1024 * KIB

MAX_IMPORT_BYTES = 20 * MIB
"""A users CSV: 100,000 rows (the import's row limit) of address, names and role."""
MAX_ACTION_BYTES = 1 * MIB
"""An action: 1,000 addresses (``MAX_BATCH``) with their names. At the models' maxima (254-byte
addresses, 100-character names, in ASCII) that is about 760 KiB of JSON; typical ones are far
smaller."""
MAX_BODY_BYTES = 64 * KIB
"""Everything else: a tenant, a settings change, or no body at all."""

BODY_LIMITS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("POST", re.compile(r"/v1/tenants/[^/]+/users/import"), MAX_IMPORT_BYTES),
    ("POST", re.compile(r"/v1/tenants/[^/]+/actions"), MAX_ACTION_BYTES),
)
"""(method, path, bytes) of the routes that take more than ``MAX_BODY_BYTES``: the one table of
body limits. A path must match whole; it is the route's path, without the app's root path."""

PROTECTED = "/v1"
"""The JSON API, where every route needs a token."""
PRINCIPAL = "principal"
"""The key under ``scope["state"]`` (``request.state``) of the caller's ``Principal``."""
UNAUTHENTICATED = "send a valid token: Authorization: Bearer sd_…"

FAILURE_BURST = 10
FAILURE_REFILL_SECONDS = 5.0
MAX_CLIENTS = 65_536


def body_limit(method: str, path: str) -> int:
    """The most bytes a body of ``method path`` may have."""
    for route_method, pattern, limit in BODY_LIMITS:
        if method == route_method and pattern.fullmatch(path):
            return limit
    return MAX_BODY_BYTES


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def client_key(host: str | None) -> str:
    """Whom failures are counted against: the client's address, or for IPv6 its /64 (one
    subscriber's usual share, which holds more addresses than any table could).

    The address is uvicorn's ``scope["client"]``: the peer's, or, when the peer is a proxy that
    uvicorn trusts (``FORWARDED_ALLOW_IPS``, by default 127.0.0.1 and ::1; ``--forwarded-allow-ips``
    on its command line), the one that proxy's ``X-Forwarded-For`` names: uvicorn has rewritten
    it before this runs. Behind a proxy it does not trust every client shares the proxy's
    address, and one client's failures hold back the others' (not their valid tokens, which are
    never limited)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class FailureLimiter:
    """A token bucket of failed authentications per client: ``burst`` failures at once, then
    one every ``refill_seconds``; successes cost nothing.

    A bearer secret has 256 random bits, so no rate makes guessing one feasible; what this
    bounds is the work and noise of a client that keeps trying (today 300 bad tokens take
    0.4 s), and it tells a misconfigured client to back off. A valid token is never refused:
    otherwise one client behind a shared address (a NAT, an unlisted proxy) could lock every
    other one out. Memory is bounded: the least recently seen clients beyond ``max_clients`` are
    forgotten (a forgotten client starts with a full bucket again)."""

    def __init__(
        self,
        burst: int = FAILURE_BURST,
        refill_seconds: float = FAILURE_REFILL_SECONDS,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Clock | None = None,
    ) -> None:
        self.burst = burst
        self.refill_seconds = refill_seconds
        self.max_clients = max_clients
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """Client -> (failures it may still make, when that was counted)."""

    def failed(self, client: str) -> int:
        """Count a failure of ``client``: 0 if it may be answered as usual, or the whole seconds
        (at least 1) until the client may fail again, the answer's ``Retry-After``."""
        now = self._clock.monotonic()
        left, then = self._buckets.pop(client, (float(self.burst), now))
        left = min(float(self.burst), left + max(0.0, now - then) / self.refill_seconds)
        wait = 0 if left >= 1 else max(1, math.ceil((1 - left) * self.refill_seconds))
        self._buckets[client] = (left - 1 if wait == 0 else left, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


class BodyTooLarge(Exception):
    """Raised by the counting ``receive`` into the app once a body passed its limit."""


class RequestLimits:
    """The ASGI middleware: see the module's docstring. ``authenticate``: a bearer token's
    ``Principal``, or None (looked up per request, so the context may be set after startup)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Callable[[str], Principal | None],
        failures: FailureLimiter | None = None,
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.failures = failures if failures is not None else FailureLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        headers = Headers(scope=scope)
        if path == PROTECTED or path.startswith(PROTECTED + "/"):
            refused = self._authenticate(scope, headers)
            if refused is not None:
                await refused(scope, receive, send)
                return
        limit = body_limit(scope["method"], path)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await too_large(limit)(scope, receive, send)
            return
        await self._bounded(scope, receive, send, limit)

    def _authenticate(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        """None with the caller's ``Principal`` left in the scope, or the refusal to send."""
        token = bearer(headers.get("authorization"))
        found = self.authenticate(token) if token else None
        if found is not None:
            scope.setdefault("state", {})[PRINCIPAL] = found
            return None
        client = scope.get("client")
        wait = self.failures.failed(client_key(client[0] if client else None))
        if wait:
            message = f"too many failed authentications: try again in {wait} s"
            return refusal(429, "too_many_failures", message, {"Retry-After": str(wait)})
        return refusal(401, "unauthenticated", UNAUTHENTICATED)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """The app, given a ``receive`` that counts the body and fails past ``limit``. The app's
        own answer to that failure (FastAPI's 400 "error parsing the body", or an exception) is
        replaced by the 413."""
        received = 0
        overflowed = started = False

        async def counting_receive() -> Message:
            nonlocal received, overflowed
            if overflowed:  # asked again after the refusal: read nothing more
                raise BodyTooLarge(f"the body passed {limit} bytes")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflowed = True
                    raise BodyTooLarge(f"the body passed {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflowed and not started:
                return  # the app answering what counting_receive raised: the 413 replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not overflowed or started:
                raise
        if overflowed and not started:
            await too_large(limit)(scope, receive, send)


def refusal(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An answer in the API's error format that closes the connection, so that the server drops
    what the client is still sending instead of reading it to its end (as uvicorn would)."""
    closing = {**(headers or {}), "Connection": "close"}
    return JSONResponse(errors.body(code, message), status_code=status, headers=closing)


def too_large(limit: int) -> JSONResponse:
    return refusal(413, "too_large", f"this request's body may have at most {limit} bytes")


def route_path(scope: Scope) -> str:
    """The request's path within the app: without the root path a proxy serves it under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def authenticated(scope: Scope) -> Principal | None:
    """The caller ``RequestLimits`` authenticated for this request, if any."""
    found: Any = scope.get("state", {}).get(PRINCIPAL)
    return found if isinstance(found, Principal) else None
