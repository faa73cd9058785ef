"""A tenure handing off to another node waits for a warm successor: it keeps publishing until
the node taking over has loaded the state, folded ahead and said so, then hands off."""

import asyncio
import time

import msgspec
from redis.asyncio import Redis

from coordination.lease import RELEASED_CHANNEL, SUCCESSOR_CHANNEL, LeaseScripts, acquire
from core import keys, lua
from core import settings as config
from core.events import ENTRY_FIELD, SCHEMA_VERSION, BookSnapshot, Trade, encode_event
from processors.runtime.context import HandOff, KindContext
from processors.runtime.follower import Follower
from processors.runtime.kind import load_kinds
from processors.runtime.node import _listen
from processors.runtime.tenure import hold_symbol
from projections.writer import ProjectionScripts

SYMBOL = "ETHUSDT.BINANCE"
V = SCHEMA_VERSION


async def _report(client: Redis) -> dict | None:
    raw = await client.get(keys.report_key(SYMBOL))
    return msgspec.json.decode(raw) if raw else None


async def _until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (found := await predicate()):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.005)
    return found


def test_the_holder_publishes_until_its_successor_is_ready_then_hands_off(redis_url):
    async def scenario():
        client = Redis.from_url(redis_url)
        feed = await acquire(LeaseScripts(client), "ingest", SYMBOL, "feeder", 60_000)
        append = lua.register(client, "fenced_append")
        trades = 0

        async def add(*events) -> None:
            payloads = map(encode_event, events)
            await append(keys=[*feed.fence_keys, keys.stream_key(SYMBOL)],
                         args=[*feed.fence_args, ENTRY_FIELD, 0, *payloads])  # fmt: skip
            await client.publish(keys.APPENDED_CHANNEL, keys.appended_message([SYMBOL]))

        async def trade() -> None:
            nonlocal trades
            trades += 1
            now = time.time_ns()
            await add(Trade(V, now, now, 2, 3, 10000 + trades % 5, 1, "buy", str(trades)))

        now = time.time_ns()
        await add(BookSnapshot(V, now, now, 2, 3, 1, [(9990, 5)], [(10010, 5)]))
        released, successors = {}, {}
        channels = {RELEASED_CHANNEL: released, SUCCESSOR_CHANNEL: successors}
        listened = asyncio.Event()
        followers: list[Follower] = []
        listener = asyncio.create_task(
            _listen(client, asyncio.Event(), channels, followers, listened)
        )
        following = []

        def node(node_id: str, **environ: str) -> KindContext:
            settings = config.load(environ, redis_url=redis_url, symbols=(SYMBOL,),
                                   node_id=node_id)  # fmt: skip
            (kind,) = load_kinds(["analytics"], settings, {})
            ctx = KindContext(settings, client, LeaseScripts(client), ProjectionScripts(client),
                              kind, "begin", released, successors)  # fmt: skip
            ctx.follower = Follower(ctx)
            followers.append(ctx.follower)
            following.append(asyncio.create_task(ctx.follower.run()))
            return ctx

        # the successor publishes once, then not for 10 s: the report seen is its first
        old, new = node("old"), node("new", NT_MIN_PUBLISH_MS="10000", NT_REPORT_PERIOD_MS="10000")
        await old.projections.load()
        old_handoff, new_handoff = HandOff(), HandOff()
        holding = asyncio.create_task(hold_symbol(old, SYMBOL, old_handoff))
        try:
            first = await _until(lambda: _report(client), 5, "the holder's first report")
            assert first["writer"]["nodeId"] == "old"

            # asked to hand off, with no successor yet: it goes on folding and publishing
            old_handoff.ask(successor_wait_s=10.0)
            for _ in range(10):
                await trade()
                await asyncio.sleep(0.05)

            async def all_folded():
                report = await _report(client)
                return report if report["stream"]["events_folded"] == trades + 1 else None

            # publishes are paced, so the last trade's may still be due: wait for it
            report = await _until(all_folded, 5, "a report of every trade and the snapshot")
            assert report["writer"]["nodeId"] == "old"
            assert report["updatedAt"] > first["updatedAt"]
            assert not holding.done()
            assert await client.get(keys.lease_key("analytics", SYMBOL)) == b"old"

            # a successor starts: it folds ahead, says it is ready, and the holder lets go
            # then (far sooner than its 10 s wait), the successor continuing where it stopped
            asked_at = time.monotonic()
            taking = asyncio.create_task(hold_symbol(new, SYMBOL, new_handoff))
            await asyncio.wait_for(asyncio.shield(holding), 5)
            assert time.monotonic() - asked_at < 5
            last_old = await _report(client)

            async def taken_over():
                report = await _report(client)
                return report if report["writer"]["nodeId"] == "new" else None

            taken = await _until(taken_over, 5, "the successor's first report")
            assert taken["writer"]["writerToken"] > last_old["writer"]["writerToken"]
            assert taken["stream"]["events_folded"] == last_old["stream"]["events_folded"]
            # as complete as the holder's last: its slow sections were computed while waiting
            assert taken["stream"]["slow_last_id"] is not None
            assert await client.get(keys.successor_key("analytics", SYMBOL)) is None
            new_handoff.ask(successor_wait_s=0.0)  # no one else: it releases at once
            await asyncio.wait_for(taking, 5)
            assert await client.get(keys.lease_key("analytics", SYMBOL)) is None
        finally:
            old_handoff.ask(0.0)
            new_handoff.ask(0.0)
            listened.set()
            for follower in followers:
                follower.close()
            await asyncio.wait({listener, *following}, timeout=5)
            await client.aclose()

    asyncio.run(scenario())
