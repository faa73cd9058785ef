"""The report model: what ``report:{SYM}`` holds and the MCP server returns.

A superset of the v1.1 report of the original context8-mcp. The JSON Schema in
``projections/report.schema.json`` is generated from these types (``context8 schema``) and
committed; tests validate every report they see against it.

Prices and quantities are JSON numbers (floats of the exact fixed-point book values);
times are milliseconds since the epoch unless the name says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "DEGRADED_MAX_AGE_MS",
    "OK_MAX_AGE_MS",
    "REPORT_SCHEMA_VERSION",
    "SCHEMA_PATH",
    "Anomaly",
    "BookLevel",
    "Depth",
    "Flow",
    "Health",
    "HealthComponents",
    "Ingestion",
    "IngestionStatus",
    "Liquidity",
    "Report",
    "Stream",
    "Vacuum",
    "VolumeProfile",
    "Wall",
    "Writer",
    "age_status",
    "json_schema",
    "schema_text",
]

REPORT_SCHEMA_VERSION: Final = "1.4"
SCHEMA_PATH: Final = Path(__file__).with_name("report.schema.json")

IngestionStatus = Literal["ok", "degraded", "down"]

OK_MAX_AGE_MS: Final = 1000
"""Venue data at most this old may be ``ok``."""
DEGRADED_MAX_AGE_MS: Final = 2000
"""... at most this old, ``degraded``; older is ``down``."""


def age_status(age_ms: int) -> IngestionStatus:
    """The best ingestion status data of this age allows (writers and readers agree on it)."""
    if age_ms <= OK_MAX_AGE_MS:
        return "ok"
    if age_ms <= DEGRADED_MAX_AGE_MS:
        return "degraded"
    return "down"


Score = Annotated[float, Meta(ge=0, le=100)]


class _Model(msgspec.Struct, frozen=True, kw_only=True):
    """Unknown fields are ignored on decode: a reader of an older build accepts the reports
    of a newer writer (fields are only ever added)."""


class Writer(_Model):
    nodeId: str
    writerToken: int


class Ingestion(_Model):
    status: IngestionStatus
    """ok: data age <= 1 s and a two-sided, synced book; degraded: age <= 2 s, one side empty,
    or resyncing after a sequence gap; down: older, or no book."""
    last_update: str
    """ISO-8601 UTC venue time of the last folded event."""
    reason: str = ""


class BookLevel(_Model):
    price: float
    qty: float


class Depth(_Model):
    levels: int
    """How many levels per side the sums cover (top N)."""
    bids: list[BookLevel]
    asks: list[BookLevel]
    bid_volume: float
    ask_volume: float
    imbalance: Annotated[float, Meta(ge=-1, le=1)]
    """(bid_volume - ask_volume) / (bid_volume + ask_volume)."""


class Flow(_Model):
    window_sec: float
    events_per_sec: float
    """Folded events per second over the rate window (event time)."""
    trades_per_sec: float
    net_flow_window_sec: float
    buy_volume: float
    """Aggressive buy base quantity over the net-flow window."""
    sell_volume: float
    net_flow: float
    """buy_volume - sell_volume."""


Severity = Literal["low", "medium", "high"]


class Wall(_Model):
    """A level whose quantity stands out against the recent distribution of level sizes."""

    side: Literal["bid", "ask"]
    price: float
    qty: float
    multiple: float
    """qty / threshold (threshold = P95 x 1.5 of recent level quantities)."""
    severity: Severity
    """By the multiple: below 2 low, below 3 medium, else high."""
    note: str = ""
    """E.g. "bid wall 25.1 at 64,000.00, 3.2x threshold"."""


class Vacuum(_Model):
    """A run of consecutive thin levels (each below P10 of recent level quantities)."""

    side: Literal["bid", "ask"]
    from_price: float
    """The run's level nearest the touch ..."""
    to_price: float
    """... and farthest from it."""
    levels: int
    severity: Severity
    """By run length: 3-5 low, 6-9 medium, 10 or more high."""
    note: str = ""


