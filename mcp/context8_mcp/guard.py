"""The HTTP front door: a per-client rate limit, then the bearer token.

A pure ASGI middleware (Starlette's ``BaseHTTPMiddleware`` would buffer the MCP event
streams). The rate limit comes first, so guessing tokens is rate limited too. Request bodies
are bounded by the SDK's own limit on ``/mcp`` (``max_request_body_size``); the plain routes
take no body.

Clients are told apart by their address as the socket shows it: behind a reverse proxy all
share the proxy's, so limit there instead (``X-Forwarded-For`` is not trusted).
"""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from context8_mcp.errors import ErrorCode, ErrorInfo

__all__ = ["OPEN_PATHS", "Guard", "TokenBuckets"]

OPEN_PATHS: Final = frozenset({"/health", "/openapi.json"})
"""Served without the token: liveness probes and the API description reveal nothing."""
_MAX_CLIENTS: Final = 10_000


class TokenBuckets:
    """One token bucket per client: ``burst`` requests at once, refilled at ``rate_per_s``.
    The least recently seen clients are forgotten past ``max_clients`` (a forgotten client
    starts again with a full bucket), so memory stays bounded whatever the traffic."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_clients: int = _MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        """Take one token for ``client``: 0 when granted, else the seconds until one is."""
        now = self._clock()
        tokens, then = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self._rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return wait


class Guard:
    def __init__(self, app: ASGIApp, *, token: str | None, buckets: TokenBuckets | None) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode() if token else None
        self._buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self._app(scope, receive, send)
            return
        if self._buckets is not None:
            client = scope.get("client")
            wait = self._buckets.take(client[0] if client else "unknown")
            if wait > 0:
                retry_after = max(1, math.ceil(wait))
                await _refuse(
                    send,
                    429,
                    "rate_limited",
                    f"too many requests from this client: retry in {retry_after} s",
                    [(b"retry-after", str(retry_after).encode())],
                )
                return
        if self._expected is not None and scope["path"] not in OPEN_PATHS:
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self._expected):
                await _refuse(
                    send,
                    401,
                    "unauthorized",
                    "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                    "(the server's CONTEXT8_MCP_TOKEN)",
                    [(b"www-authenticate", b'Bearer realm="context8"')],
                )
                return
        await self._app(scope, receive, send)


async def _refuse(
    send: Send, status: int, code: ErrorCode, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    """An answer in the plain routes' error shape (``{"error": ErrorInfo}``), sent without
    reading the request body."""
    body = msgspec.json.encode({"error": ErrorInfo(code=code, message=message)})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
