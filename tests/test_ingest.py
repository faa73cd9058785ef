"""Ingest: exact normalization (real Binance messages, NT objects), the fenced batched writer
against a real Redis, and the whole NT node against the local exchange simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from nautilus_trader.adapters.binance.common.enums import BinanceAccountType
from nautilus_trader.adapters.binance.common.schemas.market import (
    BinanceAggregatedTradeMsg,
    BinanceDepth,
    BinanceOrderBookMsg,
    BinanceTickerMsg,
)
from nautilus_trader.adapters.binance.config import BinanceDataClientConfig
from nautilus_trader.adapters.binance.http.client import BinanceHttpClient
from nautilus_trader.adapters.binance.spot.providers import BinanceSpotInstrumentProvider
from nautilus_trader.adapters.binance.spot.schemas.market import BinanceSpotTradeMsg
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.config import InstrumentProviderConfig
from nautilus_trader.model.data import BookOrder, OrderBookDelta, OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide
from nautilus_trader.model.identifiers import InstrumentId, TradeId, TraderId
from nautilus_trader.model.objects import Price, Quantity
from redis.asyncio import Redis

from context8.procs import free_port, stop_process
from coordination.lease import LeaseScripts
from coordination.lease import acquire as acquire_lease
from core import keys
from core.events import (
    SCHEMA_VERSION,
    BookDelta,
    BookSnapshot,
    Status,
    Ticker,
    Trade,
    decode_event,
    scale,
)
from ingest import normalize
from ingest.binance import RESYNC_ENDPOINT, GapAwareBinanceSpotDataClient
from ingest.data import DepthUpdateIds, IngestStatus
from ingest.normalize import Precision
from ingest.writer import StreamWriter, connect

BTC = "BTCUSDT.BINANCE"
ETH = "ETHUSDT.BINANCE"
BTC_ID = InstrumentId.from_str(BTC)
MS = 1_700_000_000_123_000_000  # a venue time: whole milliseconds, in ns


# -- normalization: real Binance messages --------------------------------------------------------


def _capture(path: Path) -> tuple[dict[str, dict], list[dict], list[dict]]:
    """(exchangeInfo symbols by name, REST depth snapshots, ws messages) of a capture."""
    infos: dict[str, dict] = {}
    snapshots, messages = [], []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if item["type"] == "rest" and item["path"] == "/api/v3/exchangeInfo":
            infos = {s["symbol"]: s for s in item["body"]["symbols"]}
        elif item["type"] == "rest" and item["path"] == "/api/v3/depth":
            snapshots.append(item)
        elif item["type"] == "ws":
            messages.append(item["body"])
    return infos, snapshots, messages


def _nt_precision(info: dict) -> Precision:
    """What NT's instrument provider derives: the decimals of tickSize/stepSize as written."""
    filters = {f["filterType"]: f for f in info["filters"]}
    tick, step = filters["PRICE_FILTER"]["tickSize"], filters["LOT_SIZE"]["stepSize"]
    return Precision(abs(Decimal(tick).as_tuple().exponent), abs(Decimal(step).as_tuple().exponent))


def test_snapshots_and_diffs_of_a_real_recording_are_exact(capture_path):
    infos, snapshots, messages = _capture(capture_path)
    depth_decoder = msgspec.json.Decoder(BinanceDepth)
    diff_decoder = msgspec.json.Decoder(BinanceOrderBookMsg)
    checked_levels = 0
    for precision_of in (_nt_precision,):
        for item in snapshots:
            symbol = item["params"]["symbol"]
            precision = precision_of(infos[symbol])
            iid = InstrumentId.from_str(f"{symbol}.BINANCE")
            depth = depth_decoder.decode(msgspec.json.encode(item["body"]))
            nt = depth.parse_to_order_book_snapshot(iid, ts_init=123)
            event = normalize.book_event(nt, precision)
            assert isinstance(event, BookSnapshot)
            assert event.update_id == item["body"]["lastUpdateId"]
            assert (event.price_precision, event.size_precision) == (
                precision.price,
                precision.size,
            )
            for side, levels in (("bids", event.bids), ("asks", event.asks)):
                venue = item["body"][side]
                assert levels == [
                    (scale(p, precision.price), scale(q, precision.size)) for p, q in venue
                ]
                checked_levels += len(venue)
        diffs = [m for m in messages if "@depth" in m["stream"]]
        assert len(diffs) > 100
        for body in diffs:
            data = body["data"]
            precision = precision_of(infos[data["s"]])
            iid = InstrumentId.from_str(f"{data['s']}.BINANCE")
            msg = diff_decoder.decode(msgspec.json.encode(body))
            if not (data["b"] or data["a"]):
                continue  # no levels: NT has no deltas for it (the client sends ids alone)
            nt = msg.data.parse_to_order_book_deltas(iid, ts_init=456)
            event = normalize.book_event(nt, precision, first_update_id=data["U"])
            assert isinstance(event, BookDelta)
            assert (event.first_update_id, event.last_update_id) == (data["U"], data["u"])
            assert event.ts_event == data["E"] * 1_000_000 and event.ts_init == 456
            for side, levels in (("b", event.bids), ("a", event.asks)):
                assert levels == [
                    (scale(p, precision.price), scale(q, precision.size)) for p, q in data[side]
                ]
                checked_levels += len(data[side])
    assert checked_levels > 1000

    # Real books hold sizes finer than today's stepSize (NKNUSDT: step 1, a level of 11979.3):
    # the step's own decimals would not do, and such a value is refused, never rounded.
    nkn = next(i for i in snapshots if i["params"]["symbol"] == "NKNUSDT")
    depth = depth_decoder.decode(msgspec.json.encode(nkn["body"]))
    nt = depth.parse_to_order_book_snapshot(InstrumentId.from_str("NKNUSDT.BINANCE"), 0)
    with pytest.raises(ValueError, match="more than 0 decimals"):
        normalize.book_event(nt, Precision(4, 0))


