"""Offline ingest: a capture -> the events ingest appends for it, without a venue, a
NautilusTrader node or Redis.

Every message goes through what the live path runs, so a capture replayed here gives the
events ``context8 ingest`` logs when the simulator serves the same capture:

- NautilusTrader's own Binance msgspec decoders and parsers, chosen by stream name as NT's
  Binance data client chooses its websocket handler: ``@depth@`` diffs (``parse_depth_diff``
  of the gap-aware client), ``@trade``, ``@aggTrade``, ``@ticker``; REST depth snapshots
  through ``BinanceDepth``. Streams ingest does not subscribe (``@bookTicker``, klines,
  partial depth) are counted and skipped.
- The gap-aware client's depth sequencer (ingest/depth.py). Each symbol awaits a snapshot from
  the start; the capture's REST depth snapshots play the ones ingest fetches. A gap gives
  ``Status("gap")`` and the symbol waits for a newer snapshot in the capture (then
  ``Status("resync", "gap")``). A snapshot of a synced symbol at or ahead of its book replaces
  it (``Status("resync", "capture snapshot")``, like ingest's periodic snapshots); an older one
  is skipped, as ingest refuses a snapshot older than the stream.
- ingest/normalize.py, with each instrument's precisions derived as NT's instrument provider
  derives them (the decimals of tickSize/stepSize as written) from the exchangeInfo entry a
  Binance client gets when the simulator serves this capture (``ReplayVenue.symbol_info``: the
  capture's own entry made decodable, or one synthesized for a symbol it lacks).

Trades: ingest subscribes ``@trade``; for a symbol whose capture has only ``@aggTrade`` (the
simulator then serves the aggregate trades as trades), the aggregate trades are used.

Times: ``ts_init`` is the line's ``recv_ts`` (what ingest stamps on receipt), and statuses are
stamped with it too, so the events are a function of the file alone: replays are
deterministic. Every symbol starts with ``Status("started")`` at the first line, as a stream
starts when ingest acquires the symbol.

A message that NT cannot decode or normalize refuses is counted in ``stats.errors`` (the first
ones kept in ``stats.error_samples``) and skipped, as the ingest actor does; a line that is not
a capture line at all raises ``CaptureError`` (from ``read_capture``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
from nautilus_trader.adapters.binance.common.schemas.market import (
    BinanceAggregatedTradeMsg,
    BinanceDepth,
    BinanceOrderBookMsg,
    BinanceTickerMsg,
)
from nautilus_trader.adapters.binance.spot.schemas.market import (
    BinanceSpotSymbolInfo,
    BinanceSpotTradeMsg,
)
from nautilus_trader.model.identifiers import InstrumentId

from core.events import Event
from ingest import normalize
from ingest.binance import DepthDiff, parse_depth_diff
from ingest.capture import MetaLine, RestLine, WsLine, read_capture
from ingest.depth import DepthSequencer, Gap, Verdict
from ingest.simulator.replay import ReplayVenue

__all__ = ["CaptureEvent", "CaptureIngest", "OfflineStats"]

VENUE = "BINANCE"
_DEPTH_PATH = "/api/v3/depth"
_MAX_ERROR_SAMPLES = 5


class CaptureEvent(NamedTuple):
    symbol: str
    """Instrument id, ``NKNUSDT.BINANCE``: the stream the event belongs to."""
    event: Event
    recv_ts: float
    """The capture line's receive time (s): where in the capture the event came from."""


@dataclass(slots=True)
class OfflineStats:
    lines: int = 0
    events: int = 0
    stale_diffs: int = 0
    """Diffs already contained in the book (``u <= last``), dropped."""
    gaps: int = 0
    unusable_snapshots: int = 0
    """Snapshots older than the buffered stream (ingest would fetch another)."""
    skipped_snapshots: int = 0
    """Snapshots of a synced symbol older than its book."""
    skipped_streams: Counter[str] = field(default_factory=Counter)
    """Messages of streams ingest does not subscribe, by stream kind."""
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Symbol:
    instrument_id: InstrumentId
    precision: normalize.Precision
    trade_stream: str
    sequencer: DepthSequencer[DepthDiff] = field(default_factory=DepthSequencer)
    resync_reason: str | None = None
    """Why the next usable snapshot replaces a book (None for the first one)."""


