"""Rolling sums over event time, in fixed buckets: O(1) per event, bounded memory.

A window of span S with buckets of width B keeps at most S/B buckets and running totals, so
a figure over 30 minutes costs the same per event as one over 10 seconds. Time is the
caller's event clock (venue time), never the wall clock, so a replay gives the same sums.
"""

from __future__ import annotations

from collections import deque

import msgspec

__all__ = ["Window", "WindowState"]


class WindowState(msgspec.Struct, array_like=True, frozen=True):
    """A window's content, for checkpoints."""

    first_ts: int | None
    buckets: list[list[int]]


class Window:
    """Sums of ``width`` integer series over the last ``span_ns`` of event time."""

    __slots__ = ("_buckets", "bucket_ns", "first_ts", "span_ns", "totals", "width")

    def __init__(self, span_ns: int, bucket_ns: int, width: int) -> None:
        if span_ns % bucket_ns:
            raise ValueError("span_ns must be a whole number of buckets")
        self.span_ns = span_ns
        self.bucket_ns = bucket_ns
        self.width = width
        self.totals = [0] * width
        self.first_ts: int | None = None
        # [bucket index, sum_0, ..., sum_{width-1}], oldest first
        self._buckets: deque[list[int]] = deque()

    def add(self, ts: int, values: tuple[int, ...]) -> None:
        index = ts // self.bucket_ns
        buckets = self._buckets
        # Venue clocks of different streams interleave slightly out of order: a late event
        # joins the newest bucket rather than reopening an older one.
        if not buckets or index > buckets[-1][0]:
            buckets.append([index, *values])
            if self.first_ts is None:
                self.first_ts = ts
        else:
            bucket = buckets[-1]
            for i, value in enumerate(values, 1):
                bucket[i] += value
        totals = self.totals
        for i, value in enumerate(values):
            totals[i] += value
        self.advance(ts)

    def advance(self, now_ts: int) -> None:
        """Drop buckets that have left the window as of ``now_ts``."""
        oldest_kept = now_ts // self.bucket_ns - self.span_ns // self.bucket_ns + 1
        buckets = self._buckets
        totals = self.totals
        while buckets and buckets[0][0] < oldest_kept:
            expired = buckets.popleft()
            for i in range(self.width):
                totals[i] -= expired[i + 1]

    def covered_ns(self, now_ts: int) -> int:
        """How much event time the window really covers (less than its span at start-up)."""
        if self.first_ts is None:
            return 0
        return min(self.span_ns, now_ts - self.first_ts)

    def to_state(self) -> WindowState:
        return WindowState(self.first_ts, [list(b) for b in self._buckets])

    def load_state(self, state: WindowState) -> None:
        self.first_ts = state.first_ts
        self._buckets = deque(list(b) for b in state.buckets)
        self.totals = [sum(b[i + 1] for b in self._buckets) for i in range(self.width)]
