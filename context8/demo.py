"""``context8 demo``: the whole pipeline on one machine, on embedded defaults.

A private Redis (unless REDIS_URL is set), the local exchange simulator, an ingest node, a
processor node and the MCP server (streamable HTTP), each its own process like in a real
deployment. It prints plain lines (also when not on a terminal): what runs where, a client
configuration to paste, then the reports' state every few seconds. Ctrl-C or SIGTERM stops
everything, newest first; a child that dies (a role, the private Redis) is started again.
One demo per data folder (context8/datadir.py); ``reset`` starts
it from an empty event log.
"""

from __future__ import annotations

import errno
import json
import signal
import socket
import time
from collections import deque
from pathlib import Path

import msgspec
import redis

from context8.datadir import DataDirBusy, DemoDataDir
from context8.procs import Fleet, start_pipeline
from context8.redis_server import PrivateRedis
from core import keys
from core.acl import READER, create_reader, url_with_user
from core.settings import ConfigError, Settings
from core.symbols import parse_symbols
from ingest.capture import MetaLine, read_capture
from projections.freshness import freshen
from projections.report import Report

__all__ = ["run_demo"]


class _Stopped(Exception):
    """A stop signal arrived."""


def _say(line: str) -> None:
    print(line, flush=True)


_STATUS_EVERY_S = 10.0


_report_decoder = msgspec.json.Decoder(Report)


def _status_lines(client: redis.Redis, symbols: tuple[str, ...]) -> list[str]:
    raw = client.mget([keys.report_key(s) for s in symbols])
    now_ms = time.time_ns() // 1_000_000
    lines = []
    for symbol, value in zip(symbols, raw, strict=True):
        if value is None:
            lines.append(f"  {symbol:<18} no report yet")
            continue
        report = freshen(_report_decoder.decode(value), now_ms)  # as MCP would answer now
        spread = "-" if report.spread_bps is None else report.spread_bps
        mid = "-" if report.mid_price is None else f"{report.mid_price:.10g}"
        lines.append(
            f"  {symbol:<18} mid {mid:>14} spread {spread} bps  "
            f"health {report.health.score:5.1f}  age {report.data_age_ms} ms  "
            f"status {report.ingestion.status}"
        )
    return lines


def _client_config(mcp_url: str) -> str:
    return json.dumps({"mcpServers": {"context8": {"type": "http", "url": mcp_url}}}, indent=2)


def capture_symbols(path: str) -> tuple[str, ...]:
    """The symbols a capture's meta line says it recorded."""
    first = next(read_capture(path), None)
    if not isinstance(first, MetaLine) or not first.symbols:
        raise ConfigError(f"--capture: {path} has no meta line naming its symbols; set SYMBOLS")
    return parse_symbols(",".join(first.symbols))


class _Supervisor:
    """Starts again what died (a role, the private Redis), as a service manager would: one
    child's death must not take the rest down. A child dying more than ``_MAX_RESTARTS``
    times within ``_RESTART_WINDOW_S`` is not coming back by itself: the demo stops."""

    def __init__(self) -> None:
        self._restarts: dict[str, deque[float]] = {}

    def revive(self, fleet: Fleet, private: PrivateRedis | None) -> None:
        if private is not None and private.process is not None:
            code = private.process.poll()
            if code is not None:
                self._count("redis", code)
                private.start()  # same port, same data: the roles reconnect by themselves
                _say(f"  redis restarted (it exited with {code})")
        for child, code in fleet.revive():
            self._count(child.name, code)
            _say(f"  {child.name} restarted (it exited with {code}; log {child.log_path})")

    def _count(self, name: str, code: int) -> None:
        now = time.monotonic()
        recent = self._restarts.setdefault(name, deque())
        recent.append(now)
        while recent and recent[0] < now - _RESTART_WINDOW_S:
            recent.popleft()
        if len(recent) > _MAX_RESTARTS:
            raise RuntimeError(
                f"{name} exited {len(recent)} times in {_RESTART_WINDOW_S:g} s (last code {code})"
            )


_MAX_RESTARTS = 5
_RESTART_WINDOW_S = 60.0


