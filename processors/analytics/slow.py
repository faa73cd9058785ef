"""The slow cycle: liquidity (walls, vacuums, volume profile) and anomalies from the folded
state, every ``NT_SLOW_PERIOD_MS`` (2000 ms).

``compute_slow`` reads the state and never changes it: it is a pure function of the events
folded so far, so any owner computes the same sections at the same stream entry. It does the
scanning the fold leaves out (the top levels against the thresholds, the profile's buckets,
the trackers), in O(levels scanned + profile bins + tracked prices), never over the trades.
"""

from __future__ import annotations

import msgspec

from processors.analytics.anomalies import flash_crash, icebergs, penalty, spoofing
from processors.analytics.fold import AnalyticsState
from processors.analytics.liquidity import find_vacuums, find_walls, thresholds
from projections.report import Anomaly, Liquidity, VolumeProfile

__all__ = ["SlowSections", "compute_slow"]

_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


class SlowSections(msgspec.Struct, frozen=True, kw_only=True):
    liquidity: Liquidity
    anomalies: list[Anomaly]
    anomaly_penalty: float
    """Summed severity penalties of ``anomalies`` (the health anomalies component is 100
    minus it, at least 0)."""
    last_id: str
    """The stream entry the sections were computed at."""


def compute_slow(state: AnalyticsState) -> SlowSections:
    p = state.params
    book, clock = state.book, state.clock_ns
    pp, sp = state.price_precision, state.size_precision
    walls, vacuums = [], []
    limits = thresholds(state.quantities, p)
    if limits is not None and state.synced:
        for side, levels in (("bid", book.top_bids(p.liquidity_levels)),
                             ("ask", book.top_asks(p.liquidity_levels))):  # fmt: skip
            walls += find_walls(side, levels, limits, p, pp, sp)
            vacuums += find_vacuums(side, levels, limits, p, pp, sp)

    profile = None
    figures = state.profile.figures(clock, p.profile_value_area, p.profile_min_trades)
    if figures is not None:
        ticks, tick = p.profile_bin_ticks, 10**pp
        profile = VolumeProfile(
            window_sec=p.profile_window_min * 60,
            trade_count=figures.trade_count,
            bin_size=ticks / tick,
            poc=(figures.poc_bin * ticks + (ticks - 1) / 2) / tick,
            val=figures.val_bin * ticks / tick,
            vah=(figures.vah_bin * ticks + ticks - 1) / tick,
            volume=figures.volume / 10**sp,
        )

    anomalies: list[Anomaly] = []
    if limits is not None:
        anomalies += spoofing(state.spoof, clock, p, sp)
    anomalies += icebergs(state.icebergs, book, state.book_ts, clock, p, pp, sp)
    if state.synced:
        anomalies += flash_crash(book=book, spread_baseline=state.spread_baseline,
                                 flow=state.flow, vacuums=len(vacuums), clock=clock, params=p,
                                 size_precision=sp)  # fmt: skip
    anomalies.sort(key=lambda a: (_SEVERITY_ORDER[a.severity], a.type, a.side or "", a.price or 0))
    return SlowSections(
        liquidity=Liquidity(
            walls=walls,
            vacuums=vacuums,
            volume_profile=profile,
            wall_threshold=None if limits is None else round(limits.wall / 10**sp, 8),
            thin_threshold=None if limits is None else limits.thin / 10**sp,
            observations=len(state.quantities),
        ),
        anomalies=anomalies,
        anomaly_penalty=penalty(anomalies, p),
        last_id=state.last_id,
    )
