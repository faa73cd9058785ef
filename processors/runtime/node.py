"""The processor node: a member of the fleet that holds, for each processor kind it runs,
the symbols assigned to it.

Every ``_TICK_S``, for each kind, it reads the live nodes running that kind and the symbols'
lease holders of that kind, plans with rendezvous hashing (coordination/assignment.py),
starts a tenure task for each symbol it should hold and hands off each one that belongs
elsewhere now, once held for the minimum hold time. Kinds are assigned independently: a node
running only some kinds takes part only in theirs. It heartbeats every second (+-10%). On stop
it leaves the membership first, so the others start taking over, and hands every symbol off
once its successor is ready (final publish, checkpoint, release).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from redis.exceptions import RedisError

from coordination.assignment import plan
from coordination.lease import RELEASED_CHANNEL, SUCCESSOR_CHANNEL, LeaseScripts
from coordination.membership import (
    MEMBERSHIP_CHANNEL,
    NodeInfo,
    beat,
    leave,
    live_nodes,
    next_beat_s,
)
from core import keys, metrics
from core.logs import log_event, set_log_context
from core.redis_client import AnyAsyncRedis, connect, get_many_async
from core.settings import ConfigError, Settings
from processors.runtime.context import HandOff, KindContext, wait_any
from processors.runtime.follower import Follower
from processors.runtime.kind import Kind, load_kinds, start_setting
from processors.runtime.tenure import hold_symbol
from projections.writer import ProjectionScripts

__all__ = ["ROLE", "run_processor"]

ROLE = "processor"

_TICK_S = 0.1
_HANDOFF_TIMEOUT_S = 3.0
_SUCCESSOR_WAIT_S = 1.0
"""A symbol handed off to another node is published here until that node is ready to take
over (it has loaded the state and folded ahead), for at most this long."""
_LISTEN_TIMEOUT_S = 1.0
_RETRY_FAILED_S = 1.0
"""A tenure that failed is started again after this long, not at the next tick."""

log = logging.getLogger("context8.processor")


async def run_processor(
    settings: Settings,
    stop: asyncio.Event,
    *,
    kinds: list[Kind[Any]] | None = None,
    env: Mapping[str, str] | None = None,
    metrics_url: str = "",
) -> None:
    """Be a member of the processor fleet for ``kinds`` (default: those of
    ``NT_PROCESSOR_KINDS``, else every installed kind) until ``stop`` is set, then leave
    gracefully."""
    if settings.redis_url is None:
        raise ConfigError("REDIS_URL: the processor needs the Redis holding md:{SYM}")
    env = os.environ if env is None else env
    if kinds is None:
        kinds = load_kinds(settings.processor_kinds, settings, env)
    set_log_context(node_id=settings.node_id, role=ROLE)
    for kind in kinds:
        metrics.count_from_zero(kind.name)
    client = await _connect(settings.redis_url, stop)
    if client is None:
        return
    leases, projections = LeaseScripts(client), ProjectionScripts(client)
    # lease keys are per kind: one map of each for all kinds
    released: dict[str, asyncio.Event] = {}
    successors: dict[str, asyncio.Event] = {}
    kind_tenures = []
    for kind in kinds:
        ctx = KindContext(settings, client, leases, projections, kind, start_setting(env, kind),
                          released, successors)  # fmt: skip
        ctx.follower = Follower(ctx)
        kind_tenures.append(KindTenures(ctx))
    followers = [t.ctx.follower for t in kind_tenures if t.ctx.follower is not None]
    info = NodeInfo(
        node_id=settings.node_id,
        role=ROLE,
        kinds=[kind.name for kind in kinds],
        symbols=list(settings.symbols),
        host=socket.gethostname(),
        pid=os.getpid(),
        metrics_url=metrics_url,
        started_ms=time.time_ns() // 1_000_000,
    )
    wake, left = asyncio.Event(), asyncio.Event()
    waiting = {RELEASED_CHANNEL: released, SUCCESSOR_CHANNEL: successors}
    listener = asyncio.create_task(_listen(client, wake, waiting, followers, left))
    following = [asyncio.create_task(follower.run()) for follower in followers]
    try:
        await projections.load()
        await _coordinate(client, settings, info, kind_tenures, wake, stop)
    finally:
        # Leave first, so the others start taking over while the hand-offs run (the listener
        # still hearing when each successor is ready).
        with contextlib.suppress(RedisError):
            await leave(client, settings.node_id)
            # who is still there now (a fleet shutting down leaves together): only their
            # symbols have a successor worth waiting for
            remaining = await live_nodes(client, ROLE, await _redis_ms(client))
            for tenures in kind_tenures:
                tenures.elsewhere = _configured_elsewhere(
                    remaining, tenures.ctx.kind.name, settings.node_id
                )
        handed_off = await asyncio.gather(*(t.hand_off_all() for t in kind_tenures))
        for follower in followers:
            follower.close()
        _done, late = await asyncio.wait(following, timeout=_HANDOFF_TIMEOUT_S)
        for task in late:
            task.cancel()
        log_event(log, "node_left", symbols=sum(handed_off))
        left.set()  # a flag as well: redis-py may swallow a cancellation inside a read
        listener.cancel()
        await asyncio.wait({listener}, timeout=_LISTEN_TIMEOUT_S)
        await client.aclose()


class KindTenures:
    """The node's tenure tasks: started per symbol, stopped by a hand-off request (never by
    cancellation), and kept while they hand off so a symbol is never held twice."""

    def __init__(self, ctx: KindContext) -> None:
        self.ctx = ctx
        self.running: dict[str, tuple[asyncio.Task[None], HandOff]] = {}
        self.stopping: dict[asyncio.Task[None], tuple[str, float]] = {}
        """Tenures handing off -> (symbol, when asked)."""
        self.failed_until: dict[str, float] = {}
        """Symbol -> when a tenure that failed (a bug, not a lost lease) may start again."""
        self.elsewhere: frozenset[str] = frozenset()
        """Symbols another live node running this kind is configured for (at the last
        look): on leaving, only those have a successor worth waiting for."""

    def apply(self, want: frozenset[str], give_up: frozenset[str]) -> None:
        now = time.monotonic()
        for symbol, (task, _handoff) in list(self.running.items()):
            if task.done():
                del self.running[symbol]  # lost: started again below if still ours
                if self._report_failure(symbol, task):
                    self.failed_until[symbol] = now + _RETRY_FAILED_S
        self._reap_stopping()
        # Not started again while its previous tenure (holding or still waiting) is ending:
        # two tenures of one symbol would share its lease and its lease's announcements.
        ending = {symbol for symbol, _asked in self.stopping.values()}
        ending |= self.ctx.held_since.keys() - self.running.keys()
        for symbol in want - self.running.keys() - ending:
            if self.failed_until.get(symbol, 0.0) > now:
                continue
            self.failed_until.pop(symbol, None)
            handoff = HandOff()
            task = asyncio.create_task(hold_symbol(self.ctx, symbol, handoff))
            self.running[symbol] = (task, handoff)
            log_event(log, "assigned", symbol=symbol, kind=self.ctx.kind.name)
        for symbol in give_up & self.running.keys():
            if symbol in self.ctx.held_since:
                metrics.HRW_REBALANCES.labels(self.ctx.kind.name).inc()
            task, handoff = self.running.pop(symbol)
            handoff.ask(successor_wait_s=_SUCCESSOR_WAIT_S)  # the plan gave it to a live node
            self.stopping[task] = (symbol, time.monotonic())
            log_event(log, "unassigned", symbol=symbol, kind=self.ctx.kind.name)

    async def hand_off_all(self) -> int:
        for symbol, (_task, handoff) in self.running.items():
            handoff.ask(_SUCCESSOR_WAIT_S if symbol in self.elsewhere else 0.0)
        tasks = [task for task, _ in self.running.values()] + list(self.stopping)
        _done, late = await asyncio.wait(tasks, timeout=_HANDOFF_TIMEOUT_S) if tasks else ((), ())
        for task in late:
            task.cancel()  # its lease lapses by itself within the TTL
        return len(tasks)

    def _reap_stopping(self) -> None:
        """Forget finished hand-offs; cancel one that overran (its lease then lapses within
        the TTL), logging where it was stuck."""
        now = time.monotonic()
        for task, (symbol, asked) in list(self.stopping.items()):
            if task.done():
                del self.stopping[task]
            elif now - asked > _HANDOFF_TIMEOUT_S:
                log_event(log, "handoff_overrun", " <- ".join(_awaiting(task)),
                          level=logging.ERROR, symbol=symbol)  # fmt: skip
                task.cancel()
                del self.stopping[task]

    def _report_failure(self, symbol: str, task: asyncio.Task[None]) -> bool:
        """Log the error a tenure ended with; whether there was one."""
        if task.cancelled() or task.exception() is None:
            return False
        error = task.exception()
        log_event(log, "tenure_failed", repr(error), level=logging.ERROR, symbol=symbol,
                  kind=self.ctx.kind.name, exc_info=error)  # fmt: skip
        return True


async def _coordinate(
    client: AnyAsyncRedis,
    settings: Settings,
    info: NodeInfo,
    kind_tenures: list[KindTenures],
    wake: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    next_beat = 0.0
    while not stop.is_set():
        # cleared before reading the fleet: a departure announced while this tick runs still
        # wakes the next one at once
        wake.clear()
        try:
            now = time.monotonic()
            now_ms = await _redis_ms(client)
            if now >= next_beat:
                await beat(client, _with_owned(info, kind_tenures), now_ms)
                metrics.NODE_HEARTBEAT.set(now_ms / 1000)
                next_beat = now + next_beat_s()
            # one read of the fleet per tick; each kind plans over the nodes running it
            fleet = await live_nodes(client, ROLE, now_ms)
            for tenures in kind_tenures:
                await _assign(client, settings, info, fleet, tenures, now)
        except RedisError as e:
            metrics.REDIS_ERRORS.labels(ROLE).inc()
            log_event(log, "redis_error", str(e), level=logging.WARNING)
        await wait_any(_TICK_S, wake, stop)


async def _redis_ms(client: AnyAsyncRedis) -> int:
    """Redis's clock, not ours: heartbeats of nodes on other hosts compare fairly whatever
    their clocks say."""
    seconds, micros = await client.time()
    return seconds * 1000 + micros // 1000


def _configured_elsewhere(fleet: list[NodeInfo], kind: str, me: str) -> frozenset[str]:
    return frozenset(s for n in fleet if kind in n.kinds and n.node_id != me for s in n.symbols)


async def _assign(
    client: AnyAsyncRedis,
    settings: Settings,
    info: NodeInfo,
    fleet: list[NodeInfo],
    tenures: KindTenures,
    now: float,
) -> None:
    """One kind's plan for this node over the live processor nodes ``fleet``, applied."""
    ctx = tenures.ctx
    kind = ctx.kind.name
    nodes = [n for n in fleet if kind in n.kinds]
    tenures.elsewhere = _configured_elsewhere(fleet, kind, settings.node_id)
    every_symbol = sorted({s for n in nodes for s in n.symbols} | set(settings.symbols))
    holders = await _holders(client, kind, every_symbol)
    decided = plan(
        me=settings.node_id,
        symbols=settings.symbols,
        nodes=[n for n in nodes if n.node_id != settings.node_id] + [info],
        holders=holders,
        held_since=ctx.held_since,
        now=now,
        min_hold_s=settings.min_hold_ms / 1000,
        sticky_pct=settings.hrw_sticky_pct,
    )
    tenures.apply(decided.want, decided.give_up)