def _port_taken(port: int) -> str | None:
    """Why the MCP server could not listen on ``port`` (loopback), or None when it can."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            taken = e.errno == errno.EADDRINUSE
            return "it is in use" if taken else e.strerror or str(e)
    return None


def run_demo(
    settings: Settings,
    *,
    symbols_given: bool,
    data_dir: str,
    mcp_port: int,
    capture: str | None,
    seed: int,
    reset: bool = False,
) -> int:
    try:
        folder = DemoDataDir(Path(data_dir).resolve())
    except DataDirBusy as e:
        _say(f"context8 demo: {e}")
        return 1
    try:
        if (why := _port_taken(mcp_port)) is not None:
            _say(f"context8 demo: port {mcp_port} for the MCP server: {why}; pick another "
                 "with --mcp-port")  # fmt: skip
            return 1
        if reset:
            folder.reset()
        return _run(folder, settings, symbols_given=symbols_given, mcp_port=mcp_port,
                    capture=capture, seed=seed)  # fmt: skip
    finally:
        folder.release()


def _run(
    folder: DemoDataDir,
    settings: Settings,
    *,
    symbols_given: bool,
    mcp_port: int,
    capture: str | None,
    seed: int,
) -> int:
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        # Once: a second signal (uv forwarding the SIGTERM the whole process group got, a
        # second Ctrl-C) must not cut the orderly stop short.
        nonlocal stopping
        if not stopping:
            stopping = True
            raise _Stopped(signal.Signals(signum).name)

    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: terminal closed
        signal.signal(stop_signal, on_signal)

    private: PrivateRedis | None = None
    fleet = Fleet(folder.log_dir)
    try:
        redis_url = settings.redis_url
        mcp_env: dict[str, str] = {}
        if redis_url is None:
            private = PrivateRedis(folder.redis_dir, acl_file=True)
            redis_url = private.start()
            folder.publish_redis_url(redis_url)
            # The MCP server reads as a user that may only read report keys (core.acl),
            # saved to the ACL file: after a restart of this Redis it reads on.
            with redis.Redis.from_url(redis_url, socket_timeout=2) as admin:
                password = create_reader(admin)
                admin.acl_save()
            mcp_env["CONTEXT8_MCP_REDIS_URL"] = url_with_user(redis_url, READER, password)
        symbols = settings.symbols
        simulator_args = ["--seed", str(seed)]
        if capture:
            # looped, so the demo stays live after the recording's last message
            simulator_args += ["--capture", str(Path(capture).resolve()), "--loop"]
            if not symbols_given:
                symbols = capture_symbols(capture)
        pipeline = start_pipeline(
            fleet,
            redis_url=redis_url,
            symbols=symbols,
            node_id=settings.node_id,
            simulator_args=tuple(simulator_args),
            mcp_port=mcp_port,
            extra_env=mcp_env,
        )
        redis_note = f"  (private, data in {folder.redis_dir})" if private else ""
        market = f"replaying {capture}" if capture else f"order-flow model, seed {seed}"
        plain_http = pipeline.mcp_url.removesuffix("/mcp") + "/get_report?symbol=BTCUSDT"
        _say("context8 demo is running")
        _say(f"  redis      {redis_url}{redis_note}")
        _say(f"  simulator  {pipeline.simulator_url}  ({market})")
        _say(f"  mcp        {pipeline.mcp_url}  (plain JSON: GET {plain_http})")
        _say(f"  symbols    {', '.join(symbols)}")
        _say(f"  logs       {fleet.log_dir}")
        _say("MCP client configuration (Claude Code .mcp.json, or any streamable-HTTP client):")
        _say(_client_config(pipeline.mcp_url))
        _say("Ctrl-C stops everything.")

        client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        next_status = time.monotonic()
        supervisor = _Supervisor()
        while True:
            supervisor.revive(fleet, private)
            if time.monotonic() >= next_status:
                try:
                    lines = _status_lines(client, symbols)
                except (redis.RedisError, msgspec.DecodeError, msgspec.ValidationError) as e:
                    lines = [f"  (reports unreadable: {e})"]
                _say(f"reports at {time.strftime('%H:%M:%S')}:")
                for line in lines:
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
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, signal.SIG_IGN)
        fleet.stop()
        if private is not None:
            private.stop()
