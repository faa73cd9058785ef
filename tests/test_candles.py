"""The candles kind against a brute-force aggregation of the same trades."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from core import settings as config
from core.events import SCHEMA_VERSION, BookDelta, Trade
from processors.candles import kind as candles
from processors.runtime.kind import ProjectionContext
from projections.report import Writer
from projections.series import CANDLE_INTERVALS, Candle

V = SCHEMA_VERSION
T0_MS = 1_700_000_000_000
SETTINGS = config.load({})


@st.composite
def tapes(draw) -> list:
    """Trades (some repeated, as an ingest hand-over repeats them; some with ids counted
    again from 1, as a restarted venue or simulator does) and book events, in venue order,
    over up to 15 minutes; prices and sizes at 2 and 3 decimals."""
    events: list = []
    t = T0_MS + draw(st.integers(0, 300_000))
    trade_id = 0
    last_trade = None
    for _ in range(draw(st.integers(0, 120))):
        if last_trade is not None and draw(st.integers(0, 9)) == 0:
            events.append(last_trade)  # the same trade again
            continue
        t += draw(st.sampled_from([0, 1, 250, 999, 1000, 4000, 61_000, 299_000]))
        ns = t * 1_000_000
        if draw(st.integers(0, 4)) == 0:
            events.append(BookDelta(V, ns, ns, 2, 3, 1, 1, [(100, 1)], []))
            continue
        trade_id = 1 if draw(st.integers(0, 19)) == 0 else trade_id + 1
        price, qty = draw(st.integers(1, 10**7)), draw(st.integers(1, 10**6))
        side = draw(st.sampled_from(["buy", "sell"]))
        last_trade = Trade(V, ns, ns, 2, 3, price, qty, side, str(trade_id))
        events.append(last_trade)
    return events


def brute_force(events: list, interval: str, keep: int) -> list[Candle]:
    length = CANDLE_INTERVALS[interval]
    trades: dict[int, list[Trade]] = defaultdict(list)
    seen: set[tuple[int, str]] = set()
    clock = 0
    for event in events:
        ts = event.ts_event // 1_000_000
        clock = max(clock, ts)
        if isinstance(event, Trade) and (event.ts_event, event.trade_id) not in seen:
            seen.add((event.ts_event, event.trade_id))
            trades[ts - ts % length].append(event)
    bars = []
    for open_ms in sorted(trades)[-keep:]:
        group = trades[open_ms]
        price = [Fraction(t.price, 100) for t in group]
        qty = [Fraction(t.qty, 1000) for t in group]
        volume = sum(qty)
        quote = sum(p * q for p, q in zip(price, qty, strict=True))
        buy = sum(q for t, q in zip(group, qty, strict=True) if t.aggressor == "buy")
        bars.append(
            Candle(open_ms=open_ms, close_ms=open_ms + length, open=float(price[0]),
                   high=float(max(price)), low=float(min(price)), close=float(price[-1]),
                   volume=float(volume), quote_volume=float(quote), trades=len(group),
                   vwap=float(quote / volume), buy_volume=float(buy),
                   sell_volume=float(volume - buy), closed=clock >= open_ms + length)
        )  # fmt: skip
    return bars


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def assert_same(ours: list[Candle], oracle: list[Candle]) -> None:
    assert len(ours) == len(oracle)
    for a, b in zip(ours, oracle, strict=True):
        for field in Candle.__struct_fields__:
            x, y = getattr(a, field), getattr(b, field)
            assert x == y or (isinstance(x, float) and _close(x, y)), (field, a, b)


@settings(max_examples=150, deadline=None)
@given(tapes(), st.integers(1, 30))
def test_bars_equal_a_brute_force_aggregation(events, keep):
    state = candles.new_state(keep)
    for i, event in enumerate(events):
        candles.fold(state, event, f"{i + 1}-0")
    for interval in CANDLE_INTERVALS:
        assert_same(candles.candles(state, interval), brute_force(events, interval, keep))


@settings(max_examples=60, deadline=None)
@given(tapes(), st.data())
def test_a_checkpoint_resumes_to_the_same_bars(events, data):
    kind = candles.kind(SETTINGS, {"NT_CANDLES_KEEP": "20"})
    cut = data.draw(st.integers(0, len(events)))
    whole, first = kind.new_state(), kind.new_state()
    for i, event in enumerate(events):
        kind.fold(whole, event, f"{i + 1}-0")
    for i, event in enumerate(events[:cut]):
        kind.fold(first, event, f"{i + 1}-0")
    resumed = kind.decode(kind.encode(first))
    assert resumed is not None
    for i, event in enumerate(events[cut:], start=cut):
        kind.fold(resumed, event, f"{i + 1}-0")
    assert kind.encode(resumed) == kind.encode(whole)


@settings(max_examples=60, deadline=None)
@given(tapes(), st.lists(st.integers(0, 120), max_size=6))
def test_publishes_carry_every_changed_bar_whatever_their_timing(events, publish_after):
    """Applying every publish's series points the way fenced_write.lua does (replace the
    members from replace_from to the score, keep the newest N) ends with the final bars."""
    keep = 25
    kind = candles.kind(SETTINGS, {"NT_CANDLES_KEEP": str(keep)})
    state = kind.new_state()
    stored: dict[str, dict[int, bytes]] = defaultdict(dict)
    context = ProjectionContext("X.BINANCE", Writer(nodeId="n", writerToken=1), 0, None)

    def publish() -> None:
        for write in kind.project(state, context):
            series = stored[write.key]
            for score in [s for s in series if write.replace_from <= s <= write.score]:
                del series[score]
            series[write.score] = write.member
            for score in sorted(series)[:-keep]:
                del series[score]
        kind.published(state)

    for i, event in enumerate(events):
        kind.fold(state, event, f"{i + 1}-0")
        if i in publish_after:
            publish()
    publish()
    for interval in CANDLE_INTERVALS:
        series = stored.get(f"candles:{{X.BINANCE}}:{interval}", {})
        written = [msgspec.json.decode(series[s], type=Candle) for s in sorted(series)]
        assert_same(written, brute_force(events, interval, keep))


def test_a_more_precise_trade_rescales_the_bars_exactly():
    state = candles.new_state()
    ns = T0_MS * 1_000_000
    candles.fold(state, Trade(V, ns, ns, 2, 3, 10050, 1500, "buy", "1"), "1-0")  # 100.50 x 1.5
    candles.fold(state, Trade(V, ns, ns, 3, 4, 100251, 5, "sell", "2"), "2-0")  # 100.251 x 0.0005
    (bar,) = candles.candles(state, "1m")
    assert (bar.open, bar.high, bar.low, bar.close) == (100.5, 100.5, 100.251, 100.251)
    assert bar.volume == 1.5005 and bar.buy_volume == 1.5 and bar.sell_volume == 0.0005
    assert bar.quote_volume == float(Fraction(10050, 100) * Fraction(3, 2)
                                     + Fraction(100251, 1000) * Fraction(5, 10000))  # fmt: skip


def test_a_checkpoint_holds_sums_beyond_64_bits():
    """At Binance's 8 + 8 decimals a quote volume outgrows msgpack's integers within a bar."""
    kind = candles.kind(SETTINGS, {})
    state = kind.new_state()
    ns = T0_MS * 1_000_000
    for n in range(1, 50):  # 95,000.00000000 x 1,000.00000000, 49 times
        trade = Trade(V, ns, ns, 8, 8, 95_000 * 10**8, 1_000 * 10**8, "buy", str(n))
        kind.fold(state, trade, f"{n}-0")
    (bar,) = candles.candles(state, "1m")
    assert bar.quote_volume == 49 * 95_000 * 1_000
    assert state.bars["1m"][0].quote > 2**64
    resumed = kind.decode(kind.encode(state))
    assert resumed is not None and kind.encode(resumed) == kind.encode(state)
    assert candles.candles(resumed, "1m") == [bar]
