"""Fenced, batched appends of events to ``md:{SYM}``.

Ownership: the writer holds the ingest lease (role ``ingest``) of each symbol it appends to,
acquired by ``acquire``, renewed by ``renew`` (the actor calls it every ttl/2) and released by
``close``. Every append goes through ``lua/fenced_append.lua`` with the tenure's token; a refused
append (``STALE``) or a refused renewal drops the symbol at once: its buffered events are
discarded, ``stats.lease_conflicts`` counts it and ``on_lost`` tells the owner.

Batching: ``append`` only buffers (sync, never blocks the loop) and schedules a flush with
``call_soon`` when none is pending or in flight. A flush takes what is buffered, one
``EVALSHA`` per symbol (up to 1,000 of its events in one call), all symbols in one batch
(a pipeline: one round trip; concurrent calls on a cluster). While it is in flight new events
wait, so under load batches grow by themselves and at a low rate an event leaves at the next
turn of the loop. ``flush_ms`` is
the least time between the starts of two flushes (0: none), so a burst costs at most one
round trip per ``flush_ms`` and no event waits longer than that for the next flush to start.

Failures: a Redis error (connection, timeout, anything but STALE) puts the batch back at the
front of the buffer and retries with exponential backoff (50 ms .. 2 s); NOSCRIPT reloads the
script and retries at once. A timed-out call may have been applied, so a retry can append a
batch twice (at-least-once): consumers see it by the update ids (``u <= last`` is old) and
trade ids. The buffer is bounded per symbol (``max_pending``): past it the oldest events are
dropped and the next flush puts ``Status(gap)`` in their place; once that flush is stored
``on_resync`` asks for a fresh snapshot (processors must not trust the book until it comes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from coordination import lease
from coordination.lease import Lease, LeaseScripts
from core import keys, lua, metrics
from core.events import ENTRY_FIELD, Event, encode_event
from core.redis_client import AnyAsyncRedis, Command, async_client
from core.redis_client import batch as redis_batch
from ingest.normalize import status_at

__all__ = ["ROLE", "StreamWriter", "WriterStats", "connect"]

ROLE = "ingest"

_BACKOFF_START_S = 0.05
_MAX_EVENTS_PER_CALL = 1000
_BACKOFF_MAX_S = 2.0

log = logging.getLogger("context8.ingest.writer")


def connect(url: str, *, timeout_s: float = 2.0, wait_s: float = 30.0) -> AnyAsyncRedis:
    """A client whose every call is bounded: ``timeout_s`` to connect and per reply, one
    immediate retry on a dropped connection; the writer's own backoff does the rest. The
    server is asked whether it is a cluster, so it must answer: waited for up to ``wait_s``
    (a node started with its Redis), then RedisError."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return async_client(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=30,
            )
        except RedisError as e:
            if time.monotonic() > deadline:
                raise
            _log(logging.WARNING, "redis_unavailable", None, error=repr(e))
            time.sleep(0.5)


@dataclass(slots=True)
class WriterStats:
    appended: int = 0
    """Events stored in Redis."""
    flushes: int = 0
    """Pipelines sent (one round trip each)."""
    retries: int = 0
    """Flushes that failed and were retried."""
    lease_conflicts: int = 0
    """Symbols dropped because Redis refused their tenure (nt_lease_conflicts_total)."""
    dropped_overflow: int = 0
    """Events dropped because the buffer of their symbol was full."""
    dropped_unowned: int = 0
    """Events offered for a symbol this writer does not (or no longer) own."""


