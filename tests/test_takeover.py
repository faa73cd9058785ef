"""Takeover equivalence: a stream folded by a succession of owners (graceful hand-offs, one
without a checkpoint) projects the same derived report as one uninterrupted fold of it,
the slow-cycle sections (liquidity, anomalies, the anomaly penalty) included: those are the
uninterrupted fold's at the entry they were computed at (``stream.slow_last_id``)."""

import asyncio

import msgspec
from redis.asyncio import Redis

from coordination.lease import LeaseScripts, acquire
from core import keys, lua
from core import settings as config
from core.events import ENTRY_FIELD, decode_event, encode_event
from processors.analytics.fold import fold, new_state
from processors.analytics.project import build_report
from processors.analytics.slow import compute_slow
from processors.runtime.node import run_processor
from projections.report import Report
from tests.test_checkpoint import tape

SYMBOL = "X.BINANCE"
# Wall-clock fields, and the ones derived from them (freshness and the score it enters).
FRESHNESS = ("writer", "updatedAt", "generated_at", "data_age_ms", "ingestion", "health")


def derived(report: Report) -> dict:
    body = msgspec.to_builtins(report)
    for field in FRESHNESS:
        body.pop(field)
    components = msgspec.to_builtins(report.health.components)
    components.pop("freshness")
    return {**body, "health_components": components}


def test_takeovers_project_what_one_uninterrupted_fold_does(redis_url):
    events = tape(seed=3, n=600)
    chunks = [events[i : i + 100] for i in range(0, len(events), 100)]

    async def scenario() -> None:
        client = Redis.from_url(redis_url)
        ingest = await acquire(LeaseScripts(client), "ingest", SYMBOL, "feeder", 60_000)
        append = lua.register(client, "fenced_append")
        last_id = None
        for n, chunk in enumerate(chunks):
            last_id = await append(
                keys=[*ingest.fence_keys, keys.stream_key(SYMBOL)],
                args=[*ingest.fence_args, ENTRY_FIELD, 0, *map(encode_event, chunk)],
            )
            if n == 3:  # this owner starts without a checkpoint: a full re-fold
                await client.delete(keys.checkpoint_key("analytics", SYMBOL))
            settings = config.load({}, redis_url=redis_url, symbols=(SYMBOL,),
                                   node_id=f"owner-{n}", min_hold_ms=0)  # fmt: skip
            stop = asyncio.Event()
            node = asyncio.create_task(run_processor(settings, stop))
            while True:
                raw = await client.get(keys.report_key(SYMBOL))
                if raw and msgspec.json.decode(raw)["stream"]["last_id"] == last_id.decode():
                    break
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.wait_for(node, 10)
        published = msgspec.json.decode(await client.get(keys.report_key(SYMBOL)), type=Report)
        assert published.writer.nodeId == f"owner-{len(chunks) - 1}"

        state = new_state()
        slow = None
        for entry_id, fields in await client.xrange(keys.stream_key(SYMBOL)):
            fold(state, decode_event(fields[ENTRY_FIELD]), entry_id.decode())
            if entry_id.decode() == published.stream.slow_last_id:
                slow = compute_slow(state)
        assert (slow is None) == (published.stream.slow_last_id is None)
        if slow is not None:  # the tape has enough of everything for these
            assert published.liquidity.volume_profile is not None
            assert published.liquidity.observations >= 20
        uninterrupted = build_report(state, instrument_id=SYMBOL, writer=published.writer,
                                     now_ms=published.updatedAt, slow=slow)  # fmt: skip
        assert derived(published) == derived(uninterrupted)
        assert published.stream.events_folded == len(events)
        await client.aclose()

    asyncio.run(scenario())
