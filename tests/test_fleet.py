"""A fleet of processor nodes as real processes on loopback: spread, failover after kill -9,
a paused node's stale writes refused, rejoin, graceful hand-off. A feeder thread appends
events to every stream (as ingest does: fenced, under its own lease) all along."""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import redis

from context8.bench.probes import (
    Feeder,
    Watcher,
    lease_holders,
    metric,
    start_processor,
    stop_probes,
)
from context8.procs import Fleet, free_port
from context8.redis_server import PrivateRedis
from core import keys
from core.events import BookDelta, BookSnapshot, Status, decode_event
from tests.reports import validate_report

SYMBOLS = tuple(f"S{i:02d}USDT.BINANCE" for i in range(15))


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[tuple[Fleet, Feeder, Watcher, str]]:
    feeder, watcher = Feeder(redis_url, SYMBOLS), Watcher(redis_url, SYMBOLS)
    feeder.start()
    watcher.start()
    with Fleet(tmp_path / "logs") as fleet:
        yield fleet, feeder, watcher, redis_url
        feeder.halt.set()
        watcher.halt.set()
    feeder.join(5)
    watcher.join(5)
    assert not watcher.backwards, f"writerToken went back: {watcher.backwards[:5]}"


def wait_balanced(fleet: Fleet, client: redis.Redis, nodes: set[str], timeout_s: float) -> dict:
    """Until every symbol is held by one of ``nodes``, evenly (15 over 3 nodes: 4-6 each),
    and every report is written by its symbol's holder."""
    low, high = len(SYMBOLS) // len(nodes) - 1, -(-len(SYMBOLS) // len(nodes)) + 1
    deadline = time.monotonic() + timeout_s
    while True:
        fleet.check_alive()
        held = lease_holders(client, SYMBOLS)
        loads = Counter(held.values())
        reports = [msgspec.json.decode(r) if r else None
                   for r in client.mget([keys.report_key(s) for s in SYMBOLS])]  # fmt: skip
        if (
            set(loads) == nodes
            and all(low <= loads[n] <= high for n in nodes)
            and all(r and r["writer"]["nodeId"] == held[r["symbol"]] for r in reports)
        ):
            return held
        assert time.monotonic() < deadline, f"not balanced: {loads}"
        time.sleep(0.05)


def test_spread_failover_pause_rejoin_and_graceful_handoff(cluster) -> None:
    fleet, _feeder, watcher, url = cluster
    client = redis.Redis.from_url(url, socket_timeout=5)
    nodes = {n: start_processor(fleet, url, n, SYMBOLS) for n in ("p1", "p2", "p3")}
    held = wait_balanced(fleet, client, {"p1", "p2", "p3"}, timeout_s=30)
    for report in watcher.last.values():
        validate_report(report)
        assert report["ingestion"]["status"] == "ok"

    # kill -9: the victim's symbols are published again by the others, with newer tokens
    victim, (child, _port) = "p2", nodes.pop("p2")
    orphaned = {s for s, n in held.items() if n == victim}
    tokens = {s: watcher.last[s]["writer"]["writerToken"] for s in orphaned}
    killed_at = time.time()
    child.process.kill()
    child.process.wait(5)
    fleet.children.remove(child)
    deadline = time.monotonic() + 10
    while len(taken := watcher.taken_over(orphaned, victim, killed_at)) < len(orphaned):
        assert time.monotonic() < deadline, "orphaned symbols not taken over"
        time.sleep(0.01)
    failover_s = max(taken.values()) - killed_at
    print(f"failover after kill -9: {failover_s:.2f} s")
    assert failover_s < 2.5, f"failover took {failover_s:.2f} s"
    assert all(watcher.last[s]["writer"]["writerToken"] > tokens[s] for s in orphaned)
    wait_balanced(fleet, client, {"p1", "p3"}, timeout_s=10)

    # SIGSTOP longer than the lease TTL: the others take its symbols; once resumed, every
    # write it still attempts is refused and it drops them (tokens never go back)
    paused, (child, port) = "p1", nodes["p1"]
    child.process.send_signal(signal.SIGSTOP)
    time.sleep(4.5)
    assert paused not in lease_holders(client, SYMBOLS).values()
    child.process.send_signal(signal.SIGCONT)
    time.sleep(1.5)
    assert metric(port, "nt_lease_conflicts_total") >= 1
    # it rejoins: the symbols spread again, one writer each
    held = wait_balanced(fleet, client, {"p1", "p3"}, timeout_s=15)

    # graceful SIGTERM: each of its symbols is published by the other node right after its
    # last report: a hand-off, well within the lease TTL (a lapse would take at least that)
    leaving = "p3"
    moving = {s for s, n in held.items() if n == leaving}
    child, _port = nodes.pop(leaving)
    terminated_at = time.time()
    child.process.send_signal(signal.SIGTERM)
    assert child.process.wait(10) == 0
    deadline = time.monotonic() + 5
    while len(watcher.taken_over(moving, leaving, terminated_at)) < len(moving):
        assert time.monotonic() < deadline, "hand-off did not complete"
        time.sleep(0.01)
    time.sleep(0.3)
    for symbol in moving:
        report = watcher.last[symbol]
        assert report["writer"]["nodeId"] == "p1"
    # the new owner's first publish minus the old owner's last (its final hand-off report)
    gaps = [
        new - old
        for _s, was, old, _now, new, seen in watcher.handoffs
        if was == leaving and seen > terminated_at
    ]
    assert len(gaps) == len(moving)
    print(f"hand-off gaps (ms): {sorted(gaps)}")
    # DESIGN.md: a hand-off gap under 100 ms. The leaving node publishes until each
    # successor has loaded and folded ahead, then hands off; 8 symbols of two kinds moving
    # at once on 2 cores came out at 29-78 ms per symbol. The maximum only has to show that
    # no symbol waited for its lease to lapse (2 s) or a cold start.
    assert statistics.median(gaps) < 100, f"hand-off gaps (ms): {sorted(gaps)}"
    assert max(gaps) < 1000, f"hand-off gaps (ms): {sorted(gaps)}"
    client.close()


