"""The analytics fold: snapshot + deltas, gaps and resyncs, event-time windows."""

from context8.events import SCHEMA_VERSION, BookDelta, BookSnapshot, Status, Trade
from processors.fold import fold, new_state

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
    state.flow.advance(state.clock_ns)
    buy, sell = state.flow.totals
    # trades at seconds 10..39 are within 30 s of the clock (39 s); 7 of them are sells
    assert (buy, sell) == (2 * 23, 2 * 7)
    state.rate.advance(state.clock_ns)
    assert state.rate.totals == [10, 10]
