"""The market overview: one compact row per indexed symbol, in one hash, so a survey of the
whole market (MCP ``get_market_overview``, ``list_symbols``, ``context8 status``) is one
``HGETALL`` however many symbols there are.

Contract between the kind whose projection is the symbol's report (it writes the row with
every publish, token-fenced like the index: ``lua/index_update.lua``) and its readers:

- ``{reports}:overview`` (hash, ``keys.OVERVIEW_KEY``): field = instrument id, value = JSON
  ``OverviewRow``;
- ``nt:report_updated`` (pub/sub, ``keys.REPORT_UPDATED_CHANNEL``): the instrument id,
  published with every row, so readers (MCP subscriptions, live pages) learn of a new
  report without polling any key.

A row is as fresh as its report: readers derive the data age from ``last_event_ts_ms`` at
read time, as they do for the report.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from projections.report import IngestionStatus, Report

__all__ = ["Market", "OverviewRow", "market_of", "overview_row"]

Market = Literal["spot", "perp"]


def market_of(instrument_id: str) -> Market:
    """``BTCUSDT-PERP.BINANCE`` is a perpetual (NautilusTrader's naming), anything else spot."""
    return "perp" if instrument_id.partition(".")[0].endswith("-PERP") else "spot"


class OverviewRow(msgspec.Struct, frozen=True, kw_only=True):
    """One symbol at a glance; unknown fields are ignored on decode (only ever added)."""

    symbol: str
    market: Market
    status: IngestionStatus
    """As published; readers lower it by the data age at read time."""
    reason: str = ""
    updatedAt: int
    last_event_ts_ms: int
    last_price: float | None
    change_24h_pct: float | None
    mid_price: float | None
    spread_bps: float | None
    imbalance: float
    net_flow: float
    """Aggressive buy minus sell base quantity over the flow window."""
    trades_per_sec: float
    health: float
    anomalies: list[str] = []
    """Active anomalies as ``type:severity`` (``spoofing:high``)."""
    funding_rate: float | None = None
    """Perpetuals: the current funding rate per period (0.0001 = 0.01%)."""
    open_interest: float | None = None
    """Perpetuals: open interest, base quantity."""


def overview_row(report: Report) -> OverviewRow:
    """The overview row of ``report``: its headline figures, nothing it does not hold."""
    return OverviewRow(
        symbol=report.symbol,
        market=market_of(report.symbol),
        status=report.ingestion.status,
        reason=report.ingestion.reason,
        updatedAt=report.updatedAt,
        last_event_ts_ms=report.stream.last_event_ts_ms,
        last_price=report.last_price,
        change_24h_pct=report.change_24h_pct,
        mid_price=report.mid_price,
        spread_bps=report.spread_bps,
        imbalance=report.depth.imbalance,
        net_flow=report.flow.net_flow,
        trades_per_sec=report.flow.trades_per_sec,
        health=report.health.score,
        anomalies=[f"{a.type}:{a.severity}" for a in report.anomalies],
    )
