"""The slow cycle: liquidity (walls, vacuums, volume profile) and anomalies from the folded
state, every ``NT_SLOW_PERIOD_MS`` (2000 ms).

``compute_slow`` reads the state and never changes it: it is a pure function of the events
folded so far, so any owner computes the same sections at the same stream entry. It does the
scanning the fold leaves out (the top levels against the thresholds, the profile's buckets,
the trackers), in O(levels scanned + profile bins + tracked prices), never over the trades.
"""

from __future__ import annotations

import msgspec

from core.times import iso_ms
from processors.analytics.anomalies import flash_crash, icebergs, penalty, spoofing
from processors.analytics.book import Book
from processors.analytics.fold import AnalyticsState
from processors.analytics.liquidity import find_vacuums, find_walls, thresholds
from projections.report import Anomaly, Liquidity, VolumeProfile

__all__ = ["SlowSections", "compute_slow", "current_liquidity"]

_NS_PER_MS = 1_000_000

_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


class SlowSections(msgspec.Struct, frozen=True, kw_only=True):
    liquidity: Liquidity
    wall_prices: list[int]
    """Each wall's price, exact (fixed point), in the order of ``liquidity.walls``."""
    vacuum_starts: list[int]
    """Each vacuum's price nearest the touch, exact, in the order of ``liquidity.vacuums``."""
    wall_qty: int
    """The wall threshold the walls were found with, exact (0 with no walls)."""
    anomalies: list[Anomaly]
    anomaly_penalty: float
    """Summed severity penalties of ``anomalies`` (the health anomalies component is 100
    minus it, at least 0)."""
    last_id: str
    """The stream entry the sections were computed at."""
    clock_ns: int
    """The venue time they stand at."""


def current_liquidity(slow: SlowSections, book: Book) -> Liquidity:
    """The slow cycle's liquidity as it still holds in ``book``, the one being published: a
    wall whose level is gone or now below the threshold, or a vacuum the touch has moved
    past, is left out (between two slow cycles the fast figures move on)."""
    liquidity = slow.liquidity
    walls = [wall for wall, price in zip(liquidity.walls, slow.wall_prices, strict=True)
             if _side(book, wall.side).get(price, 0) >= slow.wall_qty]  # fmt: skip
    vacuums = [vacuum for vacuum, start in zip(liquidity.vacuums, slow.vacuum_starts, strict=True)
               if _behind_touch(book, vacuum.side, start)]  # fmt: skip
    if len(walls) == len(liquidity.walls) and len(vacuums) == len(liquidity.vacuums):
        return liquidity
    return msgspec.structs.replace(liquidity, walls=walls, vacuums=vacuums)


def _side(book: Book, side: str) -> dict[int, int]:
    return book.bids if side == "bid" else book.asks


def _behind_touch(book: Book, side: str, price: int) -> bool:
    """``price`` is at or behind the best price of its side (not past the touch)."""
    best = book.best_bid if side == "bid" else book.best_ask
    if best is None:
        return False
    return price <= best[0] if side == "bid" else price >= best[0]


def compute_slow(state: AnalyticsState) -> SlowSections:
    p = state.params
    book, clock = state.book, state.clock_ns
    pp, sp = state.price_precision, state.size_precision
    tick = state.price_tick or 1
    walls, vacuums, wall_prices, vacuum_starts = [], [], [], []
    limits = thresholds(state.quantities, p)
    if limits is not None and state.synced:
        for side, levels in (("bid", book.top_bids(p.liquidity_levels)),
                             ("ask", book.top_asks(p.liquidity_levels))):  # fmt: skip
            for wall, price in find_walls(side, levels, limits, p, pp, sp, tick):
                walls.append(wall)
                wall_prices.append(price)
            for vacuum, start in find_vacuums(side, levels, limits, p, pp, sp, tick):
                vacuums.append(vacuum)
                vacuum_starts.append(start)

    profile = None
    width = p.profile_bin_ticks * tick
    figures = state.profile.figures(clock, width, p.profile_value_area, p.profile_min_trades)
    if figures is not None:
        scale = 10**pp
        profile = VolumeProfile(
            window_sec=p.profile_window_min * 60,
            trade_count=figures.trade_count,
            bin_size=width / scale,
            # exact ticks: the POC is the bin's middle tick (its lower middle, for an even
            # width), not a midpoint between ticks that no order can rest at
            poc=(figures.poc_bin * width + (p.profile_bin_ticks - 1) // 2 * tick) / scale,
            val=figures.val_bin * width / scale,
            vah=(figures.vah_bin * width + width - tick) / scale,
            volume=figures.volume / 10**sp,
        )

    anomalies: list[Anomaly] = []
    if limits is not None:
        anomalies += spoofing(state.spoof, clock, p, sp)
    anomalies += icebergs(state.icebergs, book, state.book_ts, clock, p, pp, sp, tick)
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
            as_of=iso_ms(clock // _NS_PER_MS),
        ),
        wall_prices=wall_prices,
        vacuum_starts=vacuum_starts,
        wall_qty=limits.wall if walls else 0,
        anomalies=anomalies,
        anomaly_penalty=penalty(anomalies, p),
        last_id=state.last_id,
        clock_ns=clock,
    )
