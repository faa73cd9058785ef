"""Everything on a 3-master Redis Cluster (keys hash-tagged by {SYM}), with real processes on
loopback: a processor fleet's steady state and a kill -9 takeover, and the whole pipeline
(NautilusTrader ingest against the simulator, processor, MCP server) end to end."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from pathlib import Path

import msgspec
import pytest
import redis

from context8.bench.probes import Feeder, Watcher, lease_holders, start_processor, stop_probes
from context8.procs import Fleet, free_port, start_pipeline
from core import keys
from core.acl import READER, create_reader, url_with_user
from core.redis_client import connect_sync, get_many
from tests.reports import validate_report
from tests.waits import wait_for

SYMBOLS = tuple(f"{letter}XUSDT.BINANCE" for letter in "EIJBCDAHK")
"""Three symbols per master of a three-master cluster created by ``redis-cli --cluster
create`` (slots split in three equal ranges)."""


def _spread_over(client, nodes: set[str]) -> dict[str, str] | None:
    held = lease_holders(client, SYMBOLS)
    reports = [msgspec.json.decode(r) if r else None
               for r in get_many(client, [keys.report_key(s) for s in SYMBOLS])]  # fmt: skip
    if set(held.values()) != nodes or max(Counter(held.values()).values()) > -(-9 // len(nodes)):
        return None
    for symbol, report in zip(SYMBOLS, reports, strict=True):
        if report is None or report["writer"]["nodeId"] != held[symbol]:
            return None
    return held


def test_a_fleet_on_a_cluster_spreads_and_fails_over(redis_cluster_url, tmp_path):
    client = connect_sync(redis_cluster_url, socket_timeout=5)
    owners = Counter(client.get_node_from_key(keys.stream_key(s)).name for s in SYMBOLS)
    assert sorted(owners.values()) == [3, 3, 3], "the symbols' keys live on every master"
    feeder, watcher = Feeder(redis_cluster_url, SYMBOLS), Watcher(redis_cluster_url, SYMBOLS)
    feeder.start()
    watcher.start()
    try:
        with Fleet(tmp_path / "logs") as fleet:
            nodes = {n: start_processor(fleet, redis_cluster_url, n, SYMBOLS)[0]
                     for n in ("p1", "p2", "p3")}  # fmt: skip
            held = wait_for("3 nodes sharing the symbols",
                         lambda: _spread_over(client, {"p1", "p2", "p3"}), 30, fleet)  # fmt: skip
            for raw in get_many(client, [keys.report_key(s) for s in SYMBOLS]):
                report = validate_report(msgspec.json.decode(raw))
                assert report["ingestion"]["status"] == "ok"

            victim = nodes.pop("p2")
            orphaned = {s for s, n in held.items() if n == "p2"}
            killed_at = time.time()
            victim.process.kill()
            victim.process.wait(5)
            fleet.children.remove(victim)
            deadline = time.monotonic() + 10
            while len(taken := watcher.taken_over(orphaned, "p2", killed_at)) < len(orphaned):
                assert time.monotonic() < deadline, "orphaned symbols not taken over"
                time.sleep(0.01)
            failover_s = max(taken.values()) - killed_at
            print(f"\nfailover after kill -9 on the cluster: {failover_s:.2f} s")
            assert failover_s < 2.5
            wait_for("2 nodes sharing the symbols", lambda: _spread_over(client, {"p1", "p3"}), 10,
                  fleet)  # fmt: skip
    finally:
        stop_probes(feeder, watcher)
        client.close()
    assert not watcher.backwards, f"writerToken went back: {watcher.backwards[:5]}"


def test_the_pipeline_end_to_end_on_a_cluster(redis_cluster_url, tmp_path: Path):
    symbols = ("BTCUSDT.BINANCE", "ETHUSDT.BINANCE")
    client = connect_sync(redis_cluster_url, socket_timeout=5)
    # the MCP server reads as the read-only user, created on every node
    reader_url = url_with_user(redis_cluster_url, READER, create_reader(client))
    mcp_port = free_port()
    with Fleet(tmp_path / "logs") as fleet:
        start_pipeline(fleet, redis_url=redis_cluster_url, symbols=symbols, node_id="cl",
                       mcp_port=mcp_port,
                       extra_env={"CONTEXT8_MCP_REDIS_URL": reader_url})  # fmt: skip

        def fresh_reports() -> list[dict] | None:
            raw = get_many(client, [keys.report_key(s) for s in symbols])
            reports = [msgspec.json.decode(r) for r in raw if r]
            ok = len(reports) == len(symbols) and all(
                r["ingestion"]["status"] == "ok" and r["best_bid"] for r in reports
            )
            return reports if ok else None

        for report in wait_for("fresh reports from the cluster", fresh_reports, 90, fleet):
            validate_report(report)
        url = f"http://127.0.0.1:{mcp_port}/get_report?symbol=BTCUSDT"
        with urllib.request.urlopen(url, timeout=5) as reply:
            served = json.loads(reply.read())
        assert served["symbol"] == "BTCUSDT.BINANCE"
        assert served["ingestion"]["status"] in ("ok", "degraded")
    reader = connect_sync(reader_url, socket_timeout=5)
    assert reader.get(keys.report_key("BTCUSDT.BINANCE"))
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.set(keys.report_key("BTCUSDT.BINANCE"), b"{}")
    reader.close()
    client.close()
