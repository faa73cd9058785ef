"""``context8 record``: write a capture (DESIGN.md "Captures") from a venue speaking Binance
Spot's public API: live Binance by default, or the local simulator (``--venue-url``).

What it writes, in receive order (one line each, ``recv_ts`` = when it arrived):

- a ``meta`` line: the source, the combined-stream URL, the symbols;
- ``GET /api/v3/exchangeInfo?symbols=[...]`` (first: an unknown symbol fails at once);
- the websocket: one combined stream of every symbol's ``@depth@100ms``, ``@trade`` (or
  ``@aggTrade``) and ``@ticker``, the streams ingest subscribes; every message as sent;
- per symbol, ``GET /api/v3/depth?symbol=X&limit=1000`` once its first diff has arrived, as
  Binance's "how to manage a local order book" procedure asks: the snapshot is taken after the
  stream started, so the capture holds every diff a reader needs after it. A snapshot older
  than that first diff (``lastUpdateId + 1 < U``) is taken again.

A websocket that closes or stays silent (30 s) is reconnected with backoff, and every symbol
gets a new snapshot after its first diff on the new connection: the capture then shows the gap
and the snapshot that heals it, as live ingest would see them. The file is flushed every
second, so a recording cut short is still a valid capture.

Every call has a timeout (REST 10 s, websocket connect 10 s, heartbeat 20 s). A venue that
cannot be reached, or refuses a request, ends the recording with ``RecordError``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp
import msgspec

from core import settings as config
from core.logs import log_event
from core.symbols import parse_symbols
from ingest.capture import CaptureWriter

__all__ = [
    "LIVE_HTTP_URL",
    "LIVE_WS_URL",
    "RecordConfig",
    "RecordError",
    "RecordStats",
    "record",
    "run",
    "venue_urls",
]

log = logging.getLogger("context8.record")

LIVE_HTTP_URL: Final = "https://api.binance.com"
LIVE_WS_URL: Final = "wss://stream.binance.com:9443"

_REST_TIMEOUT: Final = aiohttp.ClientTimeout(total=10.0)
_CONNECT_TIMEOUT_S: Final = 10.0
_HEARTBEAT_S: Final = 20.0
_SILENCE_S: Final = 30.0
_POLL_S: Final = 0.25
_FLUSH_EVERY_S: Final = 1.0
_SNAPSHOT_ATTEMPTS: Final = 10
_BACKOFF_START_S: Final = 0.5
_BACKOFF_MAX_S: Final = 10.0
VENUE: Final = "BINANCE"


class RecordError(RuntimeError):
    """The venue could not be recorded; the message says which call failed and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordConfig:
    out: Path
    symbols: tuple[str, ...]
    """Venue symbols, ``BTCUSDT``."""
    seconds: float | None = None
    """How long to record; None: until stopped."""
    http_url: str = LIVE_HTTP_URL
    ws_url: str = LIVE_WS_URL
    """Without ``/stream``: the combined-stream path is appended."""
    trades: Literal["trade", "aggTrade"] = "trade"
    depth_limit: int = 1000

    def __post_init__(self) -> None:
        if not self.symbols or not all(s.isalnum() and s.isupper() for s in self.symbols):
            raise ValueError("symbols must be upper-case venue symbols like BTCUSDT")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError("seconds must be > 0")
        if not 1 <= self.depth_limit <= 5000:
            raise ValueError("depth_limit must be within 1..5000 (Binance's range)")

    @property
    def streams(self) -> list[str]:
        kinds = ("depth@100ms", self.trades, "ticker")
        return [f"{s.lower()}@{kind}" for s in self.symbols for kind in kinds]

    @property
    def stream_url(self) -> str:
        return f"{self.ws_url.rstrip('/')}/stream?streams={'/'.join(self.streams)}"


@dataclass(slots=True)
class RecordStats:
    messages: Counter[str] = field(default_factory=Counter)
    """Websocket messages written, by stream kind (``depth@100ms``, ``trade``, ...)."""
    snapshots: Counter[str] = field(default_factory=Counter)
    """Depth snapshots written, by symbol."""
    connections: int = 0
    retaken_snapshots: int = 0


