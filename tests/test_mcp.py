"""The MCP server end to end: real Redis, real server processes, the SDK's own clients.

The shared server reads through a Redis ACL user that may only read report keys, so any write
it attempted would fail the tests. Reports are written as the processors write them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec
import pytest
import redis
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import CallToolResult

from context8 import keys
from context8.redis_server import PrivateRedis, free_port
from context8_mcp.store import wall_ms
from projections.report import Report, json_schema
from tests.reports import validate_report
from tests.test_mcp_units import make_report

T = TypeVar("T")
READER = "context8-mcp-test"
READER_PASSWORD = "only-reads"
ERROR_META_KEY = "context8/error"


def arun(fn: Callable[..., Awaitable[T]], *args: Any, timeout_s: float = 15) -> T:
    async def bounded() -> T:
        with anyio.fail_after(timeout_s):
            return await fn(*args)

    return anyio.run(bounded)


def publish(url: str, *reports: Report, index_only: tuple[str, ...] = ()) -> None:
    """SET ``report:{SYM}`` and ZADD the index, as the projection writer does."""
    client = redis.Redis.from_url(url)
    try:
        for report in reports:
            client.set(keys.report_key(report.symbol), msgspec.json.encode(report), px=300_000)
            client.zadd(keys.INDEX_KEY, {report.symbol: report.updatedAt})
        for symbol in index_only:  # indexed, but the report key has expired
            client.zadd(keys.INDEX_KEY, {symbol: wall_ms() - 400_000})
    finally:
        client.close()


def http_get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@contextlib.contextmanager
def http_server(redis_url: str, log_path: Path) -> Iterator[str]:
    """``python -m context8_mcp --transport http`` on a free port, until /health answers."""
    port = free_port()
    args = [sys.executable, "-m", "context8_mcp", "--transport", "http", "--port", str(port),
            "--redis-url", redis_url]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"MCP server exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                http_get(f"{base}/health")
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"MCP server not up: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def reader_url(redis_server: str) -> Iterator[str]:
    """The session's Redis as a user that may only read report keys and the index."""
    admin = redis.Redis.from_url(redis_server)
    admin.acl_setuser(
        READER,
        enabled=True,
        reset=True,
        passwords=[f"+{READER_PASSWORD}"],
        keys=["report:*", "{reports}:index"],
        commands=["-@all", "+get", "+zrange", "+zscore", "+ping"],
    )
    parts = urllib.parse.urlsplit(redis_server)
    netloc = f"{READER}:{READER_PASSWORD}@{parts.hostname}:{parts.port}"
    try:
        yield urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    finally:
        admin.acl_deluser(READER)
        admin.close()


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


async def call(
    target: Any, tool: str, arguments: dict[str, Any], mode: str = "auto"
) -> CallToolResult:
    """One call on a new connection; ``mode="legacy"`` speaks the 2025 handshake era."""
    async with Client(target, mode=mode) as client:
        return await client.call_tool(tool, arguments)


def test_tools_publish_input_and_output_schemas(server: str, redis_url: str) -> None:
    async def listed() -> Any:
        async with Client(f"{server}/mcp") as client:
            return (await client.list_tools()).tools

    tools = {tool.name: tool for tool in arun(listed)}
    assert set(tools) == {"get_report", "list_symbols"}
    symbol = tools["get_report"].input_schema["properties"]["symbol"]
    assert symbol["type"] == "string" and "pattern" in symbol
    assert tools["get_report"].input_schema["required"] == ["symbol"]
    for tool in tools.values():
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.annotations is not None and tool.annotations.read_only_hint
        assert "data_age_ms" in (tool.description or "")
    assert (
        tools["get_report"].output_schema["required"]
        == json_schema()["$defs"]["Report"]["required"]
    )


