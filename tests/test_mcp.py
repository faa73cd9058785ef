"""The MCP server end to end: real Redis, real server processes, the SDK's own clients.

The servers read through the Redis ACL user of ``core.acl`` (it may only read report
keys), so any write they attempted would fail the tests. Reports, heavy sections, history
points and candles are written as the processors write them (same keys, same models).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

import anyio
import jsonschema
import msgspec
import pytest
import redis
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult
from mcp_types.version import LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION

from context8.procs import free_port, stop_process
from context8.redis_server import PrivateRedis
from context8_mcp.store import ReportStore, wall_ms
from core import keys
from core.acl import READER, create_reader, url_with_user
from projections.report import BookLevel, Report, Writer, json_schema
from projections.series import CANDLE_INTERVALS, Candle, Heavy, HistoryPoint
from tests.reports import validate_report
from tests.test_mcp_units import make_report

T = TypeVar("T")
ERROR_META_KEY = "context8/error"
TOOLS = {"get_report", "list_symbols", "get_depth", "get_history", "get_candles"}
HEAVY_LEVELS = 200
HISTORY_SECONDS = 300
MODES = {"auto": LATEST_MODERN_VERSION, "legacy": LATEST_HANDSHAKE_VERSION}


def arun(fn: Callable[..., Awaitable[T]], *args: Any, timeout_s: float = 15) -> T:
    async def bounded() -> T:
        with anyio.fail_after(timeout_s):
            return await fn(*args)

    return anyio.run(bounded)


# -- fixtures written the way the processors write them ------------------------------------


def make_heavy(report: Report, levels: int = HEAVY_LEVELS, asks: int = HEAVY_LEVELS) -> Heavy:
    """A full-depth section: ``levels`` bids and ``asks`` asks, 1 cent apart."""
    bid, ask = report.best_bid, report.best_ask
    assert bid is not None and ask is not None
    return Heavy(
        symbol=report.symbol,
        writer=Writer(nodeId="node-a", writerToken=7),
        updatedAt=report.updatedAt,
        last_event_ts_ms=report.stream.last_event_ts_ms,
        levels=levels,
        bids=[BookLevel(price=round(bid.price - i / 100, 2), qty=1.0 + i) for i in range(levels)],
        asks=[BookLevel(price=round(ask.price + i / 100, 2), qty=1.0 + i) for i in range(asks)],
    )


def make_history(last_ts_ms: int, seconds: int = HISTORY_SECONDS) -> list[HistoryPoint]:
    """One point per second up to ``last_ts_ms``, oldest first."""
    return [
        HistoryPoint(
            ts_ms=last_ts_ms - (seconds - 1 - i) * 1000,
            mid_price=95_000.0 + i,
            spread_bps=0.5,
            imbalance=0.1,
            net_flow=float(i % 7 - 3),
            last_price=95_000.0 + i,
            health=80.0 + i % 10,
        )
        for i in range(seconds)
    ]


def make_candles(interval: str, last_open_ms: int, count: int) -> list[Candle]:
    """``count`` bars ending with the open one at ``last_open_ms``, oldest first."""
    length = CANDLE_INTERVALS[interval]
    bars = []
    for i in range(count):
        open_ms = last_open_ms - (count - 1 - i) * length
        price = 95_000.0 + i
        bars.append(
            Candle(
                open_ms=open_ms,
                close_ms=open_ms + length,
                open=price,
                high=price + 5,
                low=price - 5,
                close=price + 1,
                volume=2.0,
                quote_volume=2.0 * (price + 0.5),
                trades=10,
                vwap=price + 0.5,
                buy_volume=1.2,
                sell_volume=0.8,
                closed=i < count - 1,
            )
        )
    return bars


def publish(url: str, *reports: Report, index_only: tuple[str, ...] = ()) -> None:
    """SET ``report:{SYM}`` and ZADD the index, as the projection writer does."""
    with redis.Redis.from_url(url) as client:
        for report in reports:
            client.set(keys.report_key(report.symbol), msgspec.json.encode(report), px=300_000)
            client.zadd(keys.INDEX_KEY, {report.symbol: report.updatedAt})
        for symbol in index_only:  # indexed, but the report key has expired
            client.zadd(keys.INDEX_KEY, {symbol: wall_ms() - 400_000})


def publish_series(
    url: str,
    report: Report,
    *,
    heavy: Heavy | None = None,
    history: list[HistoryPoint] | None = None,
    candles: dict[str, list[Candle]] | None = None,
) -> None:
    """The projections beside the report (projections/series.py): the heavy section with the
    report's TTL, one zset member per history point (score ts_ms) and per bar (open_ms)."""
    symbol = report.symbol
    with redis.Redis.from_url(url) as client:
        if heavy is not None:
            client.set(keys.heavy_key(symbol), msgspec.json.encode(heavy), px=300_000)
        if history:
            client.zadd(
                keys.history_key(symbol), {msgspec.json.encode(p): p.ts_ms for p in history}
            )
        for interval, bars in (candles or {}).items():
            client.zadd(
                keys.candles_key(symbol, interval),
                {msgspec.json.encode(bar): bar.open_ms for bar in bars},
            )


