"""Leases and fenced writes against a real Redis: stale tenures are refused by Lua."""

import asyncio

import pytest
from redis.asyncio import Redis

from coordination.lease import (
    SUCCESSOR_CHANNEL,
    Held,
    Lease,
    LeaseScripts,
    StaleLeaseError,
    acquire,
    release,
    renew,
    withdraw,
)
from core import keys
from core.redis_client import batch
from projections.writer import ProjectionScripts, Put, SeriesPoint, raise_refusals, write_commands

SYMBOL = "BTCUSDT.BINANCE"


async def _publish(client, scripts, tenure, body: bytes) -> None:
    await _write(client, scripts, tenure, [Put(keys.report_key(SYMBOL), body, 300_000)])


async def _write(client, scripts, tenure, writes) -> None:
    await scripts.load()
    raise_refusals(await batch(client, write_commands(scripts, tenure, writes, indexed_at_ms=1)))


def test_stale_tenure_is_refused_and_newer_data_survives(redis_url):
    async def scenario():
        client = Redis.from_url(redis_url)
        leases, scripts = LeaseScripts(client), ProjectionScripts(client)
        old = await acquire(leases, "analytics", SYMBOL, "node-a", 100)
        assert isinstance(old, Lease)
        held = await acquire(leases, "analytics", SYMBOL, "node-b", 100)
        assert isinstance(held, Held) and 0 < held.ttl_ms <= 100
        await _publish(client, scripts, old, b'{"v": "old"}')
        await asyncio.sleep(0.15)  # the lease lapses: node-a is paused, say
        new = await acquire(leases, "analytics", SYMBOL, "node-b", 2000)
        assert isinstance(new, Lease) and new.token == old.token + 1
        await _publish(client, scripts, new, b'{"v": "new"}')
        with pytest.raises(StaleLeaseError):
            await _publish(client, scripts, old, b'{"v": "stale"}')
        assert await client.get(keys.report_key(SYMBOL)) == b'{"v": "new"}'
        assert not await renew(leases, old, 2000)
        assert not await release(leases, old)
        assert await release(leases, new)
        await client.aclose()

    asyncio.run(scenario())


def test_a_waiting_node_says_once_that_it_is_ready_to_take_over(redis_url):
    async def scenario():
        client = Redis.from_url(redis_url)
        leases = LeaseScripts(client)
        successor = keys.successor_key("analytics", SYMBOL)
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(SUCCESSOR_CHANNEL)
            await pubsub.get_message(timeout=1)  # the subscription's confirmation
            holder = await acquire(leases, "analytics", SYMBOL, "node-a", 2000)
            # not ready yet (still loading): not a successor
            await acquire(leases, "analytics", SYMBOL, "node-b", 2000)
            assert await client.get(successor) is None
            for _ in range(3):  # ready, and still waiting: announced once, kept alive
                held = await acquire(leases, "analytics", SYMBOL, "node-b", 2000, successor=True)
                assert isinstance(held, Held)
            assert await client.get(successor) == b"node-b"
            assert 1000 < await client.pttl(successor) <= 2000
            assert not await withdraw(leases, "analytics", SYMBOL, "node-c")  # not its word
            assert await client.get(successor) == b"node-b"
            announced = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            assert announced["data"] == keys.lease_key("analytics", SYMBOL).encode()
            assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
            assert await release(leases, holder)
            taken = await acquire(leases, "analytics", SYMBOL, "node-b", 2000, successor=True)
            assert isinstance(taken, Lease) and taken.token == holder.token + 1
            assert await client.get(successor) is None  # it is the holder now
            # a waiter that stops waiting takes its word back: no holder hands off to it
            await acquire(leases, "analytics", SYMBOL, "node-c", 2000, successor=True)
            assert await client.get(successor) == b"node-c"
            assert await withdraw(leases, "analytics", SYMBOL, "node-c")
            assert await client.get(successor) is None
        await client.aclose()

    asyncio.run(scenario())


def test_index_refuses_a_lower_token_even_without_a_lease(redis_url):
    async def scenario():
        client = Redis.from_url(redis_url)
        scripts = ProjectionScripts(client)
        index_keys = [keys.INDEX_KEY, keys.INDEX_WRITERS_KEY, keys.OVERVIEW_KEY]
        channel = keys.REPORT_UPDATED_CHANNEL
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        row = [SYMBOL, 5, 1000, b'{"row": 5}', channel]
        assert await scripts.index_update(keys=index_keys, args=row) == 1
        with pytest.raises(Exception, match="STALE"):
            await scripts.index_update(keys=index_keys, args=[SYMBOL, 4, 2000, b"{}", channel])
        assert await client.zscore(keys.INDEX_KEY, SYMBOL) == 1000
        assert await client.hget(keys.OVERVIEW_KEY, SYMBOL) == b'{"row": 5}'
        # announced once, for the accepted write only
        announced = await pubsub.get_message(timeout=1)
        assert announced is not None and announced["data"] == SYMBOL.encode()
        assert await pubsub.get_message(timeout=0.2) is None
        await pubsub.aclose()
        await client.aclose()

    asyncio.run(scenario())


