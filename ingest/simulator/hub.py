"""Fan-out of market messages to websocket connections, and the fault injection on diffs.

Every message is encoded once per stream and the same bytes go to every subscriber, so all
connections see the same sequence. Each connection has its own outgoing queue drained by its
own task: a slow client delays nobody else, and one that falls `MAX_BACKLOG` frames behind is
disconnected (as Binance does with slow consumers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

__all__ = ["MAX_BACKLOG", "Connection", "DiffSpeed", "Hub"]

log = logging.getLogger(__name__)

MAX_BACKLOG: Final = 100_000
PARTIAL_LEVELS: Final = (5, 10, 20)

DiffSpeed = Literal["100ms", "1000ms"]


class Connection:
    """One websocket client: its streams, its output form and its outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse, *, combined: bool) -> None:
        self.ws = ws
        self.combined = combined  # `{"stream", "data"}` wrappers, else bare payloads
        self.streams: set[str] = set()
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._overflow = False

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def push(self, frame: bytes) -> None:
        if self._overflow:
            return
        if len(self._queue) >= MAX_BACKLOG:
            self._overflow = True
            self._queue.clear()
        else:
            self._queue.append(frame)
        self._wake.set()

    async def pump(self) -> None:
        """Send queued frames until the connection ends; runs as the connection's task."""
        ws = self.ws
        try:
            while not ws.closed:
                await self._wake.wait()
                self._wake.clear()
                if self._overflow:
                    log.warning(
                        "closing a websocket client that fell %d frames behind", MAX_BACKLOG
                    )
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"slow consumer")
                    return
                while self._queue and not ws.closed:
                    await ws.send_frame(self._queue.popleft(), WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            return  # the client went away mid-send; the handler cleans up


class Hub:
    """Subscriptions by stream name, publication, and dropped-diff fault injection."""

    def __init__(self, *, drop_diff_every: int = 0) -> None:
        self._subs: dict[str, set[Connection]] = defaultdict(set)
        self._connections: set[Connection] = set()
        self._encoder = msgspec.json.Encoder()
        self._drop_every = drop_diff_every
        self._diff_count: dict[tuple[str, DiffSpeed], int] = defaultdict(int)
        self._drops_pending: dict[tuple[str, DiffSpeed], int] = defaultdict(int)
        self.dropped = 0
        self.first_subscription = asyncio.Event()
        self.running = asyncio.Event()  # cleared = the market clock is paused
        self.running.set()

    # -- connections ---------------------------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        self._connections.add(conn)

    def detach(self, conn: Connection) -> None:
        self._connections.discard(conn)
        self.unsubscribe(conn, list(conn.streams))

    def subscribe(self, conn: Connection, streams: Iterable[str]) -> None:
        for stream in streams:
            conn.streams.add(stream)
            self._subs[stream].add(conn)
            self.first_subscription.set()

    def unsubscribe(self, conn: Connection, streams: Iterable[str]) -> None:
        for stream in streams:
            conn.streams.discard(stream)
            subs = self._subs.get(stream)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self._subs[stream]

    async def disconnect_all(self) -> int:
        """Close every websocket (clients are expected to reconnect and resubscribe)."""
        conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"simulator disconnect")
        return len(conns)

    def status(self) -> dict[str, Any]:
        return {
            "connections": len(self._connections),
            "subscriptions": {stream: len(conns) for stream, conns in self._subs.items()},
            "dropped_diffs": self.dropped,
            "paused": not self.running.is_set(),
        }

    async def wait_running(self) -> float:
        """Wait while the market is paused; returns the seconds waited."""
        if self.running.is_set():
            return 0.0
        loop = asyncio.get_running_loop()
        paused_at = loop.time()
        await self.running.wait()
        return loop.time() - paused_at

    def backlog(self) -> int:
        """Frames queued for the slowest connection."""
        return max((c.backlog for c in self._connections), default=0)

    # -- publication ---------------------------------------------------------------------------

    def wants(self, stream: str) -> bool:
        return stream in self._subs

    def publish(self, streams: tuple[str, ...] | str, data: Any) -> None:
        """Send `data` on each of `streams` (aliases of one feed) to their subscribers."""
        payload: bytes | None = None
        for stream in (streams,) if isinstance(streams, str) else streams:
            conns = self._subs.get(stream)
            if not conns:
                continue
            if payload is None:
                payload = self._encoder.encode(data)
            combined = b'{"stream":"' + stream.encode() + b'","data":' + payload + b"}"
            for conn in conns:
                conn.push(combined if conn.combined else payload)

    def publish_diff(
        self,
        symbol: str,
        speed: DiffSpeed,
        data: dict[str, Any],
        snapshot: Callable[[int], dict[str, Any]],
    ) -> None:
        """A depth diff on its stream names, minus injected drops, plus the partial-depth
        streams of that speed (`snapshot(levels)` must be the book as of this diff)."""
        s = symbol.lower()
        key = (symbol, speed)
        self._diff_count[key] += 1
        if self._drop_every and self._diff_count[key] % self._drop_every == 0:
            self.dropped += 1
        elif self._drops_pending.get(key):
            self._drops_pending[key] -= 1
            self.dropped += 1
        elif speed == "100ms":
            self.publish(f"{s}@depth@100ms", data)
        else:
            self.publish((f"{s}@depth", f"{s}@depth@1000ms"), data)
        for levels in PARTIAL_LEVELS:
            names = (
                (f"{s}@depth{levels}@100ms",)
                if speed == "100ms"
                else (f"{s}@depth{levels}", f"{s}@depth{levels}@1000ms")
            )
            if any(n in self._subs for n in names):
                self.publish(names, snapshot(levels))

    def drop_next_diffs(self, symbol: str, count: int) -> None:
        """Drop the next `count` diffs of `symbol` on each depth stream; ids still advance."""
        for speed in ("100ms", "1000ms"):
            self._drops_pending[(symbol, speed)] += count
