"""The analytics kind: the report, its heavy section and its history series.

The fold, the report and the checkpoint live in fold.py, project.py and checkpoint.py; this
module declares them as a processor kind (see kind.py), with the projections beside the
report: the book beyond the report's top levels in ``report:{SYM}:heavy`` and one history
point per event-time second in ``report:{SYM}:history`` (projections/series.py).

Settings: every analytics parameter as ``NT_<PARAMETER>`` (docs/analytics.md);
``NT_HEAVY_LEVELS`` (500) levels per side in the heavy section; ``NT_HISTORY_MINUTES`` (60)
of history points kept. The slow cycle (walls, vacuums, profile, anomalies) runs every
``NT_SLOW_PERIOD_MS``; each report carries the latest one.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from core import keys
from core.events import Level, to_float
from core.settings import Settings
from processors.analytics.checkpoint import decode_checkpoint, encode_checkpoint
from processors.analytics.fold import AnalyticsState, fold, new_state
from processors.analytics.params import AnalyticsSettings
from processors.analytics.project import build_report
from processors.analytics.slow import SlowSections, compute_slow
from processors.runtime.kind import Kind, ProjectionContext, kind_settings
from projections.overview import overview_row
from projections.report import BookLevel, Report
from projections.series import Heavy, HistoryPoint
from projections.writer import IndexRow, Put, SeriesPoint, Write

__all__ = ["NAME", "kind"]

NAME = "analytics"
_MS_PER_S = 1000
_NS_PER_MS = 1_000_000


def kind(settings: Settings, env: Mapping[str, str]) -> Kind[AnalyticsState]:
    own, variables = kind_settings(AnalyticsSettings, env)
    params = own.params()
    heavy_levels = own.heavy_levels
    history_points = own.history_minutes * 60
    ttl_ms = settings.cache_ttl_sec * 1000

    def project(state: AnalyticsState, context: ProjectionContext) -> list[Write]:
        slow = context.slow if isinstance(context.slow, SlowSections) else None
        report = build_report(state, instrument_id=context.symbol, writer=context.writer,
                              now_ms=context.now_ms, slow=slow)  # fmt: skip
        symbol = context.symbol
        return [
            Put(keys.report_key(symbol), msgspec.json.encode(report), ttl_ms),
            Put(keys.heavy_key(symbol), _heavy(state, report, heavy_levels), ttl_ms),
            _history_point(state, report, history_points, ttl_ms),
            IndexRow(msgspec.json.encode(overview_row(report))),
        ]

    return Kind(
        name=NAME,
        new_state=lambda: new_state(params),
        fold=fold,
        project=project,
        encode=encode_checkpoint,
        decode=lambda payload: decode_checkpoint(payload, params),
        slow=compute_slow,
        resync=lambda state: state.book_lost or None,
        indexed=True,
        variables=variables,
        description="order book, flow, liquidity, anomalies and health: the report",
    )


def _heavy(state: AnalyticsState, report: Report, levels: int) -> bytes:
    pp, sp = state.price_precision, state.size_precision

    def side(book_levels: list[Level]) -> list[BookLevel]:
        return [BookLevel(price=to_float(p, pp), qty=to_float(q, sp)) for p, q in book_levels]

    return msgspec.json.encode(
        Heavy(
            symbol=report.symbol,
            writer=report.writer,
            updatedAt=report.updatedAt,
            last_event_ts_ms=report.stream.last_event_ts_ms,
            levels=levels,
            bids=side(state.book.top_bids(levels)),
            asks=side(state.book.top_asks(levels)),
        )
    )


def _history_point(state: AnalyticsState, report: Report, keep: int, ttl_ms: int) -> SeriesPoint:
    ts_ms = state.last_ts_event // _NS_PER_MS
    point = HistoryPoint(
        ts_ms=ts_ms,
        mid_price=report.mid_price,
        spread_bps=report.spread_bps,
        imbalance=report.depth.imbalance,
        net_flow=report.flow.net_flow,
        last_price=report.last_price,
        health=report.health.score,
    )
    second = ts_ms - ts_ms % _MS_PER_S
    return SeriesPoint(
        keys.history_key(report.symbol),
        score=ts_ms,
        member=msgspec.json.encode(point),
        replace_from=second,
        keep=keep,
        ttl_ms=ttl_ms,
    )
