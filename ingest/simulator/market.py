"""What the server needs from a market, and the order-flow market run on the wall clock.

A venue owns the books: it answers the REST queries and publishes its messages to the hub.
`ModelVenue` runs one `MarketModel` per symbol (see orderflow.py); `ReplayVenue` (replay.py)
replays a capture. Both are driven by the wall clock from `run`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final, Protocol

from ingest.simulator.hub import Hub
from ingest.simulator.instruments import spec_for, symbol_info
from ingest.simulator.orderflow import MarketModel

__all__ = ["ModelVenue", "Venue"]

# Behind by more than this (an overloaded core), the market slows down instead of catching up
# in one burst: the message sequence is unchanged, it just arrives later.
_MAX_LAG_MS: Final = 250.0


class Venue(Protocol):
    @property
    def symbols(self) -> tuple[str, ...]: ...

    def symbol_info(self, symbol: str) -> dict[str, Any]:
        """The symbol's `exchangeInfo` entry."""
        ...

    def depth(self, symbol: str, limit: int) -> dict[str, Any]:
        """`GET /api/v3/depth`: consistent with the diffs published so far."""
        ...

    def ticker_24hr(self, symbol: str, now_ms: int) -> dict[str, Any] | None:
        """The latest 24hrTicker payload (websocket form), if the venue has one."""
        ...

    async def run(self, hub: Hub) -> None:
        """Publish the market's messages until cancelled."""
        ...


class ModelVenue:
    """Order-flow models for the configured symbols, one shared clock for all clients."""

    def __init__(
        self,
        symbols: tuple[str, ...],
        *,
        seed: int,
        rate: float,
        diff_interval_ms: int,
    ) -> None:
        self._interval = diff_interval_ms
        self._models = {
            s: MarketModel(spec_for(s), seed=seed, rate=rate, diff_interval_ms=diff_interval_ms)
            for s in symbols
        }
        self._infos = {s: symbol_info(spec_for(s)) for s in symbols}

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._models)

    def symbol_info(self, symbol: str) -> dict[str, Any]:
        return self._infos[symbol]

    def depth(self, symbol: str, limit: int) -> dict[str, Any]:
        return self._models[symbol].snapshot(limit)

    def ticker_24hr(self, symbol: str, now_ms: int) -> dict[str, Any] | None:
        return self._models[symbol].ticker(now_ms)

    async def run(self, hub: Hub) -> None:
        loop = asyncio.get_running_loop()
        # Events are stamped with their own (simulated) time and sent at the next tick: a
        # short tick keeps "venue time" close to "sent", as on a real venue.
        tick = min(self._interval, 2) / 1000.0
        # Precomputed stream names: this loop is the simulator's hot path.
        names = {
            s: {k: f"{s.lower()}@{k}" for k in ("trade", "aggTrade", "bookTicker", "ticker")}
            for s in self._models
        }
        t0 = loop.time()
        sim_ms = 0.0
        while True:
            t0 += await hub.wait_running()  # a paused market resumes where it stopped
            target = (loop.time() - t0) * 1000.0
            if target - sim_ms > _MAX_LAG_MS:
                t0 += (target - sim_ms - _MAX_LAG_MS) / 1000.0
                target = sim_ms + _MAX_LAG_MS
            sim_ms = target
            now_ms = int(time.time() * 1000)
            for symbol, model in self._models.items():
                stream = names[symbol]
                for kind, data in model.advance(sim_ms, now_ms):
                    if kind == "depth":
                        hub.publish_diff(symbol, "100ms", data, model.snapshot)
                    elif kind == "depth1s":
                        hub.publish_diff(symbol, "1000ms", data, model.snapshot)
                    else:
                        hub.publish(stream[kind], data)
            await asyncio.sleep(tick)
