"""One publish of one held symbol: what it writes (``compose``) and what follows once the
batch it went out in has come back (``settle``).

A publish writes the kind's projections in one fenced step, with the index entry when the
kind's projection is the report, and a checkpoint when one is due (and on hand-off); it moves
the kind's consumer-group cursor to where the fold stands (operators see each kind's lag),
reads the stream's length with a checkpoint, carries the dead letters met since the last
publish, and asks the symbol's ingest for a fresh venue snapshot when the kind's state says
it needs one (``Kind.resync``).
The slow cycle runs as part of a publish once it is due, never in a tenure's first publish
(a takeover's first report goes out at once; a warm successor ran it while waiting) nor in
a final one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

from core import keys, metrics
from core.logs import log_event
from core.redis_client import Command
from processors.runtime.context import KindContext
from processors.runtime.folding import run_slow
from processors.runtime.kind import ProjectionContext, encode_envelope
from processors.runtime.pacing import Cadences, Pacing
from processors.runtime.tenure import Tenure
from projections.report import Writer
from projections.writer import Put, raise_refusals, write_commands

__all__ = ["RESYNC_EVERY_S", "Composed", "compose", "settle"]

RESYNC_EVERY_S: Final = 5.0
"""A symbol's fresh snapshot is asked for at most this often: the one asked for takes a
venue round trip (and the ingest's lease round) to arrive."""
_RESYNC_TTL_MS: Final = 30_000
_DEAD_LETTER_MAXLEN: Final = 10_000
_RATE_WINDOW_S: Final = 10.0

log = logging.getLogger("context8.processor")


@dataclass(slots=True)
class Composed:
    tenure: Tenure
    commands: list[Command]
    fenced: int
    """How many of ``commands``, from the first, are fenced writes (projection, index)."""
    checkpoint: bool
    now_ms: int
    started: float


def compose(
    ctx: KindContext, tenure: Tenure, pacing: Pacing, cadences: Cadences, *, final: bool
) -> Composed | None:
    """The commands of ``tenure``'s publish now; None while it has folded nothing (the
    symbol stays unlisted rather than "down" since 1970)."""
    kind, folded = ctx.kind, tenure.folded
    started = time.monotonic()
    if not folded.events_folded:
        return None
    if started >= folded.next_slow and not (tenure.first or final):
        pacing.slow.add(run_slow(kind, folded, cadences.slow_s), 1)
    lease = tenure.lease
    now_ms = time.time_ns() // 1_000_000
    projected = time.monotonic()
    context = ProjectionContext(
        symbol=lease.symbol,
        writer=Writer(nodeId=lease.node_id, writerToken=lease.token),
        now_ms=now_ms,
        slow=folded.slow,
    )
    writes = kind.project(folded.state, context)
    metrics.CALC_LATENCY_MS.labels(kind.name, "fast").observe((time.monotonic() - projected) * 1000)
    checkpoint = final or (
        not tenure.first and started - tenure.last_checkpoint >= cadences.checkpoint_s
    )
    if checkpoint:
        encoding = time.monotonic()
        envelope = encode_envelope(kind, folded.state, last_id=folded.last_id,
                                   events_folded=folded.events_folded,
                                   last_event_ns=folded.last_event_ns)  # fmt: skip
        pacing.checkpoint.add(time.monotonic() - encoding, 1)
        writes.append(Put(keys.checkpoint_key(kind.name, lease.symbol), envelope))
    commands = write_commands(ctx.projections, lease, writes,
                              indexed_at_ms=now_ms if kind.indexed else None)  # fmt: skip
    fenced = len(commands)
    stream = keys.stream_key(lease.symbol)
    commands.append(("xgroup_setid", (stream, kind.name, folded.last_id), {}))
    if checkpoint and kind.indexed:
        commands.append(("xlen", (stream,), {}))  # the stream's length, once a checkpoint
    reason = kind.resync(folded.state) if kind.resync is not None else None
    if reason and started - tenure.resync_asked >= RESYNC_EVERY_S:
        tenure.resync_asked = started
        log_event(log, "resync_requested", reason, level=logging.WARNING,
                  symbol=lease.symbol, kind=kind.name)  # fmt: skip
        commands.append(("set", (keys.resync_key(lease.symbol), reason), {"px": _RESYNC_TTL_MS}))
    for entry_id, fields in tenure.dead:
        # the entry's own id: written once, however many owners and kinds meet it
        options = {"id": entry_id, "maxlen": _DEAD_LETTER_MAXLEN, "approximate": True}
        commands.append(("xadd", (keys.dead_letter_key(lease.symbol), fields), options))
    return Composed(tenure, commands, fenced, checkpoint, now_ms, started)


def settle(ctx: KindContext, composed: Composed, results: list[object]) -> None:
    """After the batch: raise ``StaleLeaseError`` if fencing refused the write (the tenure
    is over); else the bookkeeping of a publish done."""
    raise_refusals(results[: composed.fenced])
    kind, tenure = ctx.kind, composed.tenure
    folded, symbol = tenure.folded, tenure.lease.symbol
    if kind.published is not None:
        kind.published(folded.state)
    if tenure.dead:
        metrics.DEAD_LETTERS.labels(kind.name).inc(len(tenure.dead))
        log_event(log, "dead_letter", count=len(tenure.dead), symbol=symbol, kind=kind.name)
        tenure.dead.clear()
    if tenure.first:
        # the takeover (or first start) is complete: the symbol is published by this node
        log_event(log, "publishing", symbol=symbol, kind=kind.name, token=tenure.lease.token,
                  last_id=folded.last_id)  # fmt: skip
        tenure.first = False
    if composed.checkpoint:
        tenure.last_checkpoint = composed.started
    metrics.CONSUMER_LAG.labels(kind.name, symbol).set(folded.lag_ms)
    if not kind.indexed:
        return
    _report_metrics(tenure, symbol, composed.now_ms, folded.last_event_ns // 1_000_000, kind.name)
    if composed.checkpoint:
        length = results[composed.fenced + 1]
        if isinstance(length, int):
            metrics.STREAM_LENGTH.labels(symbol).set(length)


def _report_metrics(
    tenure: Tenure, symbol: str, now_ms: int, last_event_ms: int, kind: str
) -> None:
    metrics.REPORTS_PUBLISHED.labels(symbol).inc()
    metrics.DATA_AGE_MS.labels(symbol).set(max(0, now_ms - last_event_ms))
    if last_event_ms:
        metrics.PUBLISH_LATENCY_MS.labels(kind).observe(now_ms - last_event_ms)
    publishes = tenure.publishes
    publishes.append(tenure.last_publish)
    while publishes[0] < tenure.last_publish - _RATE_WINDOW_S:
        publishes.popleft()
    span = min(_RATE_WINDOW_S, max(tenure.last_publish - publishes[0], 1.0))
    metrics.REPORT_PUBLISH_RATE.labels(symbol).set(round(len(publishes) / span, 3))
