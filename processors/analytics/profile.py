"""The volume profile's window: traded volume per price over the last N minutes.

Per event-time minute one bucket: a dict price -> volume while the minute is open; when it
closes, its prices (ascending, delta-coded) and volumes are encoded once into a compact
msgpack payload, which is also what the checkpoint carries (closed minutes never change, so
a checkpoint costs no re-encoding of them). Buckets older than the window are dropped. A
trade costs one dict update; the slow cycle merges at most N + 1 buckets (never a rescan of
the trades), cuts the prices into bins of the width asked, then finds the POC and grows the
value area. Prices are kept exact rather than binned as they arrive: the bin width is a
number of the instrument's ticks, and the tick is learnt from the book (the venue's
precision says only how many decimals it writes), so it can still change.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import msgspec
import numpy as np

__all__ = ["MINUTE_NS", "ProfileFigures", "ProfileState", "ProfileWindow", "value_area"]

MINUTE_NS = 60_000_000_000


class _Minute(msgspec.Struct, array_like=True, frozen=True):
    bin_steps: list[int]
    """The first price, then each price's distance from the one before (small numbers)."""
    volumes: list[int]


_encode_minute = msgspec.msgpack.Encoder().encode
_decode_minute = msgspec.msgpack.Decoder(_Minute).decode


class ProfileState(msgspec.Struct, array_like=True, frozen=True):
    closed: list[tuple[int, int, msgspec.Raw]]
    """Closed minutes, oldest first: (minute, trades, encoded bins and volumes)."""
    minute: int
    """The open minute (-1 before the first trade), its trades, prices and volumes."""
    trades: int
    bins: list[int]
    volumes: list[int]


@dataclass(frozen=True, slots=True)
class ProfileFigures:
    trade_count: int
    volume: int
    poc_bin: int
    val_bin: int
    vah_bin: int


class ProfileWindow:
    __slots__ = ("_closed", "_next_ns", "_open", "_open_minute", "_open_trades", "minutes")

    def __init__(self, minutes: int) -> None:
        self.minutes = minutes
        self._closed: deque[tuple[int, int, bytes]] = deque()
        """Closed minutes, oldest first: (minute, trades, encoded ``_Minute``)."""
        self._open: dict[int, int] = {}
        self._open_minute = -1
        self._open_trades = 0
        self._next_ns = 0
        """Where the minute after the open one starts."""

    def add(self, clock_ns: int, price: int, qty: int) -> None:
        if clock_ns >= self._next_ns:  # ``clock_ns`` never goes back
            self._roll(clock_ns // MINUTE_NS)
        prices = self._open
        prices[price] = prices.get(price, 0) + qty
        self._open_trades += 1

    def _roll(self, minute: int) -> None:
        self._next_ns = (minute + 1) * MINUTE_NS
        if self._open_trades:
            bins = sorted(self._open)
            steps = [b - a for a, b in zip([0, *bins], bins, strict=False)]
            payload = _encode_minute(_Minute(steps, [self._open[b] for b in bins]))
            self._closed.append((self._open_minute, self._open_trades, payload))
        self._open = {}
        self._open_trades = 0
        self._open_minute = minute
        closed = self._closed
        while closed and closed[0][0] <= minute - self.minutes:
            closed.popleft()

    def figures(
        self, clock_ns: int, bin_width: int, value_area_share: float, min_trades: int
    ) -> ProfileFigures | None:
        """POC and value area, in bins of ``bin_width`` (bin = price // width), over the
        buckets within the window as of ``clock_ns``; None with fewer than ``min_trades``
        trades in it. Reads only."""
        oldest = clock_ns // MINUTE_NS - self.minutes + 1
        kept = [b for b in self._closed if b[0] >= oldest]
        trades = sum(b[1] for b in kept)
        if self._open_trades and self._open_minute >= oldest:
            trades += self._open_trades
        if trades < min_trades:
            return None
        parts_bins, parts_vols = [], []
        for _, _, payload in kept:
            minute = _decode_minute(payload)
            parts_bins.append(np.cumsum(np.array(minute.bin_steps, np.int64)))
            parts_vols.append(np.array(minute.volumes, np.int64))
        if self._open_trades and self._open_minute >= oldest:
            parts_bins.append(np.fromiter(self._open.keys(), np.int64, len(self._open)))
            parts_vols.append(np.fromiter(self._open.values(), np.int64, len(self._open)))
        bins, where = np.unique(np.concatenate(parts_bins) // bin_width, return_inverse=True)
        vols = np.zeros(len(bins), np.int64)
        np.add.at(vols, where, np.concatenate(parts_vols))
        bin_list, vol_list = bins.tolist(), vols.tolist()
        poc, val, vah = value_area(bin_list, vol_list, value_area_share)
        return ProfileFigures(trades, sum(vol_list), poc, val, vah)

    def to_state(self) -> ProfileState:
        bins = sorted(self._open)
        closed = [(m, n, msgspec.Raw(payload)) for m, n, payload in self._closed]
        return ProfileState(closed, self._open_minute, self._open_trades, bins,
                            [self._open[b] for b in bins])  # fmt: skip

    def load_state(self, state: ProfileState) -> None:
        # bytes(): a copy, or the decoded Raw would keep the whole checkpoint alive
        self._closed = deque((m, n, bytes(raw)) for m, n, raw in state.closed)
        self._open_minute = state.minute
        self._open_trades = state.trades
        self._open = dict(zip(state.bins, state.volumes, strict=True))
        self._next_ns = (state.minute + 1) * MINUTE_NS if state.minute >= 0 else 0


def value_area(bins: list[int], volumes: list[int], share: float) -> tuple[int, int, int]:
    """(POC, VAL, VAH) as bins, from bins ascending with their volumes (at least one > 0).

    POC: the bin with the most volume (the lowest of equals). The value area starts at the
    POC and grows one bin at a time toward the neighbouring bin with more volume (a bin
    without trades has 0; past the last traded bin there is none), both at once when they
    are equal, until it holds ``share`` of the volume. Runs of empty bins are crossed in one
    step, so a stray print far away costs nothing.
    """
    total = sum(volumes)
    top = max(volumes)
    p = volumes.index(top)
    lo_i = hi_i = p
    lo_bin = hi_bin = bins[p]
    held = top
    target = share * total
    n = len(bins)
    while held < target:
        up_i, down_i = hi_i + 1, lo_i - 1
        up = None if up_i == n else (volumes[up_i] if bins[up_i] == hi_bin + 1 else 0)
        down = None if down_i < 0 else (volumes[down_i] if bins[down_i] == lo_bin - 1 else 0)
        if up is not None and down is not None and up == down == 0:
            step = min(bins[up_i] - hi_bin, lo_bin - bins[down_i]) - 1
            hi_bin += step
            lo_bin -= step
            continue
        take_up = down is None or (up is not None and up >= down)
        take_down = up is None or (down is not None and down >= up)
        if take_up:
            hi_i, hi_bin = up_i, bins[up_i]
            held += volumes[up_i]
        if take_down:
            lo_i, lo_bin = down_i, bins[down_i]
            held += volumes[down_i]
    return bins[p], lo_bin, hi_bin