def test_real_recording_rebuilds_an_uncrossed_book(capture_path):
    """Snapshot + diffs (Binance's procedure) through normalize: a sane book per symbol."""
    infos, snapshots, messages = _capture(capture_path)
    decoder = msgspec.json.Decoder(BinanceOrderBookMsg)
    for item in snapshots:
        symbol = item["params"]["symbol"]
        precision = _nt_precision(infos[symbol])
        iid = InstrumentId.from_str(f"{symbol}.BINANCE")
        depth = msgspec.json.decode(msgspec.json.encode(item["body"]), type=BinanceDepth)
        snap = normalize.book_event(depth.parse_to_order_book_snapshot(iid, 0), precision)
        bids, asks = dict(snap.bids), dict(snap.asks)
        last, applied = snap.update_id, 0
        for body in messages:
            data = body["data"]
            if "@depth" not in body["stream"] or data["s"] != symbol or data["u"] <= last:
                continue
            assert data["U"] <= last + 1 <= data["u"], "the recording has no gap"
            nt = decoder.decode(msgspec.json.encode(body)).data
            if not (data["b"] or data["a"]):
                last = data["u"]
                continue
            event = normalize.book_event(nt.parse_to_order_book_deltas(iid, 0), precision, nt.U)
            for book, levels in ((bids, event.bids), (asks, event.asks)):
                for price, qty in levels:
                    if qty:
                        book[price] = qty
                    else:
                        book.pop(price, None)
            last, applied = event.last_update_id, applied + 1
        assert applied > 0
        assert max(bids) < min(asks), symbol


def test_real_agg_trades_and_a_spot_trade_and_ticker(capture_path):
    infos, _, messages = _capture(capture_path)
    trades = [m for m in messages if m["stream"].endswith("@aggTrade")]
    assert trades
    for body in trades:
        data = body["data"]
        precision = _nt_precision(infos[data["s"]])
        msg = msgspec.json.decode(msgspec.json.encode(body), type=BinanceAggregatedTradeMsg)
        tick = msg.data.parse_to_trade_tick(InstrumentId.from_str(f"{data['s']}.BINANCE"), 9)
        event = normalize.trade_event(tick, precision)
        assert event.price == scale(data["p"], precision.price)
        assert event.qty == scale(data["q"], precision.size)
        assert event.aggressor == ("sell" if data["m"] else "buy")
        assert event.trade_id == str(data["a"])
        assert event.ts_event == data["T"] * 1_000_000

    # @trade and @ticker (the streams ingest subscribes), as Binance documents them.
    trade = {"stream": "btcusdt@trade", "data": {"e": "trade", "E": 1700000000001,
             "s": "BTCUSDT", "t": 4242, "p": "37012.34000000", "q": "0.00012000",
             "T": 1700000000000, "m": True, "M": True}}  # fmt: skip
    msg = msgspec.json.decode(json.dumps(trade), type=BinanceSpotTradeMsg)
    event = normalize.trade_event(msg.data.parse_to_trade_tick(BTC_ID, 7), Precision(2, 5))
    assert (event.price, event.qty, event.aggressor, event.trade_id) == (
        3701234,
        12,
        "sell",
        "4242",
    )
    ticker = {"stream": "btcusdt@ticker", "data": {"e": "24hrTicker", "E": 1700000000002,
              "s": "BTCUSDT", "p": "-120.50000000", "P": "-0.325", "w": "37100.1",
              "x": "37130.00000000", "c": "37012.34000000", "Q": "0.00012000",
              "b": "37012.33000000", "B": "1.5", "a": "37012.34000000", "A": "0.2",
              "o": "37132.84000000", "h": "37500.00000000", "l": "36800.00000000",
              "v": "12345.67800000", "q": "456789012.34000000", "O": 1699913600000,
              "C": 1700000000000, "F": 1, "L": 900001, "n": 900001}}  # fmt: skip
    msg = msgspec.json.decode(json.dumps(ticker), type=BinanceTickerMsg)
    event = normalize.ticker_event(msg.data.parse_to_binance_ticker(BTC_ID, 8))
    assert event == Ticker(
        v=SCHEMA_VERSION, ts_event=1700000000002 * 1_000_000, ts_init=8, last_price="37012.34",
        open_price="37132.84", high_price="37500", low_price="36800", volume="12345.678",
        quote_volume="456789012.34", price_change_pct="-0.325", trade_count=900001,
    )  # fmt: skip


