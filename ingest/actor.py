"""The ingest actor: NT market data of the owned symbols -> events -> the fenced writer.

Per symbol, in this order: take the ingest lease, append ``Status("started")``, then subscribe
(the gap-aware client's ``DepthUpdateIds`` and ``IngestStatus`` on the message bus, L2 book
deltas, trade ticks, the 24 h ticker), so a stream starts with ``started`` and the book's
snapshot. A lease timer (``clock.set_timer``, every ttl/2) renews the leases and retries the ones
not held; a symbol whose lease comes back (after it was dropped) is rebuilt from a fresh snapshot.
On stop: ``Status("stopped")`` for every owned symbol, a final flush, the leases released.

Each diff's ``DepthUpdateIds`` (the venue's ``U``) arrives just before its deltas, on the same
data-engine queue; the actor pairs them by ``u`` (``deltas.sequence``) and counts what it
could not pair (``BookDelta.first_update_id`` is then ``u``, and a warning is logged).

Handlers never raise (an exception in an NT handler stops the data engine's queue): a message
that cannot be normalized is logged and counted in ``stats.normalize_errors``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from nautilus_trader.adapters.binance.common.types import BinanceTicker
from nautilus_trader.common.actor import Actor
from nautilus_trader.common.config import ActorConfig
from nautilus_trader.model.data import DataType, OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import BookAction, BookType
from nautilus_trader.model.identifiers import ClientId, InstrumentId

from context8.events import SCHEMA_VERSION, Event, Status, StatusKind
from ingest import normalize
from ingest.binance import RESYNC_ENDPOINT
from ingest.data import DepthUpdateIds, IngestStatus, depth_ids_type, status_type
from ingest.writer import StreamWriter, connect

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
    """Ingest lease time-to-live; renewed every ttl/2."""
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
        self._lease_task = self._loop.create_task(self._acquire())
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
        self._closing = self._loop.create_task(self._writer.close(self._cfg.close_timeout_s))

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
        await self._acquire()

    async def _acquire(self) -> None:
        assert self._writer is not None
        missing = [s for s in self._cfg.symbols if s not in self._writer.owned]
        if not missing:
            return
        for symbol in await self._writer.acquire(missing):
            if self._closing is not None:
                return
            self._writer.append(symbol, _status("started", f"ingest node {self._cfg.node_id}"))
            if symbol in self._subscribed:
                self._request_resync(symbol, "lease regained")  # the book starts afresh
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
    now = time.time_ns()
    return Status(v=SCHEMA_VERSION, ts_event=now, ts_init=now, status=status, detail=detail)


def _log(level: int, event: str, symbol: str | None, **fields: object) -> None:
    log.log(level, event, extra={"event": event, "symbol": symbol, **fields})
