"""A processor kind that counts each symbol's trades and buys: the example of
docs/processors.md, as a package of its own (see its pyproject.toml)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from core.events import Event, Trade
from core.settings import Settings
from processors.runtime.kind import Kind, ProjectionContext
from projections.writer import Put, Write


class Counts(msgspec.Struct):
    trades: int = 0
    buys: int = 0
    last_trade_id: int = -1


class TradeCount(msgspec.Struct):
    symbol: str
    trades: int
    buys: int
    updatedAt: int


def fold(state: Counts, event: Event, entry_id: str) -> None:
    if not isinstance(event, Trade) or not event.trade_id.isdigit():
        return
    if int(event.trade_id) <= state.last_trade_id:
        return  # an append retried by ingest: counted once
    state.last_trade_id = int(event.trade_id)
    state.trades += 1
    state.buys += event.aggressor == "buy"


def kind(settings: Settings, environ: Mapping[str, str]) -> Kind[Counts]:
    decoder = msgspec.msgpack.Decoder(Counts)

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
        encode=msgspec.msgpack.encode,
        decode=decoder.decode,
        description="trades and buys per symbol",
    )
