"""Plain JSON routes next to the MCP endpoint (registered with the SDK's ``custom_route``), for
clients that do not speak MCP, and their OpenAPI 3.1 description:

- ``GET /health``: ``Health``, 200 when Redis answers, else 503 with ``error``;
- ``GET /get_report?symbol=BTCUSDT``: the ``get_report`` tool's structured content;
- ``GET /list_symbols``: the ``list_symbols`` tool's structured content;
- ``GET /openapi.json``: the description of these routes (built once from the same types).

Errors are ``{"error": ErrorInfo}`` with the HTTP status of the error class; the front door
(``guard``) adds 401 and 429 in the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import msgspec
from mcp.server.mcpserver import MCPServer
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from context8_mcp.errors import (
    BackendUnavailable,
    ErrorInfo,
    InvalidInput,
    ReportExpired,
    ReportInvalid,
    ServerError,
    SymbolNotIndexed,
)
from context8_mcp.lifespan import Backend
from context8_mcp.models import SYMBOL_PATTERN, SymbolList, parse_symbol
from context8_mcp.store import ReportStore
from projections.report import Report

__all__ = ["ErrorBody", "Health", "add_routes", "openapi_document"]


class Health(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    ok: Annotated[bool, Meta(description="True when the server can answer (Redis answers).")]
    redis: Annotated[bool, Meta(description="True when Redis answered a PING.")]
    redis_latency_ms: Annotated[
        float | None, Meta(description="Round trip of that PING, when it answered.")
    ] = None
    error: Annotated[str | None, Meta(description="Why not ok.")] = None


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorInfo


_JSON: Final = "application/json"
_Handler = Callable[[ReportStore, Request], Awaitable[msgspec.Struct]]


def add_routes(server: MCPServer[Any], backend: Backend, *, authenticated: bool) -> None:
    """``authenticated``: whether the front door asks for a bearer token (documented)."""
    openapi = msgspec.json.encode(openapi_document(server.version, authenticated=authenticated))

    def route(path: str, handler: _Handler) -> None:
        async def endpoint(request: Request) -> Response:
            try:
                app = backend.current
                if app is None:
                    raise BackendUnavailable("the server is starting or stopping")
                payload = await handler(app.store, request)
            except ServerError as e:
                return _json(ErrorBody(e.info()), e.http_status)
            return _json(payload)

        server.custom_route(path, methods=["GET"])(endpoint)

    route("/get_report", _get_report)
    route("/list_symbols", lambda store, _request: store.symbols())

    @server.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        try:
            app = backend.current
            if app is None:
                raise BackendUnavailable("the server is starting or stopping")
            latency = await app.store.ping()
        except ServerError as e:
            return _json(Health(ok=False, redis=False, error=str(e)), 503)
        return _json(Health(ok=True, redis=True, redis_latency_ms=round(latency, 2)))

    @server.custom_route("/openapi.json", methods=["GET"])
    async def describe(request: Request) -> Response:
        return Response(openapi, media_type=_JSON)


async def _get_report(store: ReportStore, request: Request) -> Report:
    symbol = request.query_params.get("symbol")
    if symbol is None:
        raise InvalidInput("missing query parameter 'symbol' (/get_report?symbol=BTCUSDT)")
    return await store.report(parse_symbol(symbol))


def _json(payload: msgspec.Struct, status_code: int = 200) -> Response:
    return Response(msgspec.json.encode(payload), status_code=status_code, media_type=_JSON)


_ROUTE_ERRORS: Final[dict[str, tuple[type[ServerError], ...]]] = {
    "/get_report": (
        InvalidInput,
        SymbolNotIndexed,
        ReportExpired,
        ReportInvalid,
        BackendUnavailable,
    ),
    "/list_symbols": (BackendUnavailable,),
}


def openapi_document(version: str, *, authenticated: bool) -> dict[str, Any]:
    """OpenAPI 3.1 for the plain routes; the schemas are the msgspec types' own (3.1 schema
    objects are JSON Schema 2020-12)."""
    (report, symbols, health, error), components = msgspec.json.schema_components(
        [Report, SymbolList, Health, ErrorBody], ref_template="#/components/schemas/{name}"
    )

    def body(schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"description": description, "content": {_JSON: {"schema": schema}}}

    def errors(path: str) -> dict[str, Any]:
        by_status: dict[int, list[str]] = {}
        for cls in _ROUTE_ERRORS[path]:
            by_status.setdefault(cls.http_status, []).append(cls.code)
        answers = {
            str(status): body(error, "error: " + ", ".join(codes))
            for status, codes in sorted(by_status.items())
        }
        answers["429"] = body(error, "rate_limited: over the per-client rate (see Retry-After)")
        if authenticated:
            answers["401"] = body(error, "unauthorized: missing or wrong bearer token")
        return answers

    security = [{"bearer": []}] if authenticated else []
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "context8 plain JSON API",
            "version": version,
            "description": "Read-only market-microstructure reports; the same answers as the "
            "MCP tools get_report and list_symbols (MCP itself is at /mcp).",
        },
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the server and its Redis answer",
                    "responses": {
                        "200": body(health, "the server and Redis answer"),
                        "503": body(health, "Redis does not answer"),
                        "429": body(error, "rate_limited: over the per-client rate"),
                    },
                }
            },
            "/get_report": {
                "get": {
                    "operationId": "get_report",
                    "summary": "The current report of one symbol",
                    "parameters": [
                        {
                            "name": "symbol",
                            "in": "query",
                            "required": True,
                            "description": "BTCUSDT (default venue) or BTCUSDT.BINANCE",
                            "schema": {"type": "string", "pattern": SYMBOL_PATTERN},
                        }
                    ],
                    "security": security,
                    "responses": {"200": body(report, "the report"), **errors("/get_report")},
                }
            },
            "/list_symbols": {
                "get": {
                    "operationId": "list_symbols",
                    "summary": "Every indexed symbol with its freshness",
                    "security": security,
                    "responses": {
                        "200": body(symbols, "the symbols"),
                        **errors("/list_symbols"),
                    },
                }
            },
        },
        "components": {"schemas": components},
    }
    if authenticated:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "CONTEXT8_MCP_TOKEN"}
        }
    return document
