"""The analytics fold: snapshot + deltas, gaps and resyncs, event-time windows."""

import time

import pytest

from core.events import (
    SCHEMA_VERSION,
    BookDelta,
    BookSnapshot,
    Status,
    Ticker,
    Trade,
    encode_event,
    read_entry,
)
from processors.analytics.book import Book, Watch
from processors.analytics.checkpoint import decode_checkpoint, encode_checkpoint
from processors.analytics.fold import fold, new_state
from processors.analytics.slow import compute_slow
from tests.tapes import gen_tape

S = 1_000_000_000
V = SCHEMA_VERSION


def snap(ts, update_id, bids, asks):
    return BookSnapshot(V, ts, ts, 2, 3, update_id, bids, asks)


def delta(ts, first, last, bids, asks):
    return BookDelta(V, ts, ts, 2, 3, first, last, bids, asks)


def trade(ts, qty, side):
    return Trade(V, ts, ts, 2, 3, 10000, qty, side, str(ts))


def test_deltas_before_the_snapshot_or_inside_it_are_skipped():
    state = new_state()
    fold(state, delta(1 * S, 5, 6, [(9900, 1)], []), "1-0")
    assert state.book.best_bid is None
    fold(state, snap(2 * S, 10, [(10000, 5)], [(10010, 5)]), "2-0")
    fold(state, delta(3 * S, 8, 10, [(10000, 99)], []), "3-0")  # u <= lastUpdateId
    assert state.book.best_bid == (10000, 5)
    fold(state, delta(4 * S, 9, 12, [(10000, 7)], [(10010, 0), (10020, 1)]), "4-0")
    assert state.book.best_bid == (10000, 7)
    assert state.book.best_ask == (10020, 1)
    assert state.update_id == 12 and state.synced


def test_gap_status_resets_the_book_until_the_next_snapshot():
    state = new_state()
    fold(state, snap(1 * S, 10, [(10000, 5)], [(10010, 5)]), "1-0")
    fold(state, Status(V, 2 * S, 2 * S, "gap", "", 11, 14), "2-0")
    assert not state.synced and state.book.best_bid is None and state.gaps == 1
    fold(state, delta(3 * S, 15, 16, [(10000, 1)], []), "3-0")
    assert state.book.best_bid is None  # not applied: no base to apply it to
    fold(state, snap(4 * S, 20, [(10001, 2)], [(10011, 2)]), "4-0")
    fold(state, Status(V, 4 * S, 4 * S, "resync"), "4-1")
    assert state.synced and state.book.best_bid == (10001, 2)


def test_an_unannounced_hole_in_the_log_is_treated_as_a_gap():
    state = new_state()
    fold(state, snap(1 * S, 10, [(10000, 5)], [(10010, 5)]), "1-0")
    fold(state, delta(2 * S, 13, 14, [(10000, 1)], []), "2-0")
    assert not state.synced and state.gaps == 1


def test_flow_and_rate_windows_follow_event_time():
    state = new_state()
    for second in range(40):
        fold(state, trade(second * S, 2, "buy" if second % 4 else "sell"), f"{second}-0")
    buy, sell = state.flow.totals(state.clock_ns)
    # trades at seconds 10..39 are within 30 s of the clock (39 s); 7 of them are sells
    assert (buy, sell) == (2 * 23, 2 * 7)
    assert state.rate.totals(state.clock_ns) == (10, 10)


def test_an_event_it_cannot_use_never_reaches_the_state():
    """What no event may hold is refused when the entry is read (core.events.read_entry),
    before any kind folds it; what the fold itself cannot use leaves the state unchanged."""
    state = new_state()
    fold(state, snap(1 * S, 10, [(10000, 5)], [(10010, 5)]), "1-0")
    fold(state, trade(2 * S, 3, "buy"), "2-0")
    before = encode_checkpoint(state)
    entry = "3000-0"  # the entry's time: 3 s
    bad = [
        Trade(V, 3 * S, 3 * S, 2, 3, 10000, 0, "buy", "9"),
        Trade(V, 3 * S, 3 * S, 2, 3, -1, 5, "sell", "9"),
        Trade(V, 3 * S, 3 * S, 2, 3, 10000, 5, "sell", ""),
        Trade(V, 3 * S, 3 * S, 20, 3, 10000, 5, "sell", "9"),  # no int64 holds 10**20
        Trade(V, 3 * S, 3 * S, 2, 3, 2**63, 5, "sell", "9"),
        Trade(V, 400 * S, 3 * S, 2, 3, 10000, 5, "sell", "9"),  # a year ahead, or 397 s
        Trade(0, 3 * S, 3 * S, 2, 3, 10000, 5, "sell", "9"),
        Ticker(V, 3 * S, 3 * S, "abc", "1", "1", "1", "1", "1", "1", 1),
        Ticker(V, 3 * S, 3 * S, "NaN", "1", "1", "1", "1", "1", "1", 1),
        BookSnapshot(V, 3 * S, 3 * S, 2, 3, 20, [(10000, -1)], []),
        BookSnapshot(V, 3 * S, 3 * S, 2, 3, 20, [(10020, 1)], [(10010, 1)]),  # crossed
        BookSnapshot(V, 3 * S, 3 * S, 2, 3, 20, [(0, 1)], []),
        BookDelta(V, 3 * S, 3 * S, 2, 3, 12, 11, [(10000, 1)], []),
        BookDelta(V, 3 * S, 3 * S, 2, 3, 11, 11, [(10000, -3)], []),
    ]
    for event in bad:
        with pytest.raises(ValueError):
            read_entry(encode_event(event), entry)
    assert read_entry(encode_event(trade(3 * S, 1, "buy")), entry).qty == 1
    with pytest.raises(ValueError):
        fold(state, object(), "3-0")
    assert encode_checkpoint(state) == before


