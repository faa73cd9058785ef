"""The processor node against a real Redis: events in md:{SYM} -> a fenced, valid report."""

import asyncio
import time

import msgspec
import pytest
from redis.asyncio import Redis

from coordination.lease import LeaseScripts, acquire
from core import keys, lua
from core import settings as config
from core.events import (
    ENTRY_FIELD,
    SCHEMA_VERSION,
    BookDelta,
    BookSnapshot,
    Trade,
    encode_event,
)
from processors.analytics import kind as analytics
from processors.runtime.kind import decode_envelope
from processors.runtime.node import run_processor
from tests.reports import validate_report

SYMBOL = "BTCUSDT.BINANCE"
V = SCHEMA_VERSION


async def _append(client: Redis, events, *raw: bytes) -> None:
    """Append as the ingest owner does: fenced, one script call per batch."""
    tenure = await acquire(LeaseScripts(client), "ingest", SYMBOL, "test-ingest", 10_000)
    script = lua.register(client, "fenced_append")
    payloads = [encode_event(e) for e in events] + list(raw)
    await script(keys=[*tenure.fence_keys, keys.stream_key(SYMBOL)],
                 args=[*tenure.fence_args, ENTRY_FIELD, 0, *payloads])  # fmt: skip
    await client.publish(keys.APPENDED_CHANNEL, keys.appended_message([SYMBOL]))


async def _wait_report(client: Redis, predicate, timeout_s: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = await client.get(keys.report_key(SYMBOL))
        if raw is not None:
            report = msgspec.json.decode(raw)
            if predicate(report):
                return validate_report(report)
        await asyncio.sleep(0.01)
    pytest.fail(f"no matching report within {timeout_s}s; last: {raw!r}")


def test_events_become_a_fresh_valid_report_and_garbage_a_dead_letter(redis_url):
    settings = config.load({}, redis_url=redis_url, symbols=(SYMBOL,), node_id="proc-1")

    async def scenario():
        client = Redis.from_url(redis_url)
        stop = asyncio.Event()
        node = asyncio.create_task(run_processor(settings, stop))
        now = time.time_ns()
        await _append(client, [
            BookSnapshot(V, now, now, 2, 5, 100, [(6400000, 150000), (6399990, 50000)],
                         [(6400010, 100000)]),
            BookDelta(V, now, now, 2, 5, 101, 101, [], [(6400020, 200000)]),
            Trade(V, now, now, 2, 5, 6400010, 30000, "buy", "1"),
        ], b"\x93garbage")  # fmt: skip
        report = await _wait_report(client, lambda r: r["stream"]["events_folded"] == 3)
        assert report["best_bid"] == {"price": 64000.0, "qty": 1.5}
        assert report["best_ask"] == {"price": 64000.1, "qty": 1.0}
        assert report["mid_price"] == 64000.05
        assert report["spread_bps"] == round(0.1 / 64000.05 * 1e4, 4)
        assert report["depth"]["bid_volume"] == 2.0 and report["depth"]["ask_volume"] == 3.0
        assert report["flow"]["buy_volume"] == 0.3
        assert report["ingestion"]["status"] == "ok"
        assert report["writer"] == {"nodeId": "proc-1", "writerToken": 1}
        assert await client.zscore(keys.INDEX_KEY, SYMBOL) == report["updatedAt"]
        assert 0 < await client.pttl(keys.report_key(SYMBOL)) <= 300_000
        dead = await client.xrange(keys.dead_letter_key(SYMBOL))
        assert len(dead) == 1 and dead[0][1][b"payload"] == b"\x93garbage"

        # publishing follows events: a new trade shows up well within one fast cycle
        before = time.monotonic()
        later = time.time_ns()
        await _append(client, [Trade(V, later, later, 2, 5, 6400010, 10000, "sell", "2")])
        await _wait_report(client, lambda r: r["stream"]["events_folded"] == 4)
        assert time.monotonic() - before < 0.2

        # and with nothing arriving it is republished every fast cycle
        first = await _wait_report(client, lambda r: True)
        await asyncio.sleep(0.6)
        assert (await _wait_report(client, lambda r: True))["updatedAt"] > first["updatedAt"]

        # the kind's group records how far the fold stands (operators read its lag there)
        latest = await _wait_report(client, lambda r: True)
        # each kind (analytics and candles, both installed) has its own
        groups = {g["name"]: g for g in await client.xinfo_groups(keys.stream_key(SYMBOL))}
        assert groups.keys() == {b"analytics", b"candles"}
        assert groups[b"analytics"]["last-delivered-id"].decode() == latest["stream"]["last_id"]
        # the heavy section and a history point went out with the report
        heavy = msgspec.json.decode(await client.get(keys.heavy_key(SYMBOL)))
        assert heavy["bids"][0] == latest["best_bid"] and len(heavy["bids"]) == 2
        assert heavy["asks"] == [latest["best_ask"], {"price": 64000.2, "qty": 2.0}]
        # one point per event-time second: the events here span one or two of them
        points = [
            msgspec.json.decode(p) for p in await client.zrange(keys.history_key(SYMBOL), 0, -1)
        ]
        assert 1 <= len(points) <= 2
        assert len({p["ts_ms"] // 1000 for p in points}) == len(points)
        assert points[-1]["mid_price"] == latest["mid_price"]
        stop.set()
        await asyncio.wait_for(node, 5)
        assert await client.get(keys.lease_key("analytics", SYMBOL)) is None  # released
        checkpoint = await client.get(keys.checkpoint_key("analytics", SYMBOL))
        kind = analytics.kind(settings, {})
        resumed = decode_envelope(kind, checkpoint)
        assert resumed is not None and resumed[0].events_folded == 4  # the final one
        bars = await client.zrange(keys.candles_key(SYMBOL, "5m"), 0, -1)
        assert sum(msgspec.json.decode(bar)["trades"] for bar in bars) == 2
        await client.aclose()

    asyncio.run(scenario())


def test_a_restarted_processor_rebuilds_from_the_stream(redis_url):
    settings = config.load({}, redis_url=redis_url, symbols=(SYMBOL,), node_id="proc-1")

    async def run_once(predicate) -> dict:
        client = Redis.from_url(redis_url)
        stop = asyncio.Event()
        node = asyncio.create_task(run_processor(settings, stop))
        report = await _wait_report(client, predicate)
        stop.set()
        await asyncio.wait_for(node, 5)
        await client.aclose()
        return report

    async def scenario():
        client = Redis.from_url(redis_url)
        now = time.time_ns()
        await _append(client, [
            BookSnapshot(V, now, now, 2, 5, 100, [(6400000, 150000)], [(6400010, 100000)]),
        ])  # fmt: skip
        first = await run_once(lambda r: r["stream"]["events_folded"] == 1)
        await _append(client, [BookDelta(V, now, now, 2, 5, 101, 101, [(6400000, 0)], [])])
        second = await run_once(lambda r: r["stream"]["events_folded"] == 2)
        assert first["best_bid"] is not None and second["best_bid"] is None
        assert second["writer"]["writerToken"] == first["writer"]["writerToken"] + 1
        await client.aclose()

    asyncio.run(scenario())
