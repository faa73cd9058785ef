"""The ingest actor: NT market data of the owned symbols -> events -> the fenced writer.

Ingest nodes form a fleet like the processors: a timer (``clock.set_timer``, every ttl/2)
renews the leases, heartbeats (role ``ingest``) and plans with the same assignment
(coordination/assignment.py), so the symbols spread over the live ingest nodes and move on
failure. Per symbol acquired, in this order: ``Status("started")``, then subscribe (the
gap-aware client's ``DepthUpdateIds`` and ``IngestStatus`` on the message bus, L2 book deltas,
trade ticks, the 24 h ticker), so its stream goes on with ``started`` and a fresh snapshot. A
symbol assigned elsewhere (held for at least the minimum hold) is handed off:
``Status("stopped")``, its buffer flushed, its lease released, its data unsubscribed. On stop:
leave the membership, ``Status("stopped")`` for every owned symbol, a final flush, the leases
released.

Each diff's ``DepthUpdateIds`` (the venue's ``U``) arrives just before its deltas, on the same
data-engine queue; the actor pairs them by ``u`` (``deltas.sequence``). A diff it cannot pair
is not appended: a ``gap`` status and a resync take its place.

Handlers never raise (an exception in an NT handler stops the data engine's queue): a message
that cannot be normalized is logged and counted in ``stats.normalize_errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta

import msgspec
from nautilus_trader.adapters.binance.common.types import BinanceTicker
from nautilus_trader.common.actor import Actor
from nautilus_trader.common.config import ActorConfig
from nautilus_trader.model.data import DataType, OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import BookAction, BookType
from nautilus_trader.model.identifiers import ClientId, InstrumentId
from redis.exceptions import RedisError

from coordination.assignment import plan
from coordination.membership import NodeInfo, beat, leave, live_nodes
from core import keys, metrics
from core.events import Event, Status, StatusKind
from core.redis_client import batch, get_many_async
from ingest import normalize
from ingest.binance import RESYNC_ENDPOINT
from ingest.data import DepthUpdateIds, IngestStatus, depth_ids_type, status_type
from ingest.writer import ROLE, StreamWriter, connect

__all__ = ["ActorStats", "IngestActor", "IngestActorConfig"]

log = logging.getLogger("context8.ingest.actor")

_LEASE_TIMER = "context8-ingest-lease"
_SNAPSHOT_TIMER = "context8-ingest-snapshot"


class IngestActorConfig(ActorConfig, frozen=True):
    symbols: tuple[str, ...]
    """Instrument ids, ``BTCUSDT.BINANCE`` form."""
    redis_url: str
    node_id: str
    lease_ttl_ms: int = 2000
    """Ingest lease time-to-live; renewed every ttl/2 (and the assignment re-planned)."""
    min_hold_ms: int = 2000
    """A symbol is not handed to another ingest node within this time of acquiring it."""
    hrw_sticky_pct: float = 0.02
    """Weight bonus of the current holder in the assignment."""
    stream_retention_sec: int = 3600
    """``md:{SYM}`` keeps this much (MINID trim on every append); 0 keeps everything."""
    snapshot_every_sec: int = 600
    """A fresh venue snapshot is logged this often (0: only at start and after gaps)."""
    flush_ms: int = 2
    """Least time between two flushes' starts (see ``ingest.writer``)."""
    max_pending: int = 50_000
    """Events buffered per symbol while Redis does not take them; the oldest go beyond it."""
    redis_timeout_s: float = 2.0
    """Connect and reply timeout of every Redis call."""
    close_timeout_s: float = 5.0
    """Bound of the final flush on stop."""
    venue_client_id: str = "BINANCE"
    metrics_url: str = ""
    """Where this node's /metrics is served (published in its heartbeat)."""


@dataclass(slots=True)
class ActorStats:
    normalize_errors: int = 0
    unpaired_deltas: int = 0
    events: int = 0


