"""``context8 bench mcp``: the MCP server's ``get_report`` latency and throughput, next to the
SDK's floor, measured in the same run.

Ours: ``python -m context8_mcp`` reading a realistic report (20 levels a side, walls, a
vacuum, a volume profile, anomalies) from a private Redis as the reader ACL user, the report
re-published every 250 ms as a processor does. The floor: a bare SDK server (this module,
``python -m context8.bench.mcp --transport ...``) whose one tool returns a constant result
of the same size with the same output schema, so client and SDK do the same work and the
difference is ours (Redis read, decode, freshness, encode, summary).

Each is measured over streamable HTTP and stdio, with one client calling back to back and
with 20 concurrent clients (HTTP: 20 connections; stdio serves one client, so 20 concurrent
requests on its one connection), by two clients in this process (newest protocol): a lean one
(JSON-RPC written by hand on a keep-alive connection or the stdio pipe: it measures the
servers) and the SDK's ``Client`` (what a Python client sees, including its validation of
each answer against the output schema). On a small machine the clients compete with the
servers for CPU, in both columns alike. docs/mcp.md reads the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Final

import anyio
import msgspec
import redis
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult
from mcp_types.version import LATEST_MODERN_VERSION

from context8.bench.samples import percentile, say
from context8.procs import free_port, stop_process
from context8.redis_server import PrivateRedis
from context8_mcp.summary import report_summary
from context8_mcp.tools import answer_result, read_only_tool
from core import keys
from core.acl import READER, create_reader, url_with_user
from projections.report import (
    Anomaly,
    BookLevel,
    Depth,
    Flow,
    Health,
    HealthComponents,
    Ingestion,
    Liquidity,
    Report,
    Stream,
    Vacuum,
    VolumeProfile,
    Wall,
    Writer,
)

__all__ = ["run_bench_mcp", "sample_report"]

SYMBOL: Final = "BTCUSDT.BINANCE"
CONCURRENT: Final = 20
_WARMUP_CALLS: Final = 20
_REPUBLISH_S: Final = 0.25


def sample_report(now_ms: int) -> Report:
    """A report the size and shape of a busy symbol's, published at ``now_ms``."""
    bids = [BookLevel(price=round(95_000.0 - i * 0.01, 2), qty=0.25 + i * 0.1) for i in range(20)]
    asks = [BookLevel(price=round(95_000.01 + i * 0.01, 2), qty=0.3 + i * 0.1) for i in range(20)]
    bid_volume = sum(level.qty for level in bids)
    ask_volume = sum(level.qty for level in asks)
    return Report(
        writer=Writer(nodeId="bench", writerToken=1),
        updatedAt=now_ms,
        symbol=SYMBOL,
        venue="BINANCE",
        generated_at=time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(now_ms / 1000)),
        data_age_ms=30,
        ingestion=Ingestion(status="ok", last_update="2026-01-01T00:00:00.000+00:00"),
        last_price=95_000.0,
        change_24h_pct=1.25,
        high_24h=96_000.0,
        low_24h=93_000.0,
        volume_24h=12_345.678,
        best_bid=bids[0],
        best_ask=asks[0],
        spread_bps=0.0011,
        mid_price=95_000.005,
        micro_price=95_000.00523,
        depth=Depth(
            levels=20,
            bids=bids,
            asks=asks,
            bid_volume=bid_volume,
            ask_volume=ask_volume,
            imbalance=(bid_volume - ask_volume) / (bid_volume + ask_volume),
        ),
        flow=Flow(
            window_sec=10,
            events_per_sec=85.2,
            trades_per_sec=12.4,
            net_flow_window_sec=30,
            buy_volume=4.2,
            sell_volume=3.1,
            net_flow=1.1,
        ),
        liquidity=Liquidity(
            walls=[
                Wall(side="bid", price=94_999.5, qty=25.1, multiple=3.2, severity="high"),
                Wall(side="ask", price=95_001.2, qty=12.0, multiple=1.6, severity="low"),
            ],
            vacuums=[
                Vacuum(side="ask", from_price=95_002.0, to_price=95_002.5, levels=4, severity="low")
            ],
            volume_profile=VolumeProfile(
                window_sec=1800,
                trade_count=5400,
                bin_size=0.05,
                poc=94_998.5,
                vah=95_010.0,
                val=94_990.0,
            ),
        ),
        anomalies=[
            Anomaly(
                type="spoofing",
                severity="medium",
                note="ask 12 BTC at 95,001.2 cancelled 84% of the time",
            ),
            Anomaly(type="iceberg", severity="low", note="7 fills at 94,999.5, visible qty flat"),
        ],
        health=Health(
            score=82.5,
            components=HealthComponents(
                spread=95, depth=80, balance=75, flow=85, anomalies=70, freshness=100
            ),
        ),
        stream=Stream(last_id=f"{now_ms}-0", events_folded=1_234_567, last_event_ts_ms=now_ms - 30),
    )


