"""One symbol's tenure of one processor kind on a node, from acquiring its lease to
releasing it.

Acquire the lease (while another node holds it: load the checkpoint, fold ahead and say so,
so the holder can hand off to a warm successor) -> load the checkpoint, or start where the
kind's new groups start -> re-fold the stream after it -> hand the symbol to the kind's
follower (processors/runtime/follower.py), which reads, folds and publishes every symbol
the node holds of that kind, and renews their leases -> on hand-off, once the successor is
ready (or after ``successor_wait_s``), a final publish and checkpoint -> release. A refused
(fenced) write or renewal ends the tenure at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from redis.exceptions import RedisError, ResponseError

from coordination.lease import Lease, StaleLeaseError, acquire, release, withdraw
from core import keys, metrics
from core.logs import log_event
from core.redis_client import AnyAsyncRedis
from processors.runtime.context import HandOff, KindContext, wait_any
from processors.runtime.folding import DeadLetter, Folded, catch_up, run_slow
from processors.runtime.kind import StartAt, decode_envelope

__all__ = ["Tenure", "hold_symbol"]

_RETRY_S: Final = 0.5
_FOLD_AHEAD_EVERY_S: Final = 0.25
"""A node waiting for a lease folds ahead (and renews its word as successor) this often."""
_LAPSE_MARGIN_S: Final = 0.002

log = logging.getLogger("context8.processor")


@dataclass(slots=True, eq=False)
class Tenure:
    """A symbol held by this node for one kind: its lease, its fold, its publishing."""

    lease: Lease
    folded: Folded
    expires: float
    """When (monotonic) the lease lapses unless renewed."""
    last_checkpoint: float
    dead: list[DeadLetter] = field(default_factory=list)
    """Entries that could not be folded, written with the next publish."""
    last_publish: float = 0.0
    first: bool = True
    """No publish of this tenure has been written yet."""
    dirty: bool = True
    """Folded something since the last publish."""
    due: float = math.inf
    """When (monotonic) its next publish is scheduled (inf: not scheduled)."""
    finishing: bool = False
    """A final publish is asked for (hand-off)."""
    publishes: deque[float] = field(default_factory=deque)
    """When the last publishes went out (the publish-rate window)."""
    resync_asked: float = -math.inf
    """When (monotonic) a fresh venue snapshot was last asked for (``Kind.resync``)."""
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    """Fencing refused a write or a renewal: the tenure is over."""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    """The final publish went out."""

    @property
    def symbol(self) -> str:
        return self.lease.symbol


async def hold_symbol(ctx: KindContext, symbol: str, handoff: HandOff) -> None:
    """Acquire ``symbol`` (waiting, warm, while another node still holds it) and serve the
    tenure until it is lost, or until ``handoff`` is asked: then, once a successor is ready
    (or after ``successor_wait_s``), a final publish and checkpoint go out and the lease is
    released. Hand-off is cooperative (an event, not task cancellation), so the final writes
    never race a half-cancelled Redis call."""
    role = ctx.kind.name
    lease_key = keys.lease_key(role, symbol)
    released = ctx.released.setdefault(lease_key, asyncio.Event())
    try:
        acquired = await _acquire_warm(ctx, symbol, handoff, released)
    finally:
        if ctx.released.get(lease_key) is released:
            del ctx.released[lease_key]
    if acquired is None:
        return
    lease, folded = acquired
    log_event(log, "lease_acquired", token=lease.token, symbol=symbol, kind=role)
    ctx.held_since[symbol] = time.monotonic()
    metrics.SYMBOLS_ASSIGNED.labels(role).set(len(ctx.held_since))
    try:
        await _serve(ctx, lease, folded or await _load(ctx, symbol), handoff)
    except StaleLeaseError as e:
        metrics.LEASE_CONFLICTS.labels(role).inc()
        log_event(log, "lease_refused", str(e), level=logging.WARNING, symbol=symbol, kind=role)
    finally:
        ctx.held_since.pop(symbol, None)
        metrics.SYMBOLS_ASSIGNED.labels(role).set(len(ctx.held_since))
        metrics.forget_symbol(role, symbol, report=ctx.kind.indexed)
        with contextlib.suppress(RedisError):
            await release(ctx.leases, lease)
        log_event(log, "lease_released", token=lease.token, symbol=symbol, kind=role)


async def _serve(ctx: KindContext, lease: Lease, folded: Folded, handoff: HandOff) -> None:
    assert ctx.follower is not None
    now = time.monotonic()
    # The old owner checkpointed as it handed off (or at most a checkpoint period before it
    # died): the first publishes of a takeover skip the checkpoint, the costly part of them.
    tenure = Tenure(lease, folded, expires=now + ctx.settings.lease_ttl_ms / 1000,
                    last_checkpoint=now)  # fmt: skip
    stream = keys.stream_key(lease.symbol)
    await catch_up(ctx.client, ctx.kind, folded, stream, tenure.dead)
    if not folded.group_ready:
        await _ensure_group(ctx.client, stream, ctx.kind.name, folded.last_id)
        folded.group_ready = True
    ctx.follower.add(tenure)
    try:
        await wait_any(None, handoff.asked, tenure.lost)
        if not tenure.lost.is_set() and handoff.successor_wait_s > 0:
            await _await_successor(ctx, tenure, handoff.successor_wait_s)
        if not tenure.lost.is_set():
            await ctx.follower.finish(tenure)
        if tenure.lost.is_set():
            raise StaleLeaseError(f"lease of {lease.symbol} lost (a write or renewal refused)")
    finally:
        ctx.follower.remove(tenure)


async def _await_successor(ctx: KindContext, tenure: Tenure, wait_s: float) -> None:
    """The follower goes on folding and publishing while a node taking over says it is
    ready (it has loaded the state and folded ahead), for at most ``wait_s``: the readers'
    gap is then the fold of the last few entries, not the new owner's start."""
    role, symbol = tenure.lease.role, tenure.symbol
    lease_key = keys.lease_key(role, symbol)
    ready = ctx.successors[lease_key] = asyncio.Event()
    try:
        if await ctx.client.exists(keys.successor_key(role, symbol)):
            return
        await wait_any(wait_s, ready, tenure.lost)
    except RedisError as e:  # hand off now: waiting is a courtesy, the final writes are not
        metrics.REDIS_ERRORS.labels(role).inc()
        log_event(log, "redis_error", str(e), level=logging.WARNING, symbol=symbol)
    finally:
        if ctx.successors.get(lease_key) is ready:
            del ctx.successors[lease_key]


