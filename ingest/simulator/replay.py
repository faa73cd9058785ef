"""Replay of a capture through the Binance protocol (`ReplayVenue`).

What a client sees:
- `exchangeInfo` is the capture's own (with fields today's clients require filled in and
  filter/order types they do not know removed); symbols it lacks get a synthesized entry
  (tick and step sizes fine enough for their first snapshot);
- each symbol's book starts from the capture's first depth snapshot; diffs with
  `u <= lastUpdateId` of that snapshot are skipped, the first one applied has its `U` raised
  to `lastUpdateId + 1` so `U == previous u + 1` holds for every diff sent; `GET depth`
  returns the replayed book with `lastUpdateId` = the last `u` sent (a symbol without a
  snapshot starts from an empty book);
- websocket messages go out in receive order, spaced as recorded divided by `speed`
  (0 = as fast as clients drain them); every venue time in a message (`E`, `T`) is moved by
  the same amount, so that `E` is the send time minus the latency recorded, never in the
  future;
- streams are what the capture has: a client subscribing to `@trade` of a capture that has
  only `@aggTrade` gets the aggregate trades re-shaped as trades (trade id = aggregate id);
  depth diffs go out on `@depth@100ms` and on the 1000 ms names (unaggregated); no 24h ticker
  is invented for a capture without one (`GET ticker/24hr` answers from the last recorded
  `@ticker`); all-market streams (`!...`) pass through unchanged;
- replay starts when the first client subscribes, so nothing is missed; with `loop` it starts
  over at the end, after a diff that turns each book back into its snapshot, with update ids
  and trade ids continuing upwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec

from ingest.capture import MetaLine, RestLine, WsLine, read_capture
from ingest.simulator.hub import Hub
from ingest.simulator.instruments import spec_for, symbol_info

__all__ = ["ReplayVenue"]

# The filter and order types NautilusTrader 1.221 can decode (BinanceSymbolFilterType,
# BinanceOrderType): one unknown name fails the whole exchangeInfo for it.
_KNOWN_FILTERS: Final = frozenset(
    {
        "PRICE_FILTER",
        "PERCENT_PRICE",
        "PERCENT_PRICE_BY_SIDE",
        "LOT_SIZE",
        "MIN_NOTIONAL",
        "NOTIONAL",
        "ICEBERG_PARTS",
        "MARKET_LOT_SIZE",
        "MAX_NUM_ORDERS",
        "MAX_NUM_ALGO_ORDERS",
        "MAX_NUM_ICEBERG_ORDERS",
        "MAX_NUM_ORDER_LISTS",
        "MAX_NUM_ORDER_AMENDS",
        "MAX_POSITION",
        "TRAILING_DELTA",
        "POSITION_RISK_CONTROL",
    }
)
_KNOWN_ORDER_TYPES: Final = frozenset(
    {
        "LIMIT",
        "MARKET",
        "STOP_LOSS",
        "STOP_LOSS_LIMIT",
        "TAKE_PROFIT",
        "TAKE_PROFIT_LIMIT",
        "LIMIT_MAKER",
    }
)
# Frames queued for the slowest client beyond which an as-fast-as-possible replay waits.
_BACKPRESSURE: Final = 10_000


@dataclass
class _Book:
    """A replayed book: decimal strings as the venue wrote them, keyed by price."""

    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)
    last_u: int = 0

    @classmethod
    def from_snapshot(cls, body: dict[str, Any]) -> _Book:
        return cls(
            bids={p: q for p, q in body["bids"]},
            asks={p: q for p, q in body["asks"]},
            last_u=body["lastUpdateId"],
        )

    def apply(self, bids: Iterable[list[str]], asks: Iterable[list[str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if Decimal(qty):
                    side[price] = qty
                else:
                    side.pop(price, None)

    def top(self, limit: int) -> dict[str, Any]:
        bids = sorted(self.bids, key=Decimal, reverse=True)[:limit]
        asks = sorted(self.asks, key=Decimal)[:limit]
        return {
            "lastUpdateId": self.last_u,
            "bids": [[p, self.bids[p]] for p in bids],
            "asks": [[p, self.asks[p]] for p in asks],
        }

    def changes_to(self, other: _Book) -> tuple[list[list[str]], list[list[str]]]:
        """The diff levels that turn this book into `other`."""
        out: tuple[list[list[str]], list[list[str]]] = ([], [])
        for mine, theirs, levels in (
            (self.bids, other.bids, out[0]),
            (self.asks, other.asks, out[1]),
        ):
            levels.extend([p, "0.00000000"] for p in mine if p not in theirs)
            levels.extend([p, q] for p, q in theirs.items() if mine.get(p) != q)
        return out


@dataclass
class _Symbol:
    """What the pre-scan learns about one symbol, and its replay state."""

    info: dict[str, Any] | None = None
    snapshot: dict[str, Any] | None = None
    depth_stream: str | None = None  # the one depth stream replayed (a capture may have two)
    first_u: int | None = None  # first diff's U, for a symbol without a snapshot
    has_trade: bool = False
    min_id: int | None = None  # trade id range, to shift ids on each loop
    max_id: int | None = None
    book: _Book = field(default_factory=_Book)
    depth_offset: int = 0
    trade_offset: int = 0
    ticker: dict[str, Any] | None = None

    def see_ids(self, *ids: int) -> None:
        for i in ids:
            if i >= 0:
                self.min_id = i if self.min_id is None else min(self.min_id, i)
                self.max_id = i if self.max_id is None else max(self.max_id, i)


def _compatible_info(captured: dict[str, Any]) -> dict[str, Any]:
    """A captured exchangeInfo entry in the shape today's clients decode."""
    template = symbol_info(spec_for(captured["symbol"]))
    info = {**{k: v for k, v in template.items() if k not in captured}, **captured}
    info["filters"] = [
        f for f in captured.get("filters", []) if f.get("filterType") in _KNOWN_FILTERS
    ]
    info["orderTypes"] = [t for t in captured.get("orderTypes", []) if t in _KNOWN_ORDER_TYPES]
    return info