class CaptureIngest:
    """One capture, its symbols (``symbols`` filters them: ``BTCUSDT`` or ``BTCUSDT.BINANCE``)
    and the events of each; ``events()`` reads the file once more per call."""

    def __init__(self, path: str | Path, symbols: Collection[str] | None = None) -> None:
        self.path = Path(path)
        self.stats = OfflineStats()
        wanted = {s.partition(".")[0].upper() for s in symbols} if symbols else None
        has_trade, self.first_recv_ts, self.last_recv_ts = _prescan(self.path)
        venue = ReplayVenue(self.path, speed=0)
        self._symbols: dict[str, _Symbol] = {}
        for name in sorted(venue.symbols):
            if wanted is not None and name not in wanted:
                continue
            self._symbols[name] = _Symbol(
                instrument_id=InstrumentId.from_str(f"{name}.{VENUE}"),
                precision=_precision(name, venue.symbol_info(name)),
                trade_stream="@trade" if name in has_trade else "@aggTrade",
            )
        missing = sorted(wanted - set(self._symbols)) if wanted else []
        if missing:
            raise ValueError(
                f"{self.path}: no {', '.join(missing)} in this capture "
                f"(it has {', '.join(sorted(venue.symbols)) or 'no symbols'})"
            )
        self._handlers: dict[str, Callable[[_Symbol, Any, int], Iterator[Event]]] = {
            "@depth@": self._diff,
            "@trade": self._trade,
            "@aggTrade": self._agg_trade,
            "@ticker": self._ticker,
        }
        self._diff_decoder = msgspec.json.Decoder(BinanceOrderBookMsg)
        self._trade_decoder = msgspec.json.Decoder(BinanceSpotTradeMsg)
        self._agg_trade_decoder = msgspec.json.Decoder(BinanceAggregatedTradeMsg)
        self._ticker_decoder = msgspec.json.Decoder(BinanceTickerMsg)
        self._encoder = msgspec.json.Encoder()

    @property
    def symbols(self) -> list[str]:
        """Instrument ids, sorted."""
        return [s.instrument_id.value for s in self._symbols.values()]

    def events(self) -> Iterator[CaptureEvent]:
        """The events of every symbol, in capture order."""
        for sym in self._symbols.values():
            sym.sequencer = DepthSequencer()
            sym.resync_reason = None
        self.stats = OfflineStats()
        started = False
        for line in read_capture(self.path):
            self.stats.lines += 1
            ts = _ns(line.recv_ts)
            if not started:
                started = True
                for sym in self._symbols.values():
                    sym.sequencer.await_snapshot()
                    detail = f"offline replay of {self.path.name}"
                    yield self._out(sym, normalize.status_at("started", detail, ts), line.recv_ts)
            if isinstance(line, MetaLine):
                continue
            if isinstance(line, RestLine):
                name = str(line.params.get("symbol", "")).upper()
                sym = self._symbols.get(name)
                if line.path != _DEPTH_PATH or sym is None:
                    continue
                events = self._guarded(sym, "snapshot", self._snapshot, line.body, ts)
            else:
                events = self._message(line, ts)
            for symbol, event in events:
                yield self._out(symbol, event, line.recv_ts)

    # -- dispatch ------------------------------------------------------------------------------

    def _message(self, line: WsLine, ts: int) -> Iterator[tuple[_Symbol, Event]]:
        stream = line.body.stream
        name, _, kind = stream.partition("@")
        sym = self._symbols.get(name.upper())
        if sym is None:
            return iter(())
        for key, handler in self._handlers.items():
            if key in stream:
                if key in ("@trade", "@aggTrade") and key != sym.trade_stream:
                    break
                return self._guarded(sym, kind, handler, self._encoder.encode(line.body), ts)
        self.stats.skipped_streams[kind] += 1
        return iter(())

    def _guarded(
        self,
        sym: _Symbol,
        what: str,
        handler: Callable[[_Symbol, Any, int], Iterator[Event]],
        payload: Any,
        ts: int,
    ) -> Iterator[tuple[_Symbol, Event]]:
        """The events of one message; one that cannot be decoded or normalized is counted
        and skipped (what the ingest actor does), never fatal."""
        try:
            events = list(handler(sym, payload, ts))
        except Exception as e:  # whatever NT's parsers raise: one bad message never stops it
            self.stats.errors += 1
            if len(self.stats.error_samples) < _MAX_ERROR_SAMPLES:
                self.stats.error_samples.append(f"{sym.instrument_id} {what}: {e}")
            return iter(())
        return ((sym, event) for event in events)

    def _out(self, sym: _Symbol, event: Event, recv_ts: float) -> CaptureEvent:
        self.stats.events += 1
        return CaptureEvent(sym.instrument_id.value, event, recv_ts)

    # -- book ----------------------------------------------------------------------------------

    def _diff(self, sym: _Symbol, raw: bytes, ts: int) -> Iterator[Event]:
        data = self._diff_decoder.decode(raw).data
        diff = parse_depth_diff(data, sym.instrument_id, ts)
        match sym.sequencer.on_diff(diff):
            case Verdict.APPLY:
                yield _diff_event(diff, sym.precision)
            case Verdict.STALE:
                self.stats.stale_diffs += 1
            case Gap() as gap:
                yield self._gap(sym, gap, ts)

    def _snapshot(self, sym: _Symbol, body: Any, ts: int) -> Iterator[Event]:
        depth = msgspec.convert(body, BinanceDepth)
        sequencer = sym.sequencer
        if sequencer.last is not None:
            if depth.lastUpdateId < sequencer.last:
                self.stats.skipped_snapshots += 1
                return
            sym.resync_reason = "capture snapshot"
            sequencer.await_snapshot()
        outcome = sequencer.on_snapshot(depth.lastUpdateId)
        if not outcome.usable:
            self.stats.unusable_snapshots += 1
            return
        snapshot = depth.parse_to_order_book_snapshot(sym.instrument_id, ts)
        yield normalize.book_event(snapshot, sym.precision)
        if sym.resync_reason is not None:
            yield normalize.status_at("resync", sym.resync_reason, ts, received=depth.lastUpdateId)
            sym.resync_reason = None
        for diff in outcome.diffs:
            yield _diff_event(diff, sym.precision)
        if outcome.gap is not None:
            yield self._gap(sym, outcome.gap, ts)

    def _gap(self, sym: _Symbol, gap: Gap, ts: int) -> Event:
        self.stats.gaps += 1
        sym.resync_reason = "gap"
        return normalize.status_at(
            "gap", gap.detail, ts, expected=gap.expected, received=gap.received
        )

    # -- trades and tickers --------------------------------------------------------------------

    def _trade(self, sym: _Symbol, raw: bytes, ts: int) -> Iterator[Event]:
        data = self._trade_decoder.decode(raw).data
        yield normalize.trade_event(data.parse_to_trade_tick(sym.instrument_id, ts), sym.precision)

    def _agg_trade(self, sym: _Symbol, raw: bytes, ts: int) -> Iterator[Event]:
        data = self._agg_trade_decoder.decode(raw).data
        yield normalize.trade_event(data.parse_to_trade_tick(sym.instrument_id, ts), sym.precision)

    def _ticker(self, sym: _Symbol, raw: bytes, ts: int) -> Iterator[Event]:
        data = self._ticker_decoder.decode(raw).data
        yield normalize.ticker_event(data.parse_to_binance_ticker(sym.instrument_id, ts))


