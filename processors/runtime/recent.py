"""Which trades a kind has already folded: part of the kind API, for any kind that counts
trades.

A trade is a repeat when the same (trade id, venue time) pair was folded within the last
``WINDOW_NS`` of event time. Not "an id at or below the last one seen": trade ids are per
venue session, and a venue, a recording and the simulator all start them again, so a
high-water mark drops every trade after a restart (and one absurdly large id would freeze the
count forever). Repeats come from an ingest hand-over (both holders saw the trades around the
switch) and from a replayed prefix; both lie within seconds of the original in venue time.
The memory is bounded (``MAX_KEPT`` pairs) and travels in the kind's checkpoint.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["MAX_KEPT", "WINDOW_NS", "RecentTrades"]

WINDOW_NS: Final = 10_000_000_000
MAX_KEPT: Final = 4096


class RecentTrades:
    __slots__ = ("_order", "_seen", "repeats")

    def __init__(self, kept: list[tuple[int, str]] | None = None, repeats: int = 0) -> None:
        self._order: deque[tuple[int, str]] = deque()
        self._seen: set[tuple[int, str]] = set()
        self.repeats = repeats
        """Trades refused as repeats, ever (reports show it: a count that grows while trades
        arrive says the inputs are being dropped)."""
        for ts_event, trade_id in kept or ():
            self.first_time(trade_id, ts_event)

    def first_time(self, trade_id: str, ts_event: int) -> bool:
        """True (and remembered) for a trade not folded yet; False for a repeat."""
        key = (ts_event, trade_id)
        seen = self._seen
        if key in seen:
            self.repeats += 1
            return False
        order = self._order
        order.append(key)
        seen.add(key)
        horizon = ts_event - WINDOW_NS
        while len(order) > MAX_KEPT or order[0][0] < horizon:
            seen.discard(order.popleft())
        return True

    def kept(self) -> list[tuple[int, str]]:
        """What a checkpoint stores: the pairs remembered, oldest first."""
        return list(self._order)

    def __len__(self) -> int:
        return len(self._order)
