"""``context8 bench``: figures measured on the real pipeline (processes on loopback, a private
Redis), printed as plain lines. Nothing here is simulated but the market itself.

pipeline:
  1. latency at the simulator's default rate, with the default publish coalescing (50 ms)
     and without it: for every entry appended to ``md:{SYM}``, the
     time from its venue timestamp (``ts_event``) to the first moment a report that has
     folded it is readable in Redis (an outside poller, ~1 ms granularity; Binance venue
     times are whole milliseconds);
  2. ingest throughput: a capture written from the order-flow model, replayed by the
     simulator as fast as it can send, through NautilusTrader and the ingest actor into
     Redis (with the CPU time each process used), next to raw redis-py pipelined XADD of the
     very same entries into the same Redis;
  3. fold throughput: a fresh processor node catching up on those streams from the start,
     and the bare decode + fold loop in this process on the same entries.

failover (3 processor nodes, 15 symbols, a feeder appending to every stream):
  kill -9 one node per round (``--rounds``, default 20): the time from the kill to the first
  report of each of its symbols by another node (p50/p99), the symbols moved per leave and
  per rejoin; as many rounds of SIGTERM: the gap between the leaving node's last report of
  each of its symbols and the new owner's first, and the longest silence from the signal to
  that first report, next to the gap between two reports of one owner; then a node paused
  (SIGSTOP) past its lease and resumed: stale writes refused vs accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec
import redis

from context8.bench.probes import (
    Feeder,
    Watcher,
    lease_holders,
    metric,
    start_processor,
    stop_probes,
)
from context8.bench.samples import say, summary
from context8.procs import Child, Fleet, start_pipeline
from context8.redis_server import PrivateRedis
from core import keys
from core import settings as config
from core.events import ENTRY_FIELD, decode_event
from ingest.simulator.synth import write_model_capture
from processors.analytics.fold import fold, new_state
from processors.runtime.node import run_processor

__all__ = [
    "SYMBOLS",
    "bench_redis",
    "measure_latency",
    "pipeline_latency",
    "run_bench",
    "stream_lengths",
    "wait_reports",
]

SYMBOLS = ("BTCUSDT.BINANCE", "ETHUSDT.BINANCE", "SOLUSDT.BINANCE", "DOGEUSDT.BINANCE")
_BUSY_RATE = 40.0
_BUSY_SECONDS = 20.0


@contextlib.contextmanager
def bench_redis() -> Iterator[tuple[Path, str, redis.Redis]]:
    """A scratch directory, a private Redis in it, and a client of it; all gone on exit."""
    with tempfile.TemporaryDirectory(prefix="context8-bench-") as scratch:
        tmp = Path(scratch)
        server = PrivateRedis(tmp / "redis")
        redis_url = server.start()
        client = redis.Redis.from_url(redis_url, socket_timeout=10)
        try:
            yield tmp, redis_url, client
        finally:
            client.close()
            server.stop()


def wait_reports(client: redis.Redis, fleet: Fleet, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while any(v is None for v in client.mget([keys.report_key(s) for s in SYMBOLS])):
        fleet.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError("no reports from the pipeline")
        time.sleep(0.1)


def measure_latency(client: redis.Redis, seconds: float) -> tuple[list[float], list[float]]:
    """Event-to-report latencies (ms) of every entry appended during ``seconds``, and the
    ingest part of each (venue time to the entry's id, which is Redis's clock at XADD)."""
    # from the current end of each stream ("$" would mean "the end" on every poll)
    streams = {}
    for symbol in SYMBOLS:
        newest = client.xrevrange(keys.stream_key(symbol), count=1)
        streams[keys.stream_key(symbol)] = newest[0][0].decode() if newest else "0-0"
    report_keys = [keys.report_key(s) for s in SYMBOLS]
    waiting: dict[str, list[tuple[tuple[int, int], int]]] = {s: [] for s in SYMBOLS}
    latencies: list[float] = []
    appended: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or any(waiting.values()):
        if time.monotonic() > deadline + 5:
            break  # entries never reported count as missing, not as fast
        for stream, entries in client.xread(streams, count=10_000) or ():
            symbol = stream.decode()[4:-1]
            for raw_id, fields in entries:
                event = decode_event(fields[ENTRY_FIELD])
                entry_id = _id(raw_id)
                waiting[symbol].append((entry_id, event.ts_event // 1_000_000))
                appended.append(entry_id[0] - event.ts_event / 1e6)
                streams[stream.decode()] = raw_id.decode()
        seen_ms = time.time_ns() / 1e6
        for symbol, raw in zip(SYMBOLS, client.mget(report_keys), strict=True):
            if raw is None or not waiting[symbol]:
                continue
            folded = _id(msgspec.json.decode(raw)["stream"]["last_id"].encode())
            pending = waiting[symbol]
            done = 0
            while done < len(pending) and pending[done][0] <= folded:
                latencies.append(seen_ms - pending[done][1])
                done += 1
            del pending[:done]
        time.sleep(0.001)
    return latencies, appended


def pipeline_latency(
    client: redis.Redis, redis_url: str, log_dir: Path, seconds: float, extra_env: dict[str, str]
) -> tuple[list[float], list[float]]:
    """``measure_latency`` over a fresh pipeline (simulator, ingest, processor) started with
    ``extra_env`` on the emptied Redis at ``redis_url`` (``client``'s)."""
    client.flushall()
    with Fleet(log_dir) as fleet:
        start_pipeline(fleet, redis_url=redis_url, symbols=SYMBOLS, node_id="bench",
                       extra_env=extra_env)  # fmt: skip
        wait_reports(client, fleet)
        time.sleep(2)  # let the start-up catch-up settle
        measured = measure_latency(client, seconds)
        fleet.check_alive()
    return measured


def _id(raw_id: bytes) -> tuple[int, int]:
    ms, _, seq = raw_id.partition(b"-")
    return int(ms), int(seq)


def stream_lengths(client: redis.Redis) -> int:
    return sum(client.xlen(keys.stream_key(s)) for s in SYMBOLS)


def _wait_settled(client: redis.Redis, fleet: Fleet) -> tuple[int, float]:
    """Once the streams stop growing: entries appended, and the time from the first to the
    last append (the entry ids are Redis's clock at XADD)."""
    last = -1
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(2)
        fleet.check_alive()
        total = stream_lengths(client)
        if total == last and total:
            break
        last = total
    first_ms = min(_id(client.xrange(keys.stream_key(s), count=1)[0][0])[0] for s in SYMBOLS)
    last_ms = max(_id(client.xrevrange(keys.stream_key(s), count=1)[0][0])[0] for s in SYMBOLS)
    return last, (last_ms - first_ms) / 1000


def _cpu_seconds(child: Child) -> float:
    """User + system CPU time of a child process so far (Linux /proc)."""
    fields = Path(f"/proc/{child.process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _raw_xadd_rate(client: redis.Redis, entries: list[tuple[str, bytes]], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(entries), batch):
        pipe = client.pipeline(transaction=False)
        for symbol, payload in entries[i : i + batch]:
            pipe.xadd(f"bench:raw:{{{symbol}}}", {ENTRY_FIELD: payload})
        pipe.execute()
    return len(entries) / (time.perf_counter() - start)


def _fold_rate(entries: list[tuple[str, bytes]]) -> tuple[float, float]:
    """Events/s and level updates/s of decode + fold alone, one core."""
    states = {s: new_state() for s in SYMBOLS}
    levels = 0
    start = time.perf_counter()
    for i, (symbol, payload) in enumerate(entries):
        event = decode_event(payload)
        levels += len(getattr(event, "bids", ())) + len(getattr(event, "asks", ()))
        fold(states[symbol], event, f"{i}-0")
    elapsed = time.perf_counter() - start
    return len(entries) / elapsed, levels / elapsed


def _processor_catch_up_rate(redis_url: str, total: int) -> float:
    settings = config.load({}, redis_url=redis_url, symbols=SYMBOLS, node_id="bench-catch-up")

    async def scenario() -> float:
        stop = asyncio.Event()
        client = redis.asyncio.Redis.from_url(redis_url)
        start = time.perf_counter()
        node = asyncio.create_task(run_processor(settings, stop))
        while True:
            raws = await client.mget([keys.report_key(s) for s in SYMBOLS])
            folded = sum(
                msgspec.json.decode(r)["stream"]["events_folded"] for r in raws if r is not None
            )
            if folded >= total:
                break
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - start
        stop.set()
        await node
        await client.aclose()
        return total / elapsed

    return asyncio.run(scenario())


def run_bench(name: str, *, seconds: float, rounds: int = 20) -> int:
    if name == "failover":
        _run_failover(rounds)
        return 0
    if name != "pipeline":
        raise ValueError(f"unknown benchmark {name!r}")
    logging.getLogger("context8").setLevel(logging.WARNING)  # the in-process catch-up node
    with bench_redis() as (tmp, redis_url, client):
        say(f"context8 bench pipeline: {len(SYMBOLS)} symbols, {seconds:.0f} s per phase")
        for min_publish_ms in ("50", "0"):
            latencies, appended = pipeline_latency(
                client, redis_url, tmp / f"logs-latency-{min_publish_ms}", seconds,
                {"NT_MIN_PUBLISH_MS": min_publish_ms},
            )  # fmt: skip
            say(
                f"event-to-report latency at the default rate, NT_MIN_PUBLISH_MS="
                f"{min_publish_ms} ({len(latencies)} events):"
            )
            say(f"  venue time -> report readable: {summary(latencies)}")
            say(f"  of which venue time -> appended to md:{{SYM}}: {summary(appended)}")
        client.flushall()
        capture = tmp / "model.jsonl"
        started = time.perf_counter()
        offered = write_model_capture(
            capture, tuple(sym.partition(".")[0] for sym in SYMBOLS),
            seconds=_BUSY_SECONDS, rate=_BUSY_RATE,
        )  # fmt: skip
        say(
            f"order-flow model (rate x{_BUSY_RATE:g}), generated and written as a capture: "
            f"{offered / (time.perf_counter() - started):,.0f} messages/s"
        )
        with Fleet(tmp / "logs-throughput") as fleet:
            replay = ("--capture", str(capture), "--speed", "0")
            start_pipeline(fleet, redis_url=redis_url, symbols=SYMBOLS, node_id="bench",
                           simulator_args=replay)  # fmt: skip
            simulator, ingest = fleet.children[0], fleet.children[1]
            while not stream_lengths(client):  # CPU from the first append on, not start-up
                fleet.check_alive()
                time.sleep(0.005)
            cpu_before = _cpu_seconds(simulator), _cpu_seconds(ingest)
            appended, span_s = _wait_settled(client, fleet)
            cpu_after = _cpu_seconds(simulator), _cpu_seconds(ingest)
        sim_cpu, ingest_cpu = (a - b for a, b in zip(cpu_after, cpu_before, strict=True))
        entries = [
            (symbol, fields[ENTRY_FIELD])
            for symbol in SYMBOLS
            for _id_, fields in client.xrange(keys.stream_key(symbol))
        ]
        raw_rate = _raw_xadd_rate(client, entries, batch=100)
        say(
            f"ingest, a model capture ({offered:,} venue messages) replayed as fast as the "
            f"simulator sends: {appended:,} appended in {span_s:.1f} s = "
            f"{appended / span_s:,.0f} messages/s; CPU: ingest node {ingest_cpu:.1f} s "
            f"({appended / max(ingest_cpu, 1e-9):,.0f} messages per CPU-second), "
            f"simulator {sim_cpu:.1f} s"
        )
        say(
            f"raw redis-py pipelined XADD of the same {len(entries):,} entries "
            f"(batches of 100), same Redis: {raw_rate:,.0f} entries/s"
        )
        sizes = [len(p) for _s, p in entries]
        say(f"entry size: mean {statistics.mean(sizes):.0f} B, max {max(sizes)} B")
        events_rate, levels_rate = _fold_rate(entries)
        say(
            f"decode + fold alone (one core): {events_rate:,.0f} events/s, "
            f"{levels_rate:,.0f} level updates/s"
        )
        for symbol in SYMBOLS:
            client.delete(
                keys.lease_key("analytics", symbol),
                keys.report_key(symbol),
                keys.checkpoint_key("analytics", symbol),
            )
            client.xgroup_destroy(keys.stream_key(symbol), "analytics")
        catch_up = _processor_catch_up_rate(redis_url, len(entries))
        say(f"processor node catching up from the stream start: {catch_up:,.0f} events/s")
    return 0


_FLEET_SYMBOLS = tuple(f"F{i:02d}USDT.BINANCE" for i in range(15))


def _settled(client: redis.Redis, fleet: Fleet, nodes: set[str], quiet_s: float = 1.5) -> dict:
    """The holders once every symbol is held by ``nodes`` (each holding some) and nothing
    has moved for ``quiet_s``."""
    deadline = time.monotonic() + 60
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        fleet.check_alive()
        held = lease_holders(client, _FLEET_SYMBOLS)
        if held != last:
            last, since = held, time.monotonic()
        elif set(held.values()) == nodes and time.monotonic() - since >= quiet_s:
            return held
        time.sleep(0.05)
    raise TimeoutError(f"the fleet did not settle: {last}")


class _Round(NamedTuple):
    holders: dict
    """The holders once the fleet settled without the victim."""
    taken: dict[str, float]
    """Symbol -> seconds from the signal to its first report by another node."""
    gaps: list[float]
    """Per symbol, ms from the victim's last report to the new owner's first."""
    silences: list[float]
    """Per symbol, the longest ms between two successive reports from the signal on."""


def _take_down(
    fleet: Fleet,
    redis_url: str,
    client: redis.Redis,
    watcher: Watcher,
    nodes: dict[str, tuple[Child, int]],
    held: dict,
    victim: str,
    how: signal.Signals,
) -> _Round:
    """Stop ``victim`` with ``how`` and start it again once the others have settled without
    it."""
    child, _port = nodes.pop(victim)
    moving = {s for s, n in held.items() if n == victim}
    signalled_at = time.time()
    child.process.send_signal(how)
    child.process.wait(10)
    fleet.children.remove(child)
    deadline = time.monotonic() + 30
    while len(taken := watcher.taken_over(moving, victim, signalled_at)) < len(moving):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{how.name} of {victim}: its symbols not taken over")
        time.sleep(0.005)
    moves = [(symbol, old_at, new_at)
             for symbol, was, old_at, _now, new_at, seen_at in watcher.handoffs
             if was == victim and symbol in moving and seen_at > signalled_at]  # fmt: skip
    gaps = [new_at - old_at for _symbol, old_at, new_at in moves]
    signalled_ms = int(signalled_at * 1000)
    silences = [watcher.longest_silence(symbol, signalled_ms, new_at)
                for symbol, _old_at, new_at in moves]  # fmt: skip
    after = _settled(client, fleet, set(nodes))
    nodes[victim] = start_processor(fleet, redis_url, victim, _FLEET_SYMBOLS)
    return _Round(after, {s: at - signalled_at for s, at in taken.items()}, gaps, silences)


def _run_failover(rounds: int) -> None:
    with bench_redis() as (tmp, redis_url, client):
        feeder = Feeder(redis_url, _FLEET_SYMBOLS)
        watcher = Watcher(redis_url, _FLEET_SYMBOLS)
        feeder.start()
        watcher.start()
        try:
            with Fleet(tmp / "logs") as fleet:
                nodes = {
                    n: start_processor(fleet, redis_url, n, _FLEET_SYMBOLS)
                    for n in ("p1", "p2", "p3")
                }
                held = _settled(client, fleet, set(nodes))
                take_down = functools.partial(_take_down, fleet, redis_url, client, watcher, nodes)
                failovers, leave_moves, join_moves = [], [], []
                for round_ in range(rounds):
                    after, taken, *_ = take_down(held, f"p{round_ % 3 + 1}", signal.SIGKILL)
                    failovers.append(max(taken.values()))
                    leave_moves.append(sum(after[s] != held[s] for s in _FLEET_SYMBOLS))
                    held = _settled(client, fleet, set(nodes))
                    join_moves.append(sum(after[s] != held[s] for s in _FLEET_SYMBOLS))
                say(
                    f"failover after kill -9, {rounds} rounds (3 nodes, 15 symbols): "
                    f"{summary([f * 1000 for f in failovers])}"
                )
                say(
                    f"symbols moved per node leave: mean {statistics.mean(leave_moves):.1f} "
                    f"(its own share: {len(_FLEET_SYMBOLS) / 3:.0f}); per join: mean "
                    f"{statistics.mean(join_moves):.1f}, max {max(join_moves)}"
                )
                intervals_before = len(watcher.intervals)
                gaps: list[float] = []
                silences: list[float] = []
                for round_ in range(rounds):
                    handed = take_down(held, f"p{round_ % 3 + 1}", signal.SIGTERM)
                    gaps += handed.gaps
                    silences += handed.silences
                    held = _settled(client, fleet, set(nodes))
                say(
                    f"graceful hand-off (SIGTERM), {rounds} rounds, {len(gaps)} symbols: gap "
                    f"from the old owner's last report to the new owner's first: {summary(gaps)}; "
                    f"{sum(gap >= 100 for gap in gaps)} at or over 100 ms"
                )
                say(
                    "  the longest a symbol went without a new report, from the signal to the "
                    f"new owner's first: {summary(silences)}"
                )
                say(
                    "  next to the gap between two reports of one owner, same run: "
                    f"{summary(list(watcher.intervals)[intervals_before:])}"
                )
                child, port = nodes["p1"]
                refused_before = metric(port, "nt_lease_conflicts_total")
                child.process.send_signal(signal.SIGSTOP)
                time.sleep(4.0)  # twice the lease TTL: the others take its symbols over
                child.process.send_signal(signal.SIGCONT)
                time.sleep(2.0)
                refused = metric(port, "nt_lease_conflicts_total") - refused_before
                say(
                    f"a node paused 4 s (SIGSTOP) then resumed: stale writes attempted and "
                    f"refused {refused:.0f}, accepted {len(watcher.backwards)} "
                    f"(reports whose writerToken went back)"
                )
        finally:
            stop_probes(feeder, watcher)
