"""The analytics projection: folded state (+ the latest slow-cycle sections) -> the report."""

from __future__ import annotations

from core.events import Level, to_float
from core.times import iso_ms
from processors.analytics import figures
from processors.analytics.fold import AnalyticsState
from processors.analytics.slow import SlowSections, current_liquidity
from projections.report import (
    BookLevel,
    Depth,
    Flow,
    Health,
    HealthComponents,
    Ingestion,
    Liquidity,
    Report,
    Stream,
    Writer,
)

__all__ = ["build_report"]

_NS_PER_MS = 1_000_000


def build_report(
    state: AnalyticsState,
    *,
    instrument_id: str,
    writer: Writer,
    now_ms: int,
    slow: SlowSections | None = None,
) -> Report:
    """The report of ``state`` published at wall time ``now_ms``: fast figures from the
    state, liquidity and anomalies (and the anomaly penalty of health) from ``slow``, the
    latest slow cycle (empty before the first one)."""
    params = state.params
    book = state.book
    pp, sp = state.price_precision, state.size_precision
    clock = state.clock_ns
    last_event_ms = state.last_ts_event // _NS_PER_MS
    age_ms = max(0, now_ms - last_event_ms)

    best_bid, best_ask = book.best_bid, book.best_ask
    spread = mid = micro = None
    if best_bid and best_ask:
        spread = figures.spread_bps(best_bid[0], best_ask[0])
        mid = figures.mid_price(best_bid[0], best_ask[0], pp)
        micro = figures.micro_price(best_bid[0], best_bid[1], best_ask[0], best_ask[1], pp)

    bids = book.top_bids(params.depth_levels)
    asks = book.top_asks(params.depth_levels)
    bid_volume = sum(q for _, q in bids)
    ask_volume = sum(q for _, q in asks)
    imbalance = figures.imbalance(bid_volume, ask_volume)

    events, trades = state.rate.totals(clock)
    rate_span_s = max(1.0, state.rate.covered_ns(clock) / 1e9)
    buy, sell = state.flow.totals(clock)

    depth_sum, samples = state.depth_baseline.totals(clock)
    depth_ratio = (bid_volume + ask_volume) / (depth_sum / samples) if depth_sum else 1.0
    components = figures.health_components(
        spread_bps=spread,
        spread_good_bps=params.spread_good_bps,
        spread_bad_bps=params.spread_bad_bps,
        depth_ratio=depth_ratio,
        imbalance=imbalance,
        net_flow_share=abs(buy - sell) / (buy + sell) if buy + sell else 0.0,
        anomaly_penalty=slow.anomaly_penalty if slow else 0.0,
        age_ms=age_ms,
    )
    status, reason = figures.ingestion_status(age_ms, bool(best_bid), bool(best_ask), state.synced)
    ticker = state.ticker
    last_price = None
    if state.last_trade is not None:
        last_price = to_float(state.last_trade.price, state.last_trade.price_precision)
    elif ticker is not None:
        last_price = float(ticker.last_price)

    return Report(
        writer=writer,
        updatedAt=now_ms,
        symbol=instrument_id,
        venue=instrument_id.rpartition(".")[2],
        generated_at=iso_ms(now_ms),
        data_age_ms=age_ms,
        ingestion=Ingestion(status=status, last_update=iso_ms(last_event_ms), reason=reason),
        last_price=last_price,
        change_24h_pct=float(ticker.price_change_pct) if ticker else None,
        high_24h=float(ticker.high_price) if ticker else None,
        low_24h=float(ticker.low_price) if ticker else None,
        volume_24h=float(ticker.volume) if ticker else None,
        best_bid=_level(best_bid, pp, sp),
        best_ask=_level(best_ask, pp, sp),
        spread_bps=spread,
        mid_price=mid,
        micro_price=micro,
        depth=Depth(
            levels=params.depth_levels,
            bids=[_level(level, pp, sp) for level in bids],
            asks=[_level(level, pp, sp) for level in asks],
            bid_volume=to_float(bid_volume, sp),
            ask_volume=to_float(ask_volume, sp),
            imbalance=imbalance,
        ),
        flow=Flow(
            window_sec=params.rate_window_s,
            events_per_sec=round(events / rate_span_s, 3),
            trades_per_sec=round(trades / rate_span_s, 3),
            net_flow_window_sec=params.flow_window_s,
            buy_volume=to_float(buy, sp),
            sell_volume=to_float(sell, sp),
            net_flow=to_float(buy - sell, sp),
        ),
        liquidity=current_liquidity(slow, book) if slow else Liquidity(),
        anomalies=slow.anomalies if slow else [],
        health=Health(
            score=figures.health_score(components),
            components=HealthComponents(**components),
            anomaly_penalty=slow.anomaly_penalty if slow else 0.0,
        ),
        stream=Stream(
            last_id=state.last_id,
            events_folded=state.events_folded,
            last_event_ts_ms=last_event_ms,
            slow_last_id=slow.last_id if slow else None,
            slow_event_ts_ms=slow.clock_ns // _NS_PER_MS if slow else None,
            repeated_trades=state.recent_trades.repeats,
        ),
    )


def _level(level: Level | None, price_precision: int, size_precision: int) -> BookLevel | None:
    if level is None:
        return None
    return BookLevel(
        price=to_float(level[0], price_precision), qty=to_float(level[1], size_precision)
    )
