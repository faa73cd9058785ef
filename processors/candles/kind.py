"""The candles kind: OHLCV bars at 1 s, 1 m and 5 m from the trades of ``md:{SYM}``.

Bars are cut in venue (event) time, so a replay gives the same bars. Sums are exact
(fixed-point integers: volume in size units, quote volume in price x size units); floats are
made only when a bar is projected. A bar exists only for an interval with trades (no
zero-volume filler bars), and it is ``closed`` once any event of the stream is at or past its
end. A repeated trade (the same id at the same venue time, within seconds: see
processors/runtime/recent.py) is counted once. The newest ``NT_CANDLES_KEEP`` bars (500) per
interval are kept, in the state and in ``candles:{SYM}:{interval}`` (projections/series.py).

Each publish writes the bars changed since the last one (every bar of a backfill reaches
Redis, not just the last) and the newest bar of each interval (so it shows closed once its
time has passed, even with no trade since).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from core import keys
from core.events import Event, Trade
from core.settings import Settings
from processors.runtime.kind import Kind, ProjectionContext, kind_settings
from processors.runtime.recent import RecentTrades
from projections.series import CANDLE_INTERVALS, Candle
from projections.writer import SeriesPoint, Write

__all__ = [
    "NAME",
    "CandlesState",
    "candles",
    "decode_state",
    "encode_state",
    "fold",
    "kind",
    "new_state",
]

NAME = "candles"
STATE_VERSION = 3
_NS_PER_MS = 1_000_000


class _Bar(msgspec.Struct):
    open_ms: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote: int
    """Sum of price x qty, at the state's price and size precision together."""
    trades: int
    buy_volume: int


class CandlesState(msgspec.Struct):
    version: int
    keep: int
    price_precision: int = -1
    """-1 until the first trade."""
    size_precision: int = 0
    clock_ms: int = 0
    """The latest venue time folded (any event)."""
    recent_trades: RecentTrades = msgspec.field(default_factory=RecentTrades)
    bars: dict[str, list[_Bar]] = {}
    """Interval -> bars, oldest first; the last may still be open."""
    changed: dict[str, list[int]] = {}
    """Interval -> open_ms of the bars changed since the last publish."""


def new_state(keep: int = 500) -> CandlesState:
    return CandlesState(
        version=STATE_VERSION,
        keep=keep,
        bars={name: [] for name in CANDLE_INTERVALS},
        changed={name: [] for name in CANDLE_INTERVALS},
    )


def fold(state: CandlesState, event: Event, entry_id: str) -> None:
    ts_ms = event.ts_event // _NS_PER_MS
    state.clock_ms = max(state.clock_ms, ts_ms)
    if not isinstance(event, Trade):
        return
    if not state.recent_trades.first_time(event.trade_id, event.ts_event):
        return
    price, qty = _at_state_precision(state, event)
    buy = qty if event.aggressor == "buy" else 0
    for name, length in CANDLE_INTERVALS.items():
        bars = state.bars[name]
        open_ms = ts_ms - ts_ms % length
        bar = _bar_for(bars, open_ms)
        if bar is None:
            if bars and open_ms < bars[0].open_ms:
                continue  # older than every bar kept: outside the history
            bar = _Bar(open_ms, price, price, price, price, 0, 0, 0, 0)
            _insert(bars, bar, state.keep, state.changed[name])
        bar.high = max(bar.high, price)
        bar.low = min(bar.low, price)
        bar.close = price  # trades come in venue order: the last one folded closes the bar
        bar.volume += qty
        bar.quote += price * qty
        bar.trades += 1
        bar.buy_volume += buy
        _mark(state.changed[name], open_ms)


def _bar_for(bars: list[_Bar], open_ms: int) -> _Bar | None:
    for bar in reversed(bars):  # the newest, nearly always
        if bar.open_ms == open_ms:
            return bar
        if bar.open_ms < open_ms:
            return None
    return None


def _insert(bars: list[_Bar], bar: _Bar, keep: int, changed: list[int]) -> None:
    if bars and bars[-1].open_ms < bar.open_ms:
        _mark(changed, bars[-1].open_ms)  # the previous bar is closed now: written once more
    position = len(bars)
    while position and bars[position - 1].open_ms > bar.open_ms:
        position -= 1
    bars.insert(position, bar)
    if len(bars) > keep:
        del bars[: len(bars) - keep]


def _mark(changed: list[int], open_ms: int) -> None:
    if open_ms not in changed[-2:]:
        changed.append(open_ms)


def _at_state_precision(state: CandlesState, trade: Trade) -> tuple[int, int]:
    """The trade's price and qty at the state's precision, which rises (rescaling the bars)
    when a trade is more precise: sums stay exact whatever the venue does."""
    if state.price_precision < 0:
        state.price_precision, state.size_precision = trade.price_precision, trade.size_precision
    up_price = trade.price_precision - state.price_precision
    up_size = trade.size_precision - state.size_precision
    if up_price > 0 or up_size > 0:
        _rescale(state, max(up_price, 0), max(up_size, 0))
    price = trade.price * 10 ** (state.price_precision - trade.price_precision)
    qty = trade.qty * 10 ** (state.size_precision - trade.size_precision)
    return price, qty


