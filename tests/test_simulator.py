"""The local exchange simulator: its order-flow model, its Binance REST + websocket protocol,
fault injection, and capture replay. (NautilusTrader's own client against it:
test_simulator_nt.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from nautilus_trader.adapters.binance.common.schemas.market import (
    BinanceAggregatedTradeMsg,
    BinanceDepth,
    BinanceOrderBookMsg,
    BinanceQuoteMsg,
    BinanceTicker24hr,
    BinanceTickerMsg,
)
from nautilus_trader.adapters.binance.spot.schemas.market import (
    BinanceSpotExchangeInfo,
    BinanceSpotOrderBookPartialDepthMsg,
    BinanceSpotTradeMsg,
)
from nautilus_trader.adapters.binance.spot.schemas.wallet import BinanceSpotTradeFee

from ingest.capture import (
    CaptureError,
    CaptureWriter,
    MetaLine,
    RestLine,
    StreamMessage,
    WsLine,
    read_capture,
)
from ingest.simulator import SimulatorConfig, serve
from ingest.simulator.instruments import spec_for, to_e8
from ingest.simulator.orderflow import MarketModel

TIMESTAMPS = ("E", "T", "O", "C")


# -- helpers -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(config: SimulatorConfig) -> AsyncIterator[str]:
    """The simulator as a task of the current loop; yields its base URL, then cancels it."""
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(config, ready=ready.set_result))
    await asyncio.wait({ready, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # the failure, if it failed to start
    assert ready.done(), "simulator did not start"
    try:
        yield ready.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


def ws_url(base: str, path: str) -> str:
    return "ws" + base.removeprefix("http") + path


class ClientBook:
    """A client following Binance's "how to manage a local order book" procedure."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
        self.last_u = snapshot["lastUpdateId"]
        self.applied = 0

    def apply(self, diff: dict[str, Any]) -> bool:
        """Apply a diff; False for one the snapshot already covers. Asserts continuity."""
        if diff["u"] <= self.last_u:
            return False
        if self.applied == 0:
            assert diff["U"] <= self.last_u + 1 <= diff["u"], (diff["U"], self.last_u)
        else:
            assert diff["U"] == self.last_u + 1, f"gap: U={diff['U']} after u={self.last_u}"
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for p, q in levels:
                if Decimal(q):
                    side[Decimal(p)] = Decimal(q)
                else:
                    side.pop(Decimal(p), None)
        self.last_u = diff["u"]
        self.applied += 1
        return True

    def matches(self, snapshot: dict[str, Any]) -> bool:
        return (
            self.last_u == snapshot["lastUpdateId"]
            and self.bids == {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
            and self.asks == {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
        )

    def uncrossed(self) -> bool:
        return not self.bids or not self.asks or max(self.bids) < min(self.asks)


def strip_times(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: strip_times(v) for k, v in data.items() if k not in TIMESTAMPS}
    return data


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def post(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.post(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def receive(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[dict[str, Any]]:
    """Every text frame received within `seconds`, decoded."""
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        out.append(json.loads(msg.data))
    return out


# -- the order-flow model ------------------------------------------------------------------------


def test_same_seed_same_messages_whatever_the_clock_chunking():
    def messages(seed: int, step_ms: float) -> list[Any]:
        model = MarketModel(spec_for("ETHUSDT"), seed=seed, rate=2.0)
        out, t = [], 0.0
        while t < 20_000:
            t = min(20_000.0, t + step_ms)
            out += [
                (kind, strip_times(data))
                for kind, data in model.advance(t, 1_900_000_000_000 + int(t * 3))
            ]
        return out

    first = messages(seed=3, step_ms=100.0)
    assert len(first) > 300
    assert {kind for kind, _ in first} == {
        "depth",
        "depth1s",
        "trade",
        "aggTrade",
        "bookTicker",
        "ticker",
    }
    assert messages(seed=3, step_ms=7.3) == first
    assert messages(seed=4, step_ms=100.0) != first


def test_snapshot_at_any_time_equals_the_book_rebuilt_from_the_diffs():
    for symbol in ("BTCUSDT", "DOGEUSDT", "FOOUSDT"):
        model = MarketModel(spec_for(symbol), seed=5, rate=4.0, diff_interval_ms=50)
        book = ClientBook(model.snapshot(5000))
        t = 0.0
        for _ in range(400):
            t += 37.0  # mostly between two diffs: the snapshot must undo the pending changes
            for kind, data in model.advance(t, 1_900_000_000_000 + int(t)):
                if kind == "depth":
                    book.apply(data)
                    assert book.uncrossed()
            assert book.matches(model.snapshot(5000)), symbol
            bid, ask = model.best()
            assert bid < ask
        assert book.applied > 250  # nearly every 50 ms interval changes something


def test_the_book_never_crosses_nor_empties_and_the_flow_is_consistent():
    model = MarketModel(spec_for("SOLUSDT"), seed=9, rate=3.0)
    spec = spec_for("SOLUSDT")
    sizes, spreads, trades, prices = [], [], 0, set()
    for step in range(1, 3001):  # 5 minutes
        for kind, data in model.advance(step * 100.0, 1_900_000_000_000 + step * 100):
            if kind == "trade":
                trades += 1
                prices.add(data["p"])
                # Trades print at the touch the market order walked through: on a tick.
                assert to_e8(data["p"]) % spec.tick_e8 == 0
                assert to_e8(data["q"]) % spec.step_e8 == 0 and to_e8(data["q"]) > 0
        snap = model.snapshot(5000)
        bid, ask = model.best()
        assert bid < ask
        assert Decimal(snap["bids"][0][0]) < Decimal(snap["asks"][0][0])
        sizes.append((len(snap["bids"]), len(snap["asks"])))
        spreads.append(ask - bid)
    assert min(min(s) for s in sizes) >= 20 and max(max(s) for s in sizes) <= 800
    assert trades > 1000 and len(prices) > 20  # prices move through trading
    assert sorted(spreads)[len(spreads) // 2] <= 3  # tight most of the time...
    assert max(spreads) > 3  # ...wider in bursts and drains


def test_derived_specs_for_unknown_symbols_are_deterministic_and_valid():
    foo = spec_for("FOOUSDT")
    assert foo == spec_for("foousdt")
    assert (foo.base, foo.quote) == ("FOO", "USDT")
    assert spec_for("BARBTC").quote == "BTC"
    for spec in (foo, spec_for("BARBTC"), spec_for("ZZZ")):
        assert len(spec.tick_size.partition(".")[2]) == 8
        assert to_e8(spec.price) % spec.tick_e8 == 0 and spec.step_e8 > 0
    assert spec_for("BTCUSDT").tick_size == "0.01000000"
    assert spec_for("BTCUSDT").step_size == "0.00001000"


# -- the Binance protocol --------------------------------------------------------------------------


def test_rest_endpoints_have_binance_shapes_that_nautilus_decodes():
    async def test() -> None:
        config = SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT", "FOOUSDT"))
        async with running(config) as base, aiohttp.ClientSession() as s:
            assert await get(s, base + "/api/v3/ping") == (200, {})
            status, body = await get(s, base + "/api/v3/time")
            assert status == 200 and abs(body["serverTime"] - time.time() * 1000) < 5000

            status, body = await get(s, base + '/api/v3/exchangeInfo?symbols=["BTCUSDT","FOOUSDT"]')
            assert status == 200
            info = msgspec.convert(body, BinanceSpotExchangeInfo)
            assert [i.symbol for i in info.symbols] == ["BTCUSDT", "FOOUSDT"]
            btc = {f.filterType.value: f for f in info.symbols[0].filters}
            assert btc["PRICE_FILTER"].tickSize == "0.01000000"
            assert btc["LOT_SIZE"].stepSize == "0.00001000"
            assert btc["NOTIONAL"].minNotional == "5.00000000"
            status, body = await get(s, base + "/api/v3/exchangeInfo")
            assert [i["symbol"] for i in body["symbols"]] == ["BTCUSDT", "ETHUSDT", "FOOUSDT"]
            status, body = await get(s, base + "/api/v3/exchangeInfo?symbol=ETHUSDT")
            assert [i["symbol"] for i in body["symbols"]] == ["ETHUSDT"]

            for bad in (
                "/api/v3/exchangeInfo?symbol=NOPEUSDT",
                '/api/v3/exchangeInfo?symbols=["BTCUSDT","NOPEUSDT"]',
                "/api/v3/depth?symbol=NOPEUSDT",
            ):
                assert await get(s, base + bad) == (400, {"code": -1121, "msg": "Invalid symbol."})
            status, body = await get(s, base + "/api/v3/depth")
            assert status == 400 and body["code"] == -1102

            status, body = await get(s, base + "/api/v3/depth?symbol=BTCUSDT&limit=10")
            depth = msgspec.convert(body, BinanceDepth)
            assert len(depth.bids) == len(depth.asks) == 10
            assert Decimal(depth.bids[0][0]) < Decimal(depth.asks[0][0])
            assert [Decimal(p) for p, _ in depth.bids] == sorted(
                (Decimal(p) for p, _ in depth.bids), reverse=True
            )
            await post(s, base + "/_sim/pause")
            status, body = await get(s, base + "/api/v3/depth?symbol=btcusdt")
            _, full = await get(s, base + "/api/v3/depth?symbol=BTCUSDT&limit=5000")
            assert status == 200 and body["lastUpdateId"] == full["lastUpdateId"]
            assert body["bids"] == full["bids"][:100]  # Binance's default limit
            assert body["asks"] == full["asks"][:100]
            await post(s, base + "/_sim/resume")

            status, body = await get(
                s, base + "/sapi/v1/asset/tradeFee?timestamp=1&signature=anything"
            )
            fees = msgspec.convert(body, list[BinanceSpotTradeFee])
            assert [f.symbol for f in fees] == ["BTCUSDT", "ETHUSDT", "FOOUSDT"]

            status, body = await get(s, base + "/api/v3/ticker/24hr?symbol=ETHUSDT")
            ticker = msgspec.convert(body, BinanceTicker24hr)
            assert ticker.symbol == "ETHUSDT" and Decimal(ticker.volume or "0") > 0
            status, body = await get(s, base + "/api/v3/ticker/24hr")
            assert len(body) == 3

    run(test)


def test_combined_stream_subscribe_ack_and_every_message_kind_decodes():
    decoders = {
        "@depth@100ms": msgspec.json.Decoder(BinanceOrderBookMsg),
        "@trade": msgspec.json.Decoder(BinanceSpotTradeMsg),
        "@aggTrade": msgspec.json.Decoder(BinanceAggregatedTradeMsg),
        "@ticker": msgspec.json.Decoder(BinanceTickerMsg),
        "@bookTicker": msgspec.json.Decoder(BinanceQuoteMsg),
        "@depth5@100ms": msgspec.json.Decoder(BinanceSpotOrderBookPartialDepthMsg),
    }

    async def test() -> None:
        async with (
            running(SimulatorConfig(symbols=("BTCUSDT",), rate=4.0)) as base,
            aiohttp.ClientSession() as s,
            s.ws_connect(ws_url(base, "/stream?streams=btcusdt@depth@100ms")) as ws,
        ):
            streams = [
                "btcusdt@trade",
                "btcusdt@aggTrade",
                "btcusdt@ticker",
                "btcusdt@bookTicker",
                "btcusdt@depth5@100ms",
            ]
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": streams, "id": 7}))
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
            messages = await receive(ws, 2.5)
            replies = [m for m in messages if "stream" not in m]
            assert replies[0] == {"result": None, "id": 7}
            assert replies[1] == {"result": sorted([*streams, "btcusdt@depth@100ms"]), "id": 8}
            by_stream: dict[str, int] = {}
            now = time.time() * 1000
            for m in messages:
                if "stream" not in m:
                    continue
                suffix = "@" + m["stream"].partition("@")[2]
                decoders[suffix].decode(json.dumps(m))  # NT's own schema for the stream
                by_stream[suffix] = by_stream.get(suffix, 0) + 1
                if "E" in m["data"]:
                    assert now - 5000 < m["data"]["E"] < now + 5000  # venue time = now
            assert set(by_stream) == set(decoders), by_stream
            assert by_stream["@depth@100ms"] >= 15  # ten a second

            await ws.send_str(
                json.dumps(
                    {"method": "UNSUBSCRIBE", "params": [*streams, "btcusdt@depth@100ms"], "id": 9}
                )
            )
            while "stream" in (reply := json.loads((await ws.receive(timeout=5)).data)):
                pass  # sent before the request was read
            assert reply == {"result": None, "id": 9}
            late = await receive(ws, 0.5)
            assert [m for m in late if "stream" in m] == []  # nothing after the ack

    run(test)


def test_raw_streams_and_the_1000ms_diffs():
    async def test() -> None:
        async with (
            running(SimulatorConfig(symbols=("ETHUSDT",))) as base,
            aiohttp.ClientSession() as s,
            s.ws_connect(ws_url(base, "/ws/ethusdt@depth/ethusdt@trade")) as ws,
        ):
            messages = await receive(ws, 3.2)
            diffs = [m for m in messages if m.get("e") == "depthUpdate"]
            assert all("stream" not in m for m in messages)  # bare payloads on /ws
            assert 2 <= len(diffs) <= 4
            for before, after in itertools.pairwise(diffs):
                assert after["U"] == before["u"] + 1
            assert any(m.get("e") == "trade" for m in messages)
            await ws.send_str(
                json.dumps({"method": "GET_PROPERTY", "params": ["combined"], "id": 1})
            )
            await ws.send_str("not json")
            replies = [m for m in await receive(ws, 0.5) if "id" in m]
            assert replies[0] == {"result": False, "id": 1}
            assert replies[1]["error"]["code"] == 3

    run(test)


async def _follow_the_procedure(
    s: aiohttp.ClientSession, base: str, ws: aiohttp.ClientWebSocketResponse, symbol: str
) -> tuple[ClientBook, list[dict[str, Any]]]:
    """Buffer diffs, fetch the snapshot, drop what it covers, apply the rest (Binance's way)."""
    buffered = await receive(ws, 0.35)
    _, snapshot = await get(s, f"{base}/api/v3/depth?symbol={symbol}&limit=5000")
    book = ClientBook(snapshot)
    diffs = [m["data"] for m in buffered if "stream" in m]
    for diff in diffs:
        book.apply(diff)
    return book, diffs


def test_a_binance_client_rebuilds_exactly_the_simulators_book():
    async def test() -> None:
        async with (
            running(SimulatorConfig(symbols=("BTCUSDT",), rate=3.0)) as base,
            aiohttp.ClientSession() as s,
            s.ws_connect(ws_url(base, "/stream?streams=btcusdt@depth@100ms")) as ws,
        ):
            book, diffs = await _follow_the_procedure(s, base, ws, "BTCUSDT")
            for m in await receive(ws, 1.5):
                diffs.append(m["data"])
                book.apply(m["data"])  # asserts U == previous u + 1 throughout
                assert book.uncrossed()
            await post(s, base + "/_sim/pause")
            for m in await receive(ws, 0.4):
                book.apply(m["data"])
            _, venue = await get(s, base + "/api/v3/depth?symbol=BTCUSDT&limit=5000")
            assert book.applied >= 10
            assert book.matches(venue)
            assert (await get(s, base + "/_sim/status"))[1]["paused"]
            await post(s, base + "/_sim/resume")
            assert [m for m in await receive(ws, 0.5) if "stream" in m]

    run(test)


def test_drop_injection_makes_exactly_one_gap():
    async def test() -> None:
        streams = "/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms"
        async with (
            running(SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT"))) as base,
            aiohttp.ClientSession() as s,
            s.ws_connect(ws_url(base, streams)) as ws,
        ):
            first = await receive(ws, 0.6)
            assert await post(s, base + "/_sim/drop_diffs?symbol=BTCUSDT&count=1") == {
                "symbol": "BTCUSDT",
                "count": 1,
            }
            rest = await receive(ws, 1.6)
            for symbol, gaps_expected in (("BTCUSDT", 1), ("ETHUSDT", 0)):
                diffs = [m["data"] for m in first + rest if m["data"]["s"] == symbol]
                gaps = [
                    (a["u"], b["U"]) for a, b in itertools.pairwise(diffs) if b["U"] != a["u"] + 1
                ]
                assert len(gaps) == gaps_expected, (symbol, gaps)
                assert all(b > a + 1 for a, b in gaps)  # ids advanced past the lost diff
            status = (await get(s, base + "/_sim/status"))[1]
            assert status["dropped_diffs"] == 2  # the 100 ms diff and the 1000 ms one
            assert (await get(s, base + "/api/v3/depth?symbol=NOPE"))[0] == 400

    run(test)


def test_drop_every_n_diffs_setting():
    async def test() -> None:
        config = SimulatorConfig(symbols=("ETHUSDT",), drop_diff_every=5, diff_interval_ms=50)
        async with (
            running(config) as base,
            aiohttp.ClientSession() as s,
            s.ws_connect(ws_url(base, "/stream?streams=ethusdt@depth@100ms")) as ws,
        ):
            diffs = [m["data"] for m in await receive(ws, 2.5)]
            runs, current = [], 1
            for a, b in itertools.pairwise(diffs):
                if b["U"] == a["u"] + 1:
                    current += 1
                else:
                    runs.append(current)
                    current = 1
            # Four diffs delivered, one dropped, again and again (whole runs only).
            assert len(runs) >= 4 and all(r == 4 for r in runs[1:]), runs

    run(test)


def test_disconnect_endpoint_closes_clients_that_can_reconnect():
    async def test() -> None:
        async with (
            running(SimulatorConfig(symbols=("BTCUSDT",))) as base,
            aiohttp.ClientSession() as s,
        ):
            ws = await s.ws_connect(ws_url(base, "/stream?streams=btcusdt@trade"))
            assert (await post(s, base + "/_sim/disconnect")) == {"closed": 1}
            msg = await ws.receive(timeout=5)
            while msg.type == aiohttp.WSMsgType.TEXT:
                msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1001
            await ws.close()
            async with s.ws_connect(ws_url(base, "/stream?streams=btcusdt@depth@100ms")) as again:
                assert [m for m in await receive(again, 0.5) if "stream" in m]
            await asyncio.sleep(0.1)
            assert (await get(s, base + "/_sim/status"))[1]["connections"] == 0

    run(test)


def test_config_is_validated():
    with pytest.raises(ValueError):
        SimulatorConfig(rate=0)
    with pytest.raises(ValueError):
        SimulatorConfig(symbols=("BTC-USDT",))
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"symbols": ["BTCUSDT"], "colour": "red"}, SimulatorConfig)


# -- captures ----------------------------------------------------------------------------------


def test_capture_reader_and_writer_round_trip(tmp_path: Path, capture_path: Path):
    lines = list(read_capture(capture_path))
    assert isinstance(lines[0], MetaLine) and lines[0].symbols == [
        "BLZETH",
        "LRCBTC",
        "NKNUSDT",
        "RUNEEUR",
    ]
    assert sum(isinstance(line, RestLine) for line in lines) == 5
    ws = [line for line in lines if isinstance(line, WsLine)]
    assert len(ws) == 265 and isinstance(ws[0].body, StreamMessage)

    copy = tmp_path / "copy.jsonl"
    with CaptureWriter(copy) as writer:
        for line in lines:
            writer.write(line)
    assert list(read_capture(copy)) == lines

    made = tmp_path / "made.jsonl"
    with CaptureWriter(made) as writer:
        writer.meta("simulator", "ws://127.0.0.1:1/stream?streams=x@trade", ["X"])
        writer.rest("/api/v3/depth", {"symbol": "X"}, {"lastUpdateId": 1, "bids": [], "asks": []})
        writer.ws("x@trade", {"e": "trade", "t": 1})
    kinds = [type(line) for line in read_capture(made)]
    assert kinds == [MetaLine, RestLine, WsLine]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "meta", "recv_ts": 1, "source": "x"}\n{"type": "nope"}\n')
    with pytest.raises(CaptureError, match=r"bad.jsonl:2"):
        list(read_capture(bad))


def _offline_books(capture: Path) -> dict[str, ClientBook]:
    """The capture's books rebuilt directly from its snapshot and diffs."""
    books: dict[str, ClientBook] = {}
    pending: list[dict[str, Any]] = []
    for line in read_capture(capture):
        if isinstance(line, RestLine) and line.path == "/api/v3/depth":
            books[line.params["symbol"]] = ClientBook(line.body)
        elif isinstance(line, WsLine) and "@depth" in line.body.stream:
            assert isinstance(line.body.data, dict)
            pending.append(line.body.data)
    for diff in pending:
        books[diff["s"]].apply(diff)
    return books


def test_capture_replay_rebuilds_the_recorded_books(capture_path: Path):
    symbols = ("NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR")
    offline = _offline_books(capture_path)
    streams = "/".join(f"{s.lower()}@depth@100ms" for s in symbols)

    async def test() -> None:
        config = SimulatorConfig(capture=str(capture_path), speed=0)
        async with running(config) as base, aiohttp.ClientSession() as s:
            _, body = await get(s, base + "/api/v3/exchangeInfo")
            info = msgspec.convert(body, BinanceSpotExchangeInfo)  # 2021 entries, made decodable
            assert sorted(i.symbol for i in info.symbols) == sorted(symbols)
            nkn = next(i for i in info.symbols if i.symbol == "NKNUSDT")
            assert {f.filterType.value for f in nkn.filters} >= {"PRICE_FILTER", "LOT_SIZE"}
            assert (await get(s, base + "/api/v3/depth?symbol=BTCUSDT"))[0] == 400

            # Hold the clock so the first snapshots are the recorded ones, then let it run.
            await post(s, base + "/_sim/pause")
            extra = "/nknusdt@trade/nknusdt@aggTrade/nknusdt@bookTicker/lrcbtc@kline_1m"
            async with s.ws_connect(ws_url(base, f"/stream?streams={streams}{extra}")) as ws:
                books = {}
                for symbol in symbols:
                    _, snap = await get(s, f"{base}/api/v3/depth?symbol={symbol}&limit=5000")
                    books[symbol] = ClientBook(snap)
                await post(s, base + "/_sim/resume")
                messages = await receive(ws, 2.0)
            now = time.time() * 1000
            kinds: dict[str, int] = {}
            for m in messages:
                stream, data = m["stream"], m["data"]
                kinds[stream.partition("@")[2]] = kinds.get(stream.partition("@")[2], 0) + 1
                if "E" in data:
                    assert now - 5000 < data["E"] <= now  # recorded times moved to now
                if stream.endswith("@depth@100ms"):
                    books[data["s"]].apply(data)
            diffs_after_snapshots = sum(book.applied for book in offline.values())
            assert kinds == {
                "depth@100ms": diffs_after_snapshots,
                "trade": 1,
                "aggTrade": 1,
                "bookTicker": 74,
                "kline_1m": 1,
            }
            trade = next(m["data"] for m in messages if m["stream"] == "nknusdt@trade")
            agg = next(m["data"] for m in messages if m["stream"] == "nknusdt@aggTrade")
            assert (trade["e"], trade["t"], trade["p"]) == ("trade", agg["a"], agg["p"])
            for symbol in symbols:
                _, venue = await get(s, f"{base}/api/v3/depth?symbol={symbol}&limit=5000")
                assert books[symbol].matches(venue), symbol
                assert books[symbol].bids == offline[symbol].bids, symbol
                assert books[symbol].asks == offline[symbol].asks, symbol
                assert books[symbol].uncrossed()
                assert books[symbol].last_u == offline[symbol].last_u

    run(test)


def test_capture_replay_loops_with_ids_continuing(capture_path: Path):
    async def test() -> None:
        config = SimulatorConfig(capture=str(capture_path), speed=0, loop=True)
        async with running(config) as base, aiohttp.ClientSession() as s:
            await post(s, base + "/_sim/pause")
            url = ws_url(base, "/stream?streams=nknusdt@depth@100ms/nknusdt@aggTrade")
            async with s.ws_connect(url) as ws:
                _, snap = await get(s, base + "/api/v3/depth?symbol=NKNUSDT&limit=5000")
                book = ClientBook(snap)
                first_u = snap["lastUpdateId"]
                await post(s, base + "/_sim/resume")
                agg_ids = []
                deadline = time.monotonic() + 20
                while book.applied < 500 and time.monotonic() < deadline:
                    for m in await receive(ws, 0.05):
                        if m["stream"].endswith("@aggTrade"):
                            agg_ids.append(m["data"]["a"])
                        else:
                            book.apply(m["data"])  # continuity across the loop boundaries
                await post(s, base + "/_sim/pause")
                for m in await receive(ws, 0.3):
                    if m["stream"].endswith("@depth@100ms"):
                        book.apply(m["data"])
                _, venue = await get(s, base + "/api/v3/depth?symbol=NKNUSDT&limit=5000")
            assert book.applied >= 500  # three passes and more (150 diffs each)
            assert book.last_u > first_u + 3 * (499870179 - 499869752)
            assert book.matches(venue)
            assert len(agg_ids) >= 3 and agg_ids == sorted(set(agg_ids))

    run(test)


def test_capture_replay_keeps_the_recorded_pace(capture_path: Path):
    async def test() -> None:
        config = SimulatorConfig(capture=str(capture_path), speed=20)
        async with (
            running(config) as base,
            aiohttp.ClientSession() as s,
            s.ws_connect(ws_url(base, "/stream?streams=nknusdt@depth@100ms")) as ws,
        ):
            stamps = []
            deadline = time.monotonic() + 6
            while len(stamps) < 149 and time.monotonic() < deadline:
                for _ in await receive(ws, 0.05):
                    stamps.append(time.monotonic())
            # 29.5 s recorded, at 20x: about 1.5 s (from the first sent diff on).
            assert len(stamps) == 149  # all but the one the snapshot covers
            assert 1.0 < stamps[-1] - stamps[0] < 2.5

    run(test)


def test_replay_of_a_recorded_simulator_capture(tmp_path: Path):
    """A capture with @trade and @ticker (as `record` writes from the simulator), no
    exchangeInfo: the entry is synthesized, ids and times are rewritten consistently."""
    model = MarketModel(spec_for("FOOUSDT"), seed=2, rate=3.0)
    path = tmp_path / "sim.jsonl"
    t0 = time.time() - 100
    with CaptureWriter(path) as writer:
        writer.meta("simulator", "ws://127.0.0.1:1/stream?streams=foousdt@trade", ["FOOUSDT"])
        writer.rest(
            "/api/v3/depth", {"symbol": "FOOUSDT", "limit": 1000}, model.snapshot(1000), recv_ts=t0
        )
        for step in range(1, 51):
            for kind, data in model.advance(step * 100.0, int((t0 + step / 10) * 1000)):
                stream = {"depth": "depth@100ms"}.get(kind, kind)
                if kind != "depth1s":
                    writer.ws(f"foousdt@{stream}", data, recv_ts=t0 + step / 10)
    offline = model.snapshot(5000)

    async def test() -> None:
        config = SimulatorConfig(capture=str(path), speed=0)
        async with running(config) as base, aiohttp.ClientSession() as s:
            _, body = await get(s, base + "/api/v3/exchangeInfo")
            info = msgspec.convert(body, BinanceSpotExchangeInfo)
            assert [i.symbol for i in info.symbols] == ["FOOUSDT"]
            await post(s, base + "/_sim/pause")
            url = ws_url(base, "/stream?streams=foousdt@depth@100ms/foousdt@trade/foousdt@ticker")
            async with s.ws_connect(url) as ws:
                _, snap = await get(s, base + "/api/v3/depth?symbol=FOOUSDT&limit=5000")
                book = ClientBook(snap)
                await post(s, base + "/_sim/resume")
                messages = await receive(ws, 1.5)
            trades = [m["data"] for m in messages if m["stream"] == "foousdt@trade"]
            tickers = [m["data"] for m in messages if m["stream"] == "foousdt@ticker"]
            for m in messages:
                if m["stream"] == "foousdt@depth@100ms":
                    book.apply(m["data"])
            assert book.matches(offline) and book.applied >= 40
            assert len(tickers) == 5 and trades
            now = time.time() * 1000
            assert all(now - 5000 < t["T"] <= t["E"] <= now for t in trades)
            assert [t["t"] for t in trades] == sorted({t["t"] for t in trades})
            status, rest = await get(s, base + "/api/v3/ticker/24hr?symbol=FOOUSDT")
            assert status == 200 and rest["lastId"] == tickers[-1]["L"]
            msgspec.convert(rest, BinanceTicker24hr)

    run(test)