async def record(config: RecordConfig, stop: asyncio.Event | None = None) -> RecordStats:
    """Record until ``config.seconds`` have passed or ``stop`` is set."""
    if config.out.exists():
        raise RecordError(f"{config.out} already exists: choose another --out")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    deadline = None if config.seconds is None else loop.time() + config.seconds
    stats = RecordStats()
    async with aiohttp.ClientSession() as session:
        # The symbols are checked before anything is written.
        info_params = {"symbols": json.dumps(list(config.symbols), separators=(",", ":"))}
        info = await _get(session, config, "/api/v3/exchangeInfo", info_params)
        with CaptureWriter(config.out) as writer:
            writer.meta(_source(config), config.stream_url, list(config.symbols))
            writer.rest("/api/v3/exchangeInfo", info_params, info)
            flusher = asyncio.create_task(_flush_every(writer))
            try:
                await _record_connections(session, config, writer, stats, stop, deadline)
            finally:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
                writer.flush()
    missing = [s for s in config.symbols if not stats.snapshots[s]]
    if missing:
        log_event(log, "record_without_snapshot", level=logging.WARNING, symbols=missing,
                  hint="no diff arrived for them, or the recording ended first")  # fmt: skip
    return stats


async def _record_connections(
    session: aiohttp.ClientSession,
    config: RecordConfig,
    writer: CaptureWriter,
    stats: RecordStats,
    stop: asyncio.Event,
    deadline: float | None,
) -> None:
    loop = asyncio.get_running_loop()
    delay = _BACKOFF_START_S
    while not stop.is_set() and (deadline is None or loop.time() < deadline):
        try:
            await _record_connection(session, config, writer, stats, stop, deadline)
            delay = _BACKOFF_START_S
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as e:
            if not stats.connections:
                raise RecordError(f"cannot connect to {config.stream_url}: {e!r}") from e
            log_event(log, "record_reconnect", level=logging.WARNING, error=repr(e),
                      retry_in_s=delay)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)


async def _record_connection(
    session: aiohttp.ClientSession,
    config: RecordConfig,
    writer: CaptureWriter,
    stats: RecordStats,
    stop: asyncio.Event,
    deadline: float | None,
) -> None:
    """One websocket connection, until the deadline, ``stop``, or the venue closes it (then
    ``ConnectionError``)."""
    loop = asyncio.get_running_loop()
    snapshots: dict[str, asyncio.Task[None]] = {}
    failed: list[BaseException] = []
    decoder = msgspec.json.Decoder(dict[str, Any])
    ws = await asyncio.wait_for(
        session.ws_connect(
            config.stream_url,
            heartbeat=_HEARTBEAT_S,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            max_msg_size=1 << 24,
        ),
        _CONNECT_TIMEOUT_S,
    )
    stats.connections += 1
    log_event(log, "record_connected", url=config.stream_url, connection=stats.connections)
    last_message = loop.time()
    try:
        while not stop.is_set():
            if failed:
                raise failed[0]
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if now - last_message > _SILENCE_S:
                raise ConnectionError(f"no message for {_SILENCE_S:.0f} s")
            # Short waits, so that stop and the deadline are noticed within _POLL_S.
            wait = _POLL_S if deadline is None else max(0.001, min(_POLL_S, deadline - now))
            try:
                msg = await ws.receive(timeout=wait)
            except TimeoutError:
                continue
            recv_ts = time.time()
            last_message = loop.time()
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.PING):
                    continue
                raise ConnectionError(f"websocket closed ({msg.type.name}, {ws.close_code})")
            body = decoder.decode(msg.data)
            stream, data = body.get("stream"), body.get("data")
            if not isinstance(stream, str) or data is None:
                continue  # a reply to a request of ours, not market data
            writer.ws(stream, data, recv_ts)
            symbol, _, kind = stream.partition("@")
            stats.messages[kind] += 1
            symbol = symbol.upper()
            if kind.startswith("depth") and symbol not in snapshots and isinstance(data, dict):
                first_u = int(data["U"])
                task = asyncio.create_task(
                    _snapshot(session, config, writer, stats, symbol, first_u)
                )
                task.add_done_callback(_keep_failure(failed))
                snapshots[symbol] = task
    finally:
        for task in snapshots.values():
            task.cancel()
        await asyncio.gather(*snapshots.values(), return_exceptions=True)
        await ws.close()


