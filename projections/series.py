"""The projections beside the report: the heavy section, the history series and the candles.

Contract between the processors that write these keys and the MCP server that reads them:

- ``report:{SYM}:heavy`` (string, JSON ``Heavy``): the book beyond the report's top levels,
  written with the report (same fenced step, same TTL).
- ``report:{SYM}:history`` (sorted set): one ``HistoryPoint`` (JSON member) per event-time
  second, score = ``ts_ms``; the point of a second is replaced while the second lasts; points
  older than the retention (``NT_HISTORY_MINUTES``) are trimmed by score.
- ``candles:{SYM}:{interval}`` (sorted set, interval ``1s``, ``1m``, ``5m``): one ``Candle``
  (JSON member) per bar, score = ``open_ms``; the open bar is replaced as it changes; the
  newest ``NT_CANDLES_KEEP`` bars are kept.

Scores are venue (event) time in ms, so a series reads the same on a replay.
"""

from __future__ import annotations

from typing import Final

import msgspec

from projections.report import BookLevel, Writer

__all__ = [
    "CANDLE_INTERVALS",
    "HEAVY_SCHEMA_VERSION",
    "Candle",
    "Heavy",
    "HistoryPoint",
]

HEAVY_SCHEMA_VERSION: Final = "1.0"
CANDLE_INTERVALS: Final = {"1s": 1_000, "1m": 60_000, "5m": 300_000}
"""Interval name -> length in ms."""


class _Model(msgspec.Struct, frozen=True, kw_only=True):
    """Immutable values; unknown fields are ignored on decode, so a reader of an older build
    accepts a newer writer's (fields are only ever added)."""


class Heavy(_Model, kw_only=True):
    schemaVersion: str = HEAVY_SCHEMA_VERSION
    symbol: str
    writer: Writer
    updatedAt: int
    last_event_ts_ms: int
    """Venue time of the newest event folded into this book."""
    levels: int
    """Levels kept per side at most (``NT_HEAVY_LEVELS``)."""
    bids: list[BookLevel]
    """Best first."""
    asks: list[BookLevel]
    """Best first."""


class HistoryPoint(_Model, kw_only=True):
    ts_ms: int
    """Venue time of the last event folded in this second."""
    mid_price: float | None
    spread_bps: float | None
    imbalance: float
    """Top-N depth imbalance (B-A)/(B+A)."""
    net_flow: float
    """Aggressive buy minus sell base quantity over the flow window."""
    last_price: float | None
    health: float


class Candle(_Model, kw_only=True):
    open_ms: int
    """Bar start (venue time), inclusive."""
    close_ms: int
    """Bar end, exclusive: ``open_ms`` + the interval."""
    open: float
    high: float
    low: float
    close: float
    volume: float
    """Base quantity traded."""
    quote_volume: float
    """Sum of price x quantity."""
    trades: int
    vwap: float
    """quote_volume / volume."""
    buy_volume: float
    """Base quantity bought by aggressors (taker buys)."""
    sell_volume: float
    closed: bool
    """False while the bar is still open (a later trade may change it)."""