# -- normalization: NT objects -------------------------------------------------------------------


def _delta(side: OrderSide, price: str, size: str, action: BookAction, seq: int) -> OrderBookDelta:
    order = BookOrder(side, Price.from_str(price), Quantity.from_str(size), 0)
    return OrderBookDelta(BTC_ID, action, order, 0, seq, MS, 2_000)


def test_nt_deltas_and_trades_rescale_exactly_and_refuse_excess_decimals():
    deltas = OrderBookDeltas(BTC_ID, [
        _delta(OrderSide.BUY, "65000.15000000", "0.00000001", BookAction.UPDATE, 77),
        _delta(OrderSide.BUY, "64999.9", "0", BookAction.DELETE, 77),
        _delta(OrderSide.SELL, "65000.2", "12345678.12345678", BookAction.UPDATE, 77),
    ])  # fmt: skip
    event = normalize.book_event(deltas, Precision(2, 8), first_update_id=70)
    assert event == BookDelta(
        v=SCHEMA_VERSION, ts_event=MS, ts_init=2_000, price_precision=2, size_precision=8,
        first_update_id=70, last_update_id=77, bids=[(6500015, 1), (6499990, 0)],
        asks=[(6500020, 1234567812345678)],
    )  # fmt: skip
    with pytest.raises(ValueError, match="more than 1 decimals"):
        normalize.book_event(deltas, Precision(1, 8))
    with pytest.raises(ValueError, match="more than 7 decimals"):
        normalize.book_event(deltas, Precision(2, 7))

    tick = TradeTick(BTC_ID, Price.from_str("0.00001234"), Quantity.from_str("1e3"),
                     AggressorSide.BUYER, TradeId("T-1"), MS + 1, 6)  # fmt: skip
    trade = normalize.trade_event(tick, Precision(8, 0))
    assert trade == Trade(v=SCHEMA_VERSION, ts_event=MS, ts_init=6, price_precision=8,
                          size_precision=0, price=1234, qty=1000, aggressor="buy",
                          trade_id="T-1")  # fmt: skip
    no_side = TradeTick(BTC_ID, Price.from_str("1"), Quantity.from_str("1"),
                        AggressorSide.NO_AGGRESSOR, TradeId("T-2"), 5, 6)  # fmt: skip
    with pytest.raises(ValueError, match="no aggressor"):
        normalize.trade_event(no_side, Precision(0, 0))


def test_snapshot_batch_empty_diff_and_status():
    clear = OrderBookDelta.clear(BTC_ID, 500, 10, 11)
    add = _delta(OrderSide.SELL, "1.5", "2", BookAction.ADD, 500)
    snap = normalize.book_event(OrderBookDeltas(BTC_ID, [clear, add]), Precision(1, 0))
    assert isinstance(snap, BookSnapshot)
    assert (snap.update_id, snap.bids, snap.asks) == (500, [], [(15, 2)])

    ids = DepthUpdateIds(BTC_ID, 501, 503, False, 20, 21)
    empty = normalize.empty_delta(ids, Precision(1, 0))
    assert (empty.first_update_id, empty.last_update_id, empty.bids, empty.asks) == (
        501, 503, [], [],
    )  # fmt: skip
    gap = IngestStatus(BTC_ID, "gap", 30, 31, "lost", expected_update_id=504,
                       received_update_id=510)  # fmt: skip
    assert normalize.status_event(gap) == Status(
        v=SCHEMA_VERSION, ts_event=30, ts_init=31, status="gap", detail="lost",
        expected_update_id=504, received_update_id=510,
    )  # fmt: skip