def test_the_fleet_rides_out_a_redis_restart(tmp_path: Path) -> None:
    """Redis killed (the last second of writes may be lost with appendfsync everysec) and
    started again from its append-only file under a running fleet: every symbol is published
    again, and from the restart on no report's writerToken ever goes back."""
    server = PrivateRedis(tmp_path / "redis")  # append-only file on, as the demo runs it
    url = server.start()
    feeder, watcher = Feeder(url, SYMBOLS), Watcher(url, SYMBOLS)
    feeder.start()
    watcher.start()
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        with Fleet(tmp_path / "logs") as fleet:
            start_processor(fleet, url, "p1", SYMBOLS)
            start_processor(fleet, url, "p2", SYMBOLS)
            wait_balanced(fleet, client, {"p1", "p2"}, timeout_s=30)
            time.sleep(1.5)  # the feeder's lease reaches the disk
            assert server.process is not None
            server.process.kill()
            server.process.wait(5)
            restarted_ms = time.time_ns() // 1_000_000
            server.start()  # same port, same data directory
            # Redis's own rollback (lost writes) is not a stale write: watch from here on.
            watcher.tokens.clear()
            watcher.backwards.clear()
            deadline = time.monotonic() + 30
            while True:
                fleet.check_alive()
                reports = [r for r in client.mget([keys.report_key(s) for s in SYMBOLS]) if r]
                fresh = [
                    r for r in map(msgspec.json.decode, reports) if r["updatedAt"] > restarted_ms
                ]
                if len(fresh) == len(SYMBOLS):
                    break
                assert time.monotonic() < deadline, f"{len(fresh)} symbols published again"
                time.sleep(0.1)
            wait_balanced(fleet, client, {"p1", "p2"}, timeout_s=30)
        assert not watcher.backwards, f"writerToken went back: {watcher.backwards[:5]}"
    finally:
        stop_probes(feeder, watcher)
        client.close()
        server.stop()


def test_ingest_nodes_share_the_symbols_and_take_over_on_kill(redis_url: str, tmp_path: Path):
    """Two NautilusTrader ingest nodes against the simulator: the symbols spread over both;
    one killed, the other continues its streams with a fresh snapshot (no silent gap)."""
    symbols = ("BTCUSDT.BINANCE", "ETHUSDT.BINANCE", "SOLUSDT.BINANCE", "DOGEUSDT.BINANCE")
    client = redis.Redis.from_url(redis_url, socket_timeout=5)

    def wait(what: str, check, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while not (result := check()):
            fleet.check_alive()
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)
        return result

    with Fleet(tmp_path / "logs") as fleet:
        port = free_port()
        sim_env = {**os.environ, "SYMBOLS": ",".join(symbols)}
        fleet.spawn("simulator", ["simulate", "--port", str(port)], sim_env)
        fleet.wait_http(f"http://127.0.0.1:{port}/api/v3/ping", time.monotonic() + 30)
        env = {**os.environ, "REDIS_URL": redis_url, "SYMBOLS": ",".join(symbols),
               "NT_BINANCE_HTTP_URL": f"http://127.0.0.1:{port}",
               "NT_BINANCE_WS_URL": f"ws://127.0.0.1:{port}"}  # fmt: skip
        nodes = {
            n: fleet.spawn(n, ["ingest"], {**env, "NT_NODE_ID": n, "NT_METRICS_PORT": "0"})
            for n in ("i1", "i2")
        }

        def spread() -> dict[str, str | None] | None:
            held = lease_holders(client, symbols, role="ingest")
            return held if Counter(held.values()) == {"i1": 2, "i2": 2} else None

        held = wait("two ingest nodes holding two symbols each", spread, 60)
        moving = {s for s, n in held.items() if n == "i1"}
        nodes["i1"].process.kill()
        nodes["i1"].process.wait(5)
        fleet.children.remove(nodes["i1"])
        wait(
            "i2 holding every symbol",
            lambda: set(lease_holders(client, symbols, role="ingest").values()) == {"i2"},
            15,
        )

        def continued(symbol: str) -> bool:
            # after i2's "started" for the symbol: a snapshot, then deltas
            kinds = [decode_event(f[b"e"]) for _, f in client.xrange(keys.stream_key(symbol))]
            starts = [
                i
                for i, e in enumerate(kinds)
                if isinstance(e, Status) and e.status == "started" and "i2" in e.detail
            ]
            if not starts:
                return False
            after = kinds[starts[-1] + 1 :]
            snapshots = [i for i, e in enumerate(after) if isinstance(e, BookSnapshot)]
            return bool(snapshots) and any(
                isinstance(e, BookDelta) for e in after[snapshots[0] + 1 :]
            )

        wait("the moved streams continuing from a fresh snapshot",
             lambda: all(continued(s) for s in moving), 20)  # fmt: skip
    client.close()
