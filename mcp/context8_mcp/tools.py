"""The MCP tools: what they are called, what they tell an LLM, and how they answer.

A successful answer is a ``CallToolResult`` with the typed payload as structured content
(validated by clients against the published output schema) and two text blocks: a one-line
summary to quote, then the same payload as JSON for clients that show the model text only.
An error is ``is_error`` with text ``"<code>: <message>"`` and the machine-readable
``ErrorInfo`` in ``_meta["context8/error"]``; it carries no structured content, because some
clients validate any structured content against the output schema, errors included.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError

from context8_mcp.errors import InvalidInput, ServerError
from context8_mcp.lifespan import AppContext
from context8_mcp.models import SYMBOL_PATTERN, SymbolList, output_schema, parse_symbol
from context8_mcp.summary import report_summary, symbols_summary
from projections.report import Report

__all__ = [
    "ERROR_META_KEY",
    "build_tools",
    "error_result",
    "get_report",
    "invalid_arguments",
    "list_symbols",
]

ERROR_META_KEY: Final = "context8/error"

_READ_ONLY: Final = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)

GET_REPORT_DESCRIPTION: Final = """\
Current market-microstructure report of one crypto symbol (order book, flow, liquidity, \
anomalies, health), as last published by the context8 processors, read from Redis.

Freshness: `data_age_ms` is recomputed at the moment you ask (now minus the venue time of the \
last event folded into the report), and `ingestion.status` is lowered to match it: ok (data \
<= 1 s old and a synced two-sided book), degraded (<= 2 s, one side empty, or resyncing), \
down (older, or no book); `ingestion.reason` says why. A stale report is still returned, with \
its status: check `ingestion.status` before relying on the prices.

Fields: `mid_price` (bid+ask)/2 and `micro_price` (size-weighted); `spread_bps` (ask-bid)/mid \
x 1e4; `best_bid`/`best_ask` {price, qty}; `depth` top-N levels per side with `bid_volume`, \
`ask_volume` and `imbalance` = (bid-ask)/(bid+ask) in [-1, 1] (positive: more resting bids); \
`flow` events and trades per second over `window_sec`, aggressive `buy_volume`/`sell_volume` \
and `net_flow` (buy - sell, base units) over `net_flow_window_sec`; `liquidity.walls` \
(unusually large levels), `liquidity.vacuums` (runs of thin levels), \
`liquidity.volume_profile` (POC, value area; null below 10 trades); `anomalies` (spoofing, \
iceberg, flash-crash risk, with severity); `health.score` 0-100 (higher is healthier) with its \
`components`; `last_price`, 24 h change/high/low/volume from the venue ticker; `updatedAt`/\
`generated_at` the publish time; `stream` where in the event log the report stands. Prices in \
the quote currency, quantities in the base asset, times in ms since the epoch unless named \
otherwise.

Errors: `symbol_not_indexed` (the message lists the available symbols), `report_expired` \
(indexed, but nothing has published it recently), `backend_unavailable` (Redis is down: try \
again shortly), `invalid_input`."""

LIST_SYMBOLS_DESCRIPTION: Final = """\
Every symbol context8 publishes reports for, with its freshness as of now: `status` \
(ok: data <= 1 s old; degraded: <= 2 s, one side empty, or resyncing; down: older, no book, or \
the report expired), `data_age_ms` (now minus the venue time of the report's last event, null \
if the report expired), `health_score` 0-100 (higher is healthier), `last_update_ms` (wall \
time of the last publish), and `reason` when not ok. Use a listed `symbol` with get_report. \
Errors: `backend_unavailable` (Redis is down: try again shortly)."""

Symbol = Annotated[
    str,
    Field(
        description="Venue symbol, e.g. BTCUSDT (Binance by default) or BTCUSDT.BINANCE; "
        "case-insensitive. list_symbols gives the available ones.",
        json_schema_extra={"pattern": SYMBOL_PATTERN, "examples": ["BTCUSDT", "ETHUSDT.BINANCE"]},
    ),
]


async def get_report(symbol: Symbol, ctx: Context[AppContext]) -> CallToolResult:
    store = ctx.request_context.lifespan_context.store
    try:
        report = await store.report(parse_symbol(symbol))
    except ServerError as e:
        return error_result(e)
    return _answer(report_summary(report), report)


async def list_symbols(ctx: Context[AppContext]) -> CallToolResult:
    store = ctx.request_context.lifespan_context.store
    try:
        answer = await store.symbols()
    except ServerError as e:
        return error_result(e)
    return _answer(symbols_summary(answer), answer)


def build_tools() -> list[Tool]:
    return [
        _tool(get_report, "Market report for a symbol", GET_REPORT_DESCRIPTION, Report),
        _tool(list_symbols, "Available symbols", LIST_SYMBOLS_DESCRIPTION, SymbolList),
    ]


def error_result(error: ServerError) -> CallToolResult:
    info = error.info()
    return CallToolResult(
        content=[TextContent(type="text", text=f"{info.code}: {info.message}")],
        is_error=True,
        _meta={ERROR_META_KEY: msgspec.to_builtins(info)},
    )


def invalid_arguments(tool: str, error: ValidationError) -> InvalidInput:
    """The SDK's argument validation failure, as our ``invalid_input``."""
    problems = []
    for e in error.errors():
        where = ".".join(str(part) for part in e["loc"]) or "arguments"
        problems.append(f"{where}: {e['msg']}")
    return InvalidInput(f"bad arguments for {tool}: " + "; ".join(problems))


def _answer(summary: str, payload: msgspec.Struct) -> CallToolResult:
    structured: dict[str, Any] = msgspec.to_builtins(payload)
    return CallToolResult(
        content=[
            TextContent(type="text", text=summary),
            TextContent(type="text", text=msgspec.json.encode(payload).decode()),
        ],
        structured_content=structured,
    )


def _tool(fn: Any, title: str, description: str, output: type) -> Tool:
    # The payloads are msgspec types (the report is the processors' contract), which the SDK
    # cannot derive a schema from; it takes a hand-built one ("advertised but not validated
    # here": the payload comes out of a typed msgspec decode, so it matches by construction).
    tool = Tool.from_function(
        fn, title=title, description=description, annotations=_READ_ONLY, structured_output=False
    )
    tool.fn_metadata.output_schema = output_schema(output)
    return tool