def publish_market(url: str) -> None:
    """BTC fresh with every projection, ETH stale with its report only, SOL expired."""
    now = wall_ms()
    btc = make_report("BTCUSDT.BINANCE", now_ms=now, age_ms=50)
    last = btc.stream.last_event_ts_ms
    publish(url, btc, make_report("ETHUSDT.BINANCE", now_ms=now - 5000, age_ms=0),
            index_only=("SOLUSDT.BINANCE",))  # fmt: skip
    publish_series(
        url,
        btc,
        heavy=make_heavy(btc, asks=150),
        history=make_history(last),
        candles={"1m": make_candles("1m", last - last % 60_000, 30)},
    )


# -- servers ---------------------------------------------------------------------------------


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    status, _headers, body = http_request(url, headers=headers)
    return status, json.loads(body)


def http_request(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Message, bytes]:
    """Status, headers (case-insensitive) and body."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@contextlib.contextmanager
def http_server(redis_url: str, log_path: Path, **env: str) -> Iterator[str]:
    """``context8 mcp --transport http`` on a free port, until /health answers.
    ``env``: ``CONTEXT8_MCP_*`` settings (the rate limit is off unless given)."""
    port = free_port()
    args = [sys.executable, "-m", "context8", "mcp", "--transport", "http", "--port", str(port)]
    environ = {"PATH": os.environ.get("PATH", ""), "CONTEXT8_MCP_REDIS_URL": redis_url,
               "CONTEXT8_MCP_RATE": "0", **env}  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environ
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"MCP server exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                http_request(f"{base}/health")
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"MCP server not up: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield base
    finally:
        stop_process(process, 5)


def stdio_params(redis_url: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "context8", "mcp", "--transport", "stdio"],
        env={"PYTHONUNBUFFERED": "1", "CONTEXT8_MCP_REDIS_URL": redis_url},
    )


@pytest.fixture(scope="module")
def reader_url(redis_server: str) -> Iterator[str]:
    """The session's Redis as the MCP reader user (``core.acl.create_reader``)."""
    with redis.Redis.from_url(redis_server) as admin:
        password = create_reader(admin)
        try:
            yield url_with_user(redis_server, READER, password)
        finally:
            admin.acl_deluser(READER)


