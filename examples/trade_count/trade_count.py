"""A processor kind that counts each symbol's trades and buys: the example of
docs/processors.md, as a package of its own (see its pyproject.toml)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from core.events import Event, Trade
from core.settings import Settings
from processors.runtime.kind import Kind, ProjectionContext
from processors.runtime.recent import RecentTrades
from projections.writer import Put, Write


class Counts(msgspec.Struct):
    trades: int = 0
    buys: int = 0
    recent: RecentTrades = msgspec.field(default_factory=RecentTrades)
    """Not encoded as is: ``encode`` stores what it remembers."""


class TradeCount(msgspec.Struct):
    symbol: str
    trades: int
    buys: int
    updatedAt: int


def fold(state: Counts, event: Event, entry_id: str) -> None:
    if not isinstance(event, Trade):
        return
    if not state.recent.first_time(event.trade_id, event.ts_event):
        return  # seen around an ingest hand-over: counted once
    state.trades += 1
    state.buys += event.aggressor == "buy"


def encode(state: Counts) -> bytes:
    recent = state.recent
    return msgspec.msgpack.encode((state.trades, state.buys, recent.kept(), recent.repeats))


_decode = msgspec.msgpack.Decoder(tuple[int, int, list[tuple[int, str]], int]).decode


def decode(payload: bytes) -> Counts:
    trades, buys, kept, repeats = _decode(payload)
    return Counts(trades, buys, RecentTrades(kept, repeats))


def kind(settings: Settings, environ: Mapping[str, str]) -> Kind[Counts]:

    def project(state: Counts, context: ProjectionContext) -> list[Write]:
        counts = TradeCount(symbol=context.symbol, trades=state.trades, buys=state.buys,
                            updatedAt=context.now_ms)  # fmt: skip
        # every key carries {SYM}: it is written in the symbol's slot, fenced by its lease
        return [Put(f"trade_count:{{{context.symbol}}}", msgspec.json.encode(counts))]

    return Kind(
        name="trade_count",
        new_state=Counts,
        fold=fold,
        project=project,
        encode=encode,
        decode=decode,
        description="trades and buys per symbol",
    )