@given(
    whole=st.integers(0, 10**9),
    frac=st.text("0123456789", min_size=0, max_size=8),
    pad=st.integers(0, 8),
)
def test_fixed_equals_exact_decimal_scaling(whole, frac, pad):
    text = f"{whole}.{frac}" if frac else str(whole)
    precision = min(len(frac.rstrip("0")) + pad, 8)
    price = Price.from_str(text)
    assert normalize.fixed(price.raw, precision) == scale(text, precision)


# -- the gap-aware client: sequencing, with NT's own parsing and a stand-in REST snapshot ---------


def _diff(first: int, last: int, levels: bool = True) -> bytes:
    data = {"e": "depthUpdate", "E": 1_700_000_000_000 + last, "s": "BTCUSDT", "U": first,
            "u": last, "b": [["100.00000000", str(last)]] if levels else [], "a": []}  # fmt: skip
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": data}).encode()


def _rest_snapshot(last: int) -> OrderBookDeltas:
    depth = BinanceDepth(lastUpdateId=last, bids=[("99.00", "1")], asks=[("101.00", "2")])
    return depth.parse_to_order_book_snapshot(BTC_ID, ts_init=1)


def _published(item) -> tuple:
    """What the client handed the data engine, in short."""
    if isinstance(item, OrderBookDeltas):
        kind = "snap" if item.deltas[0].action == BookAction.CLEAR else "deltas"
        return (kind, item.sequence)
    data = item.data
    if isinstance(data, DepthUpdateIds):
        return ("ids", data.first_update_id, data.last_update_id, data.has_levels)
    return (data.status, data.detail, data.expected_update_id, data.received_update_id)


class _Venue:
    """The client under test, its published data, and REST snapshots served on demand."""

    def __init__(self) -> None:
        clock = LiveClock()
        self.msgbus = MessageBus(TraderId("TEST-001"), clock)
        # Never called: the REST snapshot is served by request_order_book_snapshot below.
        http = BinanceHttpClient(
            clock=clock, api_key="k", api_secret="s", base_url="http://127.0.0.1:9"
        )
        self.client = GapAwareBinanceSpotDataClient(
            loop=asyncio.get_running_loop(), client=http, msgbus=self.msgbus, cache=Cache(),
            clock=clock, base_url_ws="ws://127.0.0.1:9",
            instrument_provider=BinanceSpotInstrumentProvider(
                client=http, clock=clock, account_type=BinanceAccountType.SPOT,
                is_testnet=True, config=InstrumentProviderConfig(),
            ),
            config=BinanceDataClientConfig(api_key="k", api_secret="s"),
        )  # fmt: skip
        self.published: list = []
        self.client._handle_data = self.published.append
        self.client._book_depths[BTC_ID] = 1000  # what subscribing records
        self.snapshots: asyncio.Queue = asyncio.Queue()
        self.requests = 0

        async def request_order_book_snapshot(instrument_id, ts_init, limit=None):
            self.requests += 1
            answer = await self.snapshots.get()
            if isinstance(answer, Exception):
                raise answer
            return answer

        self.client._http_market.request_order_book_snapshot = request_order_book_snapshot

    def send(self, *diffs: bytes) -> None:
        for raw in diffs:
            self.client._handle_book_diff_update(raw)

    async def settled(self) -> list[tuple]:
        for _ in range(500):
            await asyncio.sleep(0.01)
            if not self.client._rebuilding and self.snapshots.empty():
                break
        return [_published(item) for item in self.published]


def test_client_bridges_the_snapshot_then_checks_every_diff_and_rebuilds_on_a_gap():
    async def scenario():
        venue = _Venue()
        first = asyncio.create_task(venue.client._order_book_snapshot_then_deltas(BTC_ID))
        await asyncio.sleep(0)  # the rebuild buffers while the snapshot is in flight
        venue.send(_diff(95, 100), _diff(101, 104), _diff(103, 107), _diff(108, 110))
        await venue.snapshots.put(_rest_snapshot(105))
        await first
        venue.send(_diff(111, 112), _diff(111, 112), _diff(113, 113, levels=False))
        venue.send(_diff(120, 121))  # 114..119 never came
        venue.send(_diff(122, 125))  # buffered for the rebuild
        await venue.snapshots.put(_rest_snapshot(110))  # older than the stream: fetch again
        await venue.snapshots.put(_rest_snapshot(121))
        assert await venue.settled() == [
            ("snap", 105),
            ("ids", 103, 107, True), ("deltas", 107),  # U <= 106 <= u bridges the snapshot
            ("ids", 108, 110, True), ("deltas", 110),
            ("ids", 111, 112, True), ("deltas", 112),  # the repeat of 111..112 is dropped
            ("ids", 113, 113, False),  # no level changed: ids alone
            ("gap", "diff U=120 u=121 after u=113", 114, 120),
            ("snap", 121), ("resync", "gap", None, 121),
            ("ids", 122, 125, True), ("deltas", 125),
        ]  # fmt: skip
        assert venue.requests == 3
        assert venue.client.gaps_detected == 1 and venue.client.stale_diffs_dropped == 1

    asyncio.run(scenario())


