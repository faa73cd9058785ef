"""One symbol's tenure on a processor node: read ``md:{SYM}`` through the kind's consumer
group, fold, and publish the report, all under the symbol's fenced lease.

Acquire the lease -> load the checkpoint -> re-fold the stream after it -> read new entries,
fold, publish (with a checkpoint at least every second) -> on hand-off, a final report and
checkpoint, then release.
Publishing follows the events: a folded batch is published at once unless the last publish
is younger than ``min_publish_ms`` (then when it is that old), and at least every
``report_period_ms``. A refused (fenced) write ends the tenure at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from context8 import keys, metrics
from context8.config import Settings
from context8.events import ENTRY_FIELD, DecodeError, decode_event
from context8.logs import log_event
from coordination.lease import LeaseScripts, StaleTenureError, Tenure, acquire, release, renew
from processors.checkpoint import decode_checkpoint, encode_checkpoint
from processors.fold import AnalyticsParams, AnalyticsState, fold, new_state
from processors.project import build_report
from projections.report import Writer
from projections.writer import ProjectionScripts, queue_report, raise_refusals

__all__ = ["KIND", "Consumer", "hold_symbol"]

KIND = "analytics"
_READ_COUNT = 2000
_DEAD_LETTER_MAXLEN = 10_000
_RETRY_S = 0.5
_ACQUIRE_POLL_S = 0.02
_ACQUIRE_POLL_SLOW_S = 0.25
_ACQUIRE_FAST_FOR_S = 3.0
_CANCEL_GRACE_S = 0.05
_MAX_BLOCK_MS = 1000
"""Reads block at most this long (well under the client's socket timeout)."""
_CHECKPOINT_EVERY_S = 1.0

log = logging.getLogger("context8.processor")


@dataclass(slots=True)
class Consumer:
    """What every tenure of a node shares."""

    settings: Settings
    client: Redis
    leases: LeaseScripts
    projections: ProjectionScripts
    held_since: dict[str, float] = field(default_factory=dict)
    """Symbol -> monotonic time its current tenure began."""


DeadLetter = tuple[str, dict[str, bytes | str]]
"""(entry id, fields) of an entry that could not be folded."""


@dataclass(slots=True)
class _Tenancy:
    tenure: Tenure
    state: AnalyticsState
    dead: list[DeadLetter] = field(default_factory=list)
    """(entry id, fields) of entries that could not be folded, written with the next publish."""
    last_publish: float = 0.0
    last_checkpoint: float = 0.0
    dirty: bool = True
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


async def hold_symbol(node: Consumer, symbol: str, handoff: asyncio.Event) -> None:
    """Acquire ``symbol`` (polling while another node still holds it) and serve the tenure
    until it is lost, or until ``handoff`` is set: then a final report and checkpoint go out
    and the lease is released. Hand-off is cooperative (an event, not task cancellation),
    so the final writes never race a half-cancelled Redis call."""
    ttl = node.settings.lease_ttl_ms
    waiting_since = time.monotonic()
    tenure = None
    state: AnalyticsState | None = None
    while not handoff.is_set():
        try:
            tenure = await acquire(node.leases, KIND, symbol, node.settings.node_id, ttl)
            if tenure is not None:
                break
            # While the old owner still holds it, fold ahead (reading needs no lease; the
            # fold is deterministic, so this state equals the old owner's): once the lease
            # is ours only the last few entries remain before the first publish.
            state = state or await _load_state(node, symbol)
            await _catch_up(node, state, keys.stream_key(symbol), [])
        except RedisError as e:
            metrics.REDIS_ERRORS.labels(KIND).inc()
            log_event(log, "redis_error", str(e), level=logging.WARNING, symbol=symbol)
            await asyncio.sleep(_RETRY_S)
            continue
        # Fast at first: during a hand-off the old owner releases within milliseconds; slower
        # after, when the holder is a node that has not (yet) agreed to let go.
        slow = time.monotonic() - waiting_since > _ACQUIRE_FAST_FOR_S
        await _wait(handoff, _ACQUIRE_POLL_SLOW_S if slow else _ACQUIRE_POLL_S)
    if tenure is None:
        return
    log_event(log, "lease_acquired", token=tenure.token, symbol=symbol)
    node.held_since[symbol] = time.monotonic()
    metrics.SYMBOLS_ASSIGNED.labels(KIND).set(len(node.held_since))
    try:
        await _serve_tenure(node, tenure, state or await _load_state(node, symbol), handoff)
    except StaleTenureError as e:
        metrics.LEASE_CONFLICTS.labels(KIND).inc()
        log_event(log, "lease_refused", str(e), level=logging.WARNING, symbol=symbol)
    finally:
        node.held_since.pop(symbol, None)
        metrics.SYMBOLS_ASSIGNED.labels(KIND).set(len(node.held_since))
        with contextlib.suppress(RedisError):
            await release(node.leases, tenure)
        log_event(log, "lease_released", token=tenure.token, symbol=symbol)


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)