def _rescale(state: CandlesState, price_digits: int, size_digits: int) -> None:
    p, s = 10**price_digits, 10**size_digits
    for bars in state.bars.values():
        for bar in bars:
            bar.open, bar.high, bar.low, bar.close = (
                bar.open * p,
                bar.high * p,
                bar.low * p,
                bar.close * p,
            )
            bar.volume *= s
            bar.buy_volume *= s
            bar.quote *= p * s
    state.price_precision += price_digits
    state.size_precision += size_digits


class _WireState(msgspec.Struct, array_like=True):
    """The checkpoint: sums as decimal strings, since at the venue's precision (up to 8 + 8
    decimals for a quote volume) they outgrow msgpack's 64-bit integers."""

    version: int
    keep: int
    price_precision: int
    size_precision: int
    clock_ms: int
    recent_trades: list[tuple[int, str]]
    repeated_trades: int
    bars: dict[str, list[tuple[int, int, int, int, int, str, str, int, str]]]
    changed: dict[str, list[int]]


_wire_encoder = msgspec.msgpack.Encoder()
_wire_decoder = msgspec.msgpack.Decoder(_WireState)


def encode_state(state: CandlesState) -> bytes:
    bars = {
        interval: [(b.open_ms, b.open, b.high, b.low, b.close, str(b.volume), str(b.quote),
                    b.trades, str(b.buy_volume)) for b in kept]
        for interval, kept in state.bars.items()
    }  # fmt: skip
    return _wire_encoder.encode(
        _WireState(
            state.version,
            state.keep,
            state.price_precision,
            state.size_precision,
            state.clock_ms,
            state.recent_trades.kept(),
            state.recent_trades.repeats,
            bars,
            state.changed,
        )
    )


def decode_state(payload: bytes) -> CandlesState | None:
    """The state of ``encode_state``'s bytes, or None (another version, or not a state)."""
    try:
        wire = _wire_decoder.decode(payload)
        bars = {
            interval: [_Bar(o, op, hi, lo, cl, int(vol), int(quote), n, int(buy))
                       for o, op, hi, lo, cl, vol, quote, n, buy in kept]
            for interval, kept in wire.bars.items()
        }  # fmt: skip
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None
    if wire.version != STATE_VERSION:
        return None
    return CandlesState(
        version=wire.version, keep=wire.keep, price_precision=wire.price_precision,
        size_precision=wire.size_precision, clock_ms=wire.clock_ms,
        recent_trades=RecentTrades(wire.recent_trades, wire.repeated_trades), bars=bars,
        changed=wire.changed,
    )  # fmt: skip


def candles(state: CandlesState, interval: str, bars: list[_Bar] | None = None) -> list[Candle]:
    """Bars of ``interval`` (all kept, oldest first, unless ``bars`` are given) as floats."""
    length = CANDLE_INTERVALS[interval]
    pp, sp = state.price_precision, state.size_precision
    price_unit, size_unit, quote_unit = 10.0**pp, 10.0**sp, 10.0 ** (pp + sp)
    return [
        Candle(
            open_ms=bar.open_ms,
            close_ms=bar.open_ms + length,
            open=bar.open / price_unit,
            high=bar.high / price_unit,
            low=bar.low / price_unit,
            close=bar.close / price_unit,
            volume=bar.volume / size_unit,
            quote_volume=bar.quote / quote_unit,
            trades=bar.trades,
            vwap=bar.quote / bar.volume / price_unit if bar.volume else bar.close / price_unit,
            buy_volume=bar.buy_volume / size_unit,
            sell_volume=(bar.volume - bar.buy_volume) / size_unit,
            closed=state.clock_ms >= bar.open_ms + length,
        )
        for bar in (state.bars[interval] if bars is None else bars)
    ]


class CandlesSettings(msgspec.Struct, frozen=True, kw_only=True):
    candles_keep: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 500
    """NT_CANDLES_KEEP: bars kept per interval, in the state and in Redis."""


def kind(settings: Settings, env: Mapping[str, str]) -> Kind[CandlesState]:
    own, variables = kind_settings(CandlesSettings, env)
    keep = own.candles_keep
    ttl_ms = settings.cache_ttl_sec * 1000

    def project(state: CandlesState, context: ProjectionContext) -> list[Write]:
        writes: list[Write] = []
        for interval, bars in state.bars.items():
            if not bars:
                continue
            due = set(state.changed[interval]) | {bars[-1].open_ms}
            key = keys.candles_key(context.symbol, interval)
            for candle in candles(state, interval, [bar for bar in bars if bar.open_ms in due]):
                member = msgspec.json.encode(candle)
                writes.append(
                    SeriesPoint(key, candle.open_ms, member, candle.open_ms, keep, ttl_ms)
                )
        return writes

    def published(state: CandlesState) -> None:
        for changed in state.changed.values():
            changed.clear()

    def decode(payload: bytes) -> CandlesState | None:
        state = decode_state(payload)
        return state if state is not None and state.keep == keep else None

    return Kind(
        name=NAME,
        new_state=lambda: new_state(keep),
        fold=fold,
        project=project,
        encode=encode_state,
        decode=decode,
        published=published,
        variables=variables,
        description="OHLCV bars at 1s, 1m and 5m from the trades",
    )