def test_client_retries_the_snapshot_and_rebuilds_on_reconnect_request_and_inner_gap():
    async def scenario():
        venue = _Venue()
        first = asyncio.create_task(venue.client._order_book_snapshot_then_deltas(BTC_ID))
        await venue.snapshots.put(ConnectionError("venue busy"))  # retried with backoff
        await venue.snapshots.put(_rest_snapshot(10))
        await first
        venue.send(_diff(11, 12))
        await venue.client._reconnect()  # NT's hook after its websocket reconnected
        venue.send(_diff(20, 21), _diff(25, 26))  # buffered; a hole inside the buffer
        await venue.snapshots.put(_rest_snapshot(20))  # bridged by 20..21, then the hole
        await venue.snapshots.put(_rest_snapshot(26))
        await venue.settled()
        # the writer lost events: start afresh
        venue.msgbus.send(RESYNC_ENDPOINT, (BTC_ID, "requested"))
        venue.send(_diff(27, 28))  # buffered, then bridges
        await venue.snapshots.put(_rest_snapshot(27))
        assert await venue.settled() == [
            ("snap", 10),
            ("ids", 11, 12, True), ("deltas", 12),
            ("disconnected", "websocket reconnected", None, None),
            ("snap", 20), ("resync", "reconnect", None, 20),
            ("ids", 20, 21, True), ("deltas", 21),
            ("gap", "diff U=25 u=26 after u=21", 22, 25),
            ("snap", 26), ("resync", "gap", None, 26),
            ("snap", 27), ("resync", "requested", None, 27),
            ("ids", 27, 28, True), ("deltas", 28),
        ]  # fmt: skip
        assert venue.requests == 5

    asyncio.run(scenario())


# -- the writer, against a real Redis ------------------------------------------------------------


def _trade(i: int) -> Trade:
    return Trade(v=1, ts_event=i, ts_init=i, price_precision=2, size_precision=8,
                 price=100_00 + i, qty=1, aggressor="buy", trade_id=str(i))  # fmt: skip


async def _entries(client: Redis, symbol: str) -> list:
    return [decode_event(f[b"e"]) for _, f in await client.xrange(keys.stream_key(symbol))]


async def _evalsha_calls(client: Redis) -> int:
    return (await client.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)


def _writer(url: str, **kw) -> StreamWriter:
    return StreamWriter(
        connect(url, timeout_s=kw.pop("timeout_s", 2.0)),
        node_id=kw.pop("node_id", "node-a"),
        lease_ttl_ms=kw.pop("lease_ttl_ms", 10_000),
        retention_sec=kw.pop("retention_sec", 0),
        **kw,
    )


def test_writer_batches_one_script_call_per_symbol_per_flush(redis_url):
    async def scenario():
        admin = Redis.from_url(redis_url)
        writer = _writer(redis_url)
        assert await writer.acquire([BTC, ETH]) == [BTC, ETH]
        before = await _evalsha_calls(admin)
        for i in range(500):
            writer.append(BTC, _trade(i))
            writer.append(ETH, _trade(i))
        await writer.flush()
        assert writer.stats.flushes == 1
        assert await _evalsha_calls(admin) - before == 2
        assert await _entries(admin, BTC) == [_trade(i) for i in range(500)]
        assert await _entries(admin, ETH) == [_trade(i) for i in range(500)]

        # Low rate: one event leaves by itself at once (no flush() call, no timer).
        writer.append(BTC, _trade(500))
        for _ in range(200):
            await asyncio.sleep(0.005)
            if await admin.xlen(keys.stream_key(BTC)) == 501:
                break
        assert await admin.xlen(keys.stream_key(BTC)) == 501
        assert writer.stats.flushes == 2

        # Under load: what arrives while a flush is in flight goes in the next one, whole.
        writer.append(BTC, _trade(501))
        while writer.stats.flushes < 3:
            await asyncio.sleep(0)
        for i in range(502, 800):
            writer.append(BTC, _trade(i))
        await writer.flush()
        assert writer.stats.flushes == 4
        assert await _entries(admin, BTC) == [_trade(i) for i in range(800)]
        await writer.close()
        assert await admin.get(keys.lease_key("ingest", BTC)) is None  # released
        await admin.aclose()

    asyncio.run(scenario())


