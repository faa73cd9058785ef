"""Folding stream entries into a kind's state: decode, fold, dead-letter what cannot be used,
and keep track of where in the stream the state stands."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Final

from core import metrics
from core.events import ENTRY_FIELD, DecodeError, read_entry
from core.redis_client import AnyAsyncRedis
from processors.runtime.kind import Kind

__all__ = ["READ_COUNT", "DeadLetter", "Folded", "catch_up", "fold_entries", "run_slow"]

READ_COUNT: Final = 2000
"""Entries read at most per XRANGE/XREAD of one stream."""

DeadLetter = tuple[str, dict[str, bytes | str]]
"""(entry id, fields) of an entry that could not be folded."""
Entries = list[tuple[bytes, dict[bytes, bytes]]]


@dataclass(slots=True)
class Folded:
    """A kind's state and where in the stream it stands."""

    state: Any
    last_id: str = "0-0"
    events_folded: int = 0
    last_event_ns: int = 0
    lag_ms: int = 0
    """Stream time (ms) between the last entry folded and the stream's end, 0 once a read
    found nothing more."""
    group_ready: bool = False
    """The kind's consumer group on the stream is known to exist."""
    slow: object | None = None
    """The kind's latest slow-cycle result (None before the first)."""
    next_slow: float = 0.0
    """When (monotonic) the next slow cycle is due."""


def fold_entries(kind: Kind[Any], folded: Folded, entries: Entries, dead: list[DeadLetter]) -> int:
    """Fold ``entries``; those that cannot be folded join ``dead``. Returns how many were
    folded."""
    count = 0
    fold, state = kind.fold, folded.state
    last_event_ns = folded.last_event_ns
    for raw_id, entry in entries:
        entry_id = raw_id.decode()
        payload = entry.get(ENTRY_FIELD)
        try:
            event = read_entry(payload, entry_id)
            fold(state, event, entry_id)
            count += 1
            last_event_ns = max(last_event_ns, event.ts_event)
        except Exception as e:  # a kind's fold is plug-in code
            # Never stop on one entry: it goes to the dead letters, the fold goes on. A
            # ValueError is the documented refusal; anything else is a kind's bug, which must
            # not stop the symbol either (it would fail on the same entry at every restart).
            error = str(e) if isinstance(e, DecodeError | ValueError) else repr(e)
            dead.append((entry_id, {"group": kind.name, "error": error, "payload": payload or b""}))
        folded.last_id = entry_id
    folded.events_folded += count
    folded.last_event_ns = last_event_ns
    if len(entries) < READ_COUNT:
        folded.lag_ms = 0
    else:
        newest_ms = int(folded.last_id.partition("-")[0])
        folded.lag_ms = max(0, time.time_ns() // 1_000_000 - newest_ms)
    metrics.EVENTS_FOLDED.labels(kind.name).inc(count)
    return count


async def catch_up(
    client: AnyAsyncRedis, kind: Kind[Any], folded: Folded, stream: str, dead: list[DeadLetter]
) -> None:
    """Fold the stream after where ``folded`` stands, at full speed."""
    while True:
        start = "-" if folded.last_id == "0-0" else "(" + folded.last_id
        entries = await client.xrange(stream, min=start, count=READ_COUNT)
        if not entries:
            folded.lag_ms = 0
            return
        fold_entries(kind, folded, entries, dead)


def run_slow(kind: Kind[Any], folded: Folded, period_s: float) -> float:
    """The kind's slow cycle on ``folded`` (if it has one), the next due a period after this
    one began: after an overrun, a whole period later (skipped, not queued). Returns the
    seconds it took."""
    if kind.slow is None:
        return 0.0
    started = time.monotonic()
    folded.slow = kind.slow(folded.state)
    took = time.monotonic() - started
    folded.next_slow = started + period_s * max(1, math.ceil(took / period_s))
    metrics.CALC_LATENCY_MS.labels(kind.name, "slow").observe(took * 1000)
    return took