class IngestActor(Actor):
    def __init__(self, config: IngestActorConfig) -> None:
        super().__init__(config)
        self._cfg = config
        self._instrument_ids = {s: InstrumentId.from_str(s) for s in config.symbols}
        self._precision: dict[InstrumentId, normalize.Precision] = {}
        self._depth_ids: dict[InstrumentId, DepthUpdateIds] = {}
        self._subscribed: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: StreamWriter | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._held_since: dict[str, float] = {}
        self._info = NodeInfo(
            node_id=config.node_id,
            role=ROLE,
            symbols=list(config.symbols),
            pid=os.getpid(),
            metrics_url=config.metrics_url,
            started_ms=time.time_ns() // 1_000_000,
        )
        self.stats = ActorStats()

    @property
    def writer(self) -> StreamWriter | None:
        return self._writer

    # -- lifecycle -----------------------------------------------------------------------------

    def on_start(self) -> None:
        self._loop = asyncio.get_running_loop()
        cfg = self._cfg
        self._writer = StreamWriter(
            connect(cfg.redis_url, timeout_s=cfg.redis_timeout_s),
            node_id=cfg.node_id,
            lease_ttl_ms=cfg.lease_ttl_ms,
            retention_sec=cfg.stream_retention_sec,
            flush_ms=cfg.flush_ms,
            max_pending=cfg.max_pending,
            on_lost=self._on_lost,
            on_resync=lambda symbol: self._request_resync(symbol, "events dropped"),
        )
        self.clock.set_timer(
            _LEASE_TIMER,
            timedelta(milliseconds=cfg.lease_ttl_ms / 2),
            callback=self._on_lease_timer,
        )
        if cfg.snapshot_every_sec:
            self.clock.set_timer(
                _SNAPSHOT_TIMER,
                timedelta(seconds=cfg.snapshot_every_sec),
                callback=self._on_snapshot_timer,
            )
        self._lease_task = self._loop.create_task(self._renew_and_acquire())
        _log(logging.INFO, "ingest_started", None, symbols=list(cfg.symbols))

    def on_stop(self) -> None:
        for timer in (_LEASE_TIMER, _SNAPSHOT_TIMER):
            if timer in self.clock.timer_names:
                self.clock.cancel_timer(timer)
        if self._writer is None or self._loop is None or self._closing is not None:
            return
        if self._lease_task is not None:
            self._lease_task.cancel()
        for symbol in sorted(self._writer.owned):
            self._writer.append(symbol, _status("stopped", "ingest stopped"))
        self._closing = self._loop.create_task(self._leave_and_close())

    async def _leave_and_close(self) -> None:
        assert self._writer is not None
        # Leave first: the other ingest nodes take the symbols over while this one flushes.
        with contextlib.suppress(RedisError, OSError):
            await leave(self._writer.client, self._cfg.node_id)
        await self._writer.close(self._cfg.close_timeout_s)

    async def closed(self) -> None:
        """Wait for the final flush and the lease release that ``on_stop`` started."""
        if self._closing is None:
            if self._writer is None:
                return
            self.on_stop()
        assert self._closing is not None
        await asyncio.shield(self._closing)

    # -- leases --------------------------------------------------------------------------------

    def _on_lease_timer(self, _event: object) -> None:
        # Timer callbacks may come from a clock thread: hop onto the loop.
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._lease_tick)

    def _lease_tick(self) -> None:
        if self._closing is not None or self._loop is None:
            return
        if self._lease_task is not None and not self._lease_task.done():
            return  # the last round is still waiting on Redis
        self._lease_task = self._loop.create_task(self._renew_and_acquire())

    async def _renew_and_acquire(self) -> None:
        assert self._writer is not None
        await self._writer.renew()
        try:
            want, give_up = await self._plan()
        except (RedisError, OSError) as e:
            _log(logging.WARNING, "plan_failed", None, error=repr(e))
            return
        for symbol in sorted(give_up & self._writer.owned):
            await self._hand_off(symbol)
        await self._acquire(want)
        await self._take_resync_requests()

    async def _take_resync_requests(self) -> None:
        """The processors' requests for a fresh snapshot of a symbol this node holds
        (``resync:{SYM}``, written when a processor finds its book contradicting itself)."""
        assert self._writer is not None
        owned = sorted(self._writer.owned & self._subscribed)
        if not owned:
            return
        commands = [("getdel", (keys.resync_key(s),), {}) for s in owned]
        try:
            reasons = await batch(self._writer.client, commands)
        except (RedisError, OSError) as e:
            _log(logging.WARNING, "resync_requests_unread", None, error=repr(e))
            return
        for symbol, reason in zip(owned, reasons, strict=True):
            if isinstance(reason, bytes):
                self._request_resync(symbol, f"asked by a processor: {reason.decode()[:80]}")

    async def _plan(self) -> tuple[frozenset[str], frozenset[str]]:
        """Heartbeat, then which symbols this node should hold: the processors' assignment
        (coordination/assignment.py) over the live ingest nodes."""
        assert self._writer is not None
        client = self._writer.client
        seconds, micros = await client.time()
        now_ms = seconds * 1000 + micros // 1000
        self._held_since = {s: t for s, t in self._held_since.items() if s in self._writer.owned}
        me = msgspec.structs.replace(self._info, owned=sorted(self._writer.owned))
        await beat(client, me, now_ms)
        metrics.NODE_HEARTBEAT.set(now_ms / 1000)
        metrics.SYMBOLS_ASSIGNED.labels(ROLE).set(len(self._writer.owned))
        nodes = [n for n in await live_nodes(client, ROLE, now_ms) if n.node_id != me.node_id]
        every = sorted({s for n in nodes for s in n.symbols} | set(self._cfg.symbols))
        holders = await get_many_async(client, [keys.lease_key(ROLE, s) for s in every])
        decided = plan(
            me=me.node_id,
            symbols=self._cfg.symbols,
            nodes=[*nodes, me],
            holders={s: h.decode() if h else None for s, h in zip(every, holders, strict=True)},
            held_since=self._held_since,
            now=time.monotonic(),
            min_hold_s=self._cfg.min_hold_ms / 1000,
            sticky_pct=self._cfg.hrw_sticky_pct,
        )
        return decided.want, decided.give_up

    async def _hand_off(self, symbol: str) -> None:
        assert self._writer is not None
        self._writer.append(symbol, _status("stopped", "handed off to another ingest node"))
        await self._writer.hand_off(symbol)
        self._held_since.pop(symbol, None)
        self._unsubscribe(symbol)

    async def _acquire(self, want: frozenset[str]) -> None:
        assert self._writer is not None
        missing = [s for s in self._cfg.symbols if s in want and s not in self._writer.owned]
        if not missing:
            return
        for symbol in await self._writer.acquire(missing):
            if self._closing is not None:
                return
            self._held_since[symbol] = time.monotonic()
            regained = symbol in self._subscribed
            if regained:
                # Back after losing the lease (a Redis outage, a pause): what arrived in
                # between was not stored, so the log says so and the book starts afresh.
                self._writer.append(symbol, _status("gap", "ingest lease lost and regained"))
            self._writer.append(symbol, _status("started", f"ingest node {self._cfg.node_id}"))
            if regained:
                self._request_resync(symbol, "lease regained")
            else:
                self._subscribe(symbol)

    def _subscribe(self, symbol: str) -> None:
        iid = self._instrument_ids[symbol]
        self._subscribed.add(symbol)
        # The client's own facts first (message bus only), then the venue subscriptions.
        self.subscribe_data(depth_ids_type(iid))
        self.subscribe_data(status_type(iid))
        self.subscribe_order_book_deltas(iid, book_type=BookType.L2_MBP, managed=False)
        self.subscribe_trade_ticks(iid)
        self.subscribe_data(
            DataType(BinanceTicker, metadata={"instrument_id": iid}),
            client_id=ClientId(self._cfg.venue_client_id),
        )
        _log(logging.INFO, "subscribed", symbol)

    def _unsubscribe(self, symbol: str) -> None:
        iid = self._instrument_ids[symbol]
        self._subscribed.discard(symbol)
        self.unsubscribe_order_book_deltas(iid)
        self.unsubscribe_trade_ticks(iid)
        self.unsubscribe_data(
            DataType(BinanceTicker, metadata={"instrument_id": iid}),
            client_id=ClientId(self._cfg.venue_client_id),
        )
        self.unsubscribe_data(depth_ids_type(iid))
        self.unsubscribe_data(status_type(iid))
        _log(logging.INFO, "unsubscribed", symbol)

    def _request_resync(self, symbol: str, reason: str, level: int = logging.WARNING) -> None:
        _log(level, "resync_requested", symbol, reason=reason)
        self.msgbus.send(RESYNC_ENDPOINT, (self._instrument_ids[symbol], reason))

    def _on_snapshot_timer(self, _event: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._refresh_snapshots)

    def _refresh_snapshots(self) -> None:
        # A fresh venue snapshot in the log now and then keeps every retained window of
        # md:{SYM} self-contained: a new consumer group or a replay of the last hour finds a
        # book to start from, however long ago the first snapshot was trimmed away.
        if self._writer is None or self._closing is not None:
            return
        for symbol in sorted(self._writer.owned):
            self._request_resync(symbol, "periodic snapshot", logging.INFO)

    def _on_lost(self, symbol: str) -> None:
        self._depth_ids.pop(self._instrument_ids[symbol], None)

    # -- data ----------------------------------------------------------------------------------

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        iid = deltas.instrument_id
        try:
            precision = self._precision_of(iid, deltas.deltas[-1].order)
            first_update_id = None
            if deltas.deltas[0].action != BookAction.CLEAR:
                ids = self._depth_ids.pop(iid, None)
                if ids is not None and ids.last_update_id == deltas.sequence:
                    first_update_id = ids.first_update_id
                else:
                    # Without the venue's U the log cannot prove continuity: say so, and
                    # start the book afresh rather than let processors guess.
                    self.stats.unpaired_deltas += 1
                    _log(logging.WARNING, "deltas_without_ids", iid.value, u=deltas.sequence)
                    self._append(iid, _status("gap", f"diff u={deltas.sequence} without its U"))
                    self._request_resync(iid.value, "diff without its U")
                    return
            event = normalize.book_event(deltas, precision, first_update_id)
        except Exception as e:
            self._bad(iid, "book", e)
            return
        self._append(iid, event)

    def on_trade_tick(self, tick: TradeTick) -> None:
        iid = tick.instrument_id
        try:
            event = normalize.trade_event(tick, self._precision_of(iid, tick))
        except Exception as e:
            self._bad(iid, "trade", e)
            return
        self._append(iid, event)

    def on_data(self, data: object) -> None:
        try:
            match data:
                case DepthUpdateIds(has_levels=True):
                    self._depth_ids[data.instrument_id] = data
                    return
                case DepthUpdateIds():
                    precision = self._precision_of(data.instrument_id, None)
                    event: Event = normalize.empty_delta(data, precision)
                case IngestStatus():
                    event = normalize.status_event(data)
                    _log(
                        logging.WARNING,
                        f"feed_{data.status}",
                        data.instrument_id.value,
                        detail=data.detail,
                        expected=data.expected_update_id,
                        received=data.received_update_id,
                    )
                case BinanceTicker():
                    event = normalize.ticker_event(data)
                case _:
                    return
        except Exception as e:
            self._bad(getattr(data, "instrument_id", None), type(data).__name__, e)
            return
        self._append(data.instrument_id, event)

    def _append(self, iid: InstrumentId, event: Event) -> None:
        if self._writer is None or self._closing is not None:
            return
        self.stats.events += 1
        self._writer.append(iid.value, event)

    def _precision_of(self, iid: InstrumentId, sample: object) -> normalize.Precision:
        """The instrument's precisions (from the cache); without an instrument, the decimals
        of the first value seen, kept for the symbol (logged: values may then be refused)."""
        precision = self._precision.get(iid)
        if precision is not None:
            return precision
        instrument = self.cache.instrument(iid)
        if instrument is not None:
            precision = normalize.Precision(instrument.price_precision, instrument.size_precision)
        elif sample is not None:
            price = getattr(sample, "price", None)
            size = getattr(sample, "size", None)
            precision = normalize.Precision(price.precision, size.precision)
            _log(logging.ERROR, "instrument_missing", iid.value, precision=str(precision))
        else:
            raise ValueError(f"no instrument {iid} in the cache: its precision is unknown")
        self._precision[iid] = precision
        return precision

    def _bad(self, iid: InstrumentId | None, what: str, error: Exception) -> None:
        self.stats.normalize_errors += 1
        symbol = iid.value if iid is not None else None
        _log(logging.ERROR, "normalize_failed", symbol, kind=what, error=repr(error))


def _status(status: StatusKind, detail: str) -> Status:
    return normalize.status_at(status, detail, time.time_ns())


def _log(level: int, event: str, symbol: str | None, **fields: object) -> None:
    log.log(level, event, extra={"event": event, "symbol": symbol, **fields})
