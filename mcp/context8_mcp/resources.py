"""The report as an MCP resource: ``context8://report/{symbol}`` (a resource template), and one
listed resource per indexed symbol.

A resource read answers the same JSON as ``get_report``'s structured content. Errors are
JSON-RPC errors (resources have no ``isError`` result) whose ``data`` is our ``ErrorInfo``:
``symbol_not_indexed`` and ``report_expired`` as -32002 (the spec's "resource not found"),
``invalid_input`` as -32602, the rest as -32603.
"""

from __future__ import annotations

from typing import Final

import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from mcp_types import Resource as MCPResource

from context8_mcp.errors import ServerError
from context8_mcp.lifespan import AppContext
from context8_mcp.models import parse_symbol
from context8_mcp.store import ReportStore

__all__ = ["REPORT_URI_TEMPLATE", "add_report_resource", "indexed_resources", "resource_error"]

REPORT_URI_TEMPLATE: Final = "context8://report/{symbol}"
RESOURCE_NOT_FOUND: Final = -32002
_MIME: Final = "application/json"
_DESCRIPTION: Final = (
    "The current market-microstructure report of one symbol (the same JSON as the get_report "
    "tool: order book, flow, liquidity, anomalies, health), with data_age_ms and "
    "ingestion.status measured when read. Reports change about every 250 ms: read again "
    "rather than reuse an old read."
)
_CODES: Final = {
    "symbol_not_indexed": RESOURCE_NOT_FOUND,
    "report_expired": RESOURCE_NOT_FOUND,
    "invalid_input": INVALID_PARAMS,
}


def resource_error(error: ServerError) -> MCPError:
    info = error.info()
    code = _CODES.get(info.code, INTERNAL_ERROR)
    return MCPError(code, f"{info.code}: {info.message}", data=msgspec.to_builtins(info))


async def read_report(symbol: str, ctx: Context[AppContext]) -> str:
    try:
        report = await ctx.request_context.lifespan_context.store.report(parse_symbol(symbol))
    except ServerError as e:
        raise resource_error(e) from e
    return msgspec.json.encode(report).decode()


def add_report_resource(server: MCPServer[AppContext]) -> None:
    server.resource(
        REPORT_URI_TEMPLATE,
        name="report",
        title="Market report",
        description=_DESCRIPTION,
        mime_type=_MIME,
    )(read_report)


async def indexed_resources(store: ReportStore) -> list[MCPResource]:
    """One resource per indexed symbol (the index, one ``ZRANGE``)."""
    try:
        symbols = await store.indexed()
    except ServerError as e:
        raise resource_error(e) from e
    return [
        MCPResource(
            uri=REPORT_URI_TEMPLATE.format(symbol=symbol),
            name=f"report {symbol}",
            title=f"{symbol} market report",
            description=_DESCRIPTION,
            mime_type=_MIME,
        )
        for symbol in symbols
    ]