@contextlib.contextmanager
def _publisher(redis_url: str) -> Iterator[None]:
    """Re-publish the report every 250 ms in a thread, as a processor would."""
    stop = threading.Event()

    def loop() -> None:
        with redis.Redis.from_url(redis_url, socket_timeout=2) as client:
            while not stop.is_set():
                report = sample_report(time.time_ns() // 1_000_000)
                client.set(keys.report_key(SYMBOL), msgspec.json.encode(report), px=300_000)
                client.zadd(keys.INDEX_KEY, {SYMBOL: report.updatedAt})
                stop.wait(_REPUBLISH_S)

    thread = threading.Thread(target=loop, name="publisher", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


@contextlib.contextmanager
def _http_process(args: list[str], env: dict[str, str], log: Path) -> Iterator[str]:
    """A server process on a free port, until its /health (ours) or any answer comes."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", *args, "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{args[0]} exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                break
            except urllib.error.HTTPError:  # answered (the bare server has no /health)
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{args[0]} did not start: {log.read_text()[-2000:]}") from e
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop_process(process, 5)


class _Figures(msgspec.Struct, frozen=True):
    p50_ms: float
    p99_ms: float
    per_s: float

    def text(self) -> str:
        return f"p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  {self.per_s:6,.0f} req/s"


_Call = Callable[[], Awaitable[None]]
"""One ``tools/call``, raising unless it answered without error."""
_Connect = Callable[[], AbstractAsyncContextManager[_Call]]


class _Server(msgspec.Struct, frozen=True):
    module: list[str]
    tool: str
    arguments: dict[str, str]


def _tool_call(server: _Server, request_id: int) -> bytes:
    """A ``tools/call`` of the newest protocol (each request carries its own envelope)."""
    return msgspec.json.encode(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {
                "name": server.tool,
                "arguments": server.arguments,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": LATEST_MODERN_VERSION,
                    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        }
    )


def _check(answer: bytes) -> None:
    message = msgspec.json.decode(answer)
    result = message.get("result")
    if result is None or result.get("isError"):
        raise RuntimeError(f"the call failed: {answer[:500]!r}")


def _wire_http(url: str, server: _Server) -> _Connect:
    """A lean client: one keep-alive HTTP/1.1 connection, the request bytes written by hand,
    the JSON answer read by its Content-Length (the servers answer JSON, not SSE)."""
    parts = urllib.parse.urlsplit(url)

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[_Call]:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        ids = itertools.count(1)

        async def call() -> None:
            body = _tool_call(server, next(ids))
            writer.write(
                f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
                f"MCP-Protocol-Version: {LATEST_MODERN_VERSION}\r\nMcp-Method: tools/call\r\n"
                f"Mcp-Name: {server.tool}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"HTTP answer {head[:200]!r}")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            _check(await reader.readexactly(length))

        try:
            yield call
        finally:
            writer.close()

    return connect


def _wire_stdio(server: _Server, env: dict[str, str]) -> _Connect:
    """A lean client of a stdio server: JSON lines written by hand, answers matched by id."""

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[_Call]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *server.module, "--transport", "stdio",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, env=env, limit=16 * 1024 * 1024,
        )  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        stdin, stdout = process.stdin, process.stdout
        pending: dict[int, asyncio.Future[bytes]] = {}
        ids = itertools.count(1)

        async def read_answers() -> None:
            while line := await stdout.readline():
                waiter = pending.pop(msgspec.json.decode(line).get("id"), None)
                if waiter is not None:
                    waiter.set_result(line)

        reading = asyncio.create_task(read_answers())

        async def call() -> None:
            request_id = next(ids)
            answer = pending[request_id] = asyncio.get_running_loop().create_future()
            stdin.write(_tool_call(server, request_id) + b"\n")
            await stdin.drain()
            _check(await asyncio.wait_for(answer, 10))

        try:
            yield call
        finally:
            reading.cancel()
            stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()

    return connect


def _sdk(target: str | StdioServerParameters, server: _Server) -> _Connect:
    """The SDK's ``Client`` (it also validates each answer against the tool's output schema)."""

    @contextlib.asynccontextmanager
    async def connect() -> AsyncIterator[_Call]:
        async with Client(target) as client:

            async def call() -> None:
                result = await client.call_tool(server.tool, server.arguments)
                if result.is_error:
                    raise RuntimeError(f"{server.tool} failed: {result.content[0].text}")

            yield call

    return connect


async def _measure(
    connect: _Connect, *, connections: int, workers: int, seconds: float
) -> _Figures:
    """``workers`` callers spread over ``connections`` connections, back to back for
    ``seconds`` after a warm-up."""
    latencies: list[float] = []
    async with AsyncExitStack() as stack:
        calls = [await stack.enter_async_context(connect()) for _ in range(connections)]
        for call in calls:
            for _ in range(_WARMUP_CALLS):
                await call()
        end = time.perf_counter() + seconds

        async def worker(call: _Call) -> None:
            while time.perf_counter() < end:
                start = time.perf_counter()
                await call()
                latencies.append((time.perf_counter() - start) * 1000)

        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for i in range(workers):
                group.start_soon(worker, calls[i % connections])
        elapsed = time.perf_counter() - start
    return _Figures(
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        per_s=len(latencies) / elapsed,
    )


def run_bench_mcp(*, seconds: float = 2.0) -> int:
    # The clients' per-request INFO lines (httpx2, mcp) would cost more than a request.
    logging.getLogger().setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="context8-bench-mcp-") as tmp:
        redis_server = PrivateRedis(Path(tmp) / "redis", appendonly=False)
        redis_url = redis_server.start()
        try:
            with redis.Redis.from_url(redis_url) as admin:
                reader = url_with_user(redis_url, READER, create_reader(admin))
            env = {"PATH": os.environ.get("PATH", ""), "CONTEXT8_MCP_REDIS_URL": reader,
                   "CONTEXT8_MCP_RATE": "0"}  # fmt: skip
            servers = {
                "context8 get_report": _Server(
                    ["context8_mcp", "--log-level", "WARNING"], "get_report", {"symbol": "BTCUSDT"}
                ),
                "bare SDK tool (constant)": _Server(["context8.bench.mcp"], "constant", {}),
            }
            say(
                f"context8 bench mcp: {seconds:g} s per measurement, {os.cpu_count()} CPUs, "
                f"protocol {LATEST_MODERN_VERSION}, load average {os.getloadavg()[0]:.1f}"
            )
            with _publisher(redis_url), contextlib.ExitStack() as running:
                urls = {
                    name: running.enter_context(
                        _http_process([*server.module, "--transport", "http"], env,
                                      Path(tmp) / f"{server.module[0]}.log")
                    )
                    for name, server in servers.items()
                }  # fmt: skip
                for client in ("lean client", "SDK client"):
                    for transport, load, connections, workers in _LOADS:
                        say(f"{transport}, {load}, {client}:")
                        figures = []
                        for name, server in servers.items():
                            connect = _connector(client, transport, server, urls[name], env)
                            measure = functools.partial(
                                _measure, connect, connections=connections, workers=workers,
                                seconds=seconds,
                            )  # fmt: skip
                            figures.append(anyio.run(measure))
                            say(f"  {name:<26} {figures[-1].text()}")
                        ours, floor = figures
                        say(
                            f"  ours / floor: p50 {ours.p50_ms / floor.p50_ms:.2f}x, p99 "
                            f"{ours.p99_ms / floor.p99_ms:.2f}x, req/s "
                            f"{ours.per_s / floor.per_s:.2f}x"
                        )
        finally:
            redis_server.stop()
    return 0


_LOADS: Final = (
    ("streamable HTTP", "1 client", 1, 1),
    ("streamable HTTP", f"{CONCURRENT} concurrent clients", CONCURRENT, CONCURRENT),
    ("stdio", "1 client", 1, 1),
    # stdio serves the one process that started it: concurrency is requests in flight
    ("stdio", f"{CONCURRENT} concurrent requests", 1, CONCURRENT),
)


def _connector(
    client: str, transport: str, server: _Server, url: str, env: dict[str, str]
) -> _Connect:
    stdio = transport == "stdio"
    if client == "lean client":
        return _wire_stdio(server, env) if stdio else _wire_http(url, server)
    if stdio:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", *server.module, "--transport", "stdio"], env=env
        )
        return _sdk(params, server)
    return _sdk(url, server)


def _bare_server() -> None:
    """The floor: an SDK server with one tool returning a constant answer the size of a
    report answer, with the report's output schema."""
    parser = argparse.ArgumentParser(prog="python -m context8.bench.mcp")
    parser.add_argument("--transport", choices=("stdio", "http"), required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    report = sample_report(time.time_ns() // 1_000_000)
    answer = answer_result(report_summary(report), report)

    async def constant() -> CallToolResult:
        return answer

    tool = read_only_tool(constant, "Constant", "Returns a constant report answer.", Report)
    server = MCPServer(name="bare", tools=[tool], log_level="WARNING")
    if args.transport == "stdio":
        anyio.run(server.run_stdio_async)
        return
    import uvicorn

    # the same transport settings as ours (context8_mcp.server.create_http_app)
    app = server.streamable_http_app(streamable_http_path="/mcp", json_response=True)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        log_level="warning",
    )
    anyio.run(uvicorn.Server(config).serve)


if __name__ == "__main__":
    _bare_server()
