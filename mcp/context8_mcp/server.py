"""The context8 MCP server: wiring, transports and the entry points.

``run`` / ``serve`` start it on stdio or streamable HTTP (MCP at ``/mcp``, plus the plain JSON
routes of ``context8_mcp.http``); ``create_server`` and ``create_http_app`` build it for
embedding. Logs go to stderr only: stdout belongs to the stdio transport.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import ValidationError
from starlette.applications import Starlette

from context8_mcp.http import add_routes
from context8_mcp.lifespan import AppContext, Backend
from context8_mcp.store import DEFAULT_TIMEOUT_S
from context8_mcp.tools import build_tools, error_result, invalid_arguments

__all__ = ["MCP_PATH", "Transport", "create_http_app", "create_server", "run", "serve"]

log = logging.getLogger(__name__)

Transport = Literal["stdio", "http"]
MCP_PATH: Final = "/mcp"

INSTRUCTIONS: Final = """\
context8 serves real-time crypto market-microstructure reports (order book, trade flow, \
liquidity, anomalies, market health) computed from exchange data and published about every \
250 ms. Call list_symbols to see which symbols are available and how fresh they are, then \
get_report(symbol) for one. Every answer says how old its data is (data_age_ms, measured when \
you ask) and its ingestion.status (ok, degraded, down): quote prices as current only when the \
status is ok. The server only reads; it never places orders or changes anything."""


def _version() -> str:
    try:
        return version("context8-mcp")
    except PackageNotFoundError:  # running from a source tree without metadata
        return "0+unknown"


class _Server(MCPServer[AppContext]):
    """``MCPServer`` whose argument-validation failures answer ``invalid_input`` like every
    other error of ours (the SDK's own answer carries no code)."""

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


def create_server(redis_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> MCPServer[AppContext]:
    """The server over the Redis at ``redis_url`` (use a user that may only read report keys).
    ``timeout_s`` bounds every Redis read; past it the answer is ``backend_unavailable``."""
    backend = Backend(redis_url, timeout_s=timeout_s)
    server = _Server(
        name="context8",
        title="context8 market microstructure",
        instructions=INSTRUCTIONS,
        version=_version(),
        tools=build_tools(),
        lifespan=backend.lifespan,
    )
    add_routes(server, backend)
    return server


def create_http_app(
    redis_url: str, *, host: str = "127.0.0.1", timeout_s: float = DEFAULT_TIMEOUT_S
) -> Starlette:
    """The streamable-HTTP ASGI app: MCP at ``/mcp``, plus ``/health``, ``/get_report``,
    ``/list_symbols``. ``host`` is where it will listen (loopback turns on the SDK's DNS
    rebinding protection)."""
    server = create_server(redis_url, timeout_s=timeout_s)
    return server.streamable_http_app(streamable_http_path=MCP_PATH, host=host)


async def serve(
    *,
    redis_url: str,
    transport: Transport,
    host: str = "127.0.0.1",
    port: int = 8765,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Serve until stdin closes (stdio) or SIGINT/SIGTERM (http)."""
    if transport == "stdio":
        await create_server(redis_url, timeout_s=timeout_s).run_stdio_async()
        return
    if transport != "http":
        raise ValueError(f"transport must be 'stdio' or 'http', not {transport!r}")
    import uvicorn

    app = create_http_app(redis_url, host=host, timeout_s=timeout_s)
    # log_config=None: uvicorn's loggers propagate to ours (stderr); its default config would
    # send access logs to stdout.
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    log.info("MCP on http://%s:%d%s", host, port, MCP_PATH)
    await uvicorn.Server(config).serve()


def run(
    *,
    redis_url: str,
    transport: Transport,
    host: str = "127.0.0.1",
    port: int = 8765,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Blocking ``serve`` (the ``context8 mcp`` command)."""
    anyio.run(
        functools.partial(
            serve,
            redis_url=redis_url,
            transport=transport,
            host=host,
            port=port,
            timeout_s=timeout_s,
        )
    )