async def _acquire_warm(
    ctx: KindContext, symbol: str, handoff: HandOff, released: asyncio.Event
) -> tuple[Lease, Folded | None] | None:
    """The lease once it is ours (with the state folded so far), or None when asked to hand
    off first.

    While another node holds it, the state is loaded and folded ahead (reading needs no
    lease; the fold is deterministic, so this state equals the holder's), and then this node
    says it is ready to take over: a holder handing off waits for that, so only the last few
    entries remain to fold between its final publish and our first. Waits end when the lease
    is announced released, when it would lapse (its holder died), or to fold ahead again."""
    role = ctx.kind.name
    folded: Folded | None = None
    while not handoff.asked.is_set():
        released.clear()
        ready = folded is not None and folded.group_ready
        try:
            outcome = await acquire(ctx.leases, role, symbol, ctx.settings.node_id,
                                    ctx.settings.lease_ttl_ms, successor=ready)  # fmt: skip
            if isinstance(outcome, Lease):
                return outcome, folded
            folded = folded or await _load(ctx, symbol)
            await catch_up(ctx.client, ctx.kind, folded, keys.stream_key(symbol), [])
            # done now, not on the hand-off's critical path: our first report is then as
            # complete as the holder's last, and our first publishes need no slow cycle
            if not folded.group_ready:
                await _ensure_group(ctx.client, keys.stream_key(symbol), role, folded.last_id)
                folded.group_ready = True
            if time.monotonic() >= folded.next_slow:
                run_slow(ctx.kind, folded, ctx.settings.slow_period_ms / 1000)
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
            await withdraw(ctx.leases, role, symbol, ctx.settings.node_id)
    return None


async def _load(ctx: KindContext, symbol: str) -> Folded:
    """The symbol's checkpoint, or a fresh state positioned where the kind starts."""
    kind = ctx.kind
    stored = await ctx.client.get(keys.checkpoint_key(kind.name, symbol))
    resumed = decode_envelope(kind, stored) if stored else None
    if resumed is not None:
        state, last_id, events_folded, last_event_ns = resumed
        log_event(log, "checkpoint_loaded", last_id=last_id, symbol=symbol, kind=kind.name)
        return Folded(state, last_id, events_folded, last_event_ns)
    return Folded(kind.new_state(), await _start_id(ctx.client, symbol, ctx.start))


async def _start_id(client: AnyAsyncRedis, symbol: str, start: StartAt) -> str:
    """The id after which a fold that starts at ``start`` reads."""
    if start == "begin":
        return "0-0"
    if start == "live":
        newest = await client.xrevrange(keys.stream_key(symbol), count=1)
        return newest[0][0].decode() if newest else "0-0"
    return f"{int(start) - 1}-18446744073709551615" if int(start) > 0 else "0-0"


async def _ensure_group(client: AnyAsyncRedis, stream: str, group: str, start_id: str) -> None:
    """The kind's consumer group records how far the kind has folded the stream (its cursor
    is moved with every publish), so operators see each kind's lag; created where this
    fold stands if missing."""
    try:
        await client.xgroup_create(stream, group, id=start_id, mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
