"""Poisoned input against a running pipeline: more than 10,000 entries of every bad shape are
appended to a live stream between the ingest's own (random bytes, wrong types, unknown kinds,
a version 0, negative and zero quantities, prices of no 64-bit integer, precision 20, trade
ids of 30 digits and none, times a year ahead, crossed books, update ids backwards). The
processor node never crashes, every entry that is bad on its own is dead-lettered, the
entries that only contradict the book (a crossing delta, skipped ids) make the processor ask
ingest for a fresh snapshot, and the report comes back ok and sane."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import redis

from context8.procs import Fleet, start_pipeline
from core import keys
from core.events import (
    ENTRY_FIELD,
    SCHEMA_VERSION,
    BookDelta,
    BookSnapshot,
    Trade,
    decode_event,
    encode_event,
)

SYMBOL = "BTCUSDT.BINANCE"
V = SCHEMA_VERSION
S = 1_000_000_000
ROUNDS, BAD_PER_KIND = 2, 400  # 2 x 400 x 13 shapes: 10,400 entries (the dead letters keep 10,000)


def _report(client: redis.Redis) -> dict | None:
    raw = client.get(keys.report_key(SYMBOL))
    return msgspec.json.decode(raw) if raw else None


def _sane(report: dict | None) -> bool:
    if report is None or report["ingestion"]["status"] != "ok":
        return False
    bid, ask = report["best_bid"], report["best_ask"]
    return (
        bid is not None and ask is not None and 0 < bid["price"] < ask["price"] < 10 * bid["price"]
        and report["spread_bps"] >= 0 and -1 <= report["depth"]["imbalance"] <= 1
        and report["last_price"] is not None and 0 < report["last_price"] < 10 * bid["price"]
    )  # fmt: skip


@pytest.fixture
def pipeline(redis_url: str, tmp_path: Path) -> Iterator[tuple[Fleet, redis.Redis]]:
    with Fleet(tmp_path / "logs") as fleet:
        start_pipeline(fleet, redis_url=redis_url, symbols=(SYMBOL,), node_id="fuzz")
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 90
        while not _sane(_report(client)):
            fleet.check_alive()
            assert time.monotonic() < deadline, _report(client)
            time.sleep(0.2)
        yield fleet, client
        client.close()


def _bad_on_their_own(now_ns: int, rng: random.Random) -> Iterator[bytes]:
    """Entries no event may be: each must be dead-lettered."""
    pack = msgspec.msgpack.encode
    ahead = now_ns + 365 * 24 * 3600 * S
    for n in range(BAD_PER_KIND):
        t = now_ns + n
        yield rng.randbytes(rng.randint(0, 64))
        yield pack(["trade", V, t, t, 2, 3, "a price", 1, "buy", str(n)])  # wrong types
        yield pack(["nosuch", V, t, t, 1, 2, 3])  # an unknown kind
        yield pack({"k": "trade", "v": V})  # a map, not the array of an event
        yield encode_event(Trade(0, t, t, 8, 8, 10**8, 10**8, "buy", str(n)))  # version 0
        yield encode_event(Trade(V, t, t, 8, 8, 10**12, 0, "sell", str(n)))  # zero quantity
        yield encode_event(Trade(V, t, t, 8, 8, 2**64 - 1, 10**8, "sell", str(n)))  # no int64
        yield encode_event(Trade(V, t, t, 20, 8, 10**19, 10**8, "buy", str(n)))  # precision 20
        yield encode_event(Trade(V, t, t, 8, 8, 10**12, 10**8, "buy", ""))  # no id
        yield encode_event(Trade(V, ahead, t, 8, 8, 10**12, 10**8, "buy", str(n)))  # a year on
        yield encode_event(BookSnapshot(V, t, t, 8, 8, n, [(10**12, -5)], []))  # negative
        yield encode_event(BookSnapshot(V, t, t, 8, 8, n, [(2 * 10**12, 1)], [(10**12, 1)]))
        yield encode_event(BookDelta(V, t, t, 8, 8, n + 5, n, [(10**12, 1)], []))  # U > u


def _contradicting_the_book(client: redis.Redis, now_ns: int) -> Iterator[bytes]:
    """Entries fine on their own that the book cannot follow: update ids far ahead (a hole),
    and a delta right after the last one that puts a bid above every ask. A trade with a
    30-digit id too (ids are strings, counted like any other)."""
    yield encode_event(Trade(V, now_ns, now_ns, 8, 8, 10**12, 10**5, "buy", "9" * 30))
    last = max(
        (e.last_update_id for e in _recent_events(client) if isinstance(e, BookDelta)), default=0
    )
    yield encode_event(BookDelta(V, now_ns, now_ns, 8, 8, last + 1, last + 1, [(10**15, 1)], []))
    yield encode_event(BookDelta(V, now_ns, now_ns, 8, 8, 10**15, 10**15, [(10**12, 1)], []))


def _recent_events(client: redis.Redis) -> Iterator[object]:
    for _, fields in client.xrevrange(keys.stream_key(SYMBOL), count=200):
        try:
            yield decode_event(fields[ENTRY_FIELD])
        except ValueError:
            continue


def test_ten_thousand_bad_entries_are_dead_lettered_and_the_report_stays_sane(pipeline) -> None:
    fleet, client = pipeline
    stream = keys.stream_key(SYMBOL)
    rng = random.Random(20261204)
    for _ in range(ROUNDS):
        bad = list(_bad_on_their_own(time.time_ns(), rng))
        with client.pipeline(transaction=False) as pipe:
            for payload in bad:
                pipe.xadd(stream, {ENTRY_FIELD: payload})
            bad_ids = {entry_id.decode() for entry_id in pipe.execute()}

        def all_dead(ids: set[str] = bad_ids) -> bool:
            return ids <= {i.decode() for i, _ in client.xrange(keys.dead_letter_key(SYMBOL))}

        deadline = time.monotonic() + 30
        while not all_dead():
            fleet.check_alive()
            assert time.monotonic() < deadline, "bad entries not dead-lettered"
            time.sleep(0.2)
    for payload in _contradicting_the_book(client, time.time_ns()):
        client.xadd(stream, {ENTRY_FIELD: payload})

    def resync_answered() -> bool:
        # the ingest's answer to the processor's request: a resync status, then a snapshot
        entries = client.xrevrange(stream, count=2000)
        return any(b"resync" in fields[ENTRY_FIELD] and b"asked by a processor" in
                   fields[ENTRY_FIELD] for _, fields in entries)  # fmt: skip

    deadline = time.monotonic() + 60
    while not (resync_answered() and _sane(_report(client))):
        fleet.check_alive()
        assert time.monotonic() < deadline, _report(client)
        time.sleep(0.2)

    fleet.check_alive()
    processor_log = next(c for c in fleet.children if c.name == "processor").log_path.read_text()
    assert "tenure_failed" not in processor_log and "Traceback" not in processor_log
    assert "resync_requested" in processor_log
    candles = client.zrange(keys.candles_key(SYMBOL, "1s"), -1, -1)
    last_bar = msgspec.json.decode(candles[0])
    assert 0 < last_bar["low"] <= last_bar["high"] < 10 * _report(client)["best_bid"]["price"]
