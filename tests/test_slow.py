"""The slow cycle on the hand-checked examples of docs/analytics.md (prices 2 decimals,
sizes 3): walls, vacuums, the volume profile, spoofing, icebergs, flash-crash risk, and the
anomaly penalty in health."""

from __future__ import annotations

import msgspec
import pytest

from core.events import SCHEMA_VERSION, BookDelta, BookSnapshot, Trade
from core.times import iso_ms
from processors.analytics.checkpoint import encode_checkpoint
from processors.analytics.fold import AnalyticsParams, fold, new_state
from processors.analytics.liquidity import find_vacuums, find_walls, fmt_price, thresholds
from processors.analytics.profile import value_area
from processors.analytics.project import build_report
from processors.analytics.slow import compute_slow
from processors.analytics.windows import QuantityWindow
from projections.report import Writer
from tests.reports import validate_report

V = SCHEMA_VERSION
S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_040 * S  # on a minute boundary
P = AnalyticsParams()


def px(text: str) -> int:
    return round(float(text.replace(",", "")) * 100)


def qty(value: float) -> int:
    return round(value * 1000)


class Tape:
    """Events with consecutive update and trade ids, folded as they are made."""

    def __init__(self, params: AnalyticsParams = P) -> None:
        self.state = new_state(params)
        self.uid = 100
        self.n = 0

    def _fold(self, event) -> None:
        self.n += 1
        fold(self.state, event, f"{self.n}-0")

    def snapshot(self, at: float, bids, asks) -> None:
        ts = T0 + round(at * S)
        self._fold(BookSnapshot(V, ts, ts, 2, 3, self.uid, bids, asks))

    def delta(self, at: float, bids=(), asks=()) -> None:
        ts = T0 + round(at * S)
        self.uid += 1
        self._fold(BookDelta(V, ts, ts, 2, 3, self.uid, self.uid, list(bids), list(asks)))

    def trade(self, at: float, price: int, size: int, aggressor: str) -> None:
        ts = T0 + round(at * S)
        self._fold(Trade(V, ts, ts, 2, 3, price, size, aggressor, str(self.n + 1)))


def example_book() -> Tape:
    """Bids 64,000.00 down by 0.10 with 1..10, asks 64,000.50 up by 0.10 with 11..20: the
    first sample puts the quantities 1..20 in the level window (P95 = 19, P10 = 2)."""
    tape = Tape()
    tape.snapshot(
        0.0,
        [(px("64000") - 10 * i, qty(i + 1)) for i in range(10)],
        [(px("64000.50") + 10 * i, qty(11 + i)) for i in range(10)],
    )
    return tape


def test_thresholds_walls_and_vacuums_of_the_worked_example():
    window = QuantityWindow(10_000)
    window.extend(qty(q) for q in range(1, 21))
    limits = thresholds(window, P)
    assert limits is not None
    assert (limits.wall, limits.thin, limits.large_qty) == (28_500, 2000, 28_500)
    bids = [(px("64,000.00"), qty(64)), (px("63,999.90"), qty(30)), (px("63,999.80"), qty(90))]
    walls = [wall for wall, _ in find_walls("bid", bids, limits, P, 2, 3)]
    assert [(w.qty, w.multiple, w.severity) for w in walls] == [
        (64.0, 2.25, "medium"),
        (30.0, 1.05, "low"),
        (90.0, 3.16, "high"),
    ]
    assert walls[0].note == "bid wall 64 at 64,000.00, 2.2x threshold"
    asks = [
        (px("64,000.50"), qty(5)),
        (px("64,000.60"), qty(1)),
        (px("64,000.70"), qty(1.5)),
        (px("64,000.80"), qty(0.5)),
        (px("64,000.90"), qty(3)),
    ]
    ((vacuum, start),) = find_vacuums("ask", asks, limits, P, 2, 3)
    assert start == px("64,000.60")
    assert (vacuum.from_price, vacuum.to_price, vacuum.levels, vacuum.severity) == (
        64000.6,
        64000.8,
        3,
        "low",
    )
    assert vacuum.note == "ask vacuum 64,000.60 to 64,000.80: 3 consecutive levels below 2"