def test_writer_with_a_stale_tenure_is_refused_and_drops_the_symbol(redis_url):
    async def scenario():
        admin = Redis.from_url(redis_url)
        lost: list[str] = []
        writer = _writer(redis_url, on_lost=lost.append)
        assert await writer.acquire([BTC, ETH]) == [BTC, ETH]
        writer.append(BTC, _trade(0))
        await writer.flush()
        # node-a stalls past its BTC lease (expiry, done by hand here); node-b takes BTC over.
        await admin.delete(keys.lease_key("ingest", BTC))
        other = await acquire_lease(LeaseScripts(admin), "ingest", BTC, "node-b", 10_000)
        assert other is not None and other.token == writer.tenure(BTC).token + 1
        writer.append(BTC, _trade(1))
        writer.append(BTC, _trade(2))
        writer.append(ETH, _trade(3))
        await writer.flush()
        assert lost == [BTC]
        assert writer.owned == {ETH}
        assert writer.stats.lease_conflicts == 1
        assert await _entries(admin, BTC) == [_trade(0)]  # nothing of the stale tenure
        assert await _entries(admin, ETH) == [_trade(3)]
        writer.append(BTC, _trade(4))
        assert writer.stats.dropped_unowned == 1
        await writer.close()
        assert await admin.get(keys.lease_key("ingest", BTC)) == b"node-b"  # not ours to free
        await admin.aclose()

    asyncio.run(scenario())


def test_writer_renewal_refused_drops_the_symbol(redis_url):
    async def scenario():
        admin = Redis.from_url(redis_url)
        writer = _writer(redis_url)
        await writer.acquire([BTC])
        await admin.delete(keys.lease_key("ingest", BTC))  # an operator, or expiry
        await acquire_lease(LeaseScripts(admin), "ingest", BTC, "node-b", 10_000)
        await writer.renew()
        assert writer.owned == frozenset() and writer.stats.lease_conflicts == 1
        await writer.close()
        await admin.aclose()

    asyncio.run(scenario())


def test_writer_trims_by_minid_and_recovers_from_a_flushed_script_cache(redis_url):
    async def scenario():
        admin = Redis.from_url(redis_url)
        stream = keys.stream_key(BTC)
        for i in range(300):  # an hour-old history
            await admin.xadd(stream, {"e": b"old"}, id=f"{1_000_000 + i}-0")
        writer = _writer(redis_url, retention_sec=60)
        await writer.acquire([BTC])
        writer.append(BTC, _trade(0))
        await writer.flush()
        await admin.script_flush()  # Redis restarted, say: EVALSHA answers NOSCRIPT
        writer.append(BTC, _trade(1))
        await writer.flush()
        ids = [int(i.split(b"-")[0]) for i, _ in await admin.xrange(stream)]
        old = [i for i in ids if i < time.time() * 1000 - 60_000]
        assert len(old) < 100  # MINID ~ trims whole radix-tree nodes only
        assert (await _entries(admin, BTC))[-2:] == [_trade(0), _trade(1)]
        assert writer.stats.appended == 2
        await writer.close()

        await admin.delete(stream)  # retention 0 keeps everything
        for i in range(300):
            await admin.xadd(stream, {"e": b"old"}, id=f"{1_000_000 + i}-0")
        keeper = _writer(redis_url, retention_sec=0)
        await keeper.acquire([BTC])
        keeper.append(BTC, _trade(2))
        await keeper.flush()
        assert await admin.xlen(stream) == 301
        await keeper.close()
        await admin.aclose()

    asyncio.run(scenario())


def test_writer_retries_through_an_outage_and_bounds_its_buffer(redis_url):
    async def scenario():
        admin = Redis.from_url(redis_url)
        resyncs: list[str] = []
        writer = _writer(redis_url, timeout_s=0.2, max_pending=5, on_resync=resyncs.append)
        await writer.acquire([BTC])
        await admin.execute_command("CLIENT", "PAUSE", 1200, "ALL")
        started = time.monotonic()
        for i in range(8):  # 3 more than the buffer holds
            writer.append(BTC, _trade(i))
        await asyncio.wait_for(writer.flush(), 10)
        assert time.monotonic() - started > 1.0  # it waited for Redis, with backoff
        assert writer.stats.retries >= 1
        assert writer.stats.dropped_overflow == 3
        events = await _entries(admin, BTC)
        assert isinstance(events[0], Status) and events[0].status == "gap"
        assert "3 events dropped" in events[0].detail
        assert events[1:] == [_trade(i) for i in range(3, 8)]
        assert resyncs == [BTC]
        await writer.close()
        await admin.aclose()

    asyncio.run(scenario())


