"""NautilusTrader's Binance Spot data client, with the book integrity checks it lacks.

NT 1.221's client buffers depth diffs while the REST snapshot is in flight and drops those with
``u <= lastUpdateId``, but never checks ``U``/``u`` continuity afterwards, and only ``u`` reaches
the deltas (as ``sequence``): a lost diff is accepted silently. ``GapAwareBinanceSpotDataClient``
sequences every instrument's diffs with a ``DepthSequencer`` (ingest/depth.py: Binance's
procedure, shared with the offline replay of captures) and overrides three of the client's own
methods:

- ``_handle_book_diff_update`` (the ``@depth@`` websocket handler): parses the diff
  (``parse_depth_diff``) and publishes what the sequencer says: apply (``U <= last + 1 <= u``),
  drop (``u <= last``), or on a gap ``IngestStatus("gap")`` and a rebuild. Before each diff's
  deltas it publishes ``DepthUpdateIds`` (the venue's ``U``).
- ``_order_book_snapshot_then_deltas`` (the snapshot rebuild NT runs on subscribe and on
  reconnect): buffer, fetch the REST snapshot (retried with backoff), refetch while the snapshot
  is older than the buffered stream, drop diffs it covers, publish it (CLEAR + ADDs, as NT
  does), then ``IngestStatus("resync")`` when it replaces a broken book, then the buffered
  diffs, each checked. One rebuild per instrument at a time.
- ``_reconnect`` (NT's websocket reconnect hook): ``IngestStatus("disconnected")`` and a rebuild.

The websocket handler runs on a thread of NT's Rust websocket client, not the event loop; the
sequence state is shared with the rebuild (on the loop), so both hold ``_seq_lock`` while they
read and publish, which also keeps the data engine's queue in venue order.

Anyone on the message bus may ask for a rebuild:
``msgbus.send(RESYNC_ENDPOINT, (instrument_id, reason))``
(the ingest writer does after dropping events).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, NamedTuple

from nautilus_trader.adapters.binance.common.schemas.market import BinanceOrderBookData
from nautilus_trader.adapters.binance.common.urls import get_ws_base_url
from nautilus_trader.adapters.binance.config import BinanceDataClientConfig
from nautilus_trader.adapters.binance.factories import (
    BinanceLiveDataClientFactory,
    get_cached_binance_http_client,
    get_cached_binance_spot_instrument_provider,
)
from nautilus_trader.adapters.binance.spot.data import BinanceSpotDataClient
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.model.data import CustomData, DataType, OrderBookDeltas
from nautilus_trader.model.identifiers import InstrumentId

from core import metrics
from core.events import StatusKind
from ingest.data import DepthUpdateIds, IngestStatus, depth_ids_type, status_type
from ingest.depth import DepthSequencer, Gap, Verdict

__all__ = [
    "RESYNC_ENDPOINT",
    "DepthDiff",
    "GapAwareBinanceDataClientFactory",
    "GapAwareBinanceSpotDataClient",
    "parse_depth_diff",
]

RESYNC_ENDPOINT = "context8.ingest.resync"
"""Message-bus endpoint: send an ``InstrumentId`` to have its book rebuilt from a snapshot."""

_BACKOFF_START_S = 0.2
_BACKOFF_MAX_S = 5.0


class DepthDiff(NamedTuple):
    """One depthUpdate message, parsed once, held until it is published."""

    first: int  # U
    last: int  # u
    ids: DepthUpdateIds
    deltas: OrderBookDeltas | None  # None when the message changed no level


def parse_depth_diff(
    data: BinanceOrderBookData, instrument_id: InstrumentId, ts_init: int
) -> DepthDiff:
    """A decoded diff message through NT's own parser, with the ``U`` NT's deltas drop."""
    has_levels = bool(data.b or data.a)
    deltas = data.parse_to_order_book_deltas(instrument_id, ts_init) if has_levels else None
    ts_event = (data.T if data.T is not None else data.E) * 1_000_000  # exact, unlike NT's
    ids = DepthUpdateIds(instrument_id, data.U, data.u, has_levels, ts_event, ts_init)
    return DepthDiff(data.U, data.u, ids, deltas)


class GapAwareBinanceSpotDataClient(BinanceSpotDataClient):
    """``BinanceSpotDataClient`` that checks depth continuity and rebuilds on a gap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seq_lock = threading.Lock()
        # Per instrument: synced, awaiting a snapshot (buffering), or neither (not subscribed
        # yet, or between its websocket subscription and its first snapshot request).
        self._sequencers: dict[InstrumentId, DepthSequencer[DepthDiff]] = {}
        self._rebuilding: set[InstrumentId] = set()
        self._rebuild_again: dict[InstrumentId, str] = {}
        self._data_types: dict[InstrumentId, tuple[DataType, DataType]] = {}
        self.gaps_detected = 0
        self.stale_diffs_dropped = 0
        self._msgbus.register(endpoint=RESYNC_ENDPOINT, handler=self._on_resync_request)

    # -- websocket handler (a Rust thread) ---------------------------------------------------

    def _sequencer(self, instrument_id: InstrumentId) -> DepthSequencer[DepthDiff]:
        sequencer = self._sequencers.get(instrument_id)
        if sequencer is None:
            sequencer = self._sequencers[instrument_id] = DepthSequencer()
        return sequencer

    def _handle_book_diff_update(self, raw: bytes) -> None:
        data = self._decoder_order_book_msg.decode(raw).data
        instrument_id = self._get_cached_instrument_id(data.s)
        diff = parse_depth_diff(data, instrument_id, self._clock.timestamp_ns())
        with self._seq_lock:
            # (UNSYNCED: the snapshot requested after this diff will cover it.)
            match self._sequencer(instrument_id).on_diff(diff):
                case Verdict.APPLY:
                    self._publish_diff(diff)
                case Verdict.STALE:
                    self.stale_diffs_dropped += 1
                case Gap() as gap:
                    self._announce_gap(instrument_id, gap)
                    self._loop.call_soon_threadsafe(self._start_rebuild, instrument_id, "gap")

    # -- rebuild (the event loop) ----------------------------------------------------------

    async def _order_book_snapshot_then_deltas(
        self, instrument_id: InstrumentId, reason: str | None = None
    ) -> None:
        """Rebuild the book of ``instrument_id`` from a REST snapshot; ``reason`` (gap,
        reconnect, requested) is None for the first one after subscribing (no resync status)."""
        if instrument_id in self._rebuilding:
            # One rebuild at a time; the running one goes round once more when it is done.
            self._rebuild_again.setdefault(instrument_id, reason or "subscribe")
            return
        self._rebuilding.add(instrument_id)
        try:
            while True:
                await self._rebuild(instrument_id, reason)
                reason = self._rebuild_again.pop(instrument_id, None)
                if reason is None:
                    return
        finally:
            self._rebuilding.discard(instrument_id)

    async def _rebuild(self, instrument_id: InstrumentId, reason: str | None) -> None:
        with self._seq_lock:
            self._sequencer(instrument_id).await_snapshot()
        depth = self._book_depths[instrument_id]
        delay = _BACKOFF_START_S
        while True:
            try:
                snapshot = await self._http_market.request_order_book_snapshot(
                    instrument_id=instrument_id,
                    limit=depth,
                    ts_init=self._clock.timestamp_ns(),
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._log.warning(f"Order book snapshot of {instrument_id} failed ({e!r}); retry")
            else:
                with self._seq_lock:
                    synced, reason = self._apply_snapshot_locked(instrument_id, snapshot, reason)
                if synced:
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    def _apply_snapshot_locked(
        self, instrument_id: InstrumentId, snapshot: OrderBookDeltas, reason: str | None
    ) -> tuple[bool, str | None]:
        """Publish ``snapshot`` and the buffered diffs after it; (False, reason) when another
        snapshot is needed (this one is older than the buffered stream, or the buffer has a
        hole), the buffer then kept for it."""
        sequencer = self._sequencer(instrument_id)
        last = snapshot.sequence
        outcome = sequencer.on_snapshot(last)
        if not outcome.usable:
            self._log.warning(
                f"Snapshot of {instrument_id} (lastUpdateId {last}) is older than the stream; "
                "fetching another"
            )
            return False, reason
        self._handle_data(snapshot)
        if reason is not None:
            self._publish_status(instrument_id, "resync", detail=reason, received=last)
        for diff in outcome.diffs:
            self._publish_diff(diff)
        if outcome.gap is not None:
            self._announce_gap(instrument_id, outcome.gap)
            return False, "gap"
        self._log.info(f"Order book of {instrument_id} synced at update id {sequencer.last}")
        return True, None

    def _announce_gap(self, instrument_id: InstrumentId, gap: Gap) -> None:
        self.gaps_detected += 1
        self._log.warning(
            f"Depth gap on {instrument_id}: expected U {gap.expected}, got {gap.received}"
        )
        self._publish_status(
            instrument_id,
            "gap",
            detail=gap.detail,
            expected=gap.expected,
            received=gap.received,
        )

    def _start_rebuild(self, instrument_id: InstrumentId, reason: str) -> None:
        if instrument_id not in self._book_depths:
            self._log.warning(f"Cannot rebuild {instrument_id}: no order book subscription")
            return
        metrics.WS_RESUBSCRIBE.labels(reason).inc()
        with self._seq_lock:
            # From now on diffs wait for the rebuild's snapshot (a rebuild follows: this new
            # one, or the running one, which goes round again).
            self._sequencer(instrument_id).await_snapshot()
        self.create_task(
            self._order_book_snapshot_then_deltas(instrument_id, reason),
            log_msg=f"order book rebuild of {instrument_id} ({reason})",
        )

    def _on_resync_request(self, request: tuple[InstrumentId, str]) -> None:
        instrument_id, reason = request
        self._start_rebuild(instrument_id, reason)

    async def _reconnect(self) -> None:
        for instrument_id in list(self._book_depths):
            self._publish_status(instrument_id, "disconnected", detail="websocket reconnected")
            self._start_rebuild(instrument_id, "reconnect")

    # -- publishing --------------------------------------------------------------------------

    def _types(self, instrument_id: InstrumentId) -> tuple[DataType, DataType]:
        types = self._data_types.get(instrument_id)
        if types is None:
            types = (depth_ids_type(instrument_id), status_type(instrument_id))
            self._data_types[instrument_id] = types
        return types

    def _publish_diff(self, diff: DepthDiff) -> None:
        self._handle_data(CustomData(self._types(diff.ids.instrument_id)[0], diff.ids))
        if diff.deltas is not None:
            self._handle_data(diff.deltas)

    def _publish_status(
        self,
        instrument_id: InstrumentId,
        status: StatusKind,
        *,
        detail: str = "",
        expected: int | None = None,
        received: int | None = None,
    ) -> None:
        now = self._clock.timestamp_ns()
        fact = IngestStatus(instrument_id, status, now, now, detail, expected, received)
        self._handle_data(CustomData(self._types(instrument_id)[1], fact))


class GapAwareBinanceDataClientFactory(BinanceLiveDataClientFactory):
    """Builds ``GapAwareBinanceSpotDataClient`` the way NT's factory builds its Spot client
    (same cached HTTP client and instrument provider); Spot/Margin accounts only."""

    @staticmethod
    def create(  # type: ignore[override]  # NT types the return as its own client class
        loop: asyncio.AbstractEventLoop,
        name: str,
        config: BinanceDataClientConfig,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
    ) -> GapAwareBinanceSpotDataClient:
        if not config.account_type.is_spot_or_margin:
            raise ValueError(f"account_type must be SPOT or MARGIN, was {config.account_type}")
        client = get_cached_binance_http_client(
            clock=clock,
            account_type=config.account_type,
            api_key=config.api_key,
            api_secret=config.api_secret,
            key_type=config.key_type,
            base_url=config.base_url_http,
            is_testnet=config.testnet,
            is_us=config.us,
        )
        provider = get_cached_binance_spot_instrument_provider(
            client=client,
            clock=clock,
            account_type=config.account_type,
            is_testnet=config.testnet,
            config=config.instrument_provider,
            venue=config.venue,
        )
        return GapAwareBinanceSpotDataClient(
            loop=loop,
            client=client,
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            instrument_provider=provider,
            account_type=config.account_type,
            base_url_ws=config.base_url_ws
            or get_ws_base_url(config.account_type, is_testnet=config.testnet, is_us=config.us),
            name=name,
            config=config,
        )