def test_report_ttl_set_on_first_publish_then_kept(redis_url):
    async def scenario():
        client = Redis.from_url(redis_url)
        leases, scripts = LeaseScripts(client), ProjectionScripts(client)
        tenure = await acquire(leases, "analytics", SYMBOL, "node-a", 2000)
        await _publish(client, scripts, tenure, b"{}")
        await client.pexpire(keys.report_key(SYMBOL), 200_000)  # well over half of 300 s
        await _publish(client, scripts, tenure, b"{}")
        assert 150_000 < await client.pttl(keys.report_key(SYMBOL)) <= 200_000  # KEEPTTL
        await client.pexpire(keys.report_key(SYMBOL), 100_000)  # under half: re-armed
        await _publish(client, scripts, tenure, b"{}")
        assert await client.pttl(keys.report_key(SYMBOL)) > 290_000
        await client.aclose()

    asyncio.run(scenario())


def test_scripts_recover_after_the_script_cache_is_flushed(redis_url):
    async def scenario():
        client = Redis.from_url(redis_url)
        leases = LeaseScripts(client)
        first = await acquire(leases, "ingest", SYMBOL, "node-a", 2000)
        await client.script_flush()
        assert await renew(leases, first, 2000)
        await client.aclose()

    asyncio.run(scenario())


def test_a_token_counter_that_went_back_never_reissues_a_token_data_carries(redis_url):
    """Redis can lose the last writes (a restart without a synced append-only file, a
    failover to a lagging replica) or evict the counter: the fence keeps tokens moving on."""

    async def scenario():
        client = Redis.from_url(redis_url)
        leases, scripts = LeaseScripts(client), ProjectionScripts(client)
        first = await acquire(leases, "analytics", SYMBOL, "node-a", 2000)
        await _publish(client, scripts, first, b'{"v": 1}')
        await client.delete(
            keys.token_key("analytics", SYMBOL), keys.lease_key("analytics", SYMBOL)
        )
        second = await acquire(leases, "analytics", SYMBOL, "node-b", 2000)
        assert second.token == first.token + 1  # not 1 again
        await _publish(client, scripts, second, b'{"v": 2}')
        # data written under a higher token than the counter knows (the counter went back):
        # a write with a lower token is refused even by the current holder
        await client.set(keys.fence_key("analytics", SYMBOL), second.token + 5)
        with pytest.raises(StaleLeaseError):
            await _publish(client, scripts, second, b'{"v": "stale"}')
        assert await client.get(keys.report_key(SYMBOL)) == b'{"v": 2}'
        third = await acquire(leases, "analytics", SYMBOL, "node-b", 2000)
        assert third.token == second.token + 6
        await client.aclose()

    asyncio.run(scenario())


def test_series_points_replace_their_period_keep_the_newest_and_are_fenced(redis_url):
    async def scenario():
        client = Redis.from_url(redis_url)
        leases, scripts = LeaseScripts(client), ProjectionScripts(client)
        series = keys.history_key(SYMBOL)
        old = await acquire(leases, "analytics", SYMBOL, "node-a", 100)

        def point(score: int, period: int) -> SeriesPoint:
            return SeriesPoint(series, score, b"%d" % score, replace_from=period, keep=3)

        # three revisions of the 1000 period, then periods 2000..4000: one member each
        for score in (1000, 1400, 1900, 2000, 3000, 4000):
            await _write(client, scripts, old, [point(score, score - score % 1000)])
        assert await client.zrange(series, 0, -1, withscores=True) == [
            (b"2000", 2000.0), (b"3000", 3000.0), (b"4000", 4000.0)
        ]  # fmt: skip
        await asyncio.sleep(0.15)
        new = await acquire(leases, "analytics", SYMBOL, "node-b", 2000)
        with pytest.raises(StaleLeaseError):
            await _write(client, scripts, old, [point(5000, 5000)])
        assert await client.zcard(series) == 3
        await _write(client, scripts, new, [point(4500, 4000)])  # the 4000 period revised
        assert await client.zrange(series, -1, -1) == [b"4500"]
        await client.aclose()

    asyncio.run(scenario())
