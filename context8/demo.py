"""``context8 demo``: the whole pipeline on one machine, on embedded defaults.

A private Redis (unless REDIS_URL is set), the local exchange simulator, an ingest node, a
processor node and the MCP server (streamable HTTP), each its own process like in a real
deployment. It prints plain lines (also when not on a terminal): what runs where, a client
configuration to paste, then the reports' state every few seconds. Ctrl-C or SIGTERM stops
everything, newest first.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import msgspec
import redis

from context8 import keys
from context8.config import Settings
from context8.redis_server import PrivateRedis, free_port

__all__ = ["run_demo"]

_STATUS_EVERY_S = 10.0
_READY_TIMEOUT_S = 90.0


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class _Stopped(Exception):
    pass


def _say(line: str) -> None:
    print(line, flush=True)


def _spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> _Child:
    log_path = log_dir / f"{name}.log"
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "context8", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children in order
    )
    log_file.close()
    return _Child(name, process, log_path)


def _stop(children: list[_Child], timeout_s: float = 15.0) -> None:
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.terminate()
            try:
                child.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(timeout_s)


def _check_alive(children: list[_Child]) -> None:
    for child in children:
        if child.process.poll() is not None:
            raise RuntimeError(
                f"{child.name} exited with {child.process.returncode}; "
                f"last lines of {child.log_path}:\n{child.tail()}"
            )


def _wait_http(url: str, children: list[_Child], deadline: float) -> None:
    while True:
        _check_alive(children)
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer in time")
        time.sleep(0.2)


def _status_lines(client: redis.Redis, symbols: tuple[str, ...]) -> list[str]:
    raw = client.mget([keys.report_key(s) for s in symbols])
    now_ms = time.time_ns() // 1_000_000
    lines = []
    for symbol, value in zip(symbols, raw, strict=True):
        if value is None:
            lines.append(f"  {symbol:<18} no report yet")
            continue
        report = msgspec.json.decode(value)
        age = now_ms - report["stream"]["last_event_ts_ms"]
        mid = report["mid_price"]
        lines.append(
            f"  {symbol:<18} mid {mid if mid is not None else '-':>14} "
            f"spread {report['spread_bps'] if report['spread_bps'] is not None else '-'} bps  "
            f"health {report['health']['score']:5.1f}  age {age} ms  "
            f"status {report['ingestion']['status']}"
        )
    return lines


def _client_config(mcp_url: str) -> str:
    return json.dumps({"mcpServers": {"context8": {"type": "http", "url": mcp_url}}}, indent=2)


def run_demo(
    settings: Settings, *, data_dir: str, mcp_port: int, capture: str | None, seed: int
) -> int:
    root = Path(data_dir).resolve()
    log_dir = root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    def on_signal(signum: int, _frame: object) -> None:
        raise _Stopped(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    private: PrivateRedis | None = None
    children: list[_Child] = []
    try:
        redis_url = settings.redis_url
        if redis_url is None:
            private = PrivateRedis(root / "redis")
            redis_url = private.start()
        symbols = settings.symbols
        sim_port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SYMBOLS": ",".join(symbols),
            "NT_BINANCE_HTTP_URL": f"http://127.0.0.1:{sim_port}",
            "NT_BINANCE_WS_URL": f"ws://127.0.0.1:{sim_port}",
        }
        sim_args = ["simulate", "--port", str(sim_port), "--seed", str(seed)]
        if capture:
            sim_args += ["--capture", str(Path(capture).resolve())]
        deadline = time.monotonic() + _READY_TIMEOUT_S
        children.append(_spawn("simulator", sim_args, env, log_dir))
        _wait_http(f"http://127.0.0.1:{sim_port}/api/v3/ping", children, deadline)

        node = settings.node_id
        children.append(
            _spawn("ingest", ["ingest"], {**env, "NT_NODE_ID": f"{node}-ingest",
                                          "NT_METRICS_PORT": str(free_port())}, log_dir)
        )  # fmt: skip
        children.append(
            _spawn("processor", ["process"], {**env, "NT_NODE_ID": f"{node}-processor",
                                              "NT_METRICS_PORT": str(free_port())}, log_dir)
        )  # fmt: skip
        children.append(
            _spawn("mcp", ["mcp", "--transport", "http", "--port", str(mcp_port)], env, log_dir)
        )
        mcp_url = f"http://127.0.0.1:{mcp_port}/mcp"
        _wait_http(f"http://127.0.0.1:{mcp_port}/health", children, deadline)

        redis_note = f"  (private, data in {root / 'redis'})" if private else ""
        market = f"replaying {capture}" if capture else f"order-flow model, seed {seed}"
        plain_http = f"http://127.0.0.1:{mcp_port}/get_report?symbol=BTCUSDT"
        _say("context8 demo is running")
        _say(f"  redis      {redis_url}{redis_note}")
        _say(f"  simulator  http://127.0.0.1:{sim_port}  ({market})")
        _say(f"  mcp        {mcp_url}  (plain JSON: GET {plain_http})")
        _say(f"  symbols    {', '.join(symbols)}")
        _say(f"  logs       {log_dir}")
        _say("MCP client configuration (Claude Code .mcp.json / Claude Desktop via mcp-remote):")
        _say(_client_config(mcp_url))
        _say("Ctrl-C stops everything.")

        client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        next_status = time.monotonic()
        while True:
            _check_alive(children)
            if time.monotonic() >= next_status:
                _say(f"reports at {time.strftime('%H:%M:%S')}:")
                for line in _status_lines(client, symbols):
                    _say(line)
                next_status = time.monotonic() + _STATUS_EVERY_S
            time.sleep(0.2)
    except _Stopped as e:
        _say(f"stopping ({e})")
        return 0
    except (RuntimeError, TimeoutError) as e:
        _say(f"context8 demo failed: {e}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop(children)
        if private is not None:
            private.stop()
