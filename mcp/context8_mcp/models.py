"""What the tools take and return: the symbol argument and the bounds of the others, the
answers of the tools other than ``get_report``, and the JSON Schemas published as the tools'
output schemas (derived from these types and from ``projections``' models, never written by
hand)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from context8_mcp.errors import InvalidInput, quoted
from core.symbols import parse_symbols
from projections.report import BookLevel, IngestionStatus, Report
from projections.series import CANDLE_INTERVALS, Candle, HistoryPoint

__all__ = [
    "MAX_CANDLES",
    "MAX_DEPTH_LEVELS",
    "MAX_HISTORY_MINUTES",
    "MAX_HISTORY_POINTS",
    "SYMBOL_PATTERN",
    "CandleInterval",
    "CandlesAnswer",
    "DepthAnswer",
    "Freshness",
    "HistoryAnswer",
    "SymbolList",
    "SymbolStatus",
    "output_schema",
    "parse_symbol",
]

MAX_DEPTH_LEVELS: Final = 1000
MAX_HISTORY_MINUTES: Final = 24 * 60
MAX_HISTORY_POINTS: Final = 3600
MAX_CANDLES: Final = 1000
CandleInterval = Literal["1s", "1m", "5m"]
if set(CANDLE_INTERVALS) != set(CandleInterval.__args__):  # the writers' list is the truth
    raise RuntimeError(f"candle intervals changed: {sorted(CANDLE_INTERVALS)}; update models")

SYMBOL_PATTERN: Final = r"^[A-Za-z0-9]{2,30}(\.[A-Za-z0-9_]{2,20})?$"
"""A venue symbol, optionally with its venue: ``BTCUSDT``, ``btcusdt``, ``BTCUSDT.BINANCE``."""
_SYMBOL_RE: Final = re.compile(SYMBOL_PATTERN)


def parse_symbol(text: str) -> str:
    """``"btcusdt"`` -> ``"BTCUSDT.BINANCE"``; raises ``InvalidInput`` for anything that is not
    one symbol."""
    if not isinstance(text, str) or not _SYMBOL_RE.fullmatch(text):
        raise InvalidInput(
            f"symbol {quoted(text)} is not a symbol like BTCUSDT or BTCUSDT.BINANCE "
            f"(letters and digits, optionally '.VENUE')"
        )
    return parse_symbols(text)[0]


class SymbolStatus(msgspec.Struct, frozen=True, kw_only=True):
    symbol: Annotated[str, Meta(description="Venue symbol with venue, e.g. BTCUSDT.BINANCE.")]
    status: Annotated[
        IngestionStatus,
        Meta(
            description="ok: data <= 1 s old and a synced two-sided book; degraded: <= 2 s old, "
            "one side empty, or resyncing; down: older, no book, or no report at all."
        ),
    ]
    data_age_ms: Annotated[
        int | None,
        Meta(
            description="Now minus the venue time of the last event in the report, at read "
            "time; null when the report has expired."
        ),
    ]
    health_score: Annotated[
        Annotated[float, Meta(ge=0, le=100)] | None,
        Meta(
            description="Market health 0-100 (higher is healthier); null when the report "
            "has expired."
        ),
    ]
    last_update_ms: Annotated[
        int, Meta(description="Wall time (ms since the epoch) of the symbol's last publish.")
    ]
    reason: Annotated[str, Meta(description="Why the status is not ok; empty when ok.")] = ""


class SymbolList(msgspec.Struct, frozen=True, kw_only=True):
    symbols: Annotated[
        list[SymbolStatus], Meta(description="Every indexed symbol, in alphabetical order.")
    ]


def output_schema(tp: type) -> dict[str, Any]:
    """The JSON Schema of ``tp`` with an object at its root (MCP requires ``type: object``
    there; msgspec puts a ``$ref`` into ``$defs``)."""
    schema = msgspec.json.schema(tp)
    ref = schema.pop("$ref", None)
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        defs = schema["$defs"]
        schema = {**defs[ref.removeprefix("#/$defs/")], **schema}
        if f'"{ref}"' not in json.dumps(defs):  # nothing else refers to the root: drop its copy
            del defs[ref.removeprefix("#/$defs/")]
    return schema


class Freshness(msgspec.Struct, frozen=True, kw_only=True):
    """How current an answer is, as of the moment it is read (from the symbol's report)."""

    status: Annotated[
        IngestionStatus,
        Meta(
            description="ok: data <= 1 s old and a synced two-sided book; degraded: <= 2 s "
            "old, one side empty, or resyncing; down: older or no book."
        ),
    ]
    data_age_ms: Annotated[
        int,
        Meta(description="Now minus the venue time of the last event folded, at read time."),
    ]
    last_event_ts_ms: Annotated[
        int, Meta(description="Venue time (ms since the epoch) of the last event folded.")
    ]
    reason: Annotated[str, Meta(description="Why the status is not ok; empty when ok.")] = ""

    @classmethod
    def of(cls, report: Report) -> Freshness:
        """Of a report already freshened to the read time."""
        return cls(
            status=report.ingestion.status,
            data_age_ms=report.data_age_ms,
            last_event_ts_ms=report.stream.last_event_ts_ms,
            reason=report.ingestion.reason,
        )


_Note = Annotated[
    str,
    Meta(description="What the answer lacks and why (fewer levels, points or bars than asked)."),
]


class DepthAnswer(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    freshness: Freshness
    levels_requested: Annotated[int, Meta(description="Levels per side asked for.")]
    levels_published: Annotated[
        int, Meta(description="Levels per side the processor publishes at most.")
    ]
    bids: Annotated[list[BookLevel], Meta(description="Bid levels {price, qty}, best first.")]
    asks: Annotated[list[BookLevel], Meta(description="Ask levels {price, qty}, best first.")]
    complete: Annotated[
        bool, Meta(description="True when both sides have as many levels as asked for.")
    ]
    note: _Note = ""


class HistoryAnswer(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    freshness: Freshness
    minutes: Annotated[int, Meta(description="Length of the window asked for.")]
    points_in_window: Annotated[
        int, Meta(description="Points stored in the window (one per event-time second).")
    ]
    every: Annotated[
        int,
        Meta(description="1 when every point is returned; n when every n-th (max_points)."),
    ]
    points: Annotated[
        list[HistoryPoint],
        Meta(description="Oldest first; the window ends at the newest point."),
    ]
    note: _Note = ""


class CandlesAnswer(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    freshness: Freshness
    interval: CandleInterval
    candles: Annotated[
        list[Candle], Meta(description="Oldest first; the last one may still be open.")
    ]
    note: _Note = ""