def test_get_report_recomputes_data_age_at_read_time(server: str, redis_url: str) -> None:
    now = wall_ms()
    fresh = make_report("BTCUSDT.BINANCE", now_ms=now, age_ms=50)
    # Published 5 s ago as "ok" with data 120 ms old: by now the data is ~5 s old.
    stale = make_report("ETHUSDT.BINANCE", now_ms=now - 5000, age_ms=0)
    publish(redis_url, fresh, stale)

    result = arun(call, f"{server}/mcp", "get_report", {"symbol": "btcusdt"})
    assert not result.is_error
    payload = result.structured_content
    validate_report(payload)
    assert payload["symbol"] == "BTCUSDT.BINANCE"
    assert payload["ingestion"]["status"] == "ok"
    assert 50 <= payload["data_age_ms"] < 1000
    summary, body = (block.text for block in result.content)
    assert summary.startswith("BTCUSDT.BINANCE mid 95,012.35, spread 0.0442 bps")
    assert summary.endswith("status ok")
    assert json.loads(body) == payload

    # Same answer on a 2025-era (initialize handshake) connection.
    result = arun(call, f"{server}/mcp", "get_report", {"symbol": "ETHUSDT.BINANCE"}, "legacy")
    payload = result.structured_content
    validate_report(payload)
    assert 5000 <= payload["data_age_ms"] < 6500
    assert payload["ingestion"]["status"] == "down"
    assert "ms old at read time" in payload["ingestion"]["reason"]
    assert "status down" in result.content[0].text


def test_list_symbols_reports_each_symbols_freshness(server: str, redis_url: str) -> None:
    now = wall_ms()
    publish(
        redis_url,
        make_report("BTCUSDT.BINANCE", now_ms=now, age_ms=30, health=87),
        make_report("ETHUSDT.BINANCE", now_ms=now - 5000, age_ms=0, health=60),
        index_only=("SOLUSDT.BINANCE",),
    )
    result = arun(call, f"{server}/mcp", "list_symbols", {})
    assert not result.is_error
    rows = {row["symbol"]: row for row in result.structured_content["symbols"]}
    assert list(rows) == ["BTCUSDT.BINANCE", "ETHUSDT.BINANCE", "SOLUSDT.BINANCE"]
    assert rows["BTCUSDT.BINANCE"]["status"] == "ok"
    assert rows["BTCUSDT.BINANCE"]["health_score"] == 87
    assert rows["BTCUSDT.BINANCE"]["last_update_ms"] == now
    assert rows["ETHUSDT.BINANCE"]["status"] == "down"
    assert 5000 <= rows["ETHUSDT.BINANCE"]["data_age_ms"] < 6500
    assert rows["SOLUSDT.BINANCE"]["status"] == "down"
    assert rows["SOLUSDT.BINANCE"]["data_age_ms"] is None
    assert result.content[0].text.startswith("3 symbols: BTCUSDT.BINANCE ok (")


def test_errors_are_tool_errors_with_a_code(server: str, redis_url: str) -> None:
    now = wall_ms()
    publish(
        redis_url,
        make_report("BTCUSDT.BINANCE", now_ms=now),
        make_report("ETHUSDT.BINANCE", now_ms=now),
        index_only=("SOLUSDT.BINANCE",),
    )
    info = tool_error(arun(call, f"{server}/mcp", "get_report", {"symbol": "XRPUSDT"}))
    assert info["code"] == "symbol_not_indexed"
    assert info["available"] == ["BTCUSDT.BINANCE", "ETHUSDT.BINANCE", "SOLUSDT.BINANCE"]
    assert "BTCUSDT.BINANCE, ETHUSDT.BINANCE" in info["message"]

    info = tool_error(arun(call, f"{server}/mcp", "get_report", {"symbol": "SOLUSDT"}))
    assert info["code"] == "report_expired"
    legacy = arun(call, f"{server}/mcp", "get_report", {"symbol": "XRPUSDT"}, "legacy")
    assert tool_error(legacy)["code"] == "symbol_not_indexed"

    for arguments in ({"symbol": "BTC-USDT"}, {"symbol": 42}, {}):
        info = tool_error(arun(call, f"{server}/mcp", "get_report", arguments))
        assert info["code"] == "invalid_input", arguments


