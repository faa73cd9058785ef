"""Processor kinds as consumer groups, with real processes on loopback: a kind added to a
running pipeline backfills the retained stream and joins live processing while the analytics
kind keeps publishing; one kind's failover and removal leave the other kind's symbols where
they are; a kind from another package (the docs' example) is found by its entry point."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest
import redis

from context8.bench.probes import Feeder, lease_holders, start_processor, stop_probes
from context8.procs import Fleet
from core import keys
from core import settings as config
from processors.candles import kind as candles
from processors.runtime.node import run_processor
from tests.waits import wait_for

REPO = Path(__file__).resolve().parents[1]
SYMBOLS = tuple(f"K{i}USDT.BINANCE" for i in range(4))
BACKLOG = 20_000


class PublishGaps(threading.Thread):
    """The longest wall time between two successive analytics reports of each symbol."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.halt = threading.Event()
        self.longest_ms: dict[str, float] = dict.fromkeys(SYMBOLS, 0.0)
        self.publishes = 0

    def run(self) -> None:
        seen: dict[str, tuple[int, float]] = {}
        while not self.halt.wait(0.005):
            now = time.monotonic()
            try:
                raw = self.client.mget([keys.report_key(s) for s in SYMBOLS])
            except redis.RedisError:
                return  # the test is over (its Redis gone)
            for symbol, value in zip(SYMBOLS, raw, strict=True):
                updated = msgspec.json.decode(value)["updatedAt"] if value else 0
                last = seen.get(symbol)
                if last is None or updated != last[0]:
                    if last is not None:
                        self.publishes += 1
                    seen[symbol] = (updated, now)
                gap_ms = (now - seen[symbol][1]) * 1000
                self.longest_ms[symbol] = max(self.longest_ms[symbol], gap_ms)


def _even(holders: dict[str, str | None], nodes: set[str]) -> bool:
    """Every symbol held, by ``nodes``, two each (the bounded-load spread of 4 over 2)."""
    return Counter(holders.values()) == dict.fromkeys(nodes, 2)


@contextlib.contextmanager
def _stopping(*probes: threading.Thread):
    try:
        yield
    finally:
        stop_probes(*(probe for probe in probes if probe.ident is not None))  # the started


def _group_cursor(client: redis.Redis, symbol: str, group: bytes) -> str | None:
    for info in client.xinfo_groups(keys.stream_key(symbol)):
        if info["name"] == group:
            return info["last-delivered-id"].decode()
    return None


def _bar_trades(client: redis.Redis, symbol: str) -> int:
    bars = client.zrange(keys.candles_key(symbol, "5m"), 0, -1)
    return sum(msgspec.json.decode(bar)["trades"] for bar in bars)


