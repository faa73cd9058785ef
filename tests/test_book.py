"""The book against a brute-force rebuild: a dict per side, sorted on demand."""

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.analytics.book import Book

prices = st.integers(min_value=1, max_value=60)
qtys = st.integers(min_value=0, max_value=5)  # 0 removes: frequent on purpose
levels = st.lists(st.tuples(prices, qtys), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    snapshot=st.tuples(levels, levels),
    deltas=st.lists(st.tuples(levels, levels), max_size=30),
    depth=st.integers(min_value=1, max_value=25),
)
def test_book_matches_brute_force(snapshot, deltas, depth):
    book = Book()
    book.load(*snapshot)
    # a snapshot with a repeated price keeps the last occurrence, as a dict does
    bids = {p: q for p, q in dict((p, q) for p, q in snapshot[0]).items() if q}
    asks = {p: q for p, q in dict((p, q) for p, q in snapshot[1]).items() if q}
    for bid_changes, ask_changes in deltas:
        changed = book.apply(bid_changes, ask_changes)
        assert changed == len(bid_changes) + len(ask_changes)
        for side, changes in ((bids, bid_changes), (asks, ask_changes)):
            for price, qty in changes:
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)
        expected_bids = sorted(bids.items(), reverse=True)
        expected_asks = sorted(asks.items())
        assert book.top_bids(depth) == expected_bids[:depth]
        assert book.top_asks(depth) == expected_asks[:depth]
        assert book.best_bid == (expected_bids[0] if expected_bids else None)
        assert book.best_ask == (expected_asks[0] if expected_asks else None)
        assert book.levels() == (expected_bids, expected_asks)


def test_clear_empties_both_sides():
    book = Book()
    book.load([(10, 1)], [(11, 2)])
    book.clear()
    assert book.best_bid is None and book.best_ask is None
    assert book.bid_count == book.ask_count == 0