def _prescan(path: Path) -> tuple[set[str], float, float]:
    """(symbols with ``@trade`` messages, first and last receive time)."""
    has_trade: set[str] = set()
    first = last = None
    for line in read_capture(path):
        first = line.recv_ts if first is None else first
        last = line.recv_ts
        if isinstance(line, WsLine) and line.body.stream.partition("@")[2] == "trade":
            has_trade.add(line.body.stream.partition("@")[0].upper())
    if first is None or last is None:
        raise ValueError(f"{path}: an empty capture")
    return has_trade, first, last


def _precision(name: str, info: dict[str, Any]) -> normalize.Precision:
    """What NT's instrument provider derives from an exchangeInfo entry."""
    try:
        symbol_info = msgspec.convert(info, BinanceSpotSymbolInfo)
        filters = {f.filterType.value: f for f in symbol_info.filters}
        tick, step = filters["PRICE_FILTER"].tickSize, filters["LOT_SIZE"].stepSize
        if tick is None or step is None:
            raise KeyError("tickSize/stepSize")
    except (msgspec.ValidationError, KeyError) as e:
        raise ValueError(f"the exchangeInfo entry of {name} is not usable: {e}") from e
    return normalize.Precision(_decimals(tick), _decimals(step))


def _decimals(text: str) -> int:
    return abs(int(Decimal(text).as_tuple().exponent))


def _diff_event(diff: DepthDiff, precision: normalize.Precision) -> Event:
    if diff.deltas is None:
        return normalize.empty_delta(diff.ids, precision)
    return normalize.book_event(diff.deltas, precision, diff.first)


def _ns(recv_ts: float) -> int:
    """A capture's receive time (s, float) in ns, to the microsecond it is written with."""
    return round(recv_ts * 1_000_000) * 1_000
