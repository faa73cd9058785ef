"""``context8 bench kinds``: what a second processor kind costs the first, and how fast a new
kind backfills, on the real pipeline (simulator, NautilusTrader ingest, processor processes,
a private Redis).

1. analytics event-to-report latency with the processor node running the analytics kind
   alone, then with analytics and candles on the same streams (same run, same settings;
   measured as ``context8 bench pipeline`` measures it);
2. backfill: with the pipeline running (analytics only) on a busy market (order-flow rate
   x40) for ``--seconds``, a new candles node starts from the beginning of the retained
   streams: the entries it folds per second until its group's cursor reaches the end of
   each stream as it stood when the node started.
"""

from __future__ import annotations

import logging
import time

import redis

from context8.bench.pipeline import (
    SYMBOLS,
    bench_redis,
    pipeline_latency,
    say,
    stream_lengths,
    summary,
    wait_reports,
)
from context8.bench.probes import start_processor
from context8.procs import Fleet, start_pipeline
from core import keys

__all__ = ["run_bench_kinds"]

_BUSY_RATE = "40"


def run_bench_kinds(seconds: float) -> int:
    logging.getLogger("context8").setLevel(logging.WARNING)
    with bench_redis() as (tmp, redis_url, client):
        say(f"context8 bench kinds: {len(SYMBOLS)} symbols, {seconds:.0f} s per phase")
        for kinds in ("analytics", "analytics,candles"):
            latencies, _appended = pipeline_latency(
                client, redis_url, tmp / f"logs-{kinds}", seconds,
                {"NT_PROCESSOR_KINDS": kinds},
            )  # fmt: skip
            say(f"analytics event-to-report latency, processor kinds {kinds} "
                 f"({len(latencies)} events): {summary(latencies)}")  # fmt: skip
        client.flushall()
        with Fleet(tmp / "logs-backfill") as fleet:
            start_pipeline(fleet, redis_url=redis_url, symbols=SYMBOLS, node_id="bench",
                           simulator_args=("--rate", _BUSY_RATE),
                           extra_env={"NT_PROCESSOR_KINDS": "analytics"})  # fmt: skip
            wait_reports(client, fleet)
            time.sleep(seconds)
            ends = {s: _newest_id(client, s) for s in SYMBOLS}
            backlog = stream_lengths(client)
            _child, port = start_processor(fleet, redis_url, "bench-candles", SYMBOLS,
                                           kinds=("candles",))  # fmt: skip
            # from the node being up (its metrics answer: imports done), not its start-up
            fleet.wait_http(f"http://127.0.0.1:{port}/metrics", time.monotonic() + 60)
            started = time.perf_counter()
            while not all(_reached(client, s, ends[s]) for s in SYMBOLS):
                fleet.check_alive()
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
        say(f"new kind (candles) backfilling {backlog:,} retained entries while the "
             f"pipeline runs (rate x{_BUSY_RATE}): {backlog / elapsed:,.0f} events/s "
             f"({elapsed:.2f} s from the node being up)")  # fmt: skip
    return 0


def _newest_id(client: redis.Redis, symbol: str) -> tuple[int, int]:
    newest = client.xrevrange(keys.stream_key(symbol), count=1)
    return _parse(newest[0][0].decode()) if newest else (0, 0)


def _reached(client: redis.Redis, symbol: str, end: tuple[int, int]) -> bool:
    for group in client.xinfo_groups(keys.stream_key(symbol)):
        if group["name"] == b"candles":
            return _parse(group["last-delivered-id"].decode()) >= end
    return False


def _parse(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)
