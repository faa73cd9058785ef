"""The analytics fold: events -> per-symbol state, a pure function of the event log.

Time inside the fold is event time only (the venue's ``ts_event``): replaying a prefix of a
stream gives the same state, whatever the wall clock did. ``fold`` mutates the state in place
for speed; nothing else mutates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from context8.events import BookDelta, BookSnapshot, Event, Status, Ticker, Trade
from processors.book import Book
from processors.windows import Window

__all__ = ["AnalyticsParams", "AnalyticsState", "fold", "new_state"]

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyticsParams:
    depth_levels: int = 20
    rate_window_s: int = 10
    flow_window_s: int = 30
    depth_baseline_window_s: int = 300
    spread_good_bps: float = 2.0
    spread_bad_bps: float = 50.0


@dataclass(slots=True, kw_only=True)
class AnalyticsState:
    params: AnalyticsParams
    book: Book = field(default_factory=Book)
    price_precision: int = 0
    size_precision: int = 0
    update_id: int = 0
    """The venue update id the book is at (last applied ``u``)."""
    synced: bool = False
    """A snapshot is applied and no update was missed since."""
    ingest_status: str = ""
    """The last status event's kind ("gap", "resync", "stopped", ...)."""
    gaps: int = 0
    clock_ns: int = 0
    """Event clock: the latest venue time folded so far."""
    last_ts_event: int = 0
    events_folded: int = 0
    last_id: str = "0-0"
    ticker: Ticker | None = None
    last_trade: Trade | None = None
    rate: Window = field(init=False)
    """Events and trades over the rate window."""
    flow: Window = field(init=False)
    """Aggressive buy and sell base quantity over the flow window."""
    depth_baseline: Window = field(init=False)
    """Top-N depth (both sides, base qty) sampled once per event-time second, and the count
    of samples: the recent mean that the depth health component compares against."""
    depth_sampled_s: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        p = self.params
        self.rate = Window(p.rate_window_s * _NS_PER_S, _NS_PER_S // 10, 2)
        self.flow = Window(p.flow_window_s * _NS_PER_S, _NS_PER_S // 10, 2)
        self.depth_baseline = Window(p.depth_baseline_window_s * _NS_PER_S, _NS_PER_S, 2)


def new_state(params: AnalyticsParams | None = None) -> AnalyticsState:
    return AnalyticsState(params=params or AnalyticsParams())


def fold(state: AnalyticsState, event: Event, entry_id: str) -> None:
    """Fold one event; raises ValueError (state unchanged) for an event it cannot use."""
    if isinstance(event, Ticker):
        _check_numbers(event)
    elif isinstance(event, Trade) and _repeated(state.last_trade, event):
        state.last_id = entry_id
        return  # an append retried after a timeout: the venue's trade ids only grow
    ts = event.ts_event
    state.clock_ns = max(state.clock_ns, ts)
    state.last_ts_event = ts
    state.events_folded += 1
    state.last_id = entry_id
    is_trade = 0
    match event:
        case BookDelta():
            _apply_delta(state, event)
        case Trade():
            is_trade = 1
            state.last_trade = event
            if not state.synced:  # volumes need the precision before the first book arrives
                state.price_precision = event.price_precision
                state.size_precision = event.size_precision
            buy = event.qty if event.aggressor == "buy" else 0
            state.flow.add(ts, (buy, event.qty - buy))
        case BookSnapshot():
            state.book.load(event.bids, event.asks)
            state.price_precision = event.price_precision
            state.size_precision = event.size_precision
            state.update_id = event.update_id
            state.synced = True
        case Ticker():
            state.ticker = event
        case Status():
            state.ingest_status = event.status
            if event.status == "gap":
                # Until the next snapshot the book is known to be wrong: show none at all.
                state.gaps += 1
                state.synced = False
                state.book.clear()
    state.rate.add(ts, (1, is_trade))
    _sample_depth(state)


def _repeated(last: Trade | None, trade: Trade) -> bool:
    if last is None or not (trade.trade_id.isdigit() and last.trade_id.isdigit()):
        return False
    return int(trade.trade_id) <= int(last.trade_id)


def _check_numbers(ticker: Ticker) -> None:
    """A ticker whose figures are not numbers is refused here (ValueError: the entry goes to
    the dead letters), not later when a report is built from it."""
    for value in (ticker.last_price, ticker.open_price, ticker.high_price, ticker.low_price,
                  ticker.volume, ticker.quote_volume, ticker.price_change_pct):  # fmt: skip
        float(value)


def _apply_delta(state: AnalyticsState, delta: BookDelta) -> None:
    if not state.synced or delta.last_update_id <= state.update_id:
        return  # before the first snapshot, or already contained in it
    if delta.first_update_id > state.update_id + 1:
        # A hole in the log that ingest did not announce: same treatment as a gap event.
        state.gaps += 1
        state.synced = False
        state.book.clear()
        return
    state.book.apply(delta.bids, delta.asks)
    state.update_id = delta.last_update_id
    state.price_precision = delta.price_precision
    state.size_precision = delta.size_precision


def _sample_depth(state: AnalyticsState) -> None:
    second = state.clock_ns // _NS_PER_S
    if second == state.depth_sampled_s or not state.synced:
        return
    state.depth_sampled_s = second
    n = state.params.depth_levels
    depth = sum(q for _, q in state.book.top_bids(n)) + sum(q for _, q in state.book.top_asks(n))
    state.depth_baseline.add(state.clock_ns, (depth, 1))
