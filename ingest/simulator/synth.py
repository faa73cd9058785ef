"""A capture written straight from the order-flow model, without running a server: the
input of throughput benchmarks (replayed as fast as the simulator can send it), and a
reproducible capture for tests."""

from __future__ import annotations

import time
from pathlib import Path

from ingest.capture import CaptureWriter
from ingest.simulator.instruments import exchange_info, spec_for, symbol_info
from ingest.simulator.orderflow import MarketModel

__all__ = ["write_model_capture"]

# The streams NautilusTrader's Binance client subscribes by default.
_STREAMS = {"depth": "depth@100ms", "trade": "trade", "ticker": "ticker"}


def write_model_capture(
    path: str | Path,
    symbols: tuple[str, ...],
    *,
    seconds: float,
    seed: int = 7,
    rate: float = 1.0,
    diff_interval_ms: int = 100,
) -> int:
    """Write ``seconds`` of the model's market for ``symbols`` (venue symbols, ``BTCUSDT``)
    as a capture; returns the number of websocket messages written."""
    models = {
        s: MarketModel(spec_for(s), seed=seed, rate=rate, diff_interval_ms=diff_interval_ms)
        for s in symbols
    }
    start_ms = int(time.time() * 1000)
    written = 0
    with CaptureWriter(path) as capture:
        streams = "/".join(f"{s.lower()}@{name}" for s in symbols for name in _STREAMS.values())
        capture.meta("context8 order-flow model", f"/stream?streams={streams}", list(symbols))
        infos = [symbol_info(spec_for(s)) for s in symbols]
        capture.rest("/api/v3/exchangeInfo", {}, exchange_info(infos, start_ms), start_ms / 1000)
        for symbol, model in models.items():
            snapshot = model.snapshot(1000)
            capture.rest(
                "/api/v3/depth", {"symbol": symbol, "limit": 1000}, snapshot, start_ms / 1000
            )
        for step in range(1, int(seconds * 1000 / diff_interval_ms) + 1):
            sim_ms = step * diff_interval_ms
            now_ms = start_ms + sim_ms
            for symbol, model in models.items():
                for kind, data in model.advance(sim_ms, now_ms):
                    stream = _STREAMS.get(kind)
                    if stream is not None:
                        capture.ws(f"{symbol.lower()}@{stream}", data, now_ms / 1000)
                        written += 1
    return written
