"""The context8 MCP server: wiring, transports and the entry points.

``run`` / ``serve`` start it on stdio or streamable HTTP (MCP at ``/mcp``, plus the plain JSON
routes of ``context8_mcp.http``); ``create_server`` and ``create_http_app`` build it for
embedding. Logs go to stderr only: stdout belongs to the stdio transport.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import anyio
from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolResult, InputRequiredResult
from mcp_types import Resource as MCPResource
from pydantic import ValidationError
from starlette.types import ASGIApp

from context8_mcp.config import ServerConfig
from context8_mcp.envelope import JsonRpcEnvelope
from context8_mcp.errors import BackendUnavailable
from context8_mcp.guard import Guard, TokenBuckets
from context8_mcp.http import add_routes
from context8_mcp.lifespan import AppContext, Backend
from context8_mcp.resources import add_report_resource, indexed_resources, resource_error
from context8_mcp.store import DEFAULT_TIMEOUT_S
from context8_mcp.tools import build_tools, error_result, invalid_arguments

__all__ = ["MCP_PATH", "create_http_app", "create_server", "run", "serve"]

log = logging.getLogger(__name__)

MCP_PATH: Final = "/mcp"

INSTRUCTIONS: Final = """\
context8 serves real-time crypto market-microstructure reports (order book, trade flow, \
liquidity, anomalies, market health) computed from exchange data and published about every \
250 ms. Call list_symbols to see which symbols are available and how fresh they are, then \
get_report(symbol) for one; get_depth (the book beyond the top 20 levels), get_history (key \
figures second by second) and get_candles (OHLCV bars) go deeper. Every answer says how old \
its data is (data_age_ms, measured when you ask) and its status (ok, degraded, down): quote \
prices as current only when the status is ok. The server only reads; it never places orders \
or changes anything."""


def _version() -> str:
    try:
        return version("context8-mcp")
    except PackageNotFoundError:  # running from a source tree without metadata
        return "0+unknown"


class _Server(MCPServer[AppContext]):
    """``MCPServer`` whose argument-validation failures answer ``invalid_input`` like every
    other error of ours (the SDK's own answer carries no code), and whose resource list is the
    index (one report resource per symbol) rather than a static list."""

    def __init__(self, backend: Backend, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._backend = backend

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[AppContext, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            cause = e.__cause__
            if isinstance(cause, ValidationError) and not isinstance(e, UnexpectedToolError):
                return error_result(invalid_arguments(name, cause))
            raise

    async def list_resources(self) -> list[MCPResource]:
        app = self._backend.current
        if app is None:
            raise resource_error(BackendUnavailable("the server is starting or stopping"))
        try:
            store = app.store
        except BackendUnavailable as e:
            raise resource_error(e) from e
        return [*await super().list_resources(), *await indexed_resources(store)]


# Tool and template lists change only with a new server version; reports change every 250 ms,
# so reads and the index are never cached (the 2026-07-28 protocol's ttlMs hints).
_CACHE_HINTS: Final[dict[CacheableMethod, CacheHint]] = {
    "tools/list": CacheHint(ttl_ms=300_000, scope="public"),
    "resources/templates/list": CacheHint(ttl_ms=300_000, scope="public"),
    "resources/list": CacheHint(ttl_ms=0),
    "resources/read": CacheHint(ttl_ms=0),
}


def create_server(
    redis_url: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S, authenticated: bool = False
) -> MCPServer[AppContext]:
    """The server over the Redis at ``redis_url`` (use a user that may only read report keys).
    ``timeout_s`` bounds every Redis read; past it the answer is ``backend_unavailable``.
    ``authenticated``: whether the HTTP front door asks for a token (documented in OpenAPI)."""
    backend = Backend(redis_url, timeout_s=timeout_s)
    server = _Server(
        backend,
        name="context8",
        title="context8 market microstructure",
        instructions=INSTRUCTIONS,
        version=_version(),
        tools=build_tools(),
        lifespan=backend.lifespan,
        cache_hints=_CACHE_HINTS,
    )
    add_report_resource(server)
    add_routes(server, backend, authenticated=authenticated)
    return server


def create_http_app(config: ServerConfig) -> ASGIApp:
    """The streamable-HTTP ASGI app: MCP at ``/mcp``, the plain JSON routes, behind the front
    door (rate limit, bearer token), JSON-RPC envelopes checked first (envelope.py). On
    loopback the SDK's DNS-rebinding protection is on."""
    server = create_server(
        config.redis_url, timeout_s=config.timeout_s, authenticated=bool(config.token)
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        host=config.host,
        max_request_body_size=config.max_body_bytes,
        # Plain JSON answers, not an SSE stream per call: no tool of ours sends progress or
        # notifications mid-call, and the SDK's JSON path costs ~20% less CPU per request.
        json_response=True,
    )
    buckets = TokenBuckets(config.rate_per_s, config.burst) if config.rate_per_s > 0 else None
    checked = JsonRpcEnvelope(app, path=MCP_PATH, max_body_bytes=config.max_body_bytes)
    return Guard(checked, token=config.token, buckets=buckets)


async def serve(config: ServerConfig) -> None:
    """Serve until stdin closes (stdio) or SIGINT/SIGTERM (http)."""
    if config.transport == "stdio":
        server = create_server(config.redis_url, timeout_s=config.timeout_s)
        await server.run_stdio_async()
        return
    import uvicorn

    # log_config=None: uvicorn's loggers propagate to ours (stderr); its default config would
    # send access logs to stdout.
    uv_config = uvicorn.Config(
        create_http_app(config),
        host=config.host,
        port=config.port,
        log_config=None,
        access_log=False,
    )
    log.info(
        "MCP on http://%s:%d%s (token %s, rate limit %s)",
        config.host,
        config.port,
        MCP_PATH,
        "required" if config.token else "off",
        f"{config.rate_per_s:g}/s, burst {config.burst}" if config.rate_per_s else "off",
    )
    await uvicorn.Server(uv_config).serve()


def run(config: ServerConfig) -> None:
    """Blocking ``serve`` (the ``context8 mcp`` command)."""
    anyio.run(serve, config)