async def _load_state(node: Consumer, symbol: str) -> AnalyticsState:
    """The symbol's checkpoint, or a fresh state to fold the stream from its start."""
    params = AnalyticsParams()
    stored = await node.client.get(keys.checkpoint_key(KIND, symbol))
    return (decode_checkpoint(stored, params) if stored else None) or new_state(params)


async def _serve_tenure(
    node: Consumer, tenure: Tenure, state: AnalyticsState, handoff: asyncio.Event
) -> None:
    tenancy = _Tenancy(tenure, state)
    stream = keys.stream_key(tenure.symbol)
    renewer = asyncio.create_task(_keep_lease(node, tenancy))
    try:
        await _catch_up(node, tenancy.state, stream, tenancy.dead)
        tenancy.dirty = True
        await _ensure_group(node.client, stream, tenancy.state.last_id)
        await _publish(node, tenancy)
        await _follow(node, tenancy, stream, handoff)
        await _publish(node, tenancy, final=True)
    finally:
        # Stopped by a flag as well as cancelled: redis-py can swallow a cancellation that
        # lands inside a command, and the renewer must not then renew on forever.
        tenancy.ended.set()
        renewer.cancel()
        await asyncio.wait({renewer}, timeout=_CANCEL_GRACE_S * 20)


async def _ensure_group(client: Redis, stream: str, start_id: str) -> None:
    """The kind's consumer group records how far the kind has folded the stream (its cursor
    is moved with every publish), so operators see each kind's lag; created where this fold
    stands if missing."""
    try:
        await client.xgroup_create(stream, KIND, id=start_id, mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def _keep_lease(node: Consumer, tenancy: _Tenancy) -> None:
    ttl = node.settings.lease_ttl_ms
    expires = time.monotonic() + ttl / 1000
    while not tenancy.ended.is_set():
        await _wait(tenancy.ended, ttl / 2000)
        if tenancy.ended.is_set():
            return
        try:
            if not await renew(node.leases, tenancy.tenure, ttl):
                break
            expires = time.monotonic() + ttl / 1000
        except RedisError:
            metrics.REDIS_ERRORS.labels(KIND).inc()
            if time.monotonic() >= expires:
                break
    tenancy.lost.set()


async def _catch_up(
    node: Consumer, state: AnalyticsState, stream: str, dead: list[DeadLetter]
) -> None:
    """Fold the stream after where ``state`` stands (all of it for a fresh state)."""
    while True:
        start = "-" if state.last_id == "0-0" else "(" + state.last_id
        entries = await node.client.xrange(stream, min=start, count=_READ_COUNT)
        if not entries:
            return
        _fold_entries(state, stream, entries, dead)


async def _follow(node: Consumer, tenancy: _Tenancy, stream: str, handoff: asyncio.Event) -> None:
    """Fold new entries as they come and publish on time, until hand-off or loss.

    Entries are read by id from where the fold stands (XREAD), not handed out by the group
    (XREADGROUP ">"): a stale owner's last read could otherwise take entries the new owner
    would never see. Redis errors are retried for as long as the lease holds."""
    settings = node.settings
    stop_waiters = {
        asyncio.create_task(handoff.wait()),
        asyncio.create_task(tenancy.lost.wait()),
    }
    try:
        while not handoff.is_set():
            if tenancy.lost.is_set():
                raise StaleTenureError(f"lease of {tenancy.tenure.symbol} lost (not renewed)")
            wait_ms = settings.min_publish_ms if tenancy.dirty else settings.report_period_ms
            remaining_ms = int((tenancy.last_publish + wait_ms / 1000 - time.monotonic()) * 1000)
            try:
                if remaining_ms <= 0:
                    await _publish(node, tenancy)
                    continue
                read = asyncio.create_task(
                    node.client.xread(
                        {stream: tenancy.state.last_id},
                        count=_READ_COUNT,
                        block=min(remaining_ms, _MAX_BLOCK_MS),
                    )
                )
                await asyncio.wait({read, *stop_waiters}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    # Not awaited to the end: a blocked read interrupted mid-reply may take
                    # its connection down slowly, and the hand-off must not wait for that.
                    read.cancel()
                    await asyncio.wait({read}, timeout=_CANCEL_GRACE_S)
                    read.add_done_callback(_consume_outcome)
                    continue
                for _stream, entries in read.result() or ():
                    if _fold_entries(tenancy.state, stream, entries, tenancy.dead):
                        tenancy.dirty = True
            except RedisError as e:
                metrics.REDIS_ERRORS.labels(KIND).inc()
                log_event(log, "redis_error", str(e), level=logging.WARNING,
                          symbol=tenancy.tenure.symbol)  # fmt: skip
                await asyncio.sleep(_RETRY_S)
    finally:
        for waiter in stop_waiters:
            waiter.cancel()


def _consume_outcome(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned read's error is not "never retrieved"


def _fold_entries(
    state: AnalyticsState,
    stream: str,
    entries: list[tuple[bytes, dict[bytes, bytes]]],
    dead: list[DeadLetter],
) -> int:
    """Fold ``entries`` of ``stream``; those that cannot be folded join ``dead``. Returns how
    many were folded."""
    folded = 0
    for raw_id, entry in entries:
        entry_id = raw_id.decode()
        payload = entry.get(ENTRY_FIELD)
        try:
            if payload is None:
                raise DecodeError(f"entry has no {ENTRY_FIELD!r} field")
            fold(state, decode_event(payload), entry_id)
            folded += 1
        except (DecodeError, ValueError) as e:
            # Never stop on one entry: it goes to the dead letters, the fold goes on.
            dead.append((entry_id, {"group": KIND, "error": str(e), "payload": payload or b""}))
            state.last_id = entry_id
    metrics.EVENTS_FOLDED.labels(KIND, stream).inc(folded)
    return folded


async def _publish(node: Consumer, tenancy: _Tenancy, *, final: bool = False) -> None:
    tenancy.last_publish = time.monotonic()
    if not tenancy.state.events_folded:
        tenancy.dirty = False
        return  # nothing to say yet: the symbol stays unlisted rather than "down" since 1970
    tenure = tenancy.tenure
    symbol = tenure.symbol
    now_ms = time.time_ns() // 1_000_000
    report = build_report(
        tenancy.state,
        instrument_id=symbol,
        writer=Writer(nodeId=tenure.node_id, writerToken=tenure.token),
        now_ms=now_ms,
    )
    checkpoint_due = final or time.monotonic() - tenancy.last_checkpoint >= _CHECKPOINT_EVERY_S
    report_json = msgspec.json.encode(report)
    checkpoint = encode_checkpoint(tenancy.state) if checkpoint_due else None
    for attempt in (1, 2):
        async with node.client.pipeline(transaction=False) as pipe:
            queue_report(pipe, node.projections, tenure, report_json=report_json,
                         ttl_ms=node.settings.cache_ttl_sec * 1000, updated_at_ms=now_ms,
                         checkpoint=checkpoint)  # fmt: skip
            pipe.xgroup_setid(keys.stream_key(symbol), KIND, tenancy.state.last_id)
            for entry_id, fields in tenancy.dead:
                # the entry's own id: written once, however many owners meet it
                pipe.xadd(keys.dead_letter_key(symbol), fields, id=entry_id,
                          maxlen=_DEAD_LETTER_MAXLEN, approximate=True)  # fmt: skip
            results = await pipe.execute(raise_on_error=False)
        try:
            raise_refusals(results[:2])
            break
        except NoScriptError:
            if attempt == 2:
                raise
            await node.projections.load()  # Redis restarted or its script cache was flushed
    if tenancy.dead:
        metrics.DEAD_LETTERS.labels(KIND).inc(len(tenancy.dead))
        log_event(log, "dead_letter", count=len(tenancy.dead), symbol=symbol)
        tenancy.dead.clear()
    if checkpoint_due:
        tenancy.last_checkpoint = tenancy.last_publish
    tenancy.dirty = False
    metrics.REPORTS_PUBLISHED.labels(symbol).inc()
    metrics.DATA_AGE_MS.labels(symbol).set(report.data_age_ms)
    if report.stream.last_event_ts_ms:
        metrics.PUBLISH_LATENCY_MS.observe(now_ms - report.stream.last_event_ts_ms)