# -- the whole node against the local exchange simulator -----------------------------------------

REPO = Path(__file__).resolve().parents[1]
_SIMULATOR = [sys.executable, "-m", "context8", "simulate", "--symbols", "BTCUSDT,ETHUSDT"]
_NODE = [sys.executable, "-m", "context8", "ingest"]


@contextlib.contextmanager
def _process(args: list[str], out: Path, env: dict[str, str] | None = None):
    """A child process (stdout/stderr to files), terminated and reaped whatever happens."""
    with out.with_suffix(".out").open("wb") as stdout, out.with_suffix(".err").open("wb") as err:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=stdout, stderr=err)
        try:
            yield proc
        finally:
            stop_process(proc, 10)


def _wait_for(what: str, check, timeout_s: float, *procs: subprocess.Popen):
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        for proc in procs:
            assert proc.poll() is None, f"{proc.args[:3]} exited ({proc.returncode}) {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _http(method: str, url: str):
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
        return json.loads(r.read())


def _stream(client, symbol: str) -> list:
    return [decode_event(f[b"e"]) for _, f in client.xrange(keys.stream_key(symbol))]


def _book_check(events: list) -> Counter:
    """Assert the venue's sequencing on a stream; counts of deltas, gaps and disconnects.
    Deltas chain (U = previous u + 1) and the first after a snapshot bridges it
    (U <= id + 1 <= u); a gap is announced before the break and nothing but a snapshot
    follows it; every gap or disconnect is answered by a snapshot, then resync."""
    seen: Counter = Counter()
    last = None
    after_snapshot = resync_due = False
    previous = None
    for event in events:
        match event:
            case BookSnapshot():
                last, after_snapshot = event.update_id, True
            case BookDelta():
                assert last is not None, "a delta where only a snapshot may come"
                if after_snapshot:
                    assert event.first_update_id <= last + 1 <= event.last_update_id
                else:
                    assert event.first_update_id == last + 1, (event, last)
                last, after_snapshot = event.last_update_id, False
                seen["delta"] += 1
            case Status(status="gap"):
                assert last is not None and event.expected_update_id == last + 1
                assert event.received_update_id > last + 1
                last, resync_due = None, True
                seen["gap"] += 1
            case Status(status="disconnected"):
                resync_due = True
                seen["disconnected"] += 1
            case Status(status="resync"):
                # (rebuilds may overlap: a periodic one can answer a gap, and vice versa)
                assert isinstance(previous, BookSnapshot)
                assert event.received_update_id == last
                resync_due = False
                seen["resync"] += 1
            case _:
                continue
        previous = event
    assert not resync_due, "a gap or disconnect without its resync"
    return seen


def _book_at(events: list, update_id: int) -> tuple[dict, dict] | None:
    """The book folded from the last snapshot up to the delta whose u is ``update_id``."""
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for event in events:
        if isinstance(event, BookSnapshot):
            bids, asks = dict(event.bids), dict(event.asks)
            if event.update_id == update_id:
                return bids, asks
        elif isinstance(event, BookDelta):
            for book, levels in ((bids, event.bids), (asks, event.asks)):
                for price, qty in levels:
                    if qty:
                        book[price] = qty
                    else:
                        book.pop(price, None)
            if event.last_update_id == update_id:
                return bids, asks
    return None


