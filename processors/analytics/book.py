"""An exact L2 order book: fixed-point prices to fixed-point quantities.

Each side is a dict (price -> qty) plus a plain list of its prices kept sorted, best price
last (bids ascending, asks as negated prices ascending): nearly all changes happen near the
touch, that is near the list's end, where inserting or deleting moves few items. For the
books a venue sends (thousands of levels) this is several times cheaper than a balanced
structure such as a SortedDict. Quantities are absolute (the venue sends the new level
total); a zero removes the level.

``apply`` can also report the level changes a caller watches (``Watch``), in the same pass:
the analytics track large levels this way at no cost for the others.
"""

from __future__ import annotations

import sys
from bisect import bisect_left, insort
from collections.abc import Container, Iterable, Sequence

from core.events import Level

__all__ = ["NEVER", "Book", "Change", "Watch"]

NEVER = sys.maxsize
"""A ``Watch.min_qty`` no quantity reaches."""

Change = tuple[bool, int, int, int]
"""(is_bid, price, old qty, new qty) of one level; qty 0 means absent."""


class Watch:
    """The level changes ``Book.apply`` reports into ``changes``: those at a price in ``bids``
    or ``asks``, and those of a level at ``min_qty`` or more before or after the change (a
    caller that starts watching a price on a change then sees the price's later changes in
    the same delta too)."""

    __slots__ = ("asks", "bids", "changes", "min_qty")

    def __init__(self, bids: Container[int], asks: Container[int], min_qty: int = NEVER) -> None:
        self.bids = bids
        self.asks = asks
        self.min_qty = min_qty
        self.changes: list[Change] = []


_NO_WATCH = Watch((), ())


class Book:
    __slots__ = ("_ask_keys", "_bid_keys", "asks", "bids", "max_levels")

    def __init__(self, max_levels: int = NEVER) -> None:
        self.max_levels = max_levels
        """Levels kept per side: an insert beyond it drops the side's farthest level."""
        self.bids: dict[int, int] = {}
        """price -> qty (read only: change the book through ``load`` and ``apply``)."""
        self.asks: dict[int, int] = {}
        self._bid_keys: list[int] = []
        """Bid prices ascending: the best last."""
        self._ask_keys: list[int] = []
        """Negated ask prices ascending: the best last."""

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self._bid_keys.clear()
        self._ask_keys.clear()

    def load(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Replace the book (a repeated price keeps its last quantity, as a dict does)."""
        self.bids = {p: q for p, q in dict(bids).items() if q}
        self.asks = {p: q for p, q in dict(asks).items() if q}
        self._bid_keys = _keep_best(self.bids, sorted(self.bids), 1, self.max_levels)
        self._ask_keys = _keep_best(self.asks, sorted(-p for p in self.asks), -1, self.max_levels)

    def apply(
        self, bids: Sequence[Level], asks: Sequence[Level], watch: Watch | None = None
    ) -> int:
        """Apply absolute level quantities; returns how many levels changed."""
        watch = watch or _NO_WATCH
        limit, min_qty, changes = self.max_levels, watch.min_qty, watch.changes
        _apply_side(self.bids, self._bid_keys, bids, 1, limit, min_qty, watch.bids, changes)
        _apply_side(self.asks, self._ask_keys, asks, -1, limit, min_qty, watch.asks, changes)
        return len(bids) + len(asks)

    @property
    def best_bid(self) -> Level | None:
        keys = self._bid_keys
        return (keys[-1], self.bids[keys[-1]]) if keys else None

    @property
    def best_ask(self) -> Level | None:
        keys = self._ask_keys
        return (-keys[-1], self.asks[-keys[-1]]) if keys else None

    def top_bids(self, n: int) -> list[Level]:
        book = self.bids
        return [(p, book[p]) for p in reversed(self._bid_keys[-n:])] if n > 0 else []

    def top_asks(self, n: int) -> list[Level]:
        book = self.asks
        return [(-k, book[-k]) for k in reversed(self._ask_keys[-n:])] if n > 0 else []

    def nth_bid(self, n: int) -> int | None:
        """Price of the n-th best bid (1 = best), or of the last one when fewer."""
        keys = self._bid_keys
        return keys[-min(n, len(keys))] if keys else None

    def nth_ask(self, n: int) -> int | None:
        keys = self._ask_keys
        return -keys[-min(n, len(keys))] if keys else None

    @property
    def bid_count(self) -> int:
        return len(self.bids)

    @property
    def ask_count(self) -> int:
        return len(self.asks)

    def levels(self) -> tuple[list[Level], list[Level]]:
        """Every level, best first; the book's full, exact content."""
        return self.top_bids(len(self.bids)), self.top_asks(len(self.asks))


def _keep_best(book: dict[int, int], keys: list[int], sign: int, max_levels: int) -> list[int]:
    far = len(keys) - max_levels
    if far <= 0:
        return keys
    for key in keys[:far]:
        del book[sign * key]
    return keys[far:]


def _apply_side(
    book: dict[int, int],
    keys: list[int],
    levels: Sequence[Level],
    sign: int,
    max_levels: int,
    min_qty: int,
    watched: Container[int],
    changes: list[Change],
) -> None:
    """The hot loop of the fold: a dict operation per level, a list insert or delete near
    the list's end when a level appears or goes."""
    is_bid = sign > 0
    get = book.get
    for price, qty in levels:
        old = get(price, 0)
        if qty:
            book[price] = qty
            if not old:
                insort(keys, sign * price)
                if len(keys) > max_levels:
                    far = sign * keys.pop(0)
                    far_qty = book.pop(far)
                    if far in watched:
                        changes.append((is_bid, far, far_qty, 0))
                    if far == price:
                        continue
        elif old:
            del book[price]
            del keys[bisect_left(keys, sign * price)]
        else:
            continue
        if qty >= min_qty or old >= min_qty or price in watched:
            changes.append((is_bid, price, old, qty))
