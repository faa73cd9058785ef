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
    tasks: dict[str, asyncio.Task[None]] = {}
    wake = asyncio.Event()
    listener = asyncio.create_task(_listen(client, wake))
    try:
        await _coordinate(node, info, tasks, wake, stop)
    finally:
        listener.cancel()
        with contextlib.suppress(RedisError, asyncio.CancelledError):
            await asyncio.shield(leave(client, settings.node_id))
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), listener, return_exceptions=True)
        log_event(log, "node_left", symbols=len(tasks))
        await client.aclose()


async def _coordinate(
    node: Consumer,
    info: NodeInfo,
    tasks: dict[str, asyncio.Task[None]],
    wake: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    settings = node.settings
    next_beat = 0.0
    while not stop.is_set():
        try:
            now = time.monotonic()
            now_ms = time.time_ns() // 1_000_000
            if now >= next_beat:
                owned = sorted(node.held_since)
                await beat(node.client, _with_owned(info, owned), now_ms)
                metrics.NODE_HEARTBEAT.set(now_ms / 1000)
                next_beat = now + next_beat_s()
            nodes = await live_nodes(node.client, KIND, now_ms)
            holders = await _holders(node.client, settings.symbols)
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
            _apply(node, decided.want, decided.give_up, tasks)
        except RedisError as e:
            metrics.REDIS_ERRORS.labels(KIND).inc()
            log_event(log, "redis_error", str(e), level=logging.WARNING)
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(wake, stop), _TICK_S)


def _apply(
    node: Consumer,
    want: frozenset[str],
    give_up: frozenset[str],
    tasks: dict[str, asyncio.Task[None]],
) -> None:
    for symbol, task in list(tasks.items()):
        if task.done():
            del tasks[symbol]  # lost or ended: started again below if still ours
    for symbol in want - tasks.keys():
        tasks[symbol] = asyncio.create_task(hold_symbol(node, symbol))
        log_event(log, "assigned", symbol=symbol)
    for symbol in give_up & tasks.keys():
        if symbol in node.held_since:
            metrics.HRW_REBALANCES.inc()
        tasks.pop(symbol).cancel()
        log_event(log, "unassigned", symbol=symbol)


def _with_owned(info: NodeInfo, owned: list[str]) -> NodeInfo:
    return msgspec.structs.replace(info, owned=owned)


async def _holders(client: Redis, symbols: tuple[str, ...]) -> dict[str, str | None]:
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
