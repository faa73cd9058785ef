"""NautilusTrader's own Binance Spot data client against the simulator, unchanged.

The simulator runs in this process (a thread with its own event loop); the NT node runs in a
child process (`python -m tests.test_simulator_nt BASE_URL SYMBOLS MODE`), so NT's
process-wide state (its logger, its cached HTTP clients) never leaks into other tests. The
child subscribes book deltas, trade ticks and 24h tickers through an Actor, then pauses the
simulator's clock and checks that the book NT built from the REST snapshot and the diffs is
exactly the simulator's book at the same update id; it prints one JSON line of findings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ingest.simulator import SimulatorConfig, serve

REPO = Path(__file__).resolve().parents[1]
SYMBOLS = ("BTCUSDT", "ETHUSDT")


@contextmanager
def simulator_thread(config: SimulatorConfig) -> Iterator[str]:
    """The simulator on its own loop in a daemon thread; yields its base URL."""
    ready: list[str] = []
    started = threading.Event()
    holder: dict[str, asyncio.AbstractEventLoop | asyncio.Task[None]] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop

        def on_ready(url: str) -> None:
            ready.append(url)
            started.set()

        task = loop.create_task(serve(config, ready=on_ready))
        holder["task"] = task
        try:
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(task)
        finally:
            loop.close()
            started.set()

    thread = threading.Thread(target=run, name="simulator", daemon=True)
    thread.start()
    assert started.wait(30), "simulator did not start"
    assert ready, "simulator failed before listening"
    try:
        yield ready[0]
    finally:
        loop = holder["loop"]
        task = holder["task"]
        assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(task, asyncio.Task)
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)


def run_child(config: SimulatorConfig, symbols: tuple[str, ...], mode: str) -> tuple[dict, dict]:
    """(the child's findings, the simulator's /_sim/status after it exited)."""
    with simulator_thread(config) as base_url:
        child = subprocess.run(
            [sys.executable, "-m", "tests.test_simulator_nt", base_url, ",".join(symbols), mode],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=75,
        )
        with urllib.request.urlopen(base_url + "/_sim/status", timeout=5) as response:
            status = json.load(response)
    lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
    assert child.returncode == 0 and lines, f"NT child failed:\n{child.stdout}\n{child.stderr}"
    return json.loads(lines[-1]), status


@pytest.mark.timeout(90)
def test_nautilus_binance_data_client_runs_against_the_simulator() -> None:
    found, status = run_child(SimulatorConfig(symbols=SYMBOLS, seed=11), SYMBOLS, "model")

    assert found["instruments"] == sorted(f"{s}.BINANCE" for s in SYMBOLS)
    for symbol in SYMBOLS:
        seen = found["symbols"][symbol]
        assert seen["snapshots"] >= 1, seen
        assert seen["deltas"] >= 5, seen
        assert seen["trades"] >= 1, seen
        assert seen["tickers"] >= 1, seen
        # Venue times are "now": what NT stamps on arrival is within a second of them.
        assert 0 <= seen["max_trade_latency_ms"] < 1000, seen
        for phase in ("books", "books_after_reconnect"):
            book = found[phase][symbol]
            # The book NT built equals the venue's, at the same update id.
            assert book["book_sequence"] == book["rest_last_update_id"], (phase, book)
            assert book["book_equal"], (phase, book)
            assert book["book_levels"] > 20, (phase, book)
            # The instrument came from exchangeInfo + tradeFee (testnet=False): real filters.
            assert book["taker_fee"] == "0.001", (phase, book)
    assert found["books"]["BTCUSDT"]["price_increment"] == "0.01000000"
    # After POST /_sim/disconnect NT reconnected, took a new snapshot, and the books (compared
    # above, after the reconnect) still match.
    assert found["closed"] >= 1
    for symbol in SYMBOLS:
        again = found["after_reconnect"][symbol]
        assert again["snapshots"] >= 1 and again["deltas"] > 5, found["after_reconnect"]
    assert status["connections"] == 0  # the child's disconnect was handled


@pytest.mark.timeout(90)
def test_nautilus_loads_and_follows_a_replayed_capture(capture_path: Path) -> None:
    symbols = ("NKNUSDT", "LRCBTC")
    config = SimulatorConfig(capture=str(capture_path), speed=5, loop=True)
    found, _ = run_child(config, symbols, "capture")
    # The 2021 exchangeInfo entries (no allowTrailingStop then) load as instruments.
    assert found["instruments"] == sorted(f"{s}.BINANCE" for s in symbols)
    for symbol in symbols:
        seen, book = found["symbols"][symbol], found["books"][symbol]
        assert seen["snapshots"] >= 1 and seen["deltas"] >= 3, seen
        assert book["book_sequence"] == book["rest_last_update_id"], book
        assert book["book_equal"] and book["book_levels"] > 100, book
    assert found["books"]["NKNUSDT"]["price_increment"] == "0.00010000"


# -- the child process -----------------------------------------------------------------------


def _child(base_url: str, symbols: list[str], mode: str) -> None:  # pragma: no cover
    from nautilus_trader.adapters.binance import BINANCE, BinanceLiveDataClientFactory
    from nautilus_trader.adapters.binance.common.types import BinanceTicker
    from nautilus_trader.adapters.binance.config import BinanceDataClientConfig
    from nautilus_trader.common.actor import Actor
    from nautilus_trader.config import (
        ActorConfig,
        InstrumentProviderConfig,
        LoggingConfig,
        TradingNodeConfig,
    )
    from nautilus_trader.core.data import Data
    from nautilus_trader.live.node import TradingNode
    from nautilus_trader.model.data import DataType, OrderBookDeltas, TradeTick
    from nautilus_trader.model.enums import BookAction, BookType
    from nautilus_trader.model.identifiers import ClientId, InstrumentId, TraderId

    ids = [InstrumentId.from_str(f"{s}.BINANCE") for s in symbols]
    full = mode == "model"  # a capture has no 24h ticker, and few trades

    class Recorder(Actor):
        def __init__(self) -> None:
            super().__init__(ActorConfig(component_id="SIM-RECORDER"))
            self.seen = {
                i.symbol.value: {
                    "snapshots": 0,
                    "deltas": 0,
                    "trades": 0,
                    "tickers": 0,
                    "max_trade_latency_ms": 0.0,
                }
                for i in ids
            }

        def on_start(self) -> None:
            for iid in ids:
                self.subscribe_order_book_deltas(iid, book_type=BookType.L2_MBP)
                self.subscribe_trade_ticks(iid)
                self.subscribe_data(
                    DataType(BinanceTicker, metadata={"instrument_id": iid}),
                    client_id=ClientId(BINANCE),
                )

        def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
            seen = self.seen[deltas.instrument_id.symbol.value]
            if deltas.deltas[0].action == BookAction.CLEAR:
                seen["snapshots"] += 1
            else:
                seen["deltas"] += 1

        def on_trade_tick(self, tick: TradeTick) -> None:
            seen = self.seen[tick.instrument_id.symbol.value]
            seen["trades"] += 1
            latency = (tick.ts_init - tick.ts_event) / 1e6
            seen["max_trade_latency_ms"] = max(seen["max_trade_latency_ms"], latency)

        def on_data(self, data: Data) -> None:
            if isinstance(data, BinanceTicker):
                self.seen[data.instrument_id.symbol.value]["tickers"] += 1

        def enough(self) -> bool:
            return all(
                s["snapshots"]
                and s["deltas"] >= (5 if full else 3)
                and (not full or (s["trades"] and s["tickers"]))
                for s in self.seen.values()
            )

    ws_url = "ws" + base_url.removeprefix("http")
    config = TradingNodeConfig(
        trader_id=TraderId("SIMTEST-001"),
        logging=LoggingConfig(log_level="WARNING", log_colors=False),
        data_clients={
            BINANCE: BinanceDataClientConfig(
                api_key="simulator",
                api_secret="simulator",
                base_url_http=base_url,
                base_url_ws=ws_url,
                testnet=False,  # so the signed tradeFee call is made and must work
                instrument_provider=InstrumentProviderConfig(load_ids=frozenset(ids)),
                update_instruments_interval_mins=None,
            )
        },
        timeout_connection=20.0,
        timeout_disconnection=5.0,
        timeout_post_stop=0.5,
        timeout_shutdown=2.0,
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    node = TradingNode(config=config, loop=loop)
    node.add_data_client_factory(BINANCE, BinanceLiveDataClientFactory)
    recorder = Recorder()
    node.trader.add_actor(recorder)
    node.build()

    def _exact_size(level: Any) -> Decimal:
        # BookLevel.size() is a float; the orders' Quantities are exact.
        return sum((o.size.as_decimal() for o in level.orders()), Decimal(0))

    def call(method: str, path: str) -> dict:
        request = urllib.request.Request(base_url + path, method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    async def compare(found: dict, phase: str) -> None:
        """Pause the venue and compare NT's books with the venue's, at the same update id."""
        await asyncio.to_thread(call, "POST", "/_sim/pause")
        await asyncio.sleep(0.5)  # let the diffs already sent arrive
        for iid in ids:
            seen = found.setdefault(phase, {}).setdefault(iid.symbol.value, {})
            rest = await asyncio.to_thread(
                call, "GET", f"/api/v3/depth?symbol={iid.symbol.value}&limit=5000"
            )
            book = node.cache.order_book(iid)
            # NT's snapshot holds the top 1000 levels a side, so levels deeper than that at
            # snapshot time are unknown to it (as on Binance): compare the top 500.
            nt_bids = [(lv.price.as_decimal(), _exact_size(lv)) for lv in book.bids()]
            nt_asks = [(lv.price.as_decimal(), _exact_size(lv)) for lv in book.asks()]
            venue_bids = [(Decimal(p), Decimal(q)) for p, q in rest["bids"]]
            venue_asks = [(Decimal(p), Decimal(q)) for p, q in rest["asks"]]
            nt_bids, nt_asks = nt_bids[:500], nt_asks[:500]
            venue_bids, venue_asks = venue_bids[:500], venue_asks[:500]
            instrument = node.cache.instrument(iid)
            seen.update(
                book_sequence=book.sequence,
                rest_last_update_id=rest["lastUpdateId"],
                book_equal=nt_bids == venue_bids and nt_asks == venue_asks,
                first_difference=next(
                    (
                        (side, i, str(ours), str(theirs))
                        for side, mine, venue in (
                            ("bid", nt_bids, venue_bids),
                            ("ask", nt_asks, venue_asks),
                        )
                        for i, (ours, theirs) in enumerate(zip(mine, venue, strict=False))
                        if ours != theirs
                    ),
                    None,
                ),
                book_levels=len(nt_bids) + len(nt_asks),
                taker_fee=str(instrument.taker_fee) if instrument else None,
                price_increment=str(instrument.price_increment) if instrument else None,
            )
        await asyncio.to_thread(call, "POST", "/_sim/resume")

    async def reconnect(found: dict) -> None:
        """A venue-side disconnect: NT reconnects, resubscribes and takes a new snapshot."""
        before = {s: dict(v) for s, v in recorder.seen.items()}
        found["closed"] = (await asyncio.to_thread(call, "POST", "/_sim/disconnect"))["closed"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
            v["snapshots"] > before[s]["snapshots"] and v["deltas"] > before[s]["deltas"] + 5
            for s, v in recorder.seen.items()
        ):
            await asyncio.sleep(0.1)
        found["after_reconnect"] = {
            s: {k: v[k] - before[s][k] for k in ("snapshots", "deltas", "trades")}
            for s, v in recorder.seen.items()
        }
        await compare(found, "books_after_reconnect")

    async def drive() -> dict:
        running = asyncio.ensure_future(node.run_async())
        deadline = time.monotonic() + 30
        while not recorder.enough() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        found: dict = {
            "instruments": sorted(str(i.id) for i in node.cache.instruments()),
            "symbols": recorder.seen,
        }
        await compare(found, "books")
        if full:
            await reconnect(found)
        await node.stop_async()
        await asyncio.sleep(0.5)
        running.cancel()
        return found

    try:
        found = loop.run_until_complete(drive())
    finally:
        node.dispose()
    print(json.dumps(found), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2].split(","), sys.argv[3])
