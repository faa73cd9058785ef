"""Rolling aggregates over event time: O(1) per event, bounded memory.

``Window`` sums two integer series over the last ``span_ns`` in buckets of ``bucket_ns``: it
keeps running (cumulative) sums and, per bucket, the sums as they stood before its first
event, so a total is the running sum minus one mark, and a figure over 30 minutes costs the
same per event as one over 10 seconds. ``QuantityWindow`` keeps the newest level quantities
and their order statistics. Time is the caller's event clock (venue time), never the wall
clock, so a replay gives the same sums.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from math import ceil

import msgspec
from sortedcontainers import SortedList

__all__ = ["QuantityWindow", "Window", "WindowState", "nearest_rank"]


class WindowState(msgspec.Struct, array_like=True, frozen=True):
    """A window's content, for checkpoints."""

    first_ts: int | None
    sum_a: int
    sum_b: int
    marks: list[tuple[int, int, int]]


class Window:
    """Sums of two integer series (a, b) over the last ``span_ns`` of event time."""

    __slots__ = ("_buckets", "_marks", "_next_ts", "bucket_ns", "first_ts", "span_ns", "sum_a",
                 "sum_b")  # fmt: skip

    def __init__(self, span_ns: int, bucket_ns: int) -> None:
        if span_ns % bucket_ns:
            raise ValueError("span_ns must be a whole number of buckets")
        self.span_ns = span_ns
        self.bucket_ns = bucket_ns
        self._buckets = span_ns // bucket_ns
        self.first_ts: int | None = None
        self.sum_a = 0
        """Running sums since the start (not the window's: see ``totals``)."""
        self.sum_b = 0
        # (bucket index, sum_a and sum_b before the bucket's first event), oldest first
        self._marks: deque[tuple[int, int, int]] = deque()
        self._next_ts = 0
        """Where the bucket after the newest one starts (a comparison is cheaper than the
        division that finds a bucket)."""

    def add(self, ts: int, a: int, b: int) -> None:
        # Venue clocks of different streams interleave slightly out of order: a late event
        # joins the newest bucket rather than reopening an older one.
        if ts >= self._next_ts:
            self._open(ts)
        self.sum_a += a
        self.sum_b += b

    def _open(self, ts: int) -> None:
        index = ts // self.bucket_ns
        self._next_ts = (index + 1) * self.bucket_ns
        marks = self._marks
        marks.append((index, self.sum_a, self.sum_b))
        oldest_kept = index - self._buckets + 1
        while marks[0][0] < oldest_kept:
            marks.popleft()
        if self.first_ts is None:
            self.first_ts = ts

    def totals(self, now_ts: int, span_ns: int | None = None) -> tuple[int, int]:
        """Sums over the last ``span_ns`` (default: the window's span, at most it) as of
        ``now_ts``; reads only."""
        buckets = (
            self._buckets if span_ns is None else min(self._buckets, span_ns // self.bucket_ns)
        )
        oldest_kept = now_ts // self.bucket_ns - buckets + 1
        base_a, base_b = self.sum_a, self.sum_b
        if buckets == self._buckets:
            # oldest first: ``add`` drops expired marks, so few are skipped
            for index, a, b in self._marks:
                if index >= oldest_kept:
                    return self.sum_a - a, self.sum_b - b
            return 0, 0
        for index, a, b in reversed(self._marks):
            if index < oldest_kept:
                break
            base_a, base_b = a, b
        return self.sum_a - base_a, self.sum_b - base_b

    def covered_ns(self, now_ts: int) -> int:
        """How much event time the window really covers (less than its span at start-up)."""
        if self.first_ts is None:
            return 0
        return min(self.span_ns, now_ts - self.first_ts)

    def to_state(self) -> WindowState:
        # Relative to the oldest mark: the running sums grow without end, a checkpoint's
        # integers must stay within msgpack's 64 bits.
        base_a, base_b = (self._marks[0][1], self._marks[0][2]) if self._marks else (0, 0)
        marks = [(index, a - base_a, b - base_b) for index, a, b in self._marks]
        return WindowState(self.first_ts, self.sum_a - base_a, self.sum_b - base_b, marks)

    def load_state(self, state: WindowState) -> None:
        self.first_ts = state.first_ts
        self.sum_a = state.sum_a
        self.sum_b = state.sum_b
        self._marks = deque(tuple(mark) for mark in state.marks)
        self._next_ts = (self._marks[-1][0] + 1) * self.bucket_ns if self._marks else 0


def nearest_rank(ordered: SortedList | list[int], percentile: float) -> int:
    """The nearest-rank percentile of a non-empty ascending sequence: its ceil(p/100 x n)-th
    smallest element (P95 of 20 values is the 19th smallest)."""
    rank = ceil(percentile / 100 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


class QuantityWindow:
    """The newest ``size`` level quantities and their order statistics: a ring (to know which
    one leaves) plus a sorted list (percentiles in O(log n)); O(log n) per sample."""

    __slots__ = ("_ordered", "_recent", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._recent: deque[int] = deque()
        self._ordered = SortedList()

    def __len__(self) -> int:
        return len(self._recent)

    def extend(self, quantities: Iterable[int]) -> None:
        recent, ordered = self._recent, self._ordered
        for qty in quantities:
            recent.append(qty)
            ordered.add(qty)
            if len(recent) > self.size:
                ordered.remove(recent.popleft())

    def percentile(self, percentile: float) -> int:
        """Nearest-rank percentile; the window must not be empty."""
        return nearest_rank(self._ordered, percentile)

    def to_state(self) -> list[int]:
        return list(self._recent)

    def load_state(self, quantities: list[int]) -> None:
        self._recent = deque(quantities)
        self._ordered = SortedList(quantities)