def test_node_against_the_simulator_records_resyncs_and_stops_cleanly(redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    with _process(_SIMULATOR, tmp_path / "sim") as sim:
        base = _wait_for(
            "the simulator's URL", lambda: (tmp_path / "sim.out").read_text().strip(), 20, sim
        )
        env = {
            **os.environ,
            "SYMBOLS": "BTCUSDT,ETHUSDT",
            "REDIS_URL": redis_url,
            "NT_NODE_ID": "ingest-test",
            "NT_SNAPSHOT_EVERY_SEC": "1",
            "NT_BINANCE_HTTP_URL": base,
            "NT_BINANCE_WS_URL": "ws" + base.removeprefix("http"),
        }
        with _process(_NODE, tmp_path / "node", env) as node:

            def recorded(symbol: str, deltas: int) -> bool:
                events = _stream(client, symbol)
                kinds = Counter(type(e).__name__ for e in events)
                return kinds["BookDelta"] >= deltas and kinds["Trade"] and kinds["Ticker"]

            _wait_for("both streams", lambda: recorded(BTC, 20) and recorded(ETH, 20), 30, node)

            def resynced_after_gap() -> bool:
                events = _stream(client, BTC)
                gaps = [i for i, e in enumerate(events) if getattr(e, "status", "") == "gap"]
                if not gaps:
                    return False
                after = events[gaps[0] :]
                resync = [i for i, e in enumerate(after) if getattr(e, "detail", "") == "gap"]
                return bool(resync) and sum(isinstance(e, BookDelta) for e in after) >= 10

            # A diff dropped while a periodic snapshot is being fetched is legitimately covered
            # by that snapshot (no gap to report), so the venue drops another until one shows.
            def gap_reported() -> bool:
                return any(getattr(e, "status", "") == "gap" for e in _stream(client, BTC))

            for _attempt in range(5):
                _http("POST", f"{base}/_sim/drop_diffs?symbol=BTCUSDT&count=1")
                deadline = time.monotonic() + 4
                while not gap_reported() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if gap_reported():
                    break
            _wait_for("the resync after the dropped diff", resynced_after_gap, 20, node)

            # The venue drops the websocket: NT reconnects; every book is rebuilt.
            _http("POST", f"{base}/_sim/disconnect")

            def reconnected(symbol: str) -> bool:
                events = _stream(client, symbol)
                done = [i for i, e in enumerate(events) if getattr(e, "detail", "") == "reconnect"]
                return bool(done) and sum(isinstance(e, BookDelta) for e in events[done[-1] :]) >= 5

            _wait_for("the rebuild after the reconnect", lambda: all(map(reconnected, (BTC, ETH))),
                      20, node)  # fmt: skip

            for symbol in ("BTCUSDT", "ETHUSDT"):  # the books equal the venue's, to the level
                venue = _http("GET", f"{base}/api/v3/depth?symbol={symbol}&limit=5000")
                assert len(venue["bids"]) < 1000 and len(venue["asks"]) < 1000  # the whole book
                book = _wait_for(
                    "the stream to reach the REST book's update id",
                    lambda s=f"{symbol}.BINANCE", u=venue["lastUpdateId"]: _book_at(
                        _stream(client, s), u
                    ),
                    10,
                    node,
                )
                precision = 8  # the simulator's tickSize/stepSize, as Binance writes them
                assert book == (
                    {scale(p, precision): scale(q, precision) for p, q in venue["bids"]},
                    {scale(p, precision): scale(q, precision) for p, q in venue["asks"]},
                )

            def periodic_snapshots() -> bool:
                return all(
                    any(getattr(e, "detail", "") == "periodic snapshot" for e in _stream(client, s))
                    for s in (BTC, ETH)
                )

            _wait_for("a periodic snapshot of each book", periodic_snapshots, 10, node)
            node.send_signal(signal.SIGTERM)
            assert node.wait(15) == 0

    for symbol in (BTC, ETH):
        events = _stream(client, symbol)
        assert isinstance(events[0], Status) and events[0].status == "started"
        assert isinstance(events[1], BookSnapshot)
        assert isinstance(events[-1], Status) and events[-1].status == "stopped"
        seen = _book_check(events)
        assert seen["delta"] >= 25 and seen["disconnected"] == 1
        assert seen["gap"] >= (1 if symbol == BTC else 0)  # more if diffs were lost reconnecting
        assert client.get(keys.lease_key("ingest", symbol)) is None  # released on stop
        periodic = [e for e in events if getattr(e, "detail", "") == "periodic snapshot"]
        assert periodic and all(e.status == "resync" for e in periodic)
    # ours are JSON lines; NautilusTrader writes its errors to stderr too, in its own format
    log_lines = [
        json.loads(line)
        for line in (tmp_path / "node.err").read_text().splitlines()
        if line.startswith("{")
    ]
    assert all({"node_id", "role", "event"} <= line.keys() for line in log_lines if "event" in line)
    assert all(line["role"] == "ingest" for line in log_lines if "event" in line)
    assert any(line["event"] == "feed_gap" and line["symbol"] == BTC for line in log_lines)
    client.close()


def test_node_with_redis_down_says_so_at_once_and_exits():
    """Not the venue's fault: Redis is checked before NautilusTrader starts."""
    redis_port, venue_port = free_port(), free_port()
    env = {
        **os.environ,
        "REDIS_URL": f"redis://:secret@127.0.0.1:{redis_port}/0",
        "SYMBOLS": "BTCUSDT",
        "NT_METRICS_PORT": "0",
        "NT_BINANCE_HTTP_URL": f"http://127.0.0.1:{venue_port}",
        "NT_BINANCE_WS_URL": f"ws://127.0.0.1:{venue_port}",
    }
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "context8", "ingest"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 15
    assert f"cannot start: Redis at redis://***@127.0.0.1:{redis_port}/0 does not answer" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr and "secret" not in done.stderr
    assert "venue" not in done.stderr
