"""One symbol's tenure on a processor node: read ``md:{SYM}`` through the kind's consumer
group, fold, and publish the report, all under the symbol's fenced lease.

Acquire the lease -> load the checkpoint -> re-fold the stream after it -> take over the
group's pending entries -> read new entries, fold, publish (with a checkpoint at least every
second) -> on hand-off (the task is cancelled), a final report and checkpoint, then release.
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
from redis.exceptions import RedisError, ResponseError

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


@dataclass(slots=True)
class _Tenancy:
    tenure: Tenure
    state: AnalyticsState
    acks: list[bytes] = field(default_factory=list)
    dead: list[dict[str, bytes | str]] = field(default_factory=list)
    last_publish: float = 0.0
    last_checkpoint: float = 0.0
    dirty: bool = True
    lost: asyncio.Event = field(default_factory=asyncio.Event)


async def hold_symbol(node: Consumer, symbol: str) -> None:
    """Acquire ``symbol`` (polling while another node still holds it) and serve the tenure
    until it is lost (then return) or the task is cancelled (then hand off cleanly)."""
    ttl = node.settings.lease_ttl_ms
    while True:
        try:
            tenure = await acquire(node.leases, KIND, symbol, node.settings.node_id, ttl)
        except RedisError as e:
            metrics.REDIS_ERRORS.labels(KIND).inc()
            log_event(log, "redis_error", str(e), level=logging.WARNING, symbol=symbol)
            await asyncio.sleep(_RETRY_S)
            continue
        if tenure is not None:
            break
        # Short: during a hand-off the old owner releases within milliseconds.
        await asyncio.sleep(_ACQUIRE_POLL_S)
    log_event(log, "lease_acquired", token=tenure.token, symbol=symbol)
    node.held_since[symbol] = time.monotonic()
    metrics.SYMBOLS_ASSIGNED.labels(KIND).set(len(node.held_since))
    try:
        await _serve_tenure(node, tenure)
    except StaleTenureError as e:
        metrics.LEASE_CONFLICTS.labels(KIND).inc()
        log_event(log, "lease_refused", str(e), level=logging.WARNING, symbol=symbol)
    except RedisError as e:
        metrics.REDIS_ERRORS.labels(KIND).inc()
        log_event(log, "redis_error", str(e), level=logging.WARNING, symbol=symbol)
    finally:
        node.held_since.pop(symbol, None)
        metrics.SYMBOLS_ASSIGNED.labels(KIND).set(len(node.held_since))
        with contextlib.suppress(RedisError, asyncio.CancelledError):
            await asyncio.shield(release(node.leases, tenure))
        log_event(log, "lease_released", token=tenure.token, symbol=symbol)


async def _serve_tenure(node: Consumer, tenure: Tenure) -> None:
    params = AnalyticsParams()
    stored = await node.client.get(keys.checkpoint_key(KIND, tenure.symbol))
    state = decode_checkpoint(stored, params) if stored else None
    tenancy = _Tenancy(tenure, state or new_state(params))
    stream = keys.stream_key(tenure.symbol)
    renewer = asyncio.create_task(_keep_lease(node, tenancy))
    try:
        await _catch_up(node, tenancy, stream)
        await _publish(node, tenancy)
        await _follow(node, tenancy, stream)
    except asyncio.CancelledError:
        # Handing off: the last report and checkpoint go out before the lease is released.
        with contextlib.suppress(RedisError, StaleTenureError):
            await asyncio.shield(_publish(node, tenancy, final=True))
        raise
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer


async def _ensure_group(client: Redis, stream: str, start_id: str) -> None:
    """Create the kind's group where this fold stands, so a first owner is not handed the
    whole retained stream again; an existing group keeps its cursor."""
    try:
        await client.xgroup_create(stream, KIND, id=start_id, mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def _keep_lease(node: Consumer, tenancy: _Tenancy) -> None:
    ttl = node.settings.lease_ttl_ms
    expires = time.monotonic() + ttl / 1000
    while True:
        await asyncio.sleep(ttl / 2000)
        try:
            if not await renew(node.leases, tenancy.tenure, ttl):
                break
            expires = time.monotonic() + ttl / 1000
        except RedisError:
            metrics.REDIS_ERRORS.labels(KIND).inc()
            if time.monotonic() >= expires:
                break
    tenancy.lost.set()


async def _catch_up(node: Consumer, tenancy: _Tenancy, stream: str) -> None:
    """Re-fold the stream after the checkpoint (all of it without one), then claim what the
    group delivered to earlier owners."""
    start = "-" if tenancy.state.last_id == "0-0" else "(" + tenancy.state.last_id
    while True:
        entries = await node.client.xrange(stream, min=start, count=_READ_COUNT)
        if not entries:
            break
        _fold_entries(tenancy, entries, ack=False)
        start = "(" + tenancy.state.last_id
    await _ensure_group(node.client, stream, tenancy.state.last_id)
    cursor = "0-0"
    while True:
        cursor, claimed, *_ = await node.client.xautoclaim(
            stream, KIND, node.settings.node_id, min_idle_time=0, start_id=cursor, count=_READ_COUNT
        )
        _fold_entries(tenancy, [e for e in claimed if e[1] is not None], ack=True)
        if cursor in (b"0-0", "0-0"):
            break


async def _follow(node: Consumer, tenancy: _Tenancy, stream: str) -> None:
    settings = node.settings
    consumer = settings.node_id
    while not tenancy.lost.is_set():
        wait_ms = settings.min_publish_ms if tenancy.dirty else settings.report_period_ms
        due = tenancy.last_publish + wait_ms / 1000
        remaining_ms = int((due - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            await _publish(node, tenancy)
            continue
        reply = await node.client.xreadgroup(
            KIND, consumer, {stream: ">"}, count=_READ_COUNT, block=remaining_ms
        )
        for _stream, entries in reply or ():
            _fold_entries(tenancy, entries, ack=True)
    raise StaleTenureError(f"lease of {tenancy.tenure.symbol} lost (not renewed in time)")


def _fold_entries(
    tenancy: _Tenancy, entries: list[tuple[bytes, dict[bytes, bytes]]], *, ack: bool
) -> None:
    state = tenancy.state
    last = _id_tuple(state.last_id)
    folded = 0
    for raw_id, entry in entries:
        if ack:
            tenancy.acks.append(raw_id)
        entry_id = raw_id.decode()
        if _id_tuple(entry_id) <= last:
            continue  # already folded (re-delivered after a takeover)
        payload = entry.get(ENTRY_FIELD)
        try:
            if payload is None:
                raise DecodeError(f"entry has no {ENTRY_FIELD!r} field")
            event = decode_event(payload)
        except DecodeError as e:
            tenancy.dead.append(
                {"id": entry_id, "group": KIND, "error": str(e), "payload": payload or b""}
            )
            state.last_id = entry_id
            continue
        fold(state, event, entry_id)
        folded += 1
    if folded:
        tenancy.dirty = True
        metrics.EVENTS_FOLDED.labels(KIND, tenancy.tenure.symbol).inc(folded)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


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
    stream = keys.stream_key(symbol)
    checkpoint_due = final or time.monotonic() - tenancy.last_checkpoint >= _CHECKPOINT_EVERY_S
    async with node.client.pipeline(transaction=False) as pipe:
        await queue_report(
            pipe,
            node.projections,
            tenure,
            report_json=msgspec.json.encode(report),
            ttl_ms=node.settings.cache_ttl_sec * 1000,
            updated_at_ms=now_ms,
            checkpoint=encode_checkpoint(tenancy.state) if checkpoint_due else None,
        )
        if tenancy.acks:
            pipe.xack(stream, KIND, *tenancy.acks)
        for dead in tenancy.dead:
            pipe.xadd(keys.dead_letter_key(symbol), dead, maxlen=_DEAD_LETTER_MAXLEN)
        results = await pipe.execute(raise_on_error=False)
    raise_refusals(results)
    if tenancy.dead:
        metrics.DEAD_LETTERS.labels(KIND).inc(len(tenancy.dead))
        log_event(log, "dead_letter", count=len(tenancy.dead), symbol=symbol)
    tenancy.acks.clear()
    tenancy.dead.clear()
    if checkpoint_due:
        tenancy.last_checkpoint = tenancy.last_publish
    tenancy.dirty = False
    metrics.REPORTS_PUBLISHED.labels(symbol).inc()
    metrics.DATA_AGE_MS.labels(symbol).set(report.data_age_ms)
    if report.stream.last_event_ts_ms:
        metrics.PUBLISH_LATENCY_MS.observe(now_ms - report.stream.last_event_ts_ms)