@pytest.fixture(scope="module")
def server(reader_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("mcp") / "server.log"
    with http_server(reader_url, log) as base:
        yield base


def tool_error(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error
    assert result.structured_content is None
    info = (result.meta or {})[ERROR_META_KEY]
    assert result.content[0].text.startswith(f"{info['code']}: ")
    return info


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful answer, checked against its JSON text block."""
    assert not result.is_error, result.content[0].text
    summary, body = (block.text for block in result.content)
    assert summary and json.loads(body) == result.structured_content
    return result.structured_content


# -- tests -----------------------------------------------------------------------------------


def test_tools_publish_input_and_output_schemas(server: str) -> None:
    async def listed() -> Any:
        async with Client(f"{server}/mcp") as client:
            return (await client.list_tools()).tools

    tools = {tool.name: tool for tool in arun(listed)}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.annotations is not None and tool.annotations.read_only_hint
        description = tool.description or ""
        assert "data_age_ms" in description and "backend_unavailable" in description, name
        if name != "list_symbols":
            symbol = tool.input_schema["properties"]["symbol"]
            assert symbol["type"] == "string" and "pattern" in symbol
            assert tool.input_schema["required"] == ["symbol"]
    assert (
        tools["get_report"].output_schema["required"]
        == json_schema()["$defs"]["Report"]["required"]
    )
    levels = tools["get_depth"].input_schema["properties"]["levels"]
    assert (levels["minimum"], levels["maximum"], levels["default"]) == (1, 1000, 50)
    interval = tools["get_candles"].input_schema["properties"]["interval"]
    assert interval["enum"] == ["1s", "1m", "5m"]
    assert tools["get_history"].input_schema["properties"]["minutes"]["minimum"] == 1


async def exercise(client: Client, redis_url: str) -> None:
    """Every tool, resource and error on one connection (the data is published once the
    client is connected: a stdio server takes longer to start than data stays "ok")."""
    publish_market(redis_url)
    call = client.call_tool

    rows = {r["symbol"]: r for r in ok(await call("list_symbols", {}))["symbols"]}
    assert list(rows) == ["BTCUSDT.BINANCE", "ETHUSDT.BINANCE", "SOLUSDT.BINANCE"]
    assert [r["status"] for r in rows.values()] == ["ok", "down", "down"]
    assert rows["BTCUSDT.BINANCE"]["health_score"] == 87
    assert rows["SOLUSDT.BINANCE"]["data_age_ms"] is None

    report = validate_report(ok(await call("get_report", {"symbol": "btcusdt"})))
    assert report["symbol"] == "BTCUSDT.BINANCE" and report["ingestion"]["status"] == "ok"
    assert 50 <= report["data_age_ms"] < 1000
    stale = await call("get_report", {"symbol": "ETHUSDT.BINANCE"})
    assert validate_report(ok(stale))["ingestion"]["status"] == "down"
    assert "ms old at read time" in stale.structured_content["ingestion"]["reason"]
    assert "status down" in stale.content[0].text

    depth = ok(await call("get_depth", {"symbol": "BTCUSDT", "levels": 5}))
    assert (len(depth["bids"]), len(depth["asks"]), depth["complete"]) == (5, 5, True)
    assert depth["bids"][0]["price"] > depth["bids"][1]["price"]
    assert depth["freshness"]["status"] == "ok" and depth["note"] == ""
    deep = await call("get_depth", {"symbol": "BTCUSDT", "levels": 1000})
    depth = ok(deep)
    assert (len(depth["bids"]), len(depth["asks"]), depth["complete"]) == (200, 150, False)
    assert depth["levels_published"] == HEAVY_LEVELS
    assert "at most 200 are published" in depth["note"] and "150 asks" in depth["note"]
    assert "at most 200 are published" in deep.content[0].text
    assert tool_error(await call("get_depth", {"symbol": "ETHUSDT"}))["code"] == "not_published"

    history = ok(await call("get_history", {"symbol": "BTCUSDT", "minutes": 2}))
    assert history["points_in_window"] == 121 and history["every"] == 1
    assert len(history["points"]) == 121 and history["note"] == ""
    times = [p["ts_ms"] for p in history["points"]]
    assert times == sorted(times) and times[-1] - times[0] == 120_000
    thinned = ok(await call("get_history", {"symbol": "BTCUSDT", "minutes": 60, "max_points": 50}))
    assert thinned["points_in_window"] == HISTORY_SECONDS and thinned["every"] == 6
    assert len(thinned["points"]) == 50
    assert thinned["points"][-1]["ts_ms"] == times[-1]  # the newest point is kept
    assert "the series begins 299 s before its end" in thinned["note"]
    empty = ok(await call("get_history", {"symbol": "ETHUSDT"}))
    assert empty["points"] == [] and empty["freshness"]["status"] == "down"
    assert "no history is published" in empty["note"]

    candles = ok(await call("get_candles", {"symbol": "BTCUSDT", "interval": "1m", "limit": 5}))
    bars = candles["candles"]
    assert len(bars) == 5 and [b["closed"] for b in bars] == [True] * 4 + [False]
    assert all(b["close_ms"] - b["open_ms"] == 60_000 for b in bars)
    assert bars[0]["open_ms"] < bars[-1]["open_ms"] and candles["note"] == ""
    more = ok(await call("get_candles", {"symbol": "BTCUSDT", "limit": 100}))
    assert len(more["candles"]) == 30 and "100 bars; 30 are published" in more["note"]
    none = ok(await call("get_candles", {"symbol": "BTCUSDT", "interval": "5m"}))
    assert none["candles"] == [] and "no 5m candles" in none["note"]

    per_symbol = [
        ("get_report", {}),
        ("get_depth", {"levels": 3}),
        ("get_history", {"minutes": 1}),
        ("get_candles", {"interval": "1s"}),
    ]
    for tool, extra in per_symbol:
        info = tool_error(await call(tool, {"symbol": "XRPUSDT", **extra}))
        assert info["code"] == "symbol_not_indexed", tool
        assert info["available"] == list(rows)
        assert tool_error(await call(tool, {"symbol": "SOLUSDT", **extra}))["code"] == (
            "report_expired"
        )
        for bad in ({"symbol": "BTC-USDT"}, {"symbol": 42}, {}):
            info = tool_error(await call(tool, {**extra, **bad}))
            assert info["code"] == "invalid_input", (tool, bad)
    out_of_bounds = [
        ("get_depth", {"levels": 0}),
        ("get_depth", {"levels": 1001}),
        ("get_history", {"minutes": 0}),
        ("get_history", {"max_points": 1}),
        ("get_candles", {"interval": "2m"}),
        ("get_candles", {"limit": 0}),
    ]
    for tool, bad in out_of_bounds:
        info = tool_error(await call(tool, {"symbol": "BTCUSDT", **bad}))
        assert info["code"] == "invalid_input" and next(iter(bad)) in info["message"], bad

    templates = (await client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["context8://report/{symbol}"]
    listed = (await client.list_resources()).resources
    assert [str(r.uri) for r in listed] == [f"context8://report/{s}" for s in rows]
    read = await client.read_resource("context8://report/BTCUSDT")
    assert read.contents[0].mime_type == "application/json"
    assert validate_report(json.loads(read.contents[0].text))["symbol"] == "BTCUSDT.BINANCE"
    with pytest.raises(MCPError) as missing:
        await client.read_resource("context8://report/XRPUSDT")
    assert missing.value.code == -32002 and missing.value.data["code"] == "symbol_not_indexed"
    with pytest.raises(MCPError) as bad:
        await client.read_resource("context8://report/BTC-USDT")
    assert bad.value.data["code"] == "invalid_input"


@pytest.mark.parametrize("mode", list(MODES))
def test_every_tool_and_error_over_streamable_http(server: str, redis_url: str, mode: str) -> None:
    async def session() -> None:
        async with Client(f"{server}/mcp", mode=mode) as client:
            assert client.protocol_version == MODES[mode]
            await exercise(client, redis_url)

    arun(session, timeout_s=30)


@pytest.mark.parametrize("mode", list(MODES))
def test_every_tool_and_error_over_stdio(reader_url: str, redis_url: str, mode: str) -> None:
    async def session() -> None:
        async with Client(stdio_params(reader_url), mode=mode) as client:
            assert client.protocol_version == MODES[mode]
            await exercise(client, redis_url)

    arun(session, timeout_s=40)


def test_plain_http_routes_match_their_openapi_description(server: str, redis_url: str) -> None:
    from openapi_spec_validator import validate

    publish(redis_url, make_report("BTCUSDT.BINANCE", now_ms=wall_ms()))
    status, document = http_get(f"{server}/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.1")
    validate(document)  # the OpenAPI 3.1 meta-schema, refs resolved

    def check(path: str, query: str, expected: int) -> dict[str, Any]:
        status, body = http_get(f"{server}{path}{query}")
        assert status == expected, (path, query, body)
        responses = document["paths"][path]["get"]["responses"]
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(
            body
        )
        return body

    assert check("/health", "", 200)["ok"] is True
    assert validate_report(check("/get_report", "?symbol=BTCUSDT", 200))["symbol"] == (
        "BTCUSDT.BINANCE"
    )
    missing = check("/get_report", "?symbol=XRPUSDT", 404)["error"]
    assert missing["code"] == "symbol_not_indexed" and missing["available"] == ["BTCUSDT.BINANCE"]
    for query in ("?symbol=BTC-USDT", ""):
        assert check("/get_report", query, 400)["error"]["code"] == "invalid_input"
    assert [s["symbol"] for s in check("/list_symbols", "", 200)["symbols"]] == ["BTCUSDT.BINANCE"]
    # Every route served is described, and nothing else.
    assert set(document["paths"]) == {"/health", "/get_report", "/list_symbols"}


def test_the_reader_user_cannot_write(reader_url: str, redis_url: str) -> None:
    publish_market(redis_url)
    with redis.Redis.from_url(reader_url, socket_timeout=5) as reader:
        assert reader.get(keys.report_key("BTCUSDT.BINANCE")) is not None
        assert reader.zrange(keys.candles_key("BTCUSDT.BINANCE", "1m"), -1, -1)
        report = keys.report_key("BTCUSDT.BINANCE")
        refused: list[Callable[[], object]] = [
            lambda: reader.set(report, b"{}"),
            lambda: reader.delete(report),
            lambda: reader.expire(report, 1),
            lambda: reader.zadd(keys.INDEX_KEY, {"X.BINANCE": 1}),
            lambda: reader.zrem(keys.INDEX_KEY, "BTCUSDT.BINANCE"),
            lambda: reader.eval("return redis.call('del', KEYS[1])", 1, report),
            lambda: reader.xadd(keys.stream_key("BTCUSDT.BINANCE"), {"e": b"x"}),
            lambda: reader.flushall(),
            lambda: reader.config_set("appendonly", "no"),
            lambda: reader.keys("*"),
            lambda: reader.publish("c", "m"),
            lambda: reader.publish(keys.REPORT_UPDATED_CHANNEL, "BTCUSDT.BINANCE"),
            lambda: reader.hset(keys.OVERVIEW_KEY, "BTCUSDT.BINANCE", b"{}"),
            lambda: reader.hdel(keys.OVERVIEW_KEY, "BTCUSDT.BINANCE"),
            # reads outside the report keys
            lambda: reader.get(keys.checkpoint_key("analytics", "BTCUSDT.BINANCE")),
            lambda: reader.xrange(keys.stream_key("BTCUSDT.BINANCE")),
        ]
        for attempt in refused:
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
        # it may hear of new reports, on that one channel only
        pubsub = reader.pubsub()
        pubsub.subscribe(keys.REPORT_UPDATED_CHANNEL)
        assert pubsub.get_message(timeout=1)["type"] == "subscribe"
        with pytest.raises(redis.exceptions.NoPermissionError):
            pubsub.subscribe("nt:released")
            pubsub.get_message(timeout=1)
        pubsub.close()
    with redis.Redis.from_url(redis_url) as admin:
        assert admin.exists(report) and admin.zscore(keys.INDEX_KEY, "BTCUSDT.BINANCE")


def test_backend_unavailable_is_answered_fast_and_recovers(tmp_path: Path) -> None:
    """Redis hung (SIGSTOP), resumed, stopped, restarted: every answer within 1 s, and
    answers again after each recovery without restarting the server."""
    private = PrivateRedis(tmp_path / "redis", appendonly=False)
    private.start()
    calls = [("get_report", {"symbol": "BTCUSDT"}), ("list_symbols", {}),
             ("get_depth", {"symbol": "BTCUSDT"}), ("get_history", {"symbol": "BTCUSDT"}),
             ("get_candles", {"symbol": "BTCUSDT"})]  # fmt: skip

    def publish_as_reader() -> str:
        publish_market(private.url)
        with redis.Redis.from_url(private.url) as admin:
            return url_with_user(private.url, READER, create_reader(admin, password="pw"))

    try:
        reader = publish_as_reader()
        with http_server(reader, tmp_path / "server.log") as base:

            async def codes() -> list[str]:
                found = []
                async with Client(f"{base}/mcp") as client:
                    for tool, arguments in calls:
                        start = time.perf_counter()
                        result = await client.call_tool(tool, arguments)
                        assert time.perf_counter() - start < 1.0, tool
                        found.append(tool_error(result)["code"] if result.is_error else "ok")
                    start = time.perf_counter()
                    try:
                        await client.read_resource("context8://report/BTCUSDT")
                        found.append("ok")
                    except MCPError as e:
                        found.append(e.data["code"])
                    assert time.perf_counter() - start < 1.0
                return found

            def plain() -> tuple[int, int]:
                start = time.perf_counter()
                report, _ = http_get(f"{base}/get_report?symbol=BTCUSDT")
                health, _ = http_get(f"{base}/health")
                assert time.perf_counter() - start < 2.0
                return report, health

            assert arun(codes) == ["ok"] * 6
            assert private.process is not None
            os.kill(private.process.pid, signal.SIGSTOP)  # hung: accepts, never answers
            try:
                assert arun(codes) == ["backend_unavailable"] * 6
                assert plain() == (503, 503)
            finally:
                os.kill(private.process.pid, signal.SIGCONT)
            assert arun(codes) == ["ok"] * 6  # recovered without a restart
            assert plain() == (200, 200)

            private.stop()  # gone: connection refused
            assert arun(codes) == ["backend_unavailable"] * 6
            assert plain() == (503, 503)
            private.start()  # same port, empty, no reader user until it is created again
            publish_as_reader()
            assert arun(codes) == ["ok"] * 6
            assert plain() == (200, 200)
    finally:
        if private.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(private.process.pid, signal.SIGCONT)
        private.stop()


def test_http_front_door(reader_url: str, redis_url: str, tmp_path: Path) -> None:
    """Bearer token, per-client rate limit (429 + Retry-After), request size limit."""
    publish(redis_url, make_report("BTCUSDT.BINANCE", now_ms=wall_ms()))
    token = "s3cret-token"
    settings = {"CONTEXT8_MCP_TOKEN": token, "CONTEXT8_MCP_MAX_BODY_BYTES": "4096"}
    with http_server(reader_url, tmp_path / "token.log", **settings) as base:
        auth = {"Authorization": f"Bearer {token}"}
        status, body = http_get(f"{base}/get_report?symbol=BTCUSDT")
        assert status == 401 and body["error"]["code"] == "unauthorized"
        wrong = {"Authorization": "Bearer nope"}
        assert http_get(f"{base}/get_report?symbol=BTCUSDT", wrong)[0] == 401
        assert http_get(f"{base}/get_report?symbol=BTCUSDT", auth)[0] == 200
        assert http_get(f"{base}/health")[0] == 200  # open: liveness probes
        document = http_get(f"{base}/openapi.json")[1]
        assert "bearer" in document["components"]["securitySchemes"]

        async def with_token(headers: dict[str, str]) -> str:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            http = create_mcp_http_client(headers=headers)
            async with http, Client(streamable_http_client(f"{base}/mcp", http_client=http)) as c:
                result = await c.call_tool("get_report", {"symbol": "BTCUSDT"})
                return result.structured_content["symbol"]

        assert arun(with_token, auth) == "BTCUSDT.BINANCE"
        mcp_headers = {"Content-Type": "application/json",
                       "Accept": "application/json, text/event-stream"}  # fmt: skip
        ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
        status, _, _ = http_request(f"{base}/mcp", method="POST", body=ping, headers=mcp_headers)
        assert status == 401  # the MCP endpoint too

        huge = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "pad": "x" * 8000})
        status, _, _ = http_request(f"{base}/mcp", method="POST", body=huge.encode(),
                                    headers={**auth, **mcp_headers})  # fmt: skip
        assert status == 413

    rate = {"CONTEXT8_MCP_RATE": "2", "CONTEXT8_MCP_BURST": "3"}
    with http_server(reader_url, tmp_path / "rate.log", **rate) as base:
        time.sleep(1.5)  # the start-up /health polls took tokens: refill
        answers = [http_request(f"{base}/get_report?symbol=BTCUSDT") for _ in range(4)]
        assert [a[0] for a in answers] == [200, 200, 200, 429]
        status, headers, body = answers[-1]
        assert int(headers["Retry-After"]) >= 1
        assert json.loads(body)["error"]["code"] == "rate_limited"
        time.sleep(0.6)  # 2/s: one token back
        assert http_request(f"{base}/get_report?symbol=BTCUSDT")[0] == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])
def test_refuses_a_non_loopback_address_without_a_token(host: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "context8", "mcp", "--transport", "http", "--host", host],
        env={"PATH": os.environ.get("PATH", ""), "REDIS_URL": "redis://127.0.0.1:1/0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "CONTEXT8_MCP_TOKEN" in done.stderr and "not a loopback address" in done.stderr


def test_concurrent_reads_of_one_report_share_one_get(redis_url: str) -> None:
    """Single flight: requests arriving while a GET is in flight share its answer; a
    cancelled leader leaves its followers to read for themselves; nothing is cached after."""
    publish_market(redis_url)
    admin = redis.Redis.from_url(redis_url)

    def gets() -> int:
        return admin.info("commandstats").get("cmdstat_get", {}).get("calls", 0)

    async def scenario() -> tuple[int, int]:
        async with ReportStore.connect(redis_url) as store:
            await store.ping()  # connected: the reads below measure only themselves
            before = gets()
            reports = await asyncio.gather(*(store.report("BTCUSDT.BINANCE") for _ in range(20)))
            shared = gets() - before
            assert {r.symbol for r in reports} == {"BTCUSDT.BINANCE"}

            admin.execute_command("CLIENT", "PAUSE", 200, "ALL")  # GETs wait 200 ms
            leader = asyncio.ensure_future(store.report("BTCUSDT.BINANCE"))
            await asyncio.sleep(0.05)  # the leader's GET is in flight
            follower = asyncio.ensure_future(store.report("BTCUSDT.BINANCE"))
            await asyncio.sleep(0.05)
            leader.cancel()
            assert (await follower).symbol == "BTCUSDT.BINANCE"
            assert leader.cancelled()

            before = gets()
            await store.report("BTCUSDT.BINANCE")
            await store.report("BTCUSDT.BINANCE")
            return shared, gets() - before

    shared, sequential = arun(scenario)
    admin.close()
    assert shared == 1  # 20 concurrent requests, one GET
    assert sequential == 2  # one after the other: each reads


def test_errors_are_sized_for_a_model(server: str) -> None:
    """A huge bad symbol is quoted as a short prefix (tool and plain route alike); a body that
    is not a JSON-RPC message gets one line, and tools/call without a name says so."""
    huge = "B" * 65_000

    async def call() -> CallToolResult:
        from mcp.client.streamable_http import streamable_http_client

        async with Client(streamable_http_client(f"{server}/mcp")) as client:
            return await client.call_tool("get_report", {"symbol": huge})

    result = arun(call)
    info = tool_error(result)
    assert info["code"] == "invalid_input"
    assert sum(len(block.text) for block in result.content) < 400
    assert len(msgspec.json.encode(result.meta)) < 600
    assert "(65000 characters)" in info["message"]

    status, body = http_get(f"{server}/get_report?symbol={'x' * 20_000}")
    assert status == 400 and len(json.dumps(body)) < 400
    assert "(20000 characters)" in body["error"]["message"]

    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}

    def post(payload: bytes) -> dict[str, Any]:
        status, _, answer = http_request(f"{server}/mcp", method="POST", body=payload,
                                         headers=headers)  # fmt: skip
        assert status == 400 and len(answer) < 200 and b"\n" not in answer, answer
        return json.loads(answer)

    for malformed in ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, {"id": 2}, [1, 2],
                      {"jsonrpc": "2.0", "id": {"no": 1}, "method": "ping"}):  # fmt: skip
        answer = post(json.dumps(malformed).encode())
        assert answer["error"]["code"] == -32600
        assert answer["error"]["message"].startswith("Invalid Request")
    assert post(b"{not json")["error"]["code"] == -32700
    nameless = post(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                "params": {"arguments": {}}}).encode())  # fmt: skip
    assert nameless["id"] == 7 and nameless["error"]["code"] == -32602
    assert "params.name" in nameless["error"]["message"]


def test_a_stdio_server_without_redis_url_answers_what_to_set() -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "context8", "mcp", "--transport", "stdio"],
        env={"PYTHONUNBUFFERED": "1", "PATH": os.environ.get("PATH", "")},
    )

    async def session() -> list[dict[str, Any]]:
        async with Client(params) as client:
            return [tool_error(await client.call_tool(name, arguments))
                    for name, arguments in (("get_report", {"symbol": "BTCUSDT"}),
                                            ("list_symbols", {}))]  # fmt: skip

    for info in arun(session, timeout_s=40):
        assert info["code"] == "backend_unavailable"
        assert "CONTEXT8_MCP_REDIS_URL" in info["message"]
