"""The local exchange: enough of Binance Spot's public REST and websocket API, on loopback, for
NautilusTrader's own Binance data client (and any Binance client) to run against unchanged.

Start it with `await serve(SimulatorConfig(...), ready=callback)`; `ready` gets the base URL
(`http://127.0.0.1:PORT`). Point NT at it with `base_url_http=<base>` and
`base_url_ws=<base with ws://>`.

Market: one clock per symbol shared by every connection. Either the order-flow model
(orderflow.py; deterministic for a seed, `rate` scales its intensity, diffs every
`diff_interval_ms`) or, with `capture`, a recorded capture replayed at `speed` (replay.py).

REST (errors are Binance's: HTTP 400 `{"code": -1121, "msg": "Invalid symbol."}` etc.):
- `GET /api/v3/ping`, `GET /api/v3/time`
- `GET /api/v3/exchangeInfo[?symbol=X | ?symbols=["X","Y"]]` (none = every symbol served)
- `GET /api/v3/depth?symbol=X[&limit=N]` (default 100, at most 5000): `lastUpdateId` is the
  `u` of the last diff generated, so the documented snapshot + diff procedure is exact
- `GET /api/v3/ticker/24hr[?symbol=X | ?symbols=[...]]`
- `GET /sapi/v1/asset/tradeFee[?symbol=X]` (any key and signature accepted)

Websocket, text frames as Binance sends them:
- `/stream?streams=a/b/c` (combined: `{"stream": name, "data": payload}`), `/ws/<a>/<b>` and
  `/ws` (bare payloads); `{"method": "SUBSCRIBE" | "UNSUBSCRIBE", "params": [...], "id": N}`
  answered `{"result": null, "id": N}`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`/`GET_PROPERTY`
  `combined`;
- streams per symbol `s` (lower case): `s@depth@100ms` (diffs each diff interval), `s@depth`
  and `s@depth@1000ms` (diffs each second), `s@depth5|10|20[@100ms|@1000ms]` (partial book),
  `s@trade`, `s@aggTrade`, `s@ticker` (24hrTicker each second), `s@bookTicker` (at most once
  per diff interval, when the top of book changed). Unknown streams are accepted and silent.

Fault injection (for tests of the ingest path):
- `SimulatorConfig.drop_diff_every = N`: every N-th diff of each symbol and depth stream is
  not sent (its update ids are still used, so clients see a `U`/`u` gap);
- `POST /_sim/drop_diffs?symbol=X&count=K`: the next K diffs of X on each depth stream are not
  sent, likewise;
- `POST /_sim/disconnect`: close every websocket (code 1001); clients should reconnect,
  resubscribe and fetch a new snapshot;
- `POST /_sim/pause`, `POST /_sim/resume`: stop and restart the market clock (nothing is
  generated or sent meanwhile; the model resumes where it stopped), so a test can compare a
  client's book with the venue's at a known update id;
- `GET /_sim/status`: symbols, connections, subscriptions and the count of dropped diffs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
from aiohttp import WSMsgType, web

from ingest.simulator.hub import Connection, Hub
from ingest.simulator.instruments import exchange_info, trade_fees
from ingest.simulator.market import ModelVenue, Venue
from ingest.simulator.replay import ReplayVenue

__all__ = ["SimulatorConfig", "serve"]

_MAX_DEPTH: Final = 5000
_encoder = msgspec.json.Encoder()

# 24hrTicker websocket field -> REST field.
_TICKER_REST: Final = {
    "s": "symbol",
    "p": "priceChange",
    "P": "priceChangePercent",
    "w": "weightedAvgPrice",
    "x": "prevClosePrice",
    "c": "lastPrice",
    "Q": "lastQty",
    "b": "bidPrice",
    "B": "bidQty",
    "a": "askPrice",
    "A": "askQty",
    "o": "openPrice",
    "h": "highPrice",
    "l": "lowPrice",
    "v": "volume",
    "q": "quoteVolume",
    "O": "openTime",
    "C": "closeTime",
    "F": "firstId",
    "L": "lastId",
    "n": "count",
}


class SimulatorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 0
    """0 = a free port."""
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")
    """Symbols of the order-flow model (a capture serves its own symbols instead)."""
    seed: int = 7
    capture: str | None = None
    """Replay this capture file instead of running the model."""
    speed: float = 1.0
    """Capture replay speed: 1 = as recorded, 0 = as fast as clients drain it."""
    loop: bool = False
    """Start the capture over when it ends."""
    rate: float = 1.0
    """Multiplier of the model's order-flow intensity (benchmarks)."""
    diff_interval_ms: int = 100
    """Model diff cadence of `@depth@100ms` (the name stays; lower it for benchmarks)."""
    drop_diff_every: int = 0
    """Fault injection: drop every N-th depth diff per symbol and stream (0 = never)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be within 0..65535")
        if not self.symbols or not all(s.isalnum() for s in self.symbols):
            raise ValueError("symbols must be a non-empty list of alphanumeric symbols")
        if self.speed < 0 or self.rate <= 0:
            raise ValueError("speed must be >= 0 and rate > 0")
        if self.diff_interval_ms < 1 or self.drop_diff_every < 0:
            raise ValueError("diff_interval_ms must be >= 1 and drop_diff_every >= 0")


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(obj), status=status, content_type="application/json")


def _error(code: int, msg: str) -> web.Response:
    return _json({"code": code, "msg": msg}, status=400)


_INVALID_SYMBOL: Final = (-1121, "Invalid symbol.")


def _requested(request: web.Request, venue: Venue) -> list[str] | web.Response:
    """The symbols a request names (`symbol=` or a JSON `symbols=`), all if none."""
    if "symbol" in request.query:
        symbols = [request.query["symbol"]]
    elif "symbols" in request.query:
        try:
            symbols = json.loads(request.query["symbols"])
        except ValueError:
            symbols = None
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            return _error(-1100, "Illegal characters found in parameter 'symbols'.")
    else:
        return list(venue.symbols)
    symbols = [s.upper() for s in symbols]
    if not symbols or any(s not in venue.symbols for s in symbols):
        return _error(*_INVALID_SYMBOL)
    return symbols


def _stream_name(name: str) -> str:
    """Binance's form: symbol lower case, the rest as given (`btcusdt@aggTrade`)."""
    symbol, at, rest = name.partition("@")
    return symbol.lower() + at + rest


