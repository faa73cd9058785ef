"""The follower of one kind on a node: reads, folds and publishes every symbol the node holds
of that kind, in batches, and renews their leases.

Work is proportional to what changed, never a scan of every symbol per tick:

- Reads follow the log. Ingest announces on ``nt:appended`` which streams each flush
  appended to (the node's listener hands that to ``notify``); one batch of XREADs (one round
  trip) then reads just those symbols from where each fold stands. Every publish also reads
  its symbol first, so a lost announcement (a pub/sub reconnect) delays an event by at most
  one fast cycle.
- Publishes follow a schedule (a heap of due times): a symbol that folded something is
  published at once when its last publish is older than the coalescing interval, else when
  it is that old; every symbol at least once per fast cycle. All publishes due at once go in
  one batch (one round trip).
- The intervals are paced (processors/runtime/pacing.py): the configured periods are the
  floor; past the node's capacity they stretch instead of work queueing without bound
  (``nt_publish_interval_ms`` shows them; an ``over_capacity`` log line says so).
- Leases are renewed every ttl/2 in one batch; a refused renewal or write ends that tenure.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections.abc import Iterable
from typing import Final

from redis.exceptions import RedisError

from coordination.lease import StaleLeaseError, renew_command
from core import keys, metrics
from core.logs import log_event
from core.lua import run_batch
from core.redis_client import Command, batch
from processors.runtime.context import KindContext, wait_any
from processors.runtime.folding import READ_COUNT, fold_entries
from processors.runtime.pacing import Cadences, Pacing
from processors.runtime.publish import Composed, compose, settle
from processors.runtime.tenure import Tenure

__all__ = ["CHECKPOINT_PERIOD_S", "Follower"]

CHECKPOINT_PERIOD_S: Final = 1.0
"""A symbol's state is checkpointed at least this often (more seldom past capacity)."""
_RETRY_S: Final = 0.5
_OVER_CAPACITY_LOG_S: Final = 60.0

log = logging.getLogger("context8.processor")


