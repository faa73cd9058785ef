"""Probes of a running fleet, for the failover benchmark and the fleet tests: a feeder that
appends events to every stream as ingest does (fenced, under its own lease), and a watcher
that reads every report every few ms, checking that no writerToken ever goes back and
noting each hand-off from one writer to another."""

from __future__ import annotations

import itertools
import os
import threading
import time
import urllib.request
from collections import deque

import msgspec
import redis

from context8.procs import Child, Fleet, free_port
from core import keys, lua
from core.events import ENTRY_FIELD, SCHEMA_VERSION, BookSnapshot, Trade, encode_event
from core.redis_client import AnySyncRedis, connect_sync, get_many

__all__ = ["Feeder", "Watcher", "lease_holders", "metric", "start_processor", "stop_probes"]

V = SCHEMA_VERSION


class Feeder(threading.Thread):
    """Appends a trade to every stream every 50 ms, through the fenced append script."""

    def __init__(self, url: str, symbols: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        self.symbols = symbols
        self.client = connect_sync(url, socket_timeout=5)
        self.append = self.client.register_script(lua.source("fenced_append"))
        acquire = self.client.register_script(lua.source("lease_acquire"))
        self.tokens = {
            s: acquire(
                keys=[
                    keys.lease_key("ingest", s),
                    keys.token_key("ingest", s),
                    keys.fence_key("ingest", s),
                    keys.successor_key("ingest", s),
                ],
                args=["feeder", 600_000, "0", ""],
            )[0]
            for s in self.symbols
        }
        self.halt = threading.Event()
        now = time.time_ns()
        for symbol in self.symbols:
            self._add(symbol, BookSnapshot(V, now, now, 2, 3, 1, [(10000, 5)], [(10010, 5)]))

        self.trades = 0
        """Trades appended to each stream so far (ids 1..trades)."""

    def _add(self, symbol: str, *events: object) -> None:
        self.append(
            keys=[keys.lease_key("ingest", symbol), keys.token_key("ingest", symbol),
                  keys.fence_key("ingest", symbol), keys.stream_key(symbol)],
            args=["feeder", self.tokens[symbol], ENTRY_FIELD, 0, *map(encode_event, events)],
        )  # fmt: skip
        self.client.publish(keys.APPENDED_CHANNEL, keys.appended_message([symbol]))

    def _trade(self, ts_ns: int) -> Trade:
        self.trades += 1
        n = self.trades
        side = "buy" if n % 3 else "sell"
        return Trade(V, ts_ns, ts_ns, 2, 3, 10000 + n % 11, 1 + n % 7, side, str(n))

    def backlog(self, trades: int, span_s: float) -> None:
        """Before ``start``: ``trades`` trades per stream, spread over the last ``span_s``
        seconds of venue time (a history for a new consumer group to backfill)."""
        now = time.time_ns()
        step = int(span_s * 1e9 / trades)
        for first in range(0, trades, 1000):
            batch = [self._trade(now - (trades - i) * step)
                     for i in range(first, min(first + 1000, trades))]  # fmt: skip
            for symbol in self.symbols:
                self._add(symbol, *batch)

    def run(self) -> None:
        while not self.halt.wait(0.05):
            now = time.time_ns()
            trade = self._trade(now)
            try:
                for symbol in self.symbols:
                    self._add(symbol, trade)
            except redis.RedisError:
                continue  # Redis restarting: the feed resumes with it


class Watcher(threading.Thread):
    """Reads every report every few ms: checks that no symbol's writerToken ever goes back,
    and notes every hand-off from one writer to another."""

    def __init__(self, url: str, symbols: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        self.symbols = symbols
        self.client = connect_sync(url, socket_timeout=5)
        self.halt = threading.Event()
        self.tokens: dict[str, int] = {}
        self.backwards: list[tuple[str, int, int]] = []
        self.handoffs: list[tuple[str, str, int, str, int, float]] = []
        """(symbol, old writer, its last updatedAt, new writer, its first updatedAt, when
        the new writer's report was first seen)."""
        self.last: dict[str, dict] = {}
        self.intervals: deque[int] = deque(maxlen=1_000_000)
        """ms between two successive reports of one writer (as far as polling sees them)."""
        self.published: dict[str, deque[int]] = {s: deque(maxlen=100_000) for s in symbols}
        """Symbol -> the updatedAt of every report seen, oldest first."""

    def run(self) -> None:
        report_keys = [keys.report_key(s) for s in self.symbols]
        while not self.halt.wait(0.003):
            seen_at = time.time()
            try:
                reports = get_many(self.client, report_keys)
            except redis.RedisError:
                continue  # Redis restarting
            for symbol, raw in zip(self.symbols, reports, strict=True):
                if raw is None:
                    continue
                report = msgspec.json.decode(raw)
                token = report["writer"]["writerToken"]
                if token < self.tokens.get(symbol, 0):
                    self.backwards.append((symbol, self.tokens[symbol], token))
                self.tokens[symbol] = max(token, self.tokens.get(symbol, 0))
                writer = report["writer"]["nodeId"]
                before = self.last.get(symbol)
                if before is not None and before["writer"]["nodeId"] != writer:
                    old = before["writer"]["nodeId"]
                    self.handoffs.append(
                        (symbol, old, before["updatedAt"], writer, report["updatedAt"], seen_at)
                    )
                elif before is not None and report["updatedAt"] != before["updatedAt"]:
                    self.intervals.append(report["updatedAt"] - before["updatedAt"])
                if before is None or report["updatedAt"] != before["updatedAt"]:
                    self.published[symbol].append(report["updatedAt"])
                self.last[symbol] = report

    def longest_silence(self, symbol: str, since_ms: int, until_ms: int) -> int:
        """The longest time (ms) between two successive reports of ``symbol``, from the last
        one before ``since_ms`` to the first at or after ``until_ms``."""
        times = list(self.published[symbol])
        start = max((t for t in times if t <= since_ms), default=times[0])
        end = min((t for t in times if t >= until_ms), default=times[-1])
        window = [t for t in times if start <= t <= end]
        return max((b - a for a, b in itertools.pairwise(window)), default=0)

    def taken_over(self, symbols: set[str], old: str, since: float) -> dict[str, float]:
        """Symbol -> when another writer's report was first seen after ``since``."""
        taken: dict[str, float] = {}
        for symbol, was, _old_at, _now, _new_at, seen_at in self.handoffs:
            if symbol in symbols and was == old and seen_at > since:
                taken.setdefault(symbol, seen_at)
        return taken


def stop_probes(*probes: Feeder | Watcher) -> None:
    for probe in probes:
        probe.halt.set()
    for probe in probes:
        probe.join(5)


def start_processor(
    fleet: Fleet,
    redis_url: str,
    node_id: str,
    symbols: tuple[str, ...],
    *,
    kinds: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[Child, int]:
    """A ``context8 process`` node (of ``kinds``, default every installed one); returns it
    and its metrics port."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "SYMBOLS": ",".join(symbols),
           "NT_NODE_ID": node_id, "NT_METRICS_PORT": str(port), **(env or {})}  # fmt: skip
    args = ["process", "--kinds", ",".join(kinds)] if kinds else ["process"]
    return fleet.spawn(node_id, args, env), port


def lease_holders(
    client: AnySyncRedis, symbols: tuple[str, ...], role: str = "analytics"
) -> dict[str, str | None]:
    raw = get_many(client, [keys.lease_key(role, s) for s in symbols])
    return {s: v.decode() if v else None for s, v in zip(symbols, raw, strict=True)}


def metric(port: int, name: str) -> float:
    """The sum of a metric's series (every label set) on a node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
        lines = reply.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith((name + " ", name + "{")))  # fmt: skip