def _control(hub: Hub, conn: Connection, text: str) -> dict[str, Any]:
    """Answer one client request frame."""
    try:
        msg = json.loads(text)
    except ValueError:
        return {"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}
    if not isinstance(msg, dict):
        return {"error": {"code": 2, "msg": "Invalid request"}, "id": None}
    method, params, req_id = msg.get("method"), msg.get("params", []), msg.get("id")
    if not isinstance(params, list):
        return {"error": {"code": 2, "msg": "Invalid request: params"}, "id": req_id}
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not all(isinstance(p, str) for p in params):
            return {"error": {"code": 2, "msg": "Invalid request: stream names"}, "id": req_id}
        streams = [_stream_name(p) for p in params]
        if method == "SUBSCRIBE":
            hub.subscribe(conn, streams)
        else:
            hub.unsubscribe(conn, streams)
        return {"result": None, "id": req_id}
    if method == "LIST_SUBSCRIPTIONS":
        return {"result": sorted(conn.streams), "id": req_id}
    if method == "SET_PROPERTY" and len(params) == 2 and params[0] == "combined":
        conn.combined = bool(params[1])
        return {"result": None, "id": req_id}
    if method == "GET_PROPERTY" and params == ["combined"]:
        return {"result": conn.combined, "id": req_id}
    return {"error": {"code": 2, "msg": f"Invalid request: method {method!r}"}, "id": req_id}


def _app(venue: Venue, hub: Hub) -> web.Application:
    async def ping(_: web.Request) -> web.Response:
        return _json({})

    async def server_time(_: web.Request) -> web.Response:
        return _json({"serverTime": int(time.time() * 1000)})

    async def get_exchange_info(request: web.Request) -> web.Response:
        symbols = _requested(request, venue)
        if isinstance(symbols, web.Response):
            return symbols
        infos = [venue.symbol_info(s) for s in symbols]
        return _json(exchange_info(infos, int(time.time() * 1000)))

    async def depth(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "").upper()
        if not symbol:
            return _error(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        if symbol not in venue.symbols:
            return _error(*_INVALID_SYMBOL)
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _error(-1100, "Illegal characters found in parameter 'limit'.")
        return _json(venue.depth(symbol, max(1, min(limit, _MAX_DEPTH))))

    async def ticker_24hr(request: web.Request) -> web.Response:
        symbols = _requested(request, venue)
        if isinstance(symbols, web.Response):
            return symbols
        now = int(time.time() * 1000)
        tickers = []
        for s in symbols:
            data = venue.ticker_24hr(s, now)
            if data is not None:
                tickers.append({rest: data.get(ws) for ws, rest in _TICKER_REST.items()})
        if "symbol" in request.query:
            if not tickers:
                return _error(-1100, "No 24hr ticker data for this symbol.")
            return _json(tickers[0])
        return _json(tickers)

    async def trade_fee(request: web.Request) -> web.Response:
        symbols = _requested(request, venue)
        if isinstance(symbols, web.Response):
            return symbols
        return _json(trade_fees(symbols))

    async def drop_diffs(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "").upper()
        if symbol not in venue.symbols:
            return _error(*_INVALID_SYMBOL)
        try:
            count = int(request.query.get("count", "1"))
        except ValueError:
            return _error(-1100, "Illegal characters found in parameter 'count'.")
        hub.drop_next_diffs(symbol, count)
        return _json({"symbol": symbol, "count": count})

    async def disconnect(_: web.Request) -> web.Response:
        return _json({"closed": await hub.disconnect_all()})

    async def pause(_: web.Request) -> web.Response:
        hub.running.clear()
        return _json({"paused": True})

    async def resume(_: web.Request) -> web.Response:
        hub.running.set()
        return _json({"paused": False})

    async def status(_: web.Request) -> web.Response:
        return _json(hub.status() | {"symbols": list(venue.symbols)})

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        # A short close timeout: /_sim/disconnect must not hang on a client that never answers.
        ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20, timeout=2.0)
        await ws.prepare(request)
        if request.path == "/stream":
            combined = True
            names = request.query.get("streams", "")
        else:
            combined = False
            names = request.match_info.get("streams", "")
        conn = Connection(ws, combined=combined)
        hub.attach(conn)
        hub.subscribe(conn, [_stream_name(n) for n in names.split("/") if n])
        sender = asyncio.create_task(conn.pump())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    conn.push(_encoder.encode(_control(hub, conn, msg.data)))
        finally:
            hub.detach(conn)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await ws.close()
        return ws

    app = web.Application()
    app.add_routes(
        [
            web.get("/api/v3/ping", ping),
            web.get("/api/v3/time", server_time),
            web.get("/api/v3/exchangeInfo", get_exchange_info),
            web.get("/api/v3/depth", depth),
            web.get("/api/v3/ticker/24hr", ticker_24hr),
            web.get("/sapi/v1/asset/tradeFee", trade_fee),
            web.post("/_sim/drop_diffs", drop_diffs),
            web.post("/_sim/disconnect", disconnect),
            web.post("/_sim/pause", pause),
            web.post("/_sim/resume", resume),
            web.get("/_sim/status", status),
            web.get("/stream", websocket),
            web.get("/ws", websocket),
            web.get("/ws/{streams:.+}", websocket),
        ]
    )
    return app


async def serve(config: SimulatorConfig, *, ready: Callable[[str], None] | None = None) -> None:
    """Run the simulator until cancelled; `ready(base_url)` is called once it listens."""
    venue: Venue
    if config.capture is not None:
        venue = ReplayVenue(config.capture, speed=config.speed, loop=config.loop)
    else:
        venue = ModelVenue(
            tuple(s.upper() for s in config.symbols),
            seed=config.seed,
            rate=config.rate,
            diff_interval_ms=config.diff_interval_ms,
        )
    hub = Hub(drop_diff_every=config.drop_diff_every)
    runner = web.AppRunner(_app(venue, hub), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    market: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        market = asyncio.create_task(venue.run(hub), name="simulator-market")
        if ready is not None:
            ready(f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}")
        await market  # a replay without `loop` ends here; REST keeps answering
        await asyncio.Event().wait()
    finally:
        if market is not None:
            market.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await market
        await hub.disconnect_all()
        await runner.cleanup()