class Follower:
    """Every held symbol of one kind on this node (see the module docstring)."""

    def __init__(self, ctx: KindContext) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.pacing = Pacing(
            min_publish_s=settings.min_publish_ms / 1000,
            report_period_s=settings.report_period_ms / 1000,
            slow_period_s=settings.slow_period_ms / 1000,
            checkpoint_period_s=CHECKPOINT_PERIOD_S,
        )
        self.cadences: Cadences = self.pacing.cadences(0)
        self._tenures: dict[str, Tenure] = {}
        self._schedule_heap: list[tuple[float, int, Tenure]] = []
        self._order = itertools.count()
        self._unread: set[str] = set()
        self._wake = asyncio.Event()
        self._closing = False
        self._next_renew = 0.0
        self._over_capacity_logged = -math.inf

    # -- what the tenures and the node call ---------------------------------------------------

    def add(self, tenure: Tenure) -> None:
        """Follow ``tenure`` from now on: read and publish it at once."""
        self._tenures[tenure.symbol] = tenure
        self._unread.add(tenure.symbol)
        self._schedule(tenure, time.monotonic())
        self._wake.set()

    def notify(self, symbols: Iterable[str]) -> None:
        """These streams have new entries."""
        held = [symbol for symbol in symbols if symbol in self._tenures]
        if held:
            self._unread.update(held)
            self._wake.set()

    async def finish(self, tenure: Tenure) -> None:
        """A final publish (with a checkpoint) of everything the stream holds now; returns
        once it is written, or once the tenure is lost."""
        tenure.finishing = True
        self._unread.add(tenure.symbol)
        self._schedule(tenure, time.monotonic())
        self._wake.set()
        await wait_any(None, tenure.done, tenure.lost)

    def remove(self, tenure: Tenure) -> None:
        """Stop following ``tenure`` (its heap entries are skipped from now on)."""
        if self._tenures.get(tenure.symbol) is tenure:
            del self._tenures[tenure.symbol]

    def close(self) -> None:
        """End ``run`` once no tenure is left."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        while not (self._closing and not self._tenures):
            self._wake.clear()
            try:
                await self._step()
            except RedisError as e:
                metrics.REDIS_ERRORS.labels(self.ctx.kind.name).inc()
                log_event(log, "redis_error", str(e), level=logging.WARNING,
                          kind=self.ctx.kind.name)  # fmt: skip
                await asyncio.sleep(_RETRY_S)
            await wait_any(self._idle_s(), self._wake)

    # -- the loop -----------------------------------------------------------------------------

    async def _step(self) -> None:
        now = time.monotonic()
        self._pace(now)
        if self._tenures and now >= self._next_renew:
            await self._renew(now)
        due = self._take_due(now)
        unread, self._unread = self._unread | due.keys(), set()
        if unread:
            await self._read(unread)
        due |= self._take_due(time.monotonic())
        if due:
            await self._publish(list(due.values()))

    def _pace(self, now: float) -> None:
        kind = self.ctx.kind.name
        self.cadences = cadences = self.pacing.cadences(len(self._tenures))
        metrics.PUBLISH_INTERVAL_MS.labels(kind, "event").set(round(cadences.publish_s * 1000))
        metrics.PUBLISH_INTERVAL_MS.labels(kind, "fast").set(round(cadences.fast_s * 1000))
        if cadences.over_capacity and now - self._over_capacity_logged >= _OVER_CAPACITY_LOG_S:
            self._over_capacity_logged = now
            log_event(
                log, "over_capacity",
                f"{len(self._tenures)} symbols: each published every "
                f"{cadences.fast_s * 1000:.0f} ms at the least (configured "
                f"{self.pacing.report_period_s * 1000:.0f} ms); add a processor node",
                level=logging.WARNING, kind=kind, symbols=len(self._tenures),
                publish_ms=round(self.pacing.publish.seconds * 1000, 3),
            )  # fmt: skip
        elif not cadences.over_capacity and self._over_capacity_logged > -math.inf:
            self._over_capacity_logged = -math.inf
            log_event(log, "capacity_recovered", kind=kind, symbols=len(self._tenures))

    def _idle_s(self) -> float | None:
        """How long nothing is due: the next scheduled publish or renewal."""
        if not self._tenures:
            return None
        next_due = self._schedule_heap[0][0] if self._schedule_heap else math.inf
        return max(0.0, min(next_due, self._next_renew) - time.monotonic())

    def _schedule(self, tenure: Tenure, when: float) -> None:
        if when < tenure.due:
            tenure.due = when
            heapq.heappush(self._schedule_heap, (when, next(self._order), tenure))

    def _take_due(self, now: float) -> dict[str, Tenure]:
        """The tenures whose publish is due, off the schedule (stale entries skipped)."""
        due: dict[str, Tenure] = {}
        heap = self._schedule_heap
        while heap and heap[0][0] <= now:
            when, _order, tenure = heapq.heappop(heap)
            if self._tenures.get(tenure.symbol) is tenure and when == tenure.due:
                tenure.due = math.inf
                due[tenure.symbol] = tenure
        return due

    async def _read(self, symbols: Iterable[str]) -> None:
        """One batch of XREADs, from where each fold stands; folded entries make their
        tenure's publish due (a full read leaves more to read at once)."""
        tenures = [self._tenures[s] for s in symbols if s in self._tenures]
        commands: list[Command] = [
            ("xread", ({keys.stream_key(t.symbol): t.folded.last_id},), {"count": READ_COUNT})
            for t in tenures
        ]
        results = await batch(self.ctx.client, commands)
        now = time.monotonic()
        for tenure, result in zip(tenures, results, strict=True):
            if isinstance(result, Exception):
                self._unread.add(tenure.symbol)
                raise result
            for _stream, entries in result or ():
                if fold_entries(self.ctx.kind, tenure.folded, entries, tenure.dead):
                    tenure.dirty = True
                    self._schedule(tenure, max(now, tenure.last_publish + self.cadences.publish_s))
                if len(entries) == READ_COUNT:
                    self._unread.add(tenure.symbol)
                    self._wake.set()

    async def _publish(self, due: list[Tenure]) -> None:
        cadences, started = self.cadences, time.monotonic()
        composed: list[Composed] = []
        commands: list[Command] = []
        for tenure in due:
            piece = compose(self.ctx, tenure, self.pacing, cadences, final=tenure.finishing)
            if piece is None:
                self._published(tenure, started)
                continue
            composed.append(piece)
            commands += piece.commands
        if not commands:
            return
        try:
            results = await run_batch(self.ctx.client, commands, self.ctx.projections.all)
        except RedisError:
            for piece in composed:  # nothing known written: all of it again, soon
                self._schedule(piece.tenure, time.monotonic() + _RETRY_S)
            raise
        self.pacing.publish.add(time.monotonic() - started, len(composed))
        at = 0
        for piece in composed:
            part, at = results[at : at + len(piece.commands)], at + len(piece.commands)
            tenure = piece.tenure
            tenure.last_publish = piece.started
            try:
                settle(self.ctx, piece, part)
            except StaleLeaseError:
                self._lose(tenure)
                continue
            except RedisError as e:  # a write Redis refused for another reason: again, soon
                metrics.REDIS_ERRORS.labels(self.ctx.kind.name).inc()
                log_event(log, "redis_error", str(e), level=logging.WARNING,
                          symbol=tenure.symbol, kind=self.ctx.kind.name)  # fmt: skip
                self._schedule(tenure, time.monotonic() + _RETRY_S)
                continue
            self._published(tenure, piece.started)

    def _published(self, tenure: Tenure, at: float) -> None:
        tenure.dirty = False
        tenure.last_publish = at
        if tenure.finishing:
            self.remove(tenure)
            tenure.done.set()
        else:
            self._schedule(tenure, at + self.cadences.fast_s)

    async def _renew(self, now: float) -> None:
        ttl_ms = self.ctx.settings.lease_ttl_ms
        self._next_renew = now + ttl_ms / 2000
        tenures = list(self._tenures.values())
        commands = [renew_command(self.ctx.leases, t.lease, ttl_ms) for t in tenures]
        try:
            results = await run_batch(self.ctx.client, commands, self.ctx.leases.all)
        except RedisError:
            results = [None] * len(tenures)  # unknown: a lease holds until it would lapse
            metrics.REDIS_ERRORS.labels(self.ctx.kind.name).inc()
        for tenure, result in zip(tenures, results, strict=True):
            if result == 1:
                tenure.expires = now + ttl_ms / 1000
            elif result == 0 or time.monotonic() >= tenure.expires:
                self._lose(tenure)

    def _lose(self, tenure: Tenure) -> None:
        self.remove(tenure)
        tenure.lost.set()
