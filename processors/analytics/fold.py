"""The analytics fold: events -> per-symbol state, a pure function of the event log.

Time inside the fold is event time only (the venue's ``ts_event``): replaying a prefix of a
stream gives the same state, whatever the wall clock did. ``fold`` mutates the state in place
for speed; nothing else mutates it.

Per event the work is O(levels changed): the book, the running windows, and the anomaly
trackers of the prices an event touches. Once per event-time second (at the first event of a
new second) the book is sampled: top-N depth, the level-quantity window, the spread. All
scanning (walls, vacuums, the volume profile, the detectors) is left to the slow cycle
(``processors.analytics.slow.compute_slow``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from core.events import BookDelta, BookSnapshot, Event, Status, Ticker, Trade
from processors.analytics.anomalies import IcebergTracker, SpoofTracker
from processors.analytics.book import NEVER, Book, Watch
from processors.analytics.liquidity import thresholds
from processors.analytics.params import AnalyticsParams, analytics_params
from processors.analytics.profile import ProfileWindow
from processors.analytics.windows import QuantityWindow, Window
from processors.runtime.recent import RecentTrades

__all__ = ["AnalyticsParams", "AnalyticsState", "analytics_params", "fold", "new_state"]

_NS_PER_S = 1_000_000_000


@dataclass(slots=True, kw_only=True)
class AnalyticsState:
    params: AnalyticsParams
    book: Book = field(init=False)
    price_precision: int = 0
    size_precision: int = 0
    price_tick: int = 0
    """The instrument's tick at ``price_precision`` as the data shows it: the greatest common
    divisor of the prices of the snapshots and trades (0 before the first). Binance writes
    every price with 8 decimals whatever its tick, so the precision alone would make a
    0.01 tick look like 0.00000001."""
    update_id: int = 0
    """The venue update id the book is at (last applied ``u``)."""
    synced: bool = False
    """A snapshot is applied and no update was missed since."""
    ingest_status: str = ""
    """The last status event's kind ("gap", "resync", "stopped", ...)."""
    book_lost: str = ""
    """Why the book was dropped on its own finding (a delta that crossed it, update ids
    skipped), until the next snapshot: the runtime asks ingest for one."""
    gaps: int = 0
    clock_ns: int = 0
    """Event clock: the latest venue time folded so far."""
    book_ts: int = 0
    """Venue time of the last book change applied (snapshot or delta)."""
    last_ts_event: int = 0
    events_folded: int = 0
    last_id: str = "0-0"
    ticker: Ticker | None = None
    last_trade: Trade | None = None
    recent_trades: RecentTrades = field(default_factory=RecentTrades)
    """The trades folded in the last seconds: a repeat of one is not folded again."""
    rate: Window = field(init=False)
    """Events and trades over the rate window."""
    flow: Window = field(init=False)
    """Aggressive buy and sell base quantity over the flow window."""
    depth_baseline: Window = field(init=False)
    """Top-N depth (both sides, base qty) sampled once per event-time second, and the count
    of samples: the recent mean that the depth health component compares against."""
    spread_baseline: Window = field(init=False)
    """Spread (ask - bid, fixed point) sampled once per event-time second, and the count."""
    sampled_s: int = -1
    """The event-time second the book was last sampled in."""
    next_sample_ns: int = 0
    """Where the second after ``sampled_s`` starts (derived)."""
    quantities: QuantityWindow = field(init=False)
    """The level-quantity window the wall and thin thresholds come from."""
    profile: ProfileWindow = field(init=False)
    spoof: SpoofTracker = field(init=False)
    icebergs: IcebergTracker = field(init=False)
    watch: Watch = field(init=False)
    """What the book reports back per delta: watched spoof candidates, and levels at or
    above the wall threshold (``watch.min_qty``, derived from ``quantities``)."""

    def __post_init__(self) -> None:
        p = self.params
        self.book = Book(p.book_max_levels)
        self.rate = Window(p.rate_window_s * _NS_PER_S, _NS_PER_S // 10)
        self.flow = Window(p.flow_window_s * _NS_PER_S, _NS_PER_S // 10)
        self.depth_baseline = Window(p.depth_baseline_window_s * _NS_PER_S, _NS_PER_S)
        self.spread_baseline = Window(p.spread_mean_window_s * _NS_PER_S, _NS_PER_S)
        self.quantities = QuantityWindow(p.level_window_size)
        self.profile = ProfileWindow(p.profile_window_min)
        self.spoof = SpoofTracker(p.spoof_max_records)
        self.icebergs = IcebergTracker(
            p.iceberg_max_tracked, p.iceberg_tolerance, p.iceberg_window_s * _NS_PER_S
        )
        self.watch = Watch(self.spoof.bids, self.spoof.asks)

    def refresh_thresholds(self) -> None:
        """Derive the wall threshold the book watches for from the level-quantity window."""
        limits = thresholds(self.quantities, self.params)
        self.watch.min_qty = NEVER if limits is None else limits.large_qty


def new_state(params: AnalyticsParams | None = None) -> AnalyticsState:
    return AnalyticsState(params=params or AnalyticsParams())


def fold(state: AnalyticsState, event: Event, entry_id: str) -> None:
    """Fold one event; raises ValueError (state unchanged) for an event it cannot use."""
    kind = type(event)
    apply = _APPLY.get(kind)
    if apply is None:
        raise ValueError(f"{kind.__name__} is not an event the analytics fold knows")
    check = _CHECK.get(kind)
    if check is not None and not check(state, event):
        state.last_id = entry_id
        return
    ts = event.ts_event
    if ts > state.clock_ns:
        state.clock_ns = ts
    state.last_ts_event = ts
    state.events_folded += 1
    state.last_id = entry_id
    apply(state, event)
    state.rate.add(ts, 1, kind is Trade)
    if state.clock_ns >= state.next_sample_ns:
        _sample(state)


def _check_trade(state: AnalyticsState, trade: Trade) -> bool:
    """False for a trade already folded (processors.runtime.recent). What an event may hold
    at all (positive prices, sizes, precisions) the event's read checked
    (``core.events.read_entry``)."""
    return state.recent_trades.first_time(trade.trade_id, trade.ts_event)


def _apply_delta(state: AnalyticsState, delta: BookDelta) -> None:
    if not state.synced or delta.last_update_id <= state.update_id:
        return  # before the first snapshot, or already contained in it
    if delta.first_update_id > state.update_id + 1:
        # a hole in the log that ingest did not announce (or a snapshot from another run of
        # the venue, with ids from before): as a gap, and a snapshot is asked for
        _lose_book(state, "update ids skipped")
        return
    watch = state.watch
    book = state.book
    book.apply(delta.bids, delta.asks, watch)
    best_bid, best_ask = book.best_bid, book.best_ask
    if best_bid is not None and best_ask is not None and best_bid[0] >= best_ask[0]:
        watch.changes.clear()
        _lose_book(state, "a delta crossed the book")  # no venue book is crossed: ours is wrong
        return
    if watch.changes:
        p = state.params
        state.spoof.on_changes(watch.changes, state.book, state.clock_ns, watch.min_qty,
                               p.spoof_distance_spreads, p.liquidity_levels)  # fmt: skip
        watch.changes.clear()
    state.update_id = delta.last_update_id
    state.book_ts = delta.ts_event
    state.price_precision = delta.price_precision
    state.size_precision = delta.size_precision


def _apply_trade(state: AnalyticsState, trade: Trade) -> None:
    state.last_trade = trade
    if not state.synced:  # volumes need the precision before the first book arrives
        state.price_precision = trade.price_precision
        state.size_precision = trade.size_precision
    price, qty, clock = trade.price, trade.qty, state.clock_ns
    state.price_tick = math.gcd(state.price_tick, price)
    # A buyer lifts the asks, a seller hits the bids.
    resting_bid = trade.aggressor != "buy"
    if resting_bid:
        state.flow.add(trade.ts_event, 0, qty)
        visible = state.book.bids.get(price, 0)
    else:
        state.flow.add(trade.ts_event, qty, 0)
        visible = state.book.asks.get(price, 0)
    state.profile.add(clock, price, qty)
    state.icebergs.on_trade(resting_bid, visible, price, qty, clock)
    state.spoof.on_trade(resting_bid, price, qty)


def _apply_snapshot(state: AnalyticsState, snapshot: BookSnapshot) -> None:
    if snapshot.price_precision != state.price_precision:
        state.price_tick = 0  # another scale: learn the tick again
    state.price_tick = math.gcd(state.price_tick, *(p for p, _ in snapshot.bids),
                                *(p for p, _ in snapshot.asks))  # fmt: skip
    state.book.load(snapshot.bids, snapshot.asks)
    state.spoof.forget_absent(state.book)
    state.price_precision = snapshot.price_precision
    state.size_precision = snapshot.size_precision
    state.update_id = snapshot.update_id
    state.book_ts = snapshot.ts_event
    state.synced = True
    state.book_lost = ""


def _apply_ticker(state: AnalyticsState, ticker: Ticker) -> None:
    state.ticker = ticker


def _apply_status(state: AnalyticsState, status: Status) -> None:
    state.ingest_status = status.status
    if status.status == "gap":
        _lose_book(state)  # until the next snapshot the book is known to be wrong: show none


def _lose_book(state: AnalyticsState, found: str = "") -> None:
    state.book_lost = found
    state.gaps += 1
    state.synced = False
    state.book.clear()
    state.spoof.forget_absent(state.book)
    state.icebergs.clear()


_APPLY: dict[type, Callable[[AnalyticsState, Event], None]] = {
    BookDelta: _apply_delta,
    Trade: _apply_trade,
    BookSnapshot: _apply_snapshot,
    Ticker: _apply_ticker,
    Status: _apply_status,
}
_CHECK: dict[type, Callable[[AnalyticsState, Event], bool]] = {Trade: _check_trade}


def _sample(state: AnalyticsState) -> None:
    """Once per event-time second: the book's top levels into the depth baseline and the
    level-quantity window, the spread into its baseline; expired trackers out."""
    clock = state.clock_ns
    state.sampled_s = clock // _NS_PER_S
    state.next_sample_ns = (state.sampled_s + 1) * _NS_PER_S
    p = state.params
    if state.synced:
        book = state.book
        n = max(p.depth_levels, p.liquidity_levels)
        bids, asks = book.top_bids(n), book.top_asks(n)
        depth = sum(q for _, q in bids[: p.depth_levels])
        depth += sum(q for _, q in asks[: p.depth_levels])
        state.depth_baseline.add(clock, depth, 1)
        state.quantities.extend(q for _, q in bids[: p.liquidity_levels])
        state.quantities.extend(q for _, q in asks[: p.liquidity_levels])
        state.refresh_thresholds()
        if bids and asks:
            state.spread_baseline.add(clock, asks[0][0] - bids[0][0], 1)
    state.icebergs.expire(state.book, clock)
    state.spoof.expire(clock, p.spoof_window_s * _NS_PER_S)
