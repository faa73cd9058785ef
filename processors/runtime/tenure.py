"""One symbol's tenure of one processor kind on a node: read ``md:{SYM}``, fold it with the
kind, and write the kind's projections, all under the symbol's fenced lease of that kind.

Acquire the lease -> load the checkpoint (or start where the kind's new groups start) ->
re-fold the stream after it -> read new entries, fold, publish (with a checkpoint at least
every second) -> on hand-off, once the successor is ready, a final publish and checkpoint,
then release. (Loading and re-folding start while the lease is still another node's.)
Publishing follows the events: a folded batch is published at once unless the last publish
is younger than ``min_publish_ms`` (then when it is that old), and at least every
``report_period_ms``. The kind's slow cycle runs with a publish once ``slow_period_ms`` has
passed since the last one began (an overrunning one delays the next: skipped, not queued).
A refused (fenced) write ends the tenure at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError, RedisError, ResponseError

from coordination.lease import (
    Lease,
    LeaseScripts,
    StaleLeaseError,
    acquire,
    release,
    renew,
    withdraw,
)
from core import keys, metrics
from core.events import ENTRY_FIELD, DecodeError, decode_event
from core.logs import log_event
from core.redis_client import AnyAsyncRedis, batch
from core.settings import Settings
from processors.runtime.kind import (
    Kind,
    ProjectionContext,
    StartAt,
    decode_envelope,
    encode_envelope,
)
from projections.report import Writer
from projections.writer import ProjectionScripts, Put, raise_refusals, write_commands

__all__ = ["HandOff", "KindContext", "hold_symbol", "wait_any"]

_READ_COUNT = 2000
_DEAD_LETTER_MAXLEN = 10_000
_RETRY_S = 0.5
_FOLD_AHEAD_EVERY_S = 0.25
"""A node waiting for a lease folds ahead (and renews its word as successor) this often."""
_LAPSE_MARGIN_S = 0.002
_CANCEL_GRACE_S = 0.05
_MAX_BLOCK_MS = 1000
"""Reads block at most this long (well under the client's socket timeout)."""
_CHECKPOINT_EVERY_S = 1.0
_RATE_WINDOW_S = 10.0

log = logging.getLogger("context8.processor")


@dataclass(slots=True)
class KindContext:
    """What every tenure of one kind on a node shares."""

    settings: Settings
    client: AnyAsyncRedis
    leases: LeaseScripts
    projections: ProjectionScripts
    kind: Kind[Any]
    start: StartAt
    """Where this kind starts a symbol it has no checkpoint of."""
    released: dict[str, asyncio.Event] = field(default_factory=dict)
    """Lease key -> set when that lease is announced released (the node's listener sets it;
    shared by the node's kinds)."""
    successors: dict[str, asyncio.Event] = field(default_factory=dict)
    """Lease key -> set when a node announces it is ready to take that lease over (the
    listener sets it, for tenures handing off)."""
    held_since: dict[str, float] = field(default_factory=dict)
    """Symbol -> monotonic time its current tenure began."""


DeadLetter = tuple[str, dict[str, bytes | str]]
"""(entry id, fields) of an entry that could not be folded."""


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


@dataclass(slots=True)
class Tenure:
    tenure: Lease
    folded: Folded
    dead: list[DeadLetter] = field(default_factory=list)
    """(entry id, fields) of entries that could not be folded, written with the next publish."""
    last_publish: float = 0.0
    last_checkpoint: float = 0.0
    first: bool = True
    """No publish of this tenure has been written yet."""
    publishes: deque[float] = field(default_factory=deque)
    """When the last publishes went out (the publish-rate window)."""
    dirty: bool = True
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class HandOff:
    """A request to end a tenure: set by the node, read by the tenure."""

    asked: asyncio.Event = field(default_factory=asyncio.Event)
    successor_wait_s: float = 0.0
    """How long the tenure goes on publishing while no successor has said it is ready."""

    def ask(self, successor_wait_s: float) -> None:
        self.successor_wait_s = successor_wait_s
        self.asked.set()


async def hold_symbol(node: KindContext, symbol: str, handoff: HandOff) -> None:
    """Acquire ``symbol`` (waiting, warm, while another node still holds it) and serve the
    tenure until it is lost, or until ``handoff`` is asked: then, once a successor is ready
    (or after ``successor_wait_s``), a final publish and checkpoint go out and the lease is
    released. Hand-off is cooperative (an event, not task cancellation), so the final writes
    never race a half-cancelled Redis call."""
    role = node.kind.name
    lease_key = keys.lease_key(role, symbol)
    released = node.released.setdefault(lease_key, asyncio.Event())
    try:
        acquired = await _acquire_warm(node, symbol, handoff, released)
    finally:
        if node.released.get(lease_key) is released:
            del node.released[lease_key]
    if acquired is None:
        return
    tenure, folded = acquired
    log_event(log, "lease_acquired", token=tenure.token, symbol=symbol, kind=role)
    node.held_since[symbol] = time.monotonic()
    metrics.SYMBOLS_ASSIGNED.labels(role).set(len(node.held_since))
    try:
        await _serve_tenure(node, tenure, folded or await _load(node, symbol), handoff)
    except StaleLeaseError as e:
        metrics.LEASE_CONFLICTS.labels(role).inc()
        log_event(log, "lease_refused", str(e), level=logging.WARNING, symbol=symbol, kind=role)
    finally:
        node.held_since.pop(symbol, None)
        metrics.SYMBOLS_ASSIGNED.labels(role).set(len(node.held_since))
        metrics.forget_symbol(role, symbol, report=node.kind.indexed)
        with contextlib.suppress(RedisError):
            await release(node.leases, tenure)
        log_event(log, "lease_released", token=tenure.token, symbol=symbol, kind=role)


async def _acquire_warm(
    node: KindContext, symbol: str, handoff: HandOff, released: asyncio.Event
) -> tuple[Lease, Folded | None] | None:
    """The lease once it is ours (with the state folded so far), or None when asked to hand
    off first.

    While another node holds it, the state is loaded and folded ahead (reading needs no
    lease; the fold is deterministic, so this state equals the holder's), and then this node
    says it is ready to take over: a holder handing off waits for that, so only the last few
    entries remain to fold between its final publish and our first. Waits end when the lease
    is announced released, when it would lapse (its holder died), or to fold ahead again."""
    role = node.kind.name
    folded: Folded | None = None
    while not handoff.asked.is_set():
        released.clear()
        ready = folded is not None and folded.group_ready
        try:
            outcome = await acquire(node.leases, role, symbol, node.settings.node_id,
                                    node.settings.lease_ttl_ms, successor=ready)  # fmt: skip
            if isinstance(outcome, Lease):
                return outcome, folded
            folded = folded or await _load(node, symbol)
            await _catch_up(node, folded, keys.stream_key(symbol), [])
            # done now, not on the hand-off's critical path: our first report is then as
            # complete as the holder's last, and our first publishes need no slow cycle
            if not folded.group_ready:
                await _ensure_group(node.client, keys.stream_key(symbol), role, folded.last_id)
                folded.group_ready = True
            if time.monotonic() >= folded.next_slow:
                _slow_cycle(node, folded)
        except RedisError as e:
            metrics.REDIS_ERRORS.labels(role).inc()
            log_event(log, "redis_error", str(e), level=logging.WARNING, symbol=symbol)
            await asyncio.sleep(_RETRY_S)
            continue
        if ready:  # else say so at once
            wait_s = min(outcome.ttl_ms / 1000 + _LAPSE_MARGIN_S, _FOLD_AHEAD_EVERY_S)
            await wait_any(wait_s, handoff.asked, released)
    if folded is not None and folded.group_ready:  # it may have said it was ready
        with contextlib.suppress(RedisError):
            await withdraw(node.leases, role, symbol, node.settings.node_id)
    return None


async def wait_any(timeout_s: float, *events: asyncio.Event) -> None:
    """Until one of ``events`` is set, or ``timeout_s`` passed."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _load(node: KindContext, symbol: str) -> Folded:
    """The symbol's checkpoint, or a fresh state positioned where the kind starts."""
    kind = node.kind
    stored = await node.client.get(keys.checkpoint_key(kind.name, symbol))
    resumed = decode_envelope(kind, stored) if stored else None
    if resumed is not None:
        state, last_id, events_folded, last_event_ns = resumed
        log_event(log, "checkpoint_loaded", last_id=last_id, symbol=symbol, kind=kind.name)
        return Folded(state, last_id, events_folded, last_event_ns)
    return Folded(kind.new_state(), await _start_id(node.client, symbol, node.start))


async def _start_id(client: AnyAsyncRedis, symbol: str, start: StartAt) -> str:
    """The id after which a fold that starts at ``start`` reads."""
    if start == "begin":
        return "0-0"
    if start == "live":
        newest = await client.xrevrange(keys.stream_key(symbol), count=1)
        return newest[0][0].decode() if newest else "0-0"
    return f"{int(start) - 1}-18446744073709551615" if int(start) > 0 else "0-0"


async def _serve_tenure(node: KindContext, tenure: Lease, folded: Folded, handoff: HandOff) -> None:
    # The old owner checkpointed as it handed off (or at most a second before it died): the
    # first publishes of a takeover skip the checkpoint, which is the costly part of them.
    tenancy = Tenure(tenure, folded, last_checkpoint=time.monotonic())
    stream = keys.stream_key(tenure.symbol)
    renewer = asyncio.create_task(_keep_lease(node, tenancy))
    try:
        await _catch_up(node, folded, stream, tenancy.dead)
        tenancy.dirty = True
        if not folded.group_ready:
            await _ensure_group(node.client, stream, node.kind.name, folded.last_id)
            folded.group_ready = True
        await _publish(node, tenancy)
        await _follow(node, tenancy, stream, handoff.asked)
        if handoff.successor_wait_s > 0:
            await _await_successor(node, tenancy, stream, handoff.successor_wait_s)
        await _publish(node, tenancy, final=True)
    finally:
        # Stopped by a flag as well as cancelled: redis-py can swallow a cancellation that
        # lands inside a command, and the renewer must not then renew on forever.
        tenancy.ended.set()
        renewer.cancel()
        await asyncio.wait({renewer}, timeout=_CANCEL_GRACE_S * 20)


async def _await_successor(node: KindContext, tenancy: Tenure, stream: str, wait_s: float) -> None:
    """Go on folding and publishing until a node taking over says it is ready (it has
    loaded the state and folded ahead), for at most ``wait_s``: the readers' gap is then the
    fold of the last few entries, not the new owner's start."""
    role, symbol = tenancy.tenure.role, tenancy.tenure.symbol
    lease_key = keys.lease_key(role, symbol)
    ready = node.successors[lease_key] = asyncio.Event()
    try:
        if await node.client.exists(keys.successor_key(role, symbol)):
            return
        await _follow(node, tenancy, stream, ready, until=time.monotonic() + wait_s)
    except RedisError as e:  # hand off now: waiting is a courtesy, the final writes are not
        metrics.REDIS_ERRORS.labels(role).inc()
        log_event(log, "redis_error", str(e), level=logging.WARNING, symbol=symbol)
    finally:
        if node.successors.get(lease_key) is ready:
            del node.successors[lease_key]


async def _ensure_group(client: AnyAsyncRedis, stream: str, group: str, start_id: str) -> None:
    """The kind's consumer group records how far the kind has folded the stream (its cursor
    is moved with every publish), so operators see each kind's lag; created where this fold
    stands if missing."""
    try:
        await client.xgroup_create(stream, group, id=start_id, mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def _keep_lease(node: KindContext, tenancy: Tenure) -> None:
    ttl = node.settings.lease_ttl_ms
    expires = time.monotonic() + ttl / 1000
    while not tenancy.ended.is_set():
        await wait_any(ttl / 2000, tenancy.ended)
        if tenancy.ended.is_set():
            return
        try:
            if not await renew(node.leases, tenancy.tenure, ttl):
                break
            expires = time.monotonic() + ttl / 1000
        except RedisError:
            metrics.REDIS_ERRORS.labels(node.kind.name).inc()
            if time.monotonic() >= expires:
                break
    tenancy.lost.set()


async def _catch_up(node: KindContext, folded: Folded, stream: str, dead: list[DeadLetter]) -> None:
    """Fold the stream after where ``folded`` stands, at full speed."""
    while True:
        start = "-" if folded.last_id == "0-0" else "(" + folded.last_id
        entries = await node.client.xrange(stream, min=start, count=_READ_COUNT)
        if not entries:
            folded.lag_ms = 0
            return
        _fold_entries(node.kind, folded, entries, dead)


async def _follow(
    node: KindContext,
    tenancy: Tenure,
    stream: str,
    stop: asyncio.Event,
    *,
    until: float = math.inf,
) -> None:
    """Fold new entries as they come and publish on time, until ``stop`` is set or
    ``until`` (monotonic) has come; raises StaleLeaseError once the lease is lost.

    Entries are read by id from where the fold stands (XREAD), not handed out by the group
    (XREADGROUP ">"): a stale owner's last read could otherwise take entries the new owner
    would never see. Redis errors are retried for as long as the lease holds."""
    settings = node.settings
    role = node.kind.name
    stop_waiters = {
        asyncio.create_task(stop.wait()),
        asyncio.create_task(tenancy.lost.wait()),
    }
    try:
        while not stop.is_set() and (now := time.monotonic()) < until:
            if tenancy.lost.is_set():
                raise StaleLeaseError(f"lease of {tenancy.tenure.symbol} lost (not renewed)")
            wait_ms = settings.min_publish_ms if tenancy.dirty else settings.report_period_ms
            remaining_ms = int((tenancy.last_publish + wait_ms / 1000 - now) * 1000)
            try:
                if remaining_ms <= 0:
                    await _publish(node, tenancy)
                    continue
                read = asyncio.create_task(
                    node.client.xread(
                        {stream: tenancy.folded.last_id},
                        count=_READ_COUNT,
                        # never 0: that would block for good
                        block=max(1, int(min(remaining_ms, _MAX_BLOCK_MS, (until - now) * 1000))),
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
                    if _fold_entries(node.kind, tenancy.folded, entries, tenancy.dead):
                        tenancy.dirty = True
            except RedisError as e:
                metrics.REDIS_ERRORS.labels(role).inc()
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
    kind: Kind[Any],
    folded: Folded,
    entries: list[tuple[bytes, dict[bytes, bytes]]],
    dead: list[DeadLetter],
) -> int:
    """Fold ``entries``; those that cannot be folded join ``dead``. Returns how
    many were folded."""
    count = 0
    fold, state = kind.fold, folded.state
    last_event_ns = folded.last_event_ns
    for raw_id, entry in entries:
        entry_id = raw_id.decode()
        payload = entry.get(ENTRY_FIELD)
        try:
            if payload is None:
                raise DecodeError(f"entry has no {ENTRY_FIELD!r} field")
            event = decode_event(payload)
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
    if len(entries) < _READ_COUNT:
        folded.lag_ms = 0
    else:
        newest_ms = int(folded.last_id.partition("-")[0])
        folded.lag_ms = max(0, time.time_ns() // 1_000_000 - newest_ms)
    metrics.EVENTS_FOLDED.labels(kind.name).inc(count)
    return count


def _slow_cycle(node: KindContext, folded: Folded) -> None:
    """The kind's slow cycle on ``folded`` (if it has one), the next due a period after this
    one began: after an overrun, a whole period later (skipped, not queued)."""
    if node.kind.slow is None:
        return
    started = time.monotonic()
    folded.slow = node.kind.slow(folded.state)
    took = time.monotonic() - started
    period = node.settings.slow_period_ms / 1000
    folded.next_slow = started + period * max(1, math.ceil(took / period))
    metrics.CALC_LATENCY_MS.labels(node.kind.name, "slow").observe(took * 1000)


async def _publish(node: KindContext, tenancy: Tenure, *, final: bool = False) -> None:
    kind = node.kind
    folded = tenancy.folded
    tenancy.last_publish = started = time.monotonic()
    if not folded.events_folded:
        tenancy.dirty = False
        return  # nothing to say yet: the symbol stays unlisted rather than "down" since 1970
    tenure = tenancy.tenure
    symbol = tenure.symbol
    # Not in a tenure's first publish: a takeover's first report goes out at once (a warm
    # successor computed its slow sections while waiting; a cold one's follow with the next
    # publish, a few ms later), and a final one needs none.
    first = tenancy.first
    if started >= folded.next_slow and not (first or final):
        _slow_cycle(node, folded)
    now_ms = time.time_ns() // 1_000_000
    projected = time.monotonic()
    context = ProjectionContext(
        symbol=symbol,
        writer=Writer(nodeId=tenure.node_id, writerToken=tenure.token),
        now_ms=now_ms,
        slow=folded.slow,
    )
    writes = kind.project(folded.state, context)
    checkpoint_due = final or started - tenancy.last_checkpoint >= _CHECKPOINT_EVERY_S
    if checkpoint_due:
        writes.append(
            Put(
                keys.checkpoint_key(kind.name, symbol),
                encode_envelope(
                    kind,
                    folded.state,
                    last_id=folded.last_id,
                    events_folded=folded.events_folded,
                    last_event_ns=folded.last_event_ns,
                ),
            )
        )
    metrics.CALC_LATENCY_MS.labels(kind.name, "fast").observe((time.monotonic() - projected) * 1000)
    stream = keys.stream_key(symbol)
    commands = write_commands(node.projections, tenure, writes,
                              indexed_at_ms=now_ms if kind.indexed else None)  # fmt: skip
    fenced = len(commands)
    commands.append(("xgroup_setid", (stream, kind.name, folded.last_id), {}))
    if checkpoint_due and kind.indexed:
        commands.append(("xlen", (stream,), {}))  # the stream's length, once a second
    for entry_id, fields in tenancy.dead:
        # the entry's own id: written once, however many owners and kinds meet it
        options = {"id": entry_id, "maxlen": _DEAD_LETTER_MAXLEN, "approximate": True}
        commands.append(("xadd", (keys.dead_letter_key(symbol), fields), options))
    for attempt in (1, 2):
        results = await batch(node.client, commands)
        try:
            raise_refusals(results[:fenced])
            break
        except NoScriptError:
            if attempt == 2:
                raise
            await node.projections.load()  # Redis restarted or its script cache was flushed
    if kind.published is not None:
        kind.published(folded.state)
    if tenancy.dead:
        metrics.DEAD_LETTERS.labels(kind.name).inc(len(tenancy.dead))
        log_event(log, "dead_letter", count=len(tenancy.dead), symbol=symbol, kind=kind.name)
        tenancy.dead.clear()
    if first:
        # the takeover (or first start) is complete: the symbol is published by this node
        log_event(log, "publishing", symbol=symbol, kind=kind.name, token=tenure.token,
                  last_id=folded.last_id)  # fmt: skip
    tenancy.first = False
    if checkpoint_due:
        tenancy.last_checkpoint = started
    tenancy.dirty = False
    metrics.CONSUMER_LAG.labels(kind.name, symbol).set(folded.lag_ms)
    if kind.indexed:
        _report_metrics(tenancy, kind.name, symbol, now_ms, folded.last_event_ns // 1_000_000)
        if checkpoint_due and isinstance(results[fenced + 1], int):
            metrics.STREAM_LENGTH.labels(symbol).set(results[fenced + 1])


def _report_metrics(
    tenancy: Tenure, kind: str, symbol: str, now_ms: int, last_event_ms: int
) -> None:
    metrics.REPORTS_PUBLISHED.labels(symbol).inc()
    metrics.DATA_AGE_MS.labels(symbol).set(max(0, now_ms - last_event_ms))
    if last_event_ms:
        metrics.PUBLISH_LATENCY_MS.labels(kind).observe(now_ms - last_event_ms)
    publishes = tenancy.publishes
    publishes.append(tenancy.last_publish)
    while publishes[0] < tenancy.last_publish - _RATE_WINDOW_S:
        publishes.popleft()
    span = min(_RATE_WINDOW_S, max(tenancy.last_publish - publishes[0], 1.0))
    metrics.REPORT_PUBLISH_RATE.labels(symbol).set(round(len(publishes) / span, 3))
