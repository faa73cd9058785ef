"""Anomaly trackers (updated per event, in event time) and detectors (run by the slow cycle).

- Spoofing: a level among the top ``liquidity_levels`` of its side that reaches the wall
  threshold while farther than ``spoof_distance_spreads`` spreads from the mid (a wall away
  from the touch) is watched until it leaves the book: what it
  showed (placed: its qty when watched plus every increase), what went (every decrease), and
  what traded at its price meanwhile. Cancelled = went - traded. A side spoofs when the levels
  watched there in the last ``spoof_window_s`` (placed or pulled in it) cancelled at least
  ``spoof_cancel_rate`` of what they showed, at least ``spoof_min_levels`` of them pulled.
- Iceberg: per price, the fills (trade prints) since the first one, and the visible qty there
  at each fill; the count restarts when that qty leaves +-``iceberg_tolerance`` of its value at
  the first fill, or after ``iceberg_window_s`` without a fill. An iceberg: at least
  ``iceberg_min_fills`` fills whose total exceeds the tolerance (without a refill, the
  visible qty would have left the band), the visible qty still in the band in a book that
  changed after the last fill (trades reach the log before the diff that shows them).
- Flash-crash risk: at least ``flash_min_signals`` of: spread above ``flash_spread_factor`` x
  its recent mean; at least ``flash_min_vacuums`` vacuums; accelerating net selling.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import msgspec

from processors.analytics.book import Book, Change
from processors.analytics.liquidity import fmt_price, fmt_qty, severity
from processors.analytics.params import AnalyticsParams
from processors.analytics.windows import Window
from projections.report import Anomaly, Severity

__all__ = [
    "IcebergState",
    "IcebergTracker",
    "SpoofState",
    "SpoofTracker",
    "flash_crash",
    "icebergs",
    "penalty",
    "spoofing",
]

_NS_PER_S = 1_000_000_000

# A watched level: [start_ts, last_ts, qty before the jump, placed, removed, traded, peak qty]
_START, _LAST, _BASE, _PLACED, _REMOVED, _TRADED, _PEAK = range(7)
Pulled = tuple[bool, int, int, int, int, int, int]
"""A watched level that left the book: (is_bid, price, start_ts, end_ts, placed, cancelled,
peak qty)."""


class SpoofState(msgspec.Struct, array_like=True, frozen=True):
    bids: list[tuple[int, list[int]]]
    asks: list[tuple[int, list[int]]]
    pulled: list[Pulled]


class SpoofTracker:
    __slots__ = ("asks", "bids", "pulled")

    def __init__(self, max_records: int) -> None:
        # price -> watched level; the dicts are the book's watch lists (never rebound)
        self.bids: dict[int, list[int]] = {}
        self.asks: dict[int, list[int]] = {}
        self.pulled: deque[Pulled] = deque(maxlen=max_records)

    def on_changes(
        self,
        changes: list[Change],
        book: Book,
        clock: int,
        large: int,
        distance: float,
        levels: int,
    ) -> None:
        """Level changes at watched prices or reaching ``large``, after they were applied. A
        level is watched from a jump of at least ``large`` (a large order arrived) among the
        top ``levels`` of its side in the book after the diff, more than ``distance`` spreads
        from the mid, until it is back at or below its quantity before the jump (the order
        went). A jump the same diff takes back (one price twice in a diff) is not one: the
        level is not in the book after it."""
        touch = None
        for is_bid, price, old, new in changes:
            side = self.bids if is_bid else self.asks
            level = side.get(price)
            if level is not None:
                if new > old:
                    level[_PLACED] += new - old
                    level[_PEAK] = max(level[_PEAK], new)
                else:
                    level[_REMOVED] += old - new
                level[_LAST] = clock
                if new <= level[_BASE]:
                    del side[price]
                    self.pulled.append((is_bid, price, level[_START], clock, level[_PLACED],
                                        _cancelled(level), level[_PEAK]))  # fmt: skip
            elif new - old >= large:
                if touch is None:
                    touch = _touch(book, levels)
                if (
                    touch
                    and (touch[3] <= price if is_bid else price <= touch[4])
                    and abs(2 * price - touch[0] - touch[1]) > 2 * distance * touch[2]
                    and price in (book.bids if is_bid else book.asks)
                ):
                    side[price] = [clock, clock, old, new - old, 0, 0, new]

    def on_trade(self, is_bid: bool, price: int, qty: int) -> None:
        level = (self.bids if is_bid else self.asks).get(price)
        if level is not None:
            level[_TRADED] += qty

    def forget_absent(self, book: Book) -> None:
        """After the book was replaced: levels no longer in it are not watched (whether they
        were pulled is unknown)."""
        for side, levels in ((self.bids, book.bids), (self.asks, book.asks)):
            for price in [p for p in side if p not in levels]:
                del side[price]

    def expire(self, clock: int, window_ns: int) -> None:
        pulled = self.pulled
        while pulled and pulled[0][3] <= clock - window_ns:
            pulled.popleft()

    def to_state(self) -> SpoofState:
        return SpoofState(list(self.bids.items()), list(self.asks.items()), list(self.pulled))

    def load_state(self, state: SpoofState) -> None:
        self.bids.clear()
        self.bids.update((p, list(level)) for p, level in state.bids)
        self.asks.clear()
        self.asks.update((p, list(level)) for p, level in state.asks)
        self.pulled.clear()
        self.pulled.extend(tuple(record) for record in state.pulled)


def _cancelled(level: list[int]) -> int:
    """What left a watched level without trading, at most what it showed."""
    return min(level[_PLACED], max(0, level[_REMOVED] - level[_TRADED]))


def _touch(book: Book, levels: int) -> tuple[int, int, int, int, int] | None:
    """(best bid, best ask, spread, n-th bid, n-th ask) of a two-sided, uncrossed book."""
    bid, ask = book.best_bid, book.best_ask
    if bid is None or ask is None or ask[0] <= bid[0]:
        return None
    return bid[0], ask[0], ask[0] - bid[0], book.nth_bid(levels) or 0, book.nth_ask(levels) or 0


# A price watched for an iceberg: [visible qty at the first fill, fills, traded, first_ts,
# last_ts]
_REF, _FILLS, _FILLED, _FIRST, _LAST_FILL = range(5)


class IcebergState(msgspec.Struct, array_like=True, frozen=True):
    bids: list[tuple[int, list[int]]]
    asks: list[tuple[int, list[int]]]


class IcebergTracker:
    __slots__ = ("asks", "bids", "max_tracked", "tolerance", "window_ns")

    def __init__(self, max_tracked: int, tolerance: float, window_ns: int) -> None:
        self.max_tracked = max_tracked
        self.tolerance = tolerance
        self.window_ns = window_ns
        self.bids: dict[int, list[int]] = {}
        """price -> watched price, in the order of their last fill (the oldest first)."""
        self.asks: dict[int, list[int]] = {}

    def on_trade(self, is_bid: bool, visible: int, price: int, qty: int, clock: int) -> None:
        """A fill against the resting side ``is_bid`` at ``price``, where the book shows
        ``visible``."""
        side = self.bids if is_bid else self.asks
        watched = side.pop(price, None)
        if watched is not None:
            ref = watched[_REF]
            if (
                clock - watched[_LAST_FILL] <= self.window_ns
                and abs(visible - ref) <= self.tolerance * ref
            ):
                watched[_FILLS] += 1
                watched[_FILLED] += qty
                watched[_LAST_FILL] = clock
                side[price] = watched  # to the end: the dict is ordered by last fill
                return
        if visible:
            if len(side) >= self.max_tracked:
                del side[next(iter(side))]
            side[price] = [visible, 1, qty, clock, clock]

    def expire(self, book: Book, clock: int) -> None:
        """Forget the prices without a fill for the window, and those whose visible qty left
        the band (gone, or filled without a refill): their count would restart anyway."""
        tolerance, window_ns = self.tolerance, self.window_ns
        for side, levels in ((self.bids, book.bids), (self.asks, book.asks)):
            gone = [
                price
                for price, (ref, _, _, _, last) in side.items()
                if clock - last > window_ns or abs(levels.get(price, 0) - ref) > tolerance * ref
            ]
            for price in gone:
                del side[price]

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def to_state(self) -> IcebergState:
        return IcebergState(list(self.bids.items()), list(self.asks.items()))

    def load_state(self, state: IcebergState) -> None:
        self.bids = {p: list(w) for p, w in state.bids}
        self.asks = {p: list(w) for p, w in state.asks}


def spoofing(
    tracker: SpoofTracker, clock: int, params: AnalyticsParams, size_precision: int
) -> list[Anomaly]:
    since = clock - params.spoof_window_s * _NS_PER_S
    anomalies = []
    for is_bid, live in ((True, tracker.bids), (False, tracker.asks)):
        pulled = [r for r in tracker.pulled if r[0] == is_bid and r[3] > since]
        started = [w for w in live.values() if w[_START] > since]
        placed = sum(r[4] for r in pulled) + sum(w[_PLACED] for w in started)
        cancelled = sum(r[5] for r in pulled) + sum(_cancelled(w) for w in started)
        if len(pulled) < params.spoof_min_levels or not placed:
            continue
        rate = cancelled / placed
        if rate < params.spoof_cancel_rate:
            continue
        side = "bid" if is_bid else "ask"
        peak = max(r[6] for r in pulled)
        anomalies.append(
            Anomaly(
                type="spoofing",
                severity=severity(rate, params.spoof_medium_rate, params.spoof_high_rate),
                side=side,
                note=f"{side} side: {len(pulled)} large orders (up to "
                f"{fmt_qty(peak, size_precision)}) more than {params.spoof_distance_spreads:g} "
                f"spreads from the mid pulled in the last {params.spoof_window_s} s; "
                f"{rate:.0%} of the quantity shown was cancelled unfilled",
            )
        )
    return anomalies


def icebergs(
    tracker: IcebergTracker,
    book: Book,
    book_ts: int,
    clock: int,
    params: AnalyticsParams,
    price_precision: int,
    size_precision: int,
    price_tick: int = 1,
) -> list[Anomaly]:
    window_ns, tolerance = tracker.window_ns, tracker.tolerance
    anomalies = []
    for is_bid, side, levels in ((True, tracker.bids, book.bids), (False, tracker.asks, book.asks)):
        for price, (ref, fills, filled, _first, last) in side.items():
            visible = levels.get(price, 0)
            if (
                fills < params.iceberg_min_fills
                or filled <= tolerance * ref
                or clock - last > window_ns
                or book_ts <= last  # the book has not shown the last fill's effect yet
                or abs(visible - ref) > tolerance * ref
            ):
                continue
            multiple = filled / ref
            name = "bid" if is_bid else "ask"
            at = fmt_price(price, price_precision, price_tick)
            anomalies.append(
                Anomaly(
                    type="iceberg",
                    severity=severity(
                        multiple, params.iceberg_medium_multiple, params.iceberg_high_multiple
                    ),
                    side=name,
                    price=price / 10**price_precision,
                    note=f"{name} iceberg at {at}: {fills} fills "
                    f"traded {fmt_qty(filled, size_precision)} ({multiple:.1f}x the visible "
                    f"{fmt_qty(ref, size_precision)}, which stays within "
                    f"{tolerance:.0%})",
                )
            )
    return anomalies


def flash_crash(
    *,
    book: Book,
    spread_baseline: Window,
    flow: Window,
    vacuums: int,
    clock: int,
    params: AnalyticsParams,
    size_precision: int,
) -> list[Anomaly]:
    signals: list[str] = []
    bid, ask = book.best_bid, book.best_ask
    spread_sum, samples = spread_baseline.totals(clock)
    if bid and ask and samples and spread_sum:
        spread = ask[0] - bid[0]
        ratio = spread * samples / spread_sum
        if ratio > params.flash_spread_factor:
            signals.append(f"spread {ratio:.1f}x its {params.spread_mean_window_s} s mean")
    if vacuums >= params.flash_min_vacuums:
        signals.append(f"{vacuums} vacuums in the book")
    span = params.flash_flow_window_s * _NS_PER_S
    buy, sell = flow.totals(clock, span)
    buy_both, sell_both = flow.totals(clock, 2 * span)
    selling, selling_before = sell - buy, (sell_both - sell) - (buy_both - buy)
    if (
        selling > 0
        and selling >= params.flash_flow_share * (buy + sell)
        and selling > selling_before
    ):
        window = params.flash_flow_window_s
        signals.append(
            f"net selling {fmt_qty(selling, size_precision)} in {window} s "
            f"(the {window} s before: {fmt_qty(selling_before, size_precision)})"
        )
    if len(signals) < params.flash_min_signals:
        return []
    level: Severity = "high" if len(signals) == 3 else "medium"
    return [Anomaly(type="flash_crash_risk", severity=level, note="; ".join(signals))]


def penalty(anomalies: Sequence[Anomaly], params: AnalyticsParams) -> float:
    weights = {"low": params.penalty_low, "medium": params.penalty_medium,
               "high": params.penalty_high}  # fmt: skip
    return sum(weights[a.severity] for a in anomalies)