class StreamWriter:
    """Appends events to the streams of the symbols whose ingest lease it holds."""

    def __init__(
        self,
        client: AnyAsyncRedis,
        *,
        node_id: str,
        lease_ttl_ms: int,
        retention_sec: int,
        flush_ms: int = 0,
        max_pending: int = 50_000,
        on_lost: Callable[[str], None] | None = None,
        on_resync: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.node_id = node_id
        self.lease_ttl_ms = lease_ttl_ms
        self.retention_ms = retention_sec * 1000
        self.flush_s = flush_ms / 1000
        self.max_pending = max_pending
        self.on_lost = on_lost
        self.on_resync = on_resync
        self.stats = WriterStats()
        self._leases = LeaseScripts(client)
        self._append = lua.register(client, "fenced_append")
        self._tenures: dict[str, Lease] = {}
        self._pending: dict[str, deque[bytes]] = {}
        self._overflow: dict[str, int] = {}
        self._resync_after_flush: set[str] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._next_start = 0.0
        self._closed = False
        self._script_loaded = False

    @property
    def owned(self) -> frozenset[str]:
        return frozenset(self._tenures)

    def tenure(self, symbol: str) -> Lease | None:
        return self._tenures.get(symbol)

    # -- leases --------------------------------------------------------------------------------

    async def acquire(self, symbols: Iterable[str]) -> list[str]:
        """Try the lease of every given symbol not owned yet; the ones acquired now."""
        wanted = [s for s in symbols if s not in self._tenures]
        if wanted and not self._script_loaded:  # so the first flush is one round trip too
            try:
                self._append.sha = await self.client.script_load(self._append.script)
                self._script_loaded = True
            except (RedisError, OSError) as e:
                _log(logging.WARNING, "script_load_failed", None, error=repr(e))
        ttl = self.lease_ttl_ms
        results = await asyncio.gather(
            *(lease.acquire(self._leases, ROLE, s, self.node_id, ttl) for s in wanted),
            return_exceptions=True,
        )
        acquired = []
        for symbol, result in zip(wanted, results, strict=True):
            if isinstance(result, BaseException):
                _log(logging.WARNING, "lease_acquire_failed", symbol, error=repr(result))
            elif isinstance(result, lease.Lease) and not self._closed:
                self._tenures[symbol] = result
                self._pending.setdefault(symbol, deque())
                acquired.append(symbol)
                _log(logging.INFO, "lease_acquired", symbol, token=result.token)
        return acquired

    async def renew(self) -> None:
        """Extend every lease held; one Redis refuses is dropped (it belongs to someone else)."""
        tenures = list(self._tenures.values())
        results = await asyncio.gather(
            *(lease.renew(self._leases, t, self.lease_ttl_ms) for t in tenures),
            return_exceptions=True,
        )
        for tenure, result in zip(tenures, results, strict=True):
            if isinstance(result, BaseException):
                _log(logging.WARNING, "lease_renew_failed", tenure.symbol, error=repr(result))
            elif not result:
                self._drop(tenure, "lease renewal refused")

    async def hand_off(self, symbol: str, timeout_s: float = 5.0) -> None:
        """Give ``symbol`` up cleanly: everything buffered for it is stored, then its lease
        released (the next owner appends from its own fresh snapshot)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout_s)
        tenure = self._tenures.pop(symbol, None)
        self._pending.pop(symbol, None)
        if tenure is None:
            return
        try:
            released = await asyncio.wait_for(lease.release(self._leases, tenure), timeout_s)
            _log(logging.INFO, "lease_released", symbol, released=released, reason="hand-off")
        except (RedisError, OSError, TimeoutError) as e:
            _log(logging.WARNING, "lease_release_failed", symbol, error=repr(e))

    def _drop(self, tenure: Lease, why: str) -> None:
        if self._tenures.get(tenure.symbol) != tenure:
            return
        symbol = tenure.symbol
        del self._tenures[symbol]
        pending = self._pending.pop(symbol, None)
        self._overflow.pop(symbol, None)
        self._resync_after_flush.discard(symbol)
        self.stats.lease_conflicts += 1
        metrics.LEASE_CONFLICTS.labels("ingest").inc()
        _log(
            logging.ERROR,
            "symbol_dropped",
            symbol,
            reason=why,
            token=tenure.token,
            discarded=len(pending or ()),
        )
        if self.on_lost is not None:
            self.on_lost(symbol)

    # -- appends -------------------------------------------------------------------------------

    def append(self, symbol: str, event: Event) -> None:
        """Buffer ``event`` for ``symbol`` and make sure a flush follows (loop thread only)."""
        queue = self._pending.get(symbol)
        if queue is None or symbol not in self._tenures:
            self.stats.dropped_unowned += 1
            return
        queue.append(encode_event(event))
        if len(queue) > self.max_pending:
            queue.popleft()
            self.stats.dropped_overflow += 1
            self._overflow[symbol] = self._overflow.get(symbol, 0) + 1
        self._schedule()

    def _schedule(self) -> None:
        if self._flush_task is not None or self._flush_handle is not None:
            return  # the flush in flight (or about to start) goes round again
        loop = asyncio.get_running_loop()
        delay = self._next_start - loop.time()
        if delay > 0:
            self._flush_handle = loop.call_later(delay, self._start_flush)
        else:
            self._flush_handle = loop.call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        if self._flush_task is None:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_loop())

    def _has_pending(self) -> bool:
        return any(self._pending.values()) or bool(self._overflow)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = _BACKOFF_START_S
        try:
            while self._has_pending():
                self._next_start = loop.time() + self.flush_s
                if await self._flush_once():
                    backoff = _BACKOFF_START_S
                    wait = self._next_start - loop.time()
                else:
                    self.stats.retries += 1
                    wait, backoff = backoff, min(backoff * 2, _BACKOFF_MAX_S)
                if wait > 0 and self._has_pending():
                    await asyncio.sleep(wait)
        except Exception as e:  # a bug, not Redis: keep the buffer, say so, try again later
            _log(logging.ERROR, "flush_crashed", None, error=repr(e))
            loop.call_later(_BACKOFF_MAX_S, self._schedule)
        finally:
            self._flush_task = None

    async def flush(self) -> None:
        """Store everything buffered now (waits for the flush in flight, retries on errors)."""
        while self._has_pending() or self._flush_task is not None:
            if self._flush_task is None:
                if self._flush_handle is not None:
                    self._flush_handle.cancel()
                    self._flush_handle = None
                self._flush_task = asyncio.get_running_loop().create_task(self._flush_loop())
            await asyncio.shield(self._flush_task)

    async def _flush_once(self) -> bool:
        """One round trip for every symbol's buffered events; False when it must be retried."""
        batch: list[_Batch] = []
        for symbol, queue in self._pending.items():
            dropped = self._overflow.pop(symbol, 0)
            if not queue and not dropped:
                continue
            if dropped:
                self._resync_after_flush.add(symbol)
            # Bounded per call: one huge script (a backlog after an outage) would hold Redis
            # for everyone, and past the socket timeout be retried and stored twice.
            events = [queue.popleft() for _ in range(min(len(queue), _MAX_EVENTS_PER_CALL))]
            batch.append(_Batch(self._tenures[symbol], events, dropped))
        if not batch:
            return True
        minid = "0"
        if self.retention_ms:
            minid = str(max(time.time_ns() // 1_000_000 - self.retention_ms, 1))
        commands: list[Command] = []
        for item in batch:
            tenure = item.tenure
            gap = [_gap(f"ingest buffer overflow: {item.dropped} events dropped")]
            args = (self._append.sha, 4, *tenure.fence_keys, keys.stream_key(tenure.symbol),
                    *tenure.fence_args, ENTRY_FIELD, minid, *(gap if item.dropped else ()),
                    *item.events)  # fmt: skip
            commands.append(("evalsha", args, {}))
        # processors read just the streams a flush appended to (processors/runtime/follower.py)
        appended = keys.appended_message(item.tenure.symbol for item in batch)
        commands.append(("publish", (keys.APPENDED_CHANNEL, appended), {}))
        self.stats.flushes += 1
        try:
            results = (await redis_batch(self.client, commands))[: len(batch)]
        except (RedisError, OSError) as e:  # OSError covers TimeoutError
            metrics.REDIS_ERRORS.labels("ingest").inc()
            _log(logging.WARNING, "flush_failed", None, error=repr(e), symbols=len(batch))
            for item in batch:
                self._requeue(item)
            return False
        ok = True
        reload = False
        for item, result in zip(batch, results, strict=True):
            tenure = item.tenure
            if isinstance(result, NoScriptError):
                reload = True
                self._requeue(item)
            elif isinstance(result, ResponseError) and lease.is_stale(result):
                self._drop(tenure, "append refused: stale fencing token")
            elif isinstance(result, Exception):
                ok = False
                metrics.REDIS_ERRORS.labels("ingest").inc()
                _log(logging.WARNING, "append_failed", tenure.symbol, error=repr(result))
                self._requeue(item)
            else:
                appended = len(item.events) + (1 if item.dropped else 0)
                self.stats.appended += appended
                metrics.EVENTS_APPENDED.labels(tenure.symbol).inc(appended)
                symbol = tenure.symbol
                if symbol in self._resync_after_flush and self._tenures.get(symbol) == tenure:
                    self._resync_after_flush.discard(symbol)
                    if self.on_resync is not None:
                        self.on_resync(symbol)
        if reload:
            try:
                self._append.sha = await self.client.script_load(self._append.script)
            except (RedisError, OSError) as e:  # OSError covers TimeoutError
                _log(logging.WARNING, "script_load_failed", None, error=repr(e))
                return False
        return ok

    def _requeue(self, item: _Batch) -> None:
        """Put a batch that was not stored back in front (its gap count too), within bounds."""
        symbol = item.tenure.symbol
        if self._tenures.get(symbol) != item.tenure:
            return  # dropped meanwhile: its events go with it
        queue = self._pending[symbol]
        queue.extendleft(reversed(item.events))
        dropped = item.dropped
        excess = len(queue) - self.max_pending
        if excess > 0:
            for _ in range(excess):
                queue.popleft()
            self.stats.dropped_overflow += excess
            dropped += excess
        if dropped:
            self._overflow[symbol] = self._overflow.get(symbol, 0) + dropped

    # -- shutdown ------------------------------------------------------------------------------

    async def close(self, timeout_s: float = 5.0) -> None:
        """Final flush (bounded by ``timeout_s``), release every lease, close the client."""
        if self._closed:
            return
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except TimeoutError:
            left = sum(len(q) for q in self._pending.values())
            _log(logging.ERROR, "final_flush_timeout", None, events_lost=left)
        self._closed = True
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
        tenures = list(self._tenures.values())
        self._tenures.clear()
        results = await asyncio.gather(
            *(asyncio.wait_for(lease.release(self._leases, t), timeout_s) for t in tenures),
            return_exceptions=True,
        )
        for tenure, result in zip(tenures, results, strict=True):
            if isinstance(result, BaseException):
                _log(logging.WARNING, "lease_release_failed", tenure.symbol, error=repr(result))
            else:
                _log(logging.INFO, "lease_released", tenure.symbol, released=bool(result))
        await self.client.aclose()


@dataclass(slots=True)
class _Batch:
    tenure: Lease
    events: list[bytes]
    dropped: int
    """Events of this symbol dropped (buffer full) before these: a Status(gap) goes first."""


def _gap(detail: str) -> bytes:
    return encode_event(status_at("gap", detail, time.time_ns()))


def _log(level: int, event: str, symbol: str | None, **fields: object) -> None:
    log.log(level, event, extra={"event": event, "symbol": symbol, **fields})