async def _connect(url: str, stop: asyncio.Event) -> AnyAsyncRedis | None:
    """A client of the Redis at ``url`` (standalone or cluster), retried until it answers or
    ``stop`` is set (None then)."""
    while not stop.is_set():
        try:
            return await connect(url, socket_timeout=5, socket_connect_timeout=2,
                                 health_check_interval=10)  # fmt: skip
        except RedisError as e:
            log_event(log, "redis_unavailable", str(e), level=logging.WARNING)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    return None


def _awaiting(task: asyncio.Task[None]) -> list[str]:
    """Where a task is suspended, innermost last: its chain of awaited coroutines."""
    where = []
    awaited: object = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            where.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return where


def _with_owned(info: NodeInfo, kind_tenures: list[KindTenures]) -> NodeInfo:
    owned_by_kind = {t.ctx.kind.name: sorted(t.ctx.held_since) for t in kind_tenures}
    owned = sorted({symbol for symbols in owned_by_kind.values() for symbol in symbols})
    return msgspec.structs.replace(info, owned=owned, owned_by_kind=owned_by_kind)


async def _holders(client: AnyAsyncRedis, role: str, symbols: list[str]) -> dict[str, str | None]:
    raw = await get_many_async(client, [keys.lease_key(role, s) for s in symbols])
    return {s: v.decode() if v else None for s, v in zip(symbols, raw, strict=True)}


async def _listen(
    client: AnyAsyncRedis,
    wake: asyncio.Event,
    waiting: dict[str, dict[str, asyncio.Event]],
    followers: list[Follower],
    done: asyncio.Event,
) -> None:
    """Until ``done``: wake the coordinator when a node leaves, a tenure waiting on a lease
    key (by the channel announcing it: released, successor ready) when it is announced, and
    the followers when ingest appended to streams they follow, instead of at their next
    poll."""
    while not done.is_set():
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(MEMBERSHIP_CHANNEL, keys.APPENDED_CHANNEL, *waiting)
                while not done.is_set():
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=_LISTEN_TIMEOUT_S
                    )
                    if message is None:
                        continue
                    channel = message["channel"].decode()
                    if channel == keys.APPENDED_CHANNEL:
                        symbols = keys.appended_symbols(message["data"])
                        for follower in followers:
                            follower.notify(symbols)
                    elif channel == MEMBERSHIP_CHANNEL:
                        wake.set()
                    elif (event := waiting[channel].get(message["data"].decode())) is not None:
                        event.set()
        except RedisError:
            await asyncio.sleep(0.5)
