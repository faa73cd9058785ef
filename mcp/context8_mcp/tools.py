"""The MCP tools: what they are called, what they tell an LLM, and how they answer.

A successful answer is a ``CallToolResult`` with the typed payload as structured content
(validated by clients against the published output schema) and two text blocks: a one-line
summary to quote, then the same payload as JSON for clients that show the model text only.
An error is ``is_error`` with text ``"<code>: <message>"`` and the machine-readable
``ErrorInfo`` in ``_meta["context8/error"]``; it carries no structured content, because some
clients validate any structured content against the output schema, errors included.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, TypeVar

import msgspec
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError

from context8_mcp.errors import InvalidInput, ServerError
from context8_mcp.lifespan import AppContext
from context8_mcp.models import (
    MAX_CANDLES,
    MAX_DEPTH_LEVELS,
    MAX_HISTORY_MINUTES,
    MAX_HISTORY_POINTS,
    SYMBOL_PATTERN,
    CandleInterval,
    CandlesAnswer,
    DepthAnswer,
    HistoryAnswer,
    SymbolList,
    output_schema,
    parse_symbol,
)
from context8_mcp.store import ReportStore
from context8_mcp.summary import (
    candles_summary,
    depth_summary,
    history_summary,
    report_summary,
    symbols_summary,
)
from projections.report import Report

__all__ = [
    "ERROR_META_KEY",
    "answer_result",
    "build_tools",
    "error_result",
    "get_candles",
    "get_depth",
    "get_history",
    "get_report",
    "invalid_arguments",
    "list_symbols",
    "read_only_tool",
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
time of the last publish), and `reason` when not ok. Use a listed `symbol` with the other \
tools. Errors: `backend_unavailable` (Redis is down: try again shortly)."""

_FRESHNESS_FIELD: Final = """\
`freshness` says how current the answer is, measured when you ask: `status` (ok: data <= 1 s \
old and a synced book; degraded: <= 2 s, one side empty, or resyncing; down: older), \
`data_age_ms` (now minus the venue time of the last event folded), `last_event_ts_ms`, and \
`reason` when not ok. Stale data is still returned, with its status: check it before calling \
prices current."""

_SYMBOL_ERRORS: Final = """\
Errors: `symbol_not_indexed` (the message lists the available symbols), `report_expired` \
(indexed, but nothing has published it recently), `backend_unavailable` (Redis is down: try \
again shortly), `invalid_input` (a malformed argument or one out of bounds)."""

GET_DEPTH_DESCRIPTION: Final = f"""\
The order book of one symbol beyond the report's top levels: up to `levels` price levels per \
side, each {{price, qty}} (quote currency, base asset), `bids` and `asks` best first, as last \
published with the report (about every 250 ms). `levels_published` is how many levels per \
side the processor keeps; asking for more returns what there is with `complete` false and a \
`note` saying so. {_FRESHNESS_FIELD}

{_SYMBOL_ERRORS} `not_published`: the symbol's processor publishes no full-depth section."""

GET_HISTORY_DESCRIPTION: Final = f"""\
Key figures of one symbol over the last `minutes`, one point per second of venue time \
(oldest first; the window ends at the newest point): `ts_ms` venue time, `mid_price`, \
`spread_bps` ((ask-bid)/mid x 1e4), `imbalance` of the top-20 depth ((bid-ask)/(bid+ask) in \
[-1, 1], positive: more resting bids), `net_flow` (aggressive buy minus sell base quantity \
over the last 30 s), `last_price`, `health` 0-100. With more points than `max_points`, every \
n-th is returned (`every` = n, newest kept; `points_in_window` counts them all). A `note` \
says when the series is shorter than asked (it starts when the processor does). \
{_FRESHNESS_FIELD}

{_SYMBOL_ERRORS}"""

GET_CANDLES_DESCRIPTION: Final = f"""\
OHLCV bars of one symbol's trades: the newest `limit` bars of `interval` (1s, 1m or 5m), \
oldest first. Each: `open_ms`/`close_ms` (venue time; close exclusive), `open`, `high`, `low`, \
`close`, `volume` (base asset), `quote_volume`, `trades`, `vwap`, `buy_volume`/`sell_volume` \
(aggressive buys/sells, base asset), `closed` (false for the bar still forming; its figures \
may change). Bars without trades are absent, not zero. {_FRESHNESS_FIELD}

{_SYMBOL_ERRORS}"""

