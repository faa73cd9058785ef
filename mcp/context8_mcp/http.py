"""Plain JSON routes next to the MCP endpoint (registered with the SDK's ``custom_route``):

- ``GET /health``: ``{"ok", "redis", "redis_latency_ms"}``, 200 when Redis answers, else 503
  with ``error``;
- ``GET /get_report?symbol=BTCUSDT``: the same payload as the ``get_report`` tool's structured
  content; errors as ``{"error": ErrorInfo}`` with 400 (invalid_input), 404
  (symbol_not_indexed, report_expired), 502 (report_invalid), 503 (backend_unavailable);
- ``GET /list_symbols``: the ``list_symbols`` tool's structured content.
"""

from __future__ import annotations

from typing import Any

import msgspec
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from context8_mcp.errors import BackendUnavailable, InvalidInput, ServerError
from context8_mcp.lifespan import Backend
from context8_mcp.models import parse_symbol
from context8_mcp.store import ReportStore

__all__ = ["add_routes"]


def add_routes(server: MCPServer[Any], backend: Backend) -> None:
    def store() -> ReportStore:
        app = backend.current
        if app is None:
            raise BackendUnavailable("the server is starting or stopping")
        return app.store

    @server.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        try:
            latency = await store().ping()
        except ServerError as e:
            return JSONResponse({"ok": False, "redis": False, "error": str(e)}, status_code=503)
        return JSONResponse({"ok": True, "redis": True, "redis_latency_ms": round(latency, 2)})

    @server.custom_route("/get_report", methods=["GET"])
    async def get_report(request: Request) -> Response:
        try:
            symbol = request.query_params.get("symbol")
            if symbol is None:
                raise InvalidInput("missing query parameter 'symbol' (/get_report?symbol=BTCUSDT)")
            report = await store().report(parse_symbol(symbol))
        except ServerError as e:
            return _error(e)
        return _json(report)

    @server.custom_route("/list_symbols", methods=["GET"])
    async def list_symbols(request: Request) -> Response:
        try:
            answer = await store().symbols()
        except ServerError as e:
            return _error(e)
        return _json(answer)


def _json(payload: msgspec.Struct, status_code: int = 200) -> Response:
    return Response(
        msgspec.json.encode(payload), status_code=status_code, media_type="application/json"
    )


def _error(error: ServerError) -> Response:
    body = msgspec.json.encode({"error": error.info()})
    return Response(body, status_code=error.http_status, media_type="application/json")
