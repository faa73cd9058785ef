"""An exact L2 order book: fixed-point prices to fixed-point quantities, per side sorted.

Bids are keyed by negated price so both sides iterate best-first. Quantities are absolute
(the venue sends the new level total); a zero removes the level.
"""

from __future__ import annotations

from collections.abc import Iterable

from sortedcontainers import SortedDict

from context8.events import Level

__all__ = ["Book"]


class Book:
    __slots__ = ("_asks", "_bids")

    def __init__(self) -> None:
        self._bids: SortedDict = SortedDict()
        self._asks: SortedDict = SortedDict()

    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()

    def load(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self._bids = SortedDict({-price: qty for price, qty in bids})
        self._asks = SortedDict({price: qty for price, qty in asks})
        for side in (self._bids, self._asks):
            for empty in [price for price, qty in side.items() if not qty]:
                del side[empty]

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> int:
        """Apply absolute level quantities; returns how many levels changed."""
        changed = 0
        side = self._bids
        for price, qty in bids:
            changed += 1
            if qty:
                side[-price] = qty
            else:
                side.pop(-price, None)
        side = self._asks
        for price, qty in asks:
            changed += 1
            if qty:
                side[price] = qty
            else:
                side.pop(price, None)
        return changed

    @property
    def best_bid(self) -> Level | None:
        if not self._bids:
            return None
        neg_price, qty = self._bids.peekitem(0)
        return -neg_price, qty

    @property
    def best_ask(self) -> Level | None:
        if not self._asks:
            return None
        return self._asks.peekitem(0)

    def top_bids(self, n: int) -> list[Level]:
        items = self._bids.items()
        return [(-p, q) for p, q in items[: min(n, len(items))]]

    def top_asks(self, n: int) -> list[Level]:
        items = self._asks.items()
        return list(items[: min(n, len(items))])

    @property
    def bid_count(self) -> int:
        return len(self._bids)

    @property
    def ask_count(self) -> int:
        return len(self._asks)

    def levels(self) -> tuple[list[Level], list[Level]]:
        """Every level, best first; the book's full, exact content."""
        return self.top_bids(len(self._bids)), self.top_asks(len(self._asks))