def test_kinds_backfill_fail_over_and_leave_independently(redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    feeder = Feeder(redis_url, SYMBOLS)
    feeder.backlog(BACKLOG, span_s=600)  # ten minutes of venue time before anyone folds it
    feeder.start()
    gaps = PublishGaps(client)
    with Fleet(tmp_path / "logs") as fleet, _stopping(feeder, gaps):
        for node in ("a1", "a2"):
            start_processor(fleet, redis_url, node, SYMBOLS, kinds=("analytics",))

        def analytics_live() -> dict | None:
            raw = client.mget([keys.report_key(s) for s in SYMBOLS])
            reports = [msgspec.json.decode(r) for r in raw if r]
            holders = lease_holders(client, SYMBOLS)
            caught_up = len(reports) == len(SYMBOLS) and all(
                r["stream"]["events_folded"] > BACKLOG for r in reports
            )
            return holders if caught_up and _even(holders, {"a1", "a2"}) else None

        analytics = wait_for("the analytics kind on both nodes", analytics_live, 30, fleet)
        assert client.exists(*(keys.candles_key(s, "5m") for s in SYMBOLS)) == 0

        # A new kind joins the running pipeline: it starts at the beginning of the stream.
        gaps.start()
        backfill_started = time.monotonic()
        c1, _ = start_processor(fleet, redis_url, "c1", SYMBOLS, kinds=("candles",))
        c2, _ = start_processor(fleet, redis_url, "c2", SYMBOLS, kinds=("candles",))

        def backfilled() -> bool:
            return all(_bar_trades(client, s) >= BACKLOG for s in SYMBOLS)

        wait_for("the candles kind to backfill the history", backfilled, 60, fleet)
        backfill_s = time.monotonic() - backfill_started
        stop_probes(gaps)
        # the node that came second gets its share once the first one's minimum hold is over
        candles = wait_for("the candles kind on both nodes",
                        lambda: (held := lease_holders(client, SYMBOLS, "candles"))
                        and _even(held, {"c1", "c2"}) and held, 15, fleet)  # fmt: skip
        assert lease_holders(client, SYMBOLS) == analytics  # not moved by the new kind
        print(f"\nbackfill of {BACKLOG} trades x {len(SYMBOLS)} streams: {backfill_s:.2f} s; "
              f"longest analytics publish gap meanwhile: {max(gaps.longest_ms.values()):.0f} ms "
              f"({gaps.publishes} publishes)")  # fmt: skip
        assert max(gaps.longest_ms.values()) < 1500  # fast cycle 250 ms; a loaded 2-core box

        # and then it follows the live stream: every trade, once
        stop_probes(feeder)

        def candles_complete() -> bool:
            return all(
                _bar_trades(client, s) == feeder.trades
                and _group_cursor(client, s, b"candles") == _group_cursor(client, s, b"analytics")
                for s in SYMBOLS
            )

        wait_for("every trade in the bars", candles_complete, 20, fleet)

        # One kind's owner dies: its symbols move to the kind's other node, the other kind's
        # symbols stay where they were.
        lost = {s for s, node in candles.items() if node == "c1"}
        c1.process.kill()
        c1.process.wait(5)
        fleet.children.remove(c1)
        wait_for("c2 to take c1's candles",
              lambda: set(lease_holders(client, SYMBOLS, "candles").values()) == {"c2"}, 10,
              fleet)  # fmt: skip
        assert lost and lease_holders(client, SYMBOLS) == analytics

        # Removing the kind (its last node stops) leaves the analytics kind publishing.
        c2.process.send_signal(signal.SIGTERM)
        assert c2.process.wait(10) == 0
        fleet.children.remove(c2)
        wait_for("the candles leases released",
              lambda: set(lease_holders(client, SYMBOLS, "candles").values()) == {None}, 10,
              fleet)  # fmt: skip
        before = [msgspec.json.decode(r)["updatedAt"]
                  for r in client.mget([keys.report_key(s) for s in SYMBOLS])]  # fmt: skip
        time.sleep(0.6)
        after = [msgspec.json.decode(r)["updatedAt"]
                 for r in client.mget([keys.report_key(s) for s in SYMBOLS])]  # fmt: skip
        assert all(b > a for a, b in zip(before, after, strict=True))
        assert lease_holders(client, SYMBOLS) == analytics
    client.close()


def _docs_example() -> str:
    text = (REPO / "docs" / "processors.md").read_text()
    match = re.search(r"```python\n# examples/trade_count/trade_count.py\n(.*?)```", text, re.S)
    assert match, "docs/processors.md shows examples/trade_count/trade_count.py"
    return match.group(1)


def test_the_docs_example_kind_is_the_shipped_one_and_runs_from_its_entry_point(
    redis_url, tmp_path
):
    example = REPO / "examples" / "trade_count"
    assert _docs_example() == (example / "trade_count.py").read_text()
    # Installed the way a package of its own is: a dist-info with the entry point, on the
    # path of the node (no edit of this project, no network for a build).
    site = tmp_path / "site"
    dist_info = site / "context8_trade_count-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: context8-trade-count\n"
                                        "Version: 0.1.0\n")  # fmt: skip
    entry_points = (
        (example / "pyproject.toml")
        .read_text()
        .split('[project.entry-points."context8.processors"]\n')[1]
        .split("\n\n")[0]
    )
    # TOML quotes the value; entry_points.txt does not
    entry_points = entry_points.replace('"', "")
    (dist_info / "entry_points.txt").write_text(f"[context8.processors]\n{entry_points}\n")
    env = {"PYTHONPATH": f"{site}:{example}"}
    symbols = SYMBOLS[:2]
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    feeder = Feeder(redis_url, symbols)
    feeder.backlog(500, span_s=60)
    with Fleet(tmp_path / "logs") as fleet:
        start_processor(fleet, redis_url, "t1", symbols, kinds=("trade_count",), env=env)

        def counted() -> bool:
            raw = client.mget([f"trade_count:{{{s}}}" for s in symbols])
            return all(r and msgspec.json.decode(r)["trades"] == 500 for r in raw)

        wait_for("the example kind's counts", counted, 20, fleet)
        assert lease_holders(client, symbols, "trade_count") == dict.fromkeys(symbols, "t1")
        counts = msgspec.json.decode(client.get(f"trade_count:{{{symbols[0]}}}"))
        assert counts["buys"] == sum(1 for n in range(1, 501) if n % 3)
    client.close()


def test_an_unknown_kind_is_a_named_configuration_error(tmp_path):
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "context8", "process", "--kinds", "analytics,nope",
         "--redis-url", "redis://127.0.0.1:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0
    assert "NT_PROCESSOR_KINDS" in run.stderr and "nope" in run.stderr
    assert "analytics" in run.stderr and "candles" in run.stderr  # what is installed
    if "Traceback" in run.stderr:
        pytest.fail(run.stderr)


@pytest.mark.parametrize("start", ["live", "time"])
def test_a_new_kind_can_start_live_or_from_a_time(redis_url, start):
    """Without a checkpoint a kind starts where NT_<KIND>_START says: ``live`` skips what the
    stream already holds, a time skips the entries appended before it."""
    symbols = SYMBOLS[:1]
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    feeder = Feeder(redis_url, symbols)
    feeder.backlog(300, span_s=30)
    time.sleep(0.05)
    start_at = str(time.time_ns() // 1_000_000)
    later = 0
    if start == "time":
        feeder.backlog(200, span_s=1)  # appended after the start time: folded
        later = 200
    settings = config.load({}, redis_url=redis_url, symbols=symbols, node_id="k1")
    environ = {"NT_CANDLES_START": "live" if start == "live" else start_at}
    kind = candles.kind(settings, environ)

    async def scenario() -> int:
        stop = asyncio.Event()
        node = asyncio.create_task(run_processor(settings, stop, kinds=[kind], env=environ))
        deadline = time.monotonic() + 10
        while _cursor_missing(client, symbols[0]):
            assert time.monotonic() < deadline, "the candles group never appeared"
            await asyncio.sleep(0.02)
        feeder._add(symbols[0], *(feeder._trade(time.time_ns()) for _ in range(50)))
        while _bar_trades(client, symbols[0]) < later + 50:
            assert time.monotonic() < deadline, "the new trades never reached the bars"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # and nothing older arrives after them
        stop.set()
        await node
        return _bar_trades(client, symbols[0])

    assert asyncio.run(scenario()) == later + 50
    client.close()


def _cursor_missing(client: redis.Redis, symbol: str) -> bool:
    return _group_cursor(client, symbol, b"candles") is None