def test_a_delta_that_crosses_the_book_drops_it_and_asks_for_a_snapshot():
    state = new_state()
    fold(state, snap(1 * S, 10, [(10000, 5)], [(10010, 5)]), "1-0")
    fold(state, delta(2 * S, 11, 11, [(10020, 1)], []), "2-0")  # a bid above the best ask
    assert not state.synced and state.book.best_bid is None
    assert state.book_lost == "a delta crossed the book"
    fold(state, delta(3 * S, 20, 21, [(10000, 1)], []), "3-0")
    assert state.book_lost  # still: only a snapshot brings the book back
    fold(state, snap(4 * S, 30, [(10000, 5)], [(10010, 5)]), "4-0")
    assert state.synced and state.book_lost == ""
    fold(state, delta(5 * S, 40, 41, [(10000, 1)], []), "5-0")  # ids skipped: lost again
    assert state.book_lost == "update ids skipped"


def test_a_repeated_trade_is_folded_once():
    state = new_state()
    fold(state, trade(1 * S, 3, "buy"), "1-0")
    fold(state, trade(1 * S, 3, "buy"), "2-0")  # the same trade id: an append retried
    assert state.flow.totals(state.clock_ns) == (3, 0)
    assert state.events_folded == 1 and state.last_id == "2-0"


def test_the_book_keeps_its_best_levels_and_reports_watched_changes():
    book = Book(max_levels=3)
    book.load([(100 - i, 1) for i in range(5)], [(101 + i, 1) for i in range(5)])
    assert book.levels() == ([(100, 1), (99, 1), (98, 1)], [(101, 1), (102, 1), (103, 1)])
    watch = Watch(bids={98}, asks=(), min_qty=50)
    book.apply([(97, 60), (101, 2)], [(102, 70), (110, 1)], watch)
    # 97 is beyond the 3 best bids: dropped at once; 101 pushes out the watched 98
    assert book.top_bids(5) == [(101, 2), (100, 1), (99, 1)]
    assert book.top_asks(5) == [(101, 1), (102, 70), (103, 1)]
    assert watch.changes == [(True, 98, 1, 0), (False, 102, 1, 70)]
    assert (book.nth_bid(2), book.nth_bid(9), book.nth_ask(3)) == (100, 99, 103)


def test_the_fold_reads_no_wall_clock(monkeypatch):
    def no_clock() -> float:
        raise AssertionError("the fold read the wall clock")

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"):
        monkeypatch.setattr(time, name, no_clock)
    state = new_state()
    for i, event in enumerate(gen_tape(5, 400)):
        fold(state, event, f"{i + 1}-0")
    compute_slow(state)


def test_checkpoints_stay_within_64_bits_however_long_the_run():
    state = new_state()
    for n in range(5):  # a window's running sums grow without end: here past 2**64
        ts, price = (n + 1) * S, 10000 + 5 * n  # a profile bin each
        fold(state, Trade(V, ts, ts, 2, 3, price, 2**62, "buy", str(n + 1)), f"{n + 1}-0")
    fold(state, Trade(V, 60 * S, 60 * S, 2, 3, 10000, 5, "sell", "4" * 30), "9-0")
    restored = decode_checkpoint(encode_checkpoint(state), state.params)
    assert restored is not None
    assert restored.flow.totals(restored.clock_ns) == state.flow.totals(state.clock_ns) == (0, 5)


def test_trades_after_a_restart_that_reuses_ids_are_counted_and_repeats_are_not():
    """A restarted venue (or simulator) numbers its trades from 1 again: those trades are new.
    The same trade twice (same id, same venue time: an ingest hand-over) is folded once."""
    state = new_state()
    fold(state, snap(1 * S, 10, [(9990, 5)], [(10010, 5)]), "1-0")
    for n in range(1, 6):
        fold(state, Trade(V, n * S, n * S, 2, 3, 10000, 1, "buy", str(n)), f"{n + 1}-0")
    fold(state, Trade(V, 5 * S, 5 * S, 2, 3, 10000, 1, "buy", "5"), "7-0")  # repeated
    assert state.recent_trades.repeats == 1
    assert state.rate.totals(state.clock_ns)[1] == 5
    restarted = 100 * S
    for n in range(1, 4):
        at = restarted + n * S
        fold(state, Trade(V, at, at, 2, 3, 10005, 2, "sell", str(n)), f"{10 + n}-0")
    assert state.last_trade.price == 10005 and state.last_trade.trade_id == "3"
    assert state.rate.totals(state.clock_ns)[1] == 3  # only the restarted run is in the window
    assert state.recent_trades.repeats == 1
    # an id too large for any integer type is an id like any other
    fold(state, Trade(V, restarted + 5 * S, restarted + 5 * S, 2, 3, 10006, 1, "buy", "9" * 40),
         "20-0")  # fmt: skip
    fold(state, Trade(V, restarted + 6 * S, restarted + 6 * S, 2, 3, 10007, 1, "buy", "4"),
         "21-0")  # fmt: skip
    assert state.last_trade.price == 10007
    restored = decode_checkpoint(encode_checkpoint(state), state.params)
    assert restored is not None and restored.recent_trades.kept() == state.recent_trades.kept()
    fold(restored, Trade(V, restarted + 6 * S, restarted + 6 * S, 2, 3, 10007, 1, "buy", "4"),
         "22-0")  # fmt: skip
    assert restored.recent_trades.repeats == 2  # the checkpoint remembers what it folded