@pytest.mark.parametrize(
    ("run", "severity"),
    [(2, None), (3, "low"), (5, "low"), (6, "medium"), (9, "medium"), (10, "high"), (14, "high")],
)
def test_vacuum_severity_by_run_length(run, severity):
    window = QuantityWindow(100)
    window.extend(range(1, 21))
    limits = thresholds(window, P)
    assert limits is not None
    levels = [(1000, 5)] + [(1001 + i, 1) for i in range(run)] + [(2000, 5)]
    vacuums = [vacuum for vacuum, _ in find_vacuums("bid", levels, limits, P, 2, 3)]
    assert [v.severity for v in vacuums] == ([severity] if severity else [])


def test_no_walls_or_vacuums_below_twenty_observations():
    window = QuantityWindow(100)
    window.extend(range(1, 20))
    assert thresholds(window, P) is None
    window.extend([1])
    assert thresholds(window, P) is not None


def test_the_level_window_keeps_the_newest_quantities():
    window = QuantityWindow(5)
    window.extend([50, 40, 30, 20, 10, 1, 2])
    assert window.to_state() == [30, 20, 10, 1, 2]
    assert window.percentile(100) == 30 and window.percentile(20) == 1


def test_walls_from_the_fold():
    tape = example_book()
    tape.delta(0.5, bids=[(px("63,999.95"), qty(64))])  # same second: window unchanged
    slow = compute_slow(tape.state)
    assert slow.liquidity.observations == 20
    assert slow.liquidity.wall_threshold == 28.5 and slow.liquidity.thin_threshold == 2.0
    assert [(w.side, w.price, w.severity) for w in slow.liquidity.walls] == [
        ("bid", 63999.95, "medium")
    ]