def test_plain_http_routes(server: str, redis_url: str) -> None:
    publish(redis_url, make_report("BTCUSDT.BINANCE", now_ms=wall_ms()))
    status, body = http_get(f"{server}/health")
    assert status == 200 and body["ok"] is True and body["redis"] is True

    status, body = http_get(f"{server}/get_report?symbol=BTCUSDT")
    assert status == 200
    validate_report(body)
    assert body["symbol"] == "BTCUSDT.BINANCE" and body["ingestion"]["status"] == "ok"

    status, body = http_get(f"{server}/get_report?symbol=XRPUSDT")
    assert status == 404 and body["error"]["code"] == "symbol_not_indexed"
    assert body["error"]["available"] == ["BTCUSDT.BINANCE"]
    for query in ("?symbol=BTC-USDT", ""):
        status, body = http_get(f"{server}/get_report{query}")
        assert status == 400 and body["error"]["code"] == "invalid_input"

    status, body = http_get(f"{server}/list_symbols")
    assert status == 200 and [s["symbol"] for s in body["symbols"]] == ["BTCUSDT.BINANCE"]


def test_stdio_transport(reader_url: str, redis_url: str) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "context8_mcp", "--transport", "stdio", "--redis-url", reader_url],
        env={"PYTHONUNBUFFERED": "1"},
    )

    async def session() -> tuple[CallToolResult, CallToolResult]:
        async with Client(params) as client:
            # Published once the server is up: it takes longer to start than data stays "ok".
            publish(redis_url, make_report("BTCUSDT.BINANCE", now_ms=wall_ms()))
            return (
                await client.call_tool("list_symbols", {}),
                await client.call_tool("get_report", {"symbol": "BTCUSDT"}),
            )

    listed, report = arun(session, timeout_s=30)
    assert [s["symbol"] for s in listed.structured_content["symbols"]] == ["BTCUSDT.BINANCE"]
    assert report.structured_content["ingestion"]["status"] == "ok"
    validate_report(report.structured_content)


def test_backend_unavailable_is_answered_fast(tmp_path: Path) -> None:
    """Redis hung (SIGSTOP), then recovered, then gone: every answer within 1 s."""
    private = PrivateRedis(tmp_path / "redis", appendonly=False)
    private.start()
    try:
        publish(private.url, make_report("BTCUSDT.BINANCE", now_ms=wall_ms()))
        with http_server(private.url, tmp_path / "server.log") as base:

            def answers() -> tuple[dict[str, Any], int, dict[str, Any], int]:
                start = time.perf_counter()
                result = arun(call, f"{base}/mcp", "get_report", {"symbol": "BTCUSDT"})
                info = tool_error(result) if result.is_error else {"code": "ok"}
                status, _ = http_get(f"{base}/get_report?symbol=BTCUSDT")
                health, body = http_get(f"{base}/health")
                elapsed = time.perf_counter() - start
                assert elapsed < 3.0, elapsed  # three requests, each bounded by ~0.5 s
                return info, status, body, health

            assert answers()[0]["code"] == "ok"
            assert private.process is not None
            os.kill(private.process.pid, signal.SIGSTOP)  # hung: accepts, never answers
            try:
                start = time.perf_counter()
                info = tool_error(arun(call, f"{base}/mcp", "list_symbols", {}))
                assert time.perf_counter() - start < 1.0
                assert info["code"] == "backend_unavailable"
                info, status, body, health = answers()
                assert info["code"] == "backend_unavailable"
                assert (status, health, body["ok"]) == (503, 503, False)
            finally:
                os.kill(private.process.pid, signal.SIGCONT)
            assert answers()[0]["code"] == "ok"  # recovered without a restart

            private.stop()  # gone: connection refused
            start = time.perf_counter()
            info = tool_error(arun(call, f"{base}/mcp", "get_report", {"symbol": "BTCUSDT"}))
            assert time.perf_counter() - start < 1.0
            assert info["code"] == "backend_unavailable"
            status, body = http_get(f"{base}/get_report?symbol=BTCUSDT")
            assert status == 503 and body["error"]["code"] == "backend_unavailable"
    finally:
        if private.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(private.process.pid, signal.SIGCONT)
        private.stop()