class VolumeProfile(_Model):
    """Traded volume by price over the window, in bins of a few ticks; VAL <= POC <= VAH."""

    window_sec: int
    trade_count: int
    bin_size: float
    poc: float
    """Point of control: the middle of the bin with the most traded volume."""
    vah: float
    """Value area high: the highest price of the value area's top bin."""
    val: float
    """Value area low: the lowest price of its bottom bin. The value area holds 70% of the
    volume, grown from the POC."""
    volume: float = 0.0
    """Base quantity traded in the window."""


class Liquidity(_Model):
    walls: list[Wall] = []
    vacuums: list[Vacuum] = []
    volume_profile: VolumeProfile | None = None
    """Omitted (null) with fewer than 10 trades in the window."""
    wall_threshold: float | None = None
    """P95 x 1.5 of the recent level quantities: a level at or above it is a wall (null while
    fewer than 20 quantities were observed)."""
    thin_threshold: float | None = None
    """P10 of the recent level quantities: a level below it is thin."""
    observations: int = 0
    """Level quantities in the window the thresholds come from."""
    as_of: str | None = None
    """The venue time (ISO 8601) of the book the section was computed from, every slow
    cycle; walls and vacuums the book has since lost are left out of each report."""


class Anomaly(_Model):
    type: str
    """``spoofing``, ``iceberg`` or ``flash_crash_risk``."""
    severity: Severity
    note: str
    """A sentence an LLM can quote, e.g. "ask iceberg at 64,010.00: 12 fills traded 3.4 (4.2x
    the visible 0.8, which stays within 10%)"."""
    side: Literal["bid", "ask"] | None = None
    price: float | None = None


class HealthComponents(_Model):
    spread: Score
    depth: Score
    balance: Score
    flow: Score
    anomalies: Score
    freshness: Score


class Health(_Model):
    score: Score
    components: HealthComponents
    anomaly_penalty: float = 0.0
    """Summed penalties of the anomalies (10 low, 25 medium, 50 high): the anomalies
    component is 100 minus it, at least 0."""


class Stream(_Model):
    """Where in the event log this report stands (for replay and debugging)."""

    last_id: str
    events_folded: int
    last_event_ts_ms: int
    """Venue time of the last folded event; readers derive data age from it."""
    slow_last_id: str | None = None
    """The entry the slow sections (liquidity, anomalies, the anomaly penalty) were computed
    at: they are refreshed every slow cycle (2 s), the rest with every publish."""
    slow_event_ts_ms: int | None = None
    """The venue time the slow sections stand at (``last_event_ts_ms`` of that entry)."""
    repeated_trades: int = 0
    """Trades not folded because the same trade (id and venue time) was folded seconds
    before: seen around an ingest hand-over. Growing while trades arrive means trades are
    being dropped."""


class Report(_Model, kw_only=True):
    schemaVersion: str = REPORT_SCHEMA_VERSION
    writer: Writer
    updatedAt: int
    """Wall time of this publish."""
    symbol: str
    venue: str
    generated_at: str
    """ISO-8601 UTC wall time of this publish."""
    data_age_ms: int
    """Publish time minus the venue time of the last folded event (readers recompute it)."""
    ingestion: Ingestion
    last_price: float | None
    change_24h_pct: float | None
    high_24h: float | None
    low_24h: float | None
    volume_24h: float | None
    best_bid: BookLevel | None
    best_ask: BookLevel | None
    spread_bps: float | None
    mid_price: float | None
    micro_price: float | None
    depth: Depth
    flow: Flow
    liquidity: Liquidity
    anomalies: list[Anomaly]
    health: Health
    stream: Stream


def json_schema() -> dict[str, object]:
    schema = msgspec.json.schema(Report)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "context8 report"
    return schema


def schema_text() -> str:
    """The committed schema file's exact content."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