def test_a_report_never_shows_a_wall_or_vacuum_the_book_has_lost_since_the_slow_cycle():
    tape = example_book()
    thin = [(px("64,000.60") + 10 * i, qty(0.5)) for i in range(3)]
    tape.delta(0.5, bids=[(px("63,999.95"), qty(64))], asks=thin)
    slow = compute_slow(tape.state)
    writer = Writer(nodeId="n", writerToken=1)

    def report():
        return build_report(tape.state, instrument_id="X.BINANCE", writer=writer,
                            now_ms=T0 // MS + 1000, slow=slow)  # fmt: skip

    assert [w.price for w in report().liquidity.walls] == [63999.95]
    assert [(v.side, v.from_price) for v in report().liquidity.vacuums] == [("ask", 64000.6)]
    assert report().liquidity.as_of == iso_ms(T0 // MS + 500)
    assert report().stream.slow_event_ts_ms == T0 // MS + 500
    # the fast cycle moves on before the next slow one: the wall is pulled, and the asks
    # are taken up to above where the vacuum was
    tape.delta(0.6, bids=[(px("63,999.95"), 0)])
    assert report().liquidity.walls == []
    assert len(report().liquidity.vacuums) == 1
    tape.delta(0.7, asks=[(px("64,000.50") + 10 * i, 0) for i in range(10)]
               + [(px("64,002.00"), qty(12))])  # fmt: skip
    assert report().liquidity.vacuums == []
    assert len(slow.liquidity.vacuums) == 1  # the slow sections themselves are unchanged


def test_volume_profile_of_the_worked_example():
    tape = example_book()
    for price, size, count in (
        ("100.01", 1, 5),
        ("100.07", 5, 4),
        ("100.12", 5, 2),
        ("100.22", 5, 3),
    ):
        for _ in range(count):
            tape.trade(1.0, px(price), qty(size), "buy")
    profile = compute_slow(tape.state).liquidity.volume_profile
    assert profile is not None
    assert (profile.trade_count, profile.bin_size, profile.volume) == (14, 0.05, 50.0)
    assert (profile.val, profile.poc, profile.vah) == (100.0, 100.07, 100.14)
    assert profile.window_sec == 1800


def test_value_area_growth_rules():
    # ties grow both sides; runs of empty bins are crossed; the lowest of equal maxima is POC
    assert value_area([10, 11, 12], [5, 10, 5], 0.7) == (11, 10, 12)
    assert value_area([0, 10, 1000], [1, 9, 1], 0.9) == (10, 0, 19)
    assert value_area([3, 7], [4, 4], 0.5) == (3, 3, 3)
    assert value_area([3, 7], [4, 4], 0.6) == (3, 3, 7)


def test_the_profile_needs_ten_trades_and_forgets_old_minutes():
    tape = example_book()
    for i in range(9):
        tape.trade(1.0 + i, px("64000"), qty(1), "sell")
    assert compute_slow(tape.state).liquidity.volume_profile is None
    tape.trade(10.0, px("64000"), qty(1), "sell")
    assert compute_slow(tape.state).liquidity.volume_profile.trade_count == 10
    tape.trade(29 * 60.0 + 59, px("64000"), qty(1), "sell")  # the first minute is still in
    assert compute_slow(tape.state).liquidity.volume_profile.trade_count == 11
    tape.trade(30 * 60.0, px("64000"), qty(1), "sell")  # now it is not
    assert compute_slow(tape.state).liquidity.volume_profile is None


def test_spoofing_of_the_worked_example():
    tape = example_book()  # touch 64,000.00 / 64,000.50: 3 spreads = 1.50 from the mid
    tape.delta(0.2, bids=[(px("63,998.00"), qty(40))])  # 2.25 from the mid: watched
    tape.delta(0.3, bids=[(px("63,999.95"), qty(45))])  # 0.30 from the mid: too near
    tape.delta(0.4, bids=[(px("63,997.50"), qty(35))])
    tape.trade(0.6, px("63,997.50"), qty(14), "sell")
    tape.delta(0.7, bids=[(px("63,997.50"), qty(21))])
    assert compute_slow(tape.state).anomalies == []  # nothing pulled yet
    tape.delta(0.8, bids=[(px("63,998.00"), 0), (px("63,999.95"), 0)])
    tape.delta(0.9, bids=[(px("63,997.50"), 0)])
    (spoof,) = compute_slow(tape.state).anomalies
    # cancelled (40 + 35 - 14) of 75 shown: 81%
    assert (spoof.type, spoof.side, spoof.severity) == ("spoofing", "bid", "medium")
    assert spoof.note == (
        "bid side: 2 large orders (up to 40) more than 3 spreads from the mid "
        "pulled in the last 60 s; 81% of the quantity shown was cancelled "
        "unfilled"
    )
    tape.trade(61.0, px("64,000.50"), qty(1), "buy")  # a minute later: forgotten
    assert compute_slow(tape.state).anomalies == []


def test_a_large_order_mostly_filled_is_not_spoofing():
    tape = example_book()
    tape.delta(0.2, asks=[(px("64,002.50"), qty(40))])
    tape.delta(0.3, asks=[(px("64,003.00"), qty(50))])
    tape.trade(0.4, px("64,002.50"), qty(30), "buy")
    tape.trade(0.4, px("64,003.00"), qty(10), "buy")
    tape.delta(0.5, asks=[(px("64,002.50"), 0), (px("64,003.00"), 0)])
    # cancelled (10 + 40) of 90: 56% < 70%
    assert compute_slow(tape.state).anomalies == []


def test_iceberg_of_the_worked_example():
    tape = example_book()
    tape.delta(0.1, asks=[(px("64,000.50"), qty(2))])
    for i in range(6):
        tape.trade(0.2 + i / 10, px("64,000.50"), qty(0.5), "buy")
        assert not [a for a in compute_slow(tape.state).anomalies if a.type == "iceberg"]
        tape.delta(0.25 + i / 10, asks=[(px("64,000.50"), qty(2 if i % 2 else 1.9))])
    (iceberg,) = compute_slow(tape.state).anomalies
    assert (iceberg.type, iceberg.side, iceberg.price, iceberg.severity) == (
        "iceberg",
        "ask",
        64000.5,
        "low",
    )
    # every price of the example is a whole tenth: the tick the data shows is 0.1
    assert iceberg.note == (
        "ask iceberg at 64,000.5: 6 fills traded 3 (1.5x the visible 2, which stays within 10%)"
    )


def test_a_level_eaten_without_refill_is_no_iceberg():
    tape = example_book()
    for i in range(6):
        tape.trade(0.2 + i / 100, px("64,000.50"), qty(1), "buy")  # one sweep: 6 prints
    tape.delta(0.3, asks=[(px("64,000.50"), qty(5))])  # 11 - 6: outside the band
    assert compute_slow(tape.state).anomalies == []


def test_flash_crash_risk_of_the_worked_example():
    tape = example_book()
    for second in range(1, 61):  # spread 0.50 sampled every second
        tape.delta(second)
    tape.trade(50.0, px("64,000.00"), qty(1), "sell")  # the 10 s before: net selling 1
    tape.delta(61.0, asks=[(px("64,000.50"), 0), (px("64,000.60"), 0)])  # sampled: 0.70
    tape.delta(61.5, asks=[(px(f"64,000.{d}0"), 0) for d in (7, 8, 9)] + [(px("64,001"), 0)])
    for _ in range(4):
        tape.trade(65.0, px("64,000.00"), qty(3), "sell")  # sampled: 1.10
    tape.trade(65.5, px("64,001.10"), qty(3), "buy")
    (risk,) = compute_slow(tape.state).anomalies
    # mean spread (61 x 0.50 + 0.70 + 1.10) / 63 = 0.5127; 1.10 / 0.5127 = 2.15 > 2
    assert (risk.type, risk.severity) == ("flash_crash_risk", "medium")
    assert risk.note == "spread 2.1x its 300 s mean; net selling 9 in 10 s (the 10 s before: 1)"


def test_anomaly_penalty_enters_health():
    tape = example_book()
    tape.delta(0.2, bids=[(px("63,998.00"), qty(40))])
    tape.delta(0.4, bids=[(px("63,997.50"), qty(35))])
    tape.delta(0.8, bids=[(px("63,998.00"), 0), (px("63,997.50"), 0)])
    slow = compute_slow(tape.state)
    assert [(a.type, a.severity) for a in slow.anomalies] == [("spoofing", "high")]
    assert slow.anomaly_penalty == 50.0 and slow.last_id == f"{tape.n}-0"
    writer = Writer(nodeId="n", writerToken=1)
    now_ms = tape.state.clock_ns // MS
    report = build_report(
        tape.state, instrument_id="X.BINANCE", writer=writer, now_ms=now_ms, slow=slow
    )
    validate_report(msgspec.to_builtins(report))
    assert report.health.components.anomalies == 50.0
    assert report.health.anomaly_penalty == 50.0
    assert report.anomalies == slow.anomalies and report.liquidity == slow.liquidity
    assert report.stream.slow_last_id == slow.last_id
    bare = build_report(tape.state, instrument_id="X.BINANCE", writer=writer, now_ms=now_ms)
    assert bare.health.components.anomalies == 100.0 and bare.anomalies == []
    assert bare.stream.slow_last_id is None


def test_compute_slow_and_build_report_read_only():
    tape = example_book()
    for i in range(12):
        tape.trade(1.0 + i * 9, px("64,000.50"), qty(1), "buy")
    checkpoint = encode_checkpoint(tape.state)
    slow = compute_slow(tape.state)
    build_report(
        tape.state,
        instrument_id="X.BINANCE",
        writer=Writer(nodeId="n", writerToken=1),
        now_ms=T0 // MS + 10**6,
        slow=slow,
    )
    assert encode_checkpoint(tape.state) == checkpoint


def test_prices_are_shown_at_the_instruments_tick_not_the_venues_eight_decimals():
    """Binance writes every price with 8 decimals: a 0.01 tick is learnt from the book, and
    the profile's bins, its POC and the notes are exact ticks."""
    e8 = 10**8
    state = new_state()
    bids = [(9_496_185 * 10**6 - i * 10**6, 3 * e8) for i in range(30)]  # 94,961.85 down
    asks = [(9_496_186 * 10**6 + i * 10**6, 3 * e8) for i in range(30)]
    state_fold = [BookSnapshot(V, T0, T0, 8, 8, 1, bids, asks)]
    state_fold += [Trade(V, T0 + i * MS, T0 + i * MS, 8, 8, bids[i % 3][0], e8, "sell", str(i))
                   for i in range(12)]  # fmt: skip
    for n, event in enumerate(state_fold):
        fold(state, event, f"{n + 1}-0")
    assert state.price_tick == 10**6
    profile = compute_slow(state).liquidity.volume_profile
    assert profile is not None and profile.bin_size == 0.05
    assert profile.poc == 94961.82 and (profile.val, profile.vah) == (94961.8, 94961.89)
    assert fmt_price(9_466_422 * 10**6, 8, 10**6) == "94,664.22"
    assert fmt_price(9_466_420 * 10**6, 8, 10**6) == "94,664.20"
    assert fmt_price(9_466_422 * 10**6 + 5, 8, 10**6) == "94,664.22000005"  # never rounded
    assert fmt_price(7, 0) == "7" and fmt_price(123_456_789, 2) == "1,234,567.89"