def _keep_failure(failed: list[BaseException]) -> Callable[[asyncio.Task[None]], None]:
    """A done-callback that keeps a snapshot task's failure for the receive loop to raise."""

    def done(task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            failed.append(error)

    return done


async def _snapshot(
    session: aiohttp.ClientSession,
    config: RecordConfig,
    writer: CaptureWriter,
    stats: RecordStats,
    symbol: str,
    first_u: int,
) -> None:
    """The REST snapshot of ``symbol``, retaken while it is older than the stream's first
    diff of this connection (``first_u``)."""
    params = {"symbol": symbol, "limit": config.depth_limit}
    for attempt in range(1, _SNAPSHOT_ATTEMPTS + 1):
        body = await _get(session, config, "/api/v3/depth", params)
        writer.rest("/api/v3/depth", params, body)
        writer.flush()
        stats.snapshots[symbol] += 1
        if body["lastUpdateId"] + 1 >= first_u:
            return
        stats.retaken_snapshots += 1
        log_event(log, "record_snapshot_retaken", level=logging.WARNING, symbol=symbol,
                  last_update_id=body["lastUpdateId"], first_u=first_u)  # fmt: skip
        await asyncio.sleep(_BACKOFF_START_S * attempt)
    raise RecordError(
        f"the depth snapshots of {symbol} stayed older than its stream "
        f"({_SNAPSHOT_ATTEMPTS} attempts)"
    )


async def _get(
    session: aiohttp.ClientSession, config: RecordConfig, path: str, params: dict[str, Any]
) -> Any:
    url = config.http_url.rstrip("/") + path
    try:
        async with session.get(url, params=params, timeout=_REST_TIMEOUT) as response:
            body = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise RecordError(f"GET {url} failed: {e!r}") from e
    if status != 200:
        detail = body.get("msg") if isinstance(body, dict) else body
        raise RecordError(f"GET {url} {params} answered {status}: {detail}")
    return body


async def _flush_every(writer: CaptureWriter) -> None:
    while True:
        await asyncio.sleep(_FLUSH_EVERY_S)
        writer.flush()


def _source(config: RecordConfig) -> str:
    if config.http_url == LIVE_HTTP_URL:
        return "context8 record: Binance Spot"
    return f"context8 record: {config.http_url}"


def venue_urls(venue_url: str | None, env_http: str | None, env_ws: str | None) -> tuple[str, str]:
    """(REST, websocket) base URLs: ``--venue-url`` (its websocket URL is the same address,
    ``http`` -> ``ws``), else ``NT_BINANCE_HTTP_URL``/``NT_BINANCE_WS_URL``, else live
    Binance."""
    http = (venue_url or env_http or LIVE_HTTP_URL).rstrip("/")
    if not http.startswith(("http://", "https://")):
        raise ValueError(f"venue URL {http!r}: give http://HOST:PORT or https://HOST")
    if venue_url or not env_ws:
        ws = LIVE_WS_URL if http == LIVE_HTTP_URL else "ws" + http.removeprefix("http")
    else:
        ws = env_ws
    return http, ws.rstrip("/")


def run(args: argparse.Namespace) -> int:
    """``context8 record``: 0 when recorded, 1 when the venue failed, 2 on bad input."""
    from context8.cli import run_until_signalled

    settings = config.load(symbols=parse_symbols(args.symbols) if args.symbols else None)
    foreign = [s for s in settings.symbols if not s.endswith(f".{VENUE}")]
    if foreign:
        raise config.ConfigError(f"SYMBOLS: record speaks to Binance only, not {foreign}")
    try:
        http, ws = venue_urls(args.venue_url, settings.binance_http_url, settings.binance_ws_url)
        record_config = RecordConfig(
            out=Path(args.out),
            symbols=tuple(s.partition(".")[0] for s in settings.symbols),
            seconds=args.seconds,
            http_url=http,
            ws_url=ws,
            trades=args.trades,
            depth_limit=args.depth_limit,
        )
    except ValueError as e:
        print(f"context8 record: {e}", file=sys.stderr)
        return 2
    done: list[RecordStats] = []

    async def main(stop: asyncio.Event) -> None:
        done.append(await record(record_config, stop))

    try:
        run_until_signalled(main)
    except RecordError as e:
        print(f"context8 record: {e}", file=sys.stderr)
        return 1
    stats = done[0]
    messages = ", ".join(f"{n} {kind}" for kind, n in sorted(stats.messages.items()))
    print(
        f"{record_config.out}: {sum(stats.messages.values())} messages ({messages or 'none'}), "
        f"{sum(stats.snapshots.values())} snapshots, {stats.connections} connection(s)",
        file=sys.stderr,
    )
    return 0
