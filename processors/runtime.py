"""The processor node: a member of the fleet that holds the symbols assigned to it.

Every ``_TICK_S`` it reads the live nodes of its kind and the symbols' lease holders, plans
with rendezvous hashing (coordination/assignment.py), starts a tenure task for each symbol it
should hold and cancels (hands off) each one that belongs elsewhere now, once held for the
minimum hold time. It heartbeats every second (+-10%). On stop it leaves the membership first,
so the others take over while it hands every symbol off (final report, checkpoint, release).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from context8 import keys, metrics
from context8.config import ConfigError, Settings
from context8.logs import log_event, set_log_context
from coordination.assignment import plan
from coordination.lease import LeaseScripts
from coordination.membership import (
    MEMBERSHIP_CHANNEL,
    NodeInfo,
    beat,
    leave,
    live_nodes,
    next_beat_s,
)
from processors.consumer import KIND, Consumer, hold_symbol
from projections.writer import ProjectionScripts

__all__ = ["KIND", "run_processor"]

_TICK_S = 0.1
_HANDOFF_TIMEOUT_S = 3.0

log = logging.getLogger("context8.processor")


async def run_processor(settings: Settings, stop: asyncio.Event, *, metrics_url: str = "") -> None:
    """Be a member of the processor fleet until ``stop`` is set, then leave gracefully."""
    if settings.redis_url is None:
        raise ConfigError("REDIS_URL: the processor needs the Redis holding md:{SYM}")
    set_log_context(node_id=settings.node_id, role=KIND)
    client = Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10
    )
    node = Consumer(settings, client, LeaseScripts(client), ProjectionScripts(client))
    info = NodeInfo(
        node_id=settings.node_id,
        role=KIND,
        symbols=list(settings.symbols),
        host=socket.gethostname(),
        pid=os.getpid(),
        metrics_url=metrics_url,
        started_ms=time.time_ns() // 1_000_000,
    )
    tenures = _Tenures(node)
    wake = asyncio.Event()
    listener = asyncio.create_task(_listen(client, wake))
    try:
        await node.projections.load()
        await _coordinate(node, info, tenures, wake, stop)
    finally:
        listener.cancel()
        # Leave first, so the others start taking over while the hand-offs run.
        with contextlib.suppress(RedisError):
            await leave(client, settings.node_id)
        handed_off = await tenures.hand_off_all()
        log_event(log, "node_left", symbols=handed_off)
        await asyncio.gather(listener, return_exceptions=True)
        await client.aclose()


class _Tenures:
    """The node's tenure tasks: started per symbol, stopped by a hand-off request (never by
    cancellation), and kept while they hand off so a symbol is never held twice."""

    def __init__(self, node: Consumer) -> None:
        self.node = node
        self.running: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self.stopping: dict[asyncio.Task[None], tuple[str, float]] = {}
        """Tenures handing off -> (symbol, when asked)."""

    def apply(self, want: frozenset[str], give_up: frozenset[str]) -> None:
        for symbol, (task, _handoff) in list(self.running.items()):
            if task.done():
                del self.running[symbol]  # lost: started again below if still ours
                self._report_failure(symbol, task)
        self._reap_stopping()
        for symbol in want - self.running.keys():
            handoff = asyncio.Event()
            task = asyncio.create_task(hold_symbol(self.node, symbol, handoff))
            self.running[symbol] = (task, handoff)
            log_event(log, "assigned", symbol=symbol)
        for symbol in give_up & self.running.keys():
            if symbol in self.node.held_since:
                metrics.HRW_REBALANCES.inc()
            task, handoff = self.running.pop(symbol)
            handoff.set()
            self.stopping[task] = (symbol, time.monotonic())
            log_event(log, "unassigned", symbol=symbol)

    async def hand_off_all(self) -> int:
        for _task, handoff in self.running.values():
            handoff.set()
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

    @staticmethod
    def _report_failure(symbol: str, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log_event(log, "tenure_failed", repr(task.exception()), level=logging.ERROR,
                      symbol=symbol)  # fmt: skip


async def _coordinate(
    node: Consumer,
    info: NodeInfo,
    tenures: _Tenures,
    wake: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    settings = node.settings
    next_beat = 0.0
    while not stop.is_set():
        # cleared before reading the fleet: a departure announced while this tick runs still
        # wakes the next one at once
        wake.clear()
        try:
            now = time.monotonic()
            # Redis's clock, not ours: heartbeats of nodes on other hosts compare fairly
            # whatever their clocks say.
            seconds, micros = await node.client.time()
            now_ms = seconds * 1000 + micros // 1000
            if now >= next_beat:
                owned = sorted(node.held_since)
                await beat(node.client, _with_owned(info, owned), now_ms)
                metrics.NODE_HEARTBEAT.set(now_ms / 1000)
                next_beat = now + next_beat_s()
            nodes = await live_nodes(node.client, KIND, now_ms)
            every_symbol = sorted({s for n in nodes for s in n.symbols} | set(settings.symbols))
            holders = await _holders(node.client, every_symbol)
            decided = plan(
                me=settings.node_id,
                symbols=settings.symbols,
                nodes=[n for n in nodes if n.node_id != settings.node_id] + [info],
                holders=holders,
                held_since=node.held_since,
                now=now,
                min_hold_s=settings.min_hold_ms / 1000,
                sticky_pct=settings.hrw_sticky_pct,
            )
            # a symbol still handing off here is not started again until it is done
            stopping = set(node.held_since) - set(tenures.running)
            tenures.apply(decided.want - stopping, decided.give_up)
        except RedisError as e:
            metrics.REDIS_ERRORS.labels(KIND).inc()
            log_event(log, "redis_error", str(e), level=logging.WARNING)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(wake, stop), _TICK_S)


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


def _with_owned(info: NodeInfo, owned: list[str]) -> NodeInfo:
    return msgspec.structs.replace(info, owned=owned)


async def _holders(client: Redis, symbols: list[str]) -> dict[str, str | None]:
    async with client.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            pipe.get(keys.lease_key(KIND, symbol))
        raw = await pipe.execute()
    return {s: v.decode() if v else None for s, v in zip(symbols, raw, strict=True)}


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _listen(client: Redis, wake: asyncio.Event) -> None:
    """Wake the coordinator when a node leaves, instead of at its next tick."""
    while True:
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(MEMBERSHIP_CHANNEL)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is not None:
                        wake.set()
        except RedisError:
            await asyncio.sleep(0.5)
