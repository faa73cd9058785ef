"""The whole pipeline as processes: simulator -> NautilusTrader ingest -> Redis Streams ->
processor -> report -> MCP, called through the SDK's own client over streamable HTTP and
stdio. Every process is started here, on loopback, and stopped at the end."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import redis
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from prometheus_client.parser import text_string_to_metric_families

from context8.procs import Fleet, Pipeline, free_port, start_pipeline
from core import keys
from tests.reports import validate_report

SYMBOLS = ("BTCUSDT.BINANCE", "ETHUSDT.BINANCE")


@pytest.fixture
def pipeline(redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    with Fleet(tmp_path / "logs") as fleet:
        running = start_pipeline(
            fleet, redis_url=redis_url, symbols=SYMBOLS, node_id="e2e", mcp_port=free_port()
        )
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 90
        while True:
            fleet.check_alive()
            reports = client.mget([keys.report_key(s) for s in SYMBOLS])
            decoded = [msgspec.json.decode(r) for r in reports if r is not None]
            ready = [r for r in decoded if r["ingestion"]["status"] == "ok" and r["high_24h"]]
            # both kinds: the candles kind holds its own leases and may publish later
            bars = client.exists(*(keys.candles_key(s, "1s") for s in SYMBOLS))
            if len(ready) == len(SYMBOLS) and bars == len(SYMBOLS):
                break
            assert time.monotonic() < deadline, f"no fresh reports: {decoded}"
            time.sleep(0.2)
        client.close()
        yield running
        fleet.check_alive()  # nothing died while the test ran


def _check_answers(listed: Any, report: Any) -> None:
    assert not listed.is_error and not report.is_error
    symbols = {s["symbol"]: s for s in listed.structured_content["symbols"]}
    assert set(symbols) == set(SYMBOLS)
    assert all(s["status"] == "ok" for s in symbols.values())
    body = validate_report(report.structured_content)
    assert body["symbol"] == "BTCUSDT.BINANCE"
    assert body["data_age_ms"] <= 1000
    assert body["ingestion"]["status"] == "ok"
    assert body["best_bid"]["price"] < body["best_ask"]["price"]
    assert body["best_bid"]["price"] <= body["micro_price"] <= body["best_ask"]["price"]
    assert len(body["depth"]["bids"]) == len(body["depth"]["asks"]) == 20
    assert body["last_price"] is not None and body["high_24h"] is not None
    assert body["flow"]["events_per_sec"] > 0
    assert "BTCUSDT.BINANCE" in report.content[0].text


def test_mcp_over_streamable_http(pipeline: Pipeline) -> None:
    async def session() -> tuple[Any, ...]:
        with anyio.fail_after(20):
            async with Client(pipeline.mcp_url) as client:
                return (
                    await client.call_tool("list_symbols", {}),
                    await client.call_tool("get_report", {"symbol": "BTCUSDT"}),
                    await client.call_tool("get_depth", {"symbol": "BTCUSDT", "levels": 50}),
                    await client.call_tool("get_history", {"symbol": "BTCUSDT", "minutes": 5}),
                    await client.call_tool(
                        "get_candles", {"symbol": "BTCUSDT", "interval": "1s", "limit": 10}
                    ),
                )

    listed, report, depth, history, bars = anyio.run(session)
    _check_answers(listed, report)
    # the other projections, written by the processors of this pipeline (both kinds)
    for answer in (depth, history, bars):
        assert not answer.is_error, answer.content[0].text
    assert len(depth.structured_content["bids"]) > 20
    assert history.structured_content["points"]
    candles = bars.structured_content["candles"]
    assert candles and all(c["trades"] > 0 and c["low"] <= c["close"] <= c["high"] for c in candles)


def test_mcp_over_stdio(pipeline: Pipeline, redis_url: str) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "context8", "mcp", "--transport", "stdio"],
        env={"REDIS_URL": redis_url, "PATH": os.environ.get("PATH", "")},
    )

    async def session() -> tuple[Any, Any]:
        with anyio.fail_after(30):
            async with Client(params) as client:
                return (
                    await client.call_tool("list_symbols", {}),
                    await client.call_tool("get_report", {"symbol": "btcusdt"}),
                )

    _check_answers(*anyio.run(session))


def test_every_node_exposes_its_metrics(pipeline: Pipeline, redis_url: str) -> None:
    """Each node's /metrics, found from its heartbeat as an operator's Prometheus would, has
    the names and labels of DESIGN.md "Observability", with bounded label sets."""
    client = redis.Redis.from_url(redis_url)
    nodes = [msgspec.json.decode(client.get(keys.node_key(n.decode())))
             for n in client.zrange(keys.NODES_SEEN_KEY, 0, -1)]  # fmt: skip
    client.close()
    by_role = {node["role"]: node for node in nodes}
    assert by_role.keys() == {"ingest", "processor"}
    expected = {
        "ingest": {
            "nt_node_heartbeat": set(),
            "nt_symbols_assigned": {"role"},
            "nt_ingest_events": {"symbol"},
            "nt_lease_conflicts": {"role"},
            "nt_redis_errors": {"role"},
        },
        "processor": {
            "nt_node_heartbeat": set(),
            "nt_symbols_assigned": {"role"},
            "nt_calc_latency_ms": {"metric", "cycle"},
            "nt_report_publish_rate": {"symbol"},
            "nt_data_age_ms": {"symbol"},
            "nt_lease_conflicts": {"role"},
            "nt_hrw_rebalances": {"kind"},
            "nt_consumer_lag": {"kind", "symbol"},
            "nt_stream_length": {"symbol"},
            "nt_event_to_report_ms": {"kind"},
            "nt_events_folded": {"kind"},
            "nt_dead_letters": {"role"},
            "nt_redis_errors": {"role"},
        },
    }
    footprint: dict[str, tuple[float, float]] = {}
    for role, node in by_role.items():
        started = time.perf_counter()
        with urllib.request.urlopen(node["metrics_url"], timeout=2) as reply:
            text = reply.read().decode()
        took_ms = (time.perf_counter() - started) * 1000
        families = {f.name: f for f in text_string_to_metric_families(text)}
        series = [s for f in families.values() if f.name.startswith("nt_") for s in f.samples]
        print(f"\n{role} /metrics: {took_ms:.1f} ms, {len(series)} nt_* series")
        for name, labels in expected[role].items():
            assert name in families, f"{role} lacks {name}"
            samples = [s for s in families[name].samples if not s.name.endswith("_created")]
            assert samples, f"{role} has no {name} series"
            for sample in samples:
                assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
        symbols = {s.labels["symbol"] for s in series if "symbol" in s.labels}
        assert symbols <= set(SYMBOLS)  # only the symbols the node holds
        assert took_ms < 500
        per_symbol = sum("symbol" in s.labels for s in series) / len(SYMBOLS)
        footprint[role] = (len(series) - per_symbol * len(SYMBOLS), per_symbol)
    # Series of a fleet of 8 processor nodes (both kinds) and 2 ingest nodes over 100
    # symbols: per-node series on every node, per-symbol series once per symbol.
    (proc_fixed, proc_symbol), (ingest_fixed, ingest_symbol) = (
        footprint["processor"],
        footprint["ingest"],
    )
    fleet = 8 * proc_fixed + 2 * ingest_fixed + 100 * (proc_symbol + ingest_symbol)
    print(f"series per node: processor {proc_fixed:.0f} + {proc_symbol:.0f}/symbol, ingest "
          f"{ingest_fixed:.0f} + {ingest_symbol:.0f}/symbol; 100 symbols on 10 nodes: "
          f"{fleet:.0f}")  # fmt: skip
    assert fleet < 1000