Symbol = Annotated[
    str,
    Field(
        description="Venue symbol, e.g. BTCUSDT (Binance by default) or BTCUSDT.BINANCE; "
        "case-insensitive. list_symbols gives the available ones.",
        json_schema_extra={"pattern": SYMBOL_PATTERN, "examples": ["BTCUSDT", "ETHUSDT.BINANCE"]},
    ),
]
Levels = Annotated[
    int, Field(ge=1, le=MAX_DEPTH_LEVELS, description="Price levels per side, best first.")
]
Minutes = Annotated[
    int,
    Field(ge=1, le=MAX_HISTORY_MINUTES, description="Length of the window, ending now-ish."),
]
MaxPoints = Annotated[
    int,
    Field(
        ge=2,
        le=MAX_HISTORY_POINTS,
        description="At most this many points; a longer window is thinned to every n-th.",
    ),
]
Interval = Annotated[CandleInterval, Field(description="Bar length.")]
Limit = Annotated[int, Field(ge=1, le=MAX_CANDLES, description="How many bars, newest last.")]

_Payload = TypeVar("_Payload", bound=msgspec.Struct)


async def get_report(symbol: Symbol, ctx: Context[AppContext]) -> CallToolResult:
    return await _respond(ctx, lambda store: store.report(parse_symbol(symbol)), report_summary)


async def list_symbols(ctx: Context[AppContext]) -> CallToolResult:
    return await _respond(ctx, lambda store: store.symbols(), symbols_summary)


async def get_depth(
    symbol: Symbol, ctx: Context[AppContext], levels: Levels = 50
) -> CallToolResult:
    return await _respond(
        ctx, lambda store: store.depth(parse_symbol(symbol), levels), depth_summary
    )


async def get_history(
    symbol: Symbol, ctx: Context[AppContext], minutes: Minutes = 15, max_points: MaxPoints = 300
) -> CallToolResult:
    return await _respond(
        ctx,
        lambda store: store.history(parse_symbol(symbol), minutes, max_points),
        history_summary,
    )


async def get_candles(
    symbol: Symbol, ctx: Context[AppContext], interval: Interval = "1m", limit: Limit = 60
) -> CallToolResult:
    return await _respond(
        ctx,
        lambda store: store.candles(parse_symbol(symbol), interval, limit),
        candles_summary,
    )


def build_tools() -> list[Tool]:
    return [
        read_only_tool(get_report, "Market report for a symbol", GET_REPORT_DESCRIPTION, Report),
        read_only_tool(list_symbols, "Available symbols", LIST_SYMBOLS_DESCRIPTION, SymbolList),
        read_only_tool(get_depth, "Order book depth", GET_DEPTH_DESCRIPTION, DepthAnswer),
        read_only_tool(
            get_history, "Recent history of key figures", GET_HISTORY_DESCRIPTION, HistoryAnswer
        ),
        read_only_tool(get_candles, "OHLCV candles", GET_CANDLES_DESCRIPTION, CandlesAnswer),
    ]


async def _respond(
    ctx: Context[AppContext],
    read: Callable[[ReportStore], Awaitable[_Payload]],
    summarize: Callable[[_Payload], str],
) -> CallToolResult:
    """``read`` from the store, answered as a summary + payload, or as our error."""
    try:
        payload = await read(ctx.request_context.lifespan_context.store)
    except ServerError as e:
        return error_result(e)
    return answer_result(summarize(payload), payload)


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


def answer_result(summary: str, payload: msgspec.Struct) -> CallToolResult:
    """A successful answer: the summary, then the payload as JSON, and as structured content."""
    structured: dict[str, Any] = msgspec.to_builtins(payload)
    return CallToolResult(
        content=[
            TextContent(type="text", text=summary),
            TextContent(type="text", text=msgspec.json.encode(payload).decode()),
        ],
        structured_content=structured,
    )


def read_only_tool(fn: Any, title: str, description: str, output: type) -> Tool:
    """A tool annotated read-only, whose output schema is that of the msgspec type ``output``."""
    # The payloads are msgspec types (the report is the processors' contract), which the SDK
    # cannot derive a schema from; it takes a hand-built one ("advertised but not validated
    # here": the payload comes out of a typed msgspec decode, so it matches by construction).
    tool = Tool.from_function(
        fn, title=title, description=description, annotations=_READ_ONLY, structured_output=False
    )
    tool.fn_metadata.output_schema = output_schema(output)
    return tool