def _decimals(values: Iterable[str]) -> int:
    return max((len(v.partition(".")[2].rstrip("0")) for v in values), default=0)


def _synthesized_info(symbol: str, sym: _Symbol) -> dict[str, Any]:
    """An exchangeInfo entry for a symbol the capture has none for: the derived spec, with
    tick and step sizes fine enough for every price and size in its first snapshot."""
    spec = spec_for(symbol)
    if sym.snapshot is not None:
        levels = sym.snapshot["bids"] + sym.snapshot["asks"]
        if levels:
            tick = _decimals(p for p, _ in levels)
            step = _decimals(q for _, q in levels)
            spec = msgspec.structs.replace(
                spec,
                tick_size=f"{10**-tick:.8f}",
                step_size=f"{10**-step:.8f}",
                price=levels[0][0],
            )
    return symbol_info(spec)


class ReplayVenue:
    """Serves a capture through the Binance protocol; see the module docstring."""

    def __init__(self, path: str | Path, *, speed: float = 1.0, loop: bool = False) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._path = Path(path)
        self._speed = speed
        self._loop = loop
        self._syms: dict[str, _Symbol] = {}
        self._prescan()

    def _sym(self, symbol: str) -> _Symbol:
        return self._syms.setdefault(symbol.upper(), _Symbol())

    def _prescan(self) -> None:
        infos: list[dict[str, Any]] = []
        for line in read_capture(self._path):
            if isinstance(line, MetaLine):
                for s in line.symbols:
                    self._sym(s)
            elif isinstance(line, RestLine):
                if line.path == "/api/v3/exchangeInfo" and isinstance(line.body, dict):
                    infos.extend(line.body.get("symbols", []))
                elif line.path == "/api/v3/depth" and "symbol" in line.params:
                    sym = self._sym(str(line.params["symbol"]))
                    if sym.snapshot is None:
                        sym.snapshot = line.body
            elif isinstance(line.body.data, dict) and not line.body.stream.startswith("!"):
                self._prescan_ws(line)
        for info in infos:
            if info.get("symbol", "").upper() in self._syms:
                self._syms[info["symbol"].upper()].info = info
        for symbol, sym in self._syms.items():
            sym.info = _compatible_info(sym.info) if sym.info else _synthesized_info(symbol, sym)
            if sym.snapshot is not None:
                sym.book = _Book.from_snapshot(sym.snapshot)
            elif sym.first_u is not None:
                sym.book.last_u = sym.first_u - 1

    def _prescan_ws(self, line: WsLine) -> None:
        name, _, suffix = line.body.stream.partition("@")
        data = line.body.data
        assert isinstance(data, dict)
        sym = self._sym(name)
        if data.get("e") == "depthUpdate":
            if sym.depth_stream is None or suffix == "depth@100ms":
                if sym.depth_stream != suffix:
                    sym.first_u = data["U"]
                sym.depth_stream = suffix
        elif suffix == "aggTrade":
            sym.see_ids(data["a"], data["f"], data["l"])
        elif suffix == "trade":
            sym.has_trade = True
            sym.see_ids(data["t"])

    # -- Venue ---------------------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._syms)

    def symbol_info(self, symbol: str) -> dict[str, Any]:
        info = self._syms[symbol].info
        assert info is not None
        return info

    def depth(self, symbol: str, limit: int) -> dict[str, Any]:
        return self._syms[symbol].book.top(limit)

    def ticker_24hr(self, symbol: str, now_ms: int) -> dict[str, Any] | None:
        return self._syms[symbol].ticker

    async def run(self, hub: Hub) -> None:
        await hub.first_subscription.wait()
        while True:
            await self._pass(hub)
            if not self._loop:
                return
            self._rewind(hub)

    # -- replay --------------------------------------------------------------------------------

    async def _pass(self, hub: Hub) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        first_recv: float | None = None
        sent = 0
        for line in read_capture(self._path):
            if not isinstance(line, WsLine):
                continue
            if first_recv is None:
                first_recv = line.recv_ts
            if self._speed > 0:
                delay = start + (line.recv_ts - first_recv) / self._speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                sent += 1
                if sent % 100 == 0:
                    await asyncio.sleep(0)
                    while hub.backlog() > _BACKPRESSURE:
                        await asyncio.sleep(0.005)
            start += await hub.wait_running()  # a pause shifts the rest of the schedule
            self._send(hub, line)

    def _send(self, hub: Hub, line: WsLine) -> None:
        stream, data = line.body.stream, line.body.data
        if not isinstance(data, dict) or stream.startswith("!"):
            hub.publish(stream, data)  # all-market streams pass through as recorded
            return
        name, _, suffix = stream.partition("@")
        sym = self._syms[name.upper()]
        recv_ms = line.recv_ts * 1000.0
        shift = int(time.time() * 1000.0 - max(recv_ms, data.get("E", recv_ms)))
        for key in ("E", "T"):
            if isinstance(data.get(key), int):
                data[key] += shift
        if data.get("e") == "depthUpdate":
            if suffix != sym.depth_stream:
                return
            u = data["u"] + sym.depth_offset
            if u <= sym.book.last_u:
                return
            data["U"] = max(data["U"] + sym.depth_offset, sym.book.last_u + 1)
            data["u"] = u
            sym.book.apply(data["b"], data["a"])
            sym.book.last_u = u
            hub.publish_diff(name.upper(), "100ms", data, sym.book.top)
            hub.publish_diff(name.upper(), "1000ms", data, sym.book.top)
            return
        if suffix == "aggTrade":
            for key in ("a", "f", "l"):
                data[key] += sym.trade_offset
            hub.publish(stream, data)
            if not sym.has_trade and hub.wants(f"{name}@trade"):
                hub.publish(
                    f"{name}@trade",
                    {
                        "e": "trade",
                        "E": data["E"],
                        "s": data["s"],
                        "t": data["a"],
                        "p": data["p"],
                        "q": data["q"],
                        "T": data["T"],
                        "m": data["m"],
                        "M": True,
                    },
                )
            return
        if suffix == "trade":
            data["t"] += sym.trade_offset
        elif suffix == "bookTicker":
            data["u"] += sym.depth_offset
        elif suffix.startswith("kline") and isinstance(data.get("k"), dict):
            for key in ("f", "L"):
                if data["k"].get(key, -1) >= 0:
                    data["k"][key] += sym.trade_offset
        elif suffix == "ticker":
            for key in ("F", "L"):
                data[key] += sym.trade_offset
            for key in ("O", "C"):
                data[key] += shift
            sym.ticker = data
        hub.publish(stream, data)

    def _rewind(self, hub: Hub) -> None:
        """Back to the start of the capture, telling clients through ordinary diffs."""
        now = int(time.time() * 1000)
        for symbol, sym in self._syms.items():
            if sym.min_id is not None and sym.max_id is not None:
                sym.trade_offset += sym.max_id - sym.min_id + 1
            if sym.snapshot is None:
                # No snapshot to return to: the book carries on, ids continue from here.
                if sym.first_u is not None:
                    sym.depth_offset = sym.book.last_u - (sym.first_u - 1)
                continue
            start = _Book.from_snapshot(sym.snapshot)
            bids, asks = sym.book.changes_to(start)
            last_u = sym.book.last_u
            if bids or asks:
                u = last_u + len(bids) + len(asks)
                start.last_u = u
                sym.book = start
                diff = {
                    "e": "depthUpdate",
                    "E": now,
                    "s": symbol,
                    "U": last_u + 1,
                    "u": u,
                    "b": bids,
                    "a": asks,
                }
                hub.publish_diff(symbol, "100ms", diff, sym.book.top)
                hub.publish_diff(symbol, "1000ms", diff, sym.book.top)
            else:
                start.last_u = last_u
                sym.book = start
            sym.depth_offset = sym.book.last_u - sym.snapshot["lastUpdateId"]
