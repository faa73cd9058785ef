"""Binance's local order book procedure for one symbol, without I/O: the depth sequencer.

Both ingest paths sequence depth diffs with it, so they cannot drift apart: the live one
(``ingest.binance.GapAwareBinanceSpotDataClient`` feeds it websocket diffs and the REST
snapshots it fetches) and the offline one (``ingest.offline`` feeds it a capture's recorded
diffs and snapshots, in receive order).

The procedure (Binance's "how to manage a local order book correctly", plus the continuity
check NautilusTrader's client lacks):

- while a snapshot is awaited, diffs are buffered (at most ``max_buffered``; beyond it the
  oldest go, and the hole they leave makes the snapshot unusable: another one is needed);
- a snapshot is usable when the first buffered diff it does not cover bridges it
  (``U <= lastUpdateId + 1``); diffs with ``u <= lastUpdateId`` are dropped. Otherwise the
  snapshot is older than the stream: the buffer is kept for the next snapshot;
- once synced, a diff is applied iff ``U <= last + 1 <= u``: ``u <= last`` is old news
  (dropped), ``U > last + 1`` a gap: from that diff on the sequencer buffers and awaits a
  snapshot.

Callers publish what the verdicts say; the sequencer only keeps the ids and the buffer.
"""

from __future__ import annotations

from enum import Enum
from typing import Generic, NamedTuple, Protocol, TypeVar

__all__ = [
    "MAX_BUFFERED_DIFFS",
    "DepthSequencer",
    "Gap",
    "Sequenced",
    "SnapshotOutcome",
    "Verdict",
]

MAX_BUFFERED_DIFFS = 10_000
"""Diffs kept per symbol while a snapshot is awaited."""


class Sequenced(Protocol):
    """A diff message as far as sequencing goes: Binance ``U`` and ``u``."""

    @property
    def first(self) -> int: ...

    @property
    def last(self) -> int: ...


D = TypeVar("D", bound=Sequenced)


class Verdict(Enum):
    APPLY = "apply"
    """Publish the diff now: it continues the book."""
    BUFFERED = "buffered"
    """Held for the awaited snapshot."""
    STALE = "stale"
    """Already contained in the book (``u <= last``): dropped."""
    UNSYNCED = "unsynced"
    """Neither synced nor awaiting a snapshot (not subscribed yet): dropped."""


class Gap(NamedTuple):
    """A diff that does not continue the book: ``U`` is past ``last + 1``."""

    expected: int
    """``last + 1``: the ``U`` that was due."""
    received: int
    """The ``U`` that came."""
    received_last: int
    """Its ``u``."""

    @property
    def detail(self) -> str:
        return f"diff U={self.received} u={self.received_last} after u={self.expected - 1}"


class SnapshotOutcome(NamedTuple, Generic[D]):
    usable: bool
    """False: the snapshot is older than the buffered stream; publish nothing, get another."""
    diffs: list[D]
    """The buffered diffs to publish after the snapshot, in order."""
    gap: Gap | None
    """A hole after ``diffs``: announce it and get another snapshot (the rest is buffered)."""


class DepthSequencer(Generic[D]):
    """The update-id state of one symbol's book: synced at ``last``, awaiting a snapshot
    (buffering), or neither."""

    __slots__ = ("_buffer", "last", "max_buffered")

    def __init__(self, max_buffered: int = MAX_BUFFERED_DIFFS) -> None:
        self.max_buffered = max_buffered
        self.last: int | None = None
        """``u`` of the last diff applied (or the snapshot's lastUpdateId); None unless synced."""
        self._buffer: list[D] | None = None

    @property
    def synced(self) -> bool:
        return self.last is not None

    @property
    def awaiting_snapshot(self) -> bool:
        return self._buffer is not None

    def await_snapshot(self) -> None:
        """From now on diffs wait for a snapshot (kept if already buffering)."""
        self.last = None
        if self._buffer is None:
            self._buffer = []

    def on_diff(self, diff: D) -> Verdict | Gap:
        """Sequence one diff; a ``Gap`` means: announce it and get a snapshot (the diff is
        buffered for it)."""
        buffer = self._buffer
        if buffer is not None:
            buffer.append(diff)
            if len(buffer) > self.max_buffered:
                del buffer[0]
            return Verdict.BUFFERED
        last = self.last
        if last is None:
            return Verdict.UNSYNCED
        if diff.last <= last:
            return Verdict.STALE
        if diff.first > last + 1:
            self.last = None
            self._buffer = [diff]
            return Gap(last + 1, diff.first, diff.last)
        self.last = diff.last
        return Verdict.APPLY

    def on_snapshot(self, last_update_id: int) -> SnapshotOutcome[D]:
        """Take a snapshot at ``last_update_id`` with the buffered diffs (see the module
        docstring); without a buffer (synced, or never awaiting) it starts a fresh one."""
        pending = [diff for diff in self._buffer or () if diff.last > last_update_id]
        if pending and pending[0].first > last_update_id + 1:
            self.last = None
            self._buffer = pending
            return SnapshotOutcome(False, [], None)
        self._buffer = None
        last = last_update_id
        for i, diff in enumerate(pending):
            if diff.first > last + 1:
                self.last = None
                self._buffer = pending[i:]
                return SnapshotOutcome(True, pending[:i], Gap(last + 1, diff.first, diff.last))
            last = diff.last
        self.last = last
        return SnapshotOutcome(True, pending, None)
