"""NautilusTrader objects -> events of the log (``core.events``), exactly.

NT keeps a ``Price``/``Quantity`` as an integer ``raw`` = value x 10**FIXED_PRECISION (16 in
the high-precision build, 9 otherwise); its own ``precision`` is only the number of decimals
of the string it was parsed from (Binance writes eight). The log uses the instrument's
precision, so every value is rescaled with integer arithmetic and refused (``ValueError``) when
it has more decimals than the instrument allows: never a float, never a silent rounding.

Venue times: NT turns Binance's millisecond times into ns through a float (``millis_to_nanos``:
1633998513369 ms -> ...368999936 ns); Binance times are whole milliseconds, so ``ts_event`` of
venue messages is rounded back to the millisecond. ``ts_init`` (local clock, ns) is kept as is.

One ``OrderBookDeltas`` batch is one venue message: the REST snapshot (a batch that starts with
CLEAR) becomes a ``BookSnapshot``, a depthUpdate diff becomes one ``BookDelta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from nautilus_trader.adapters.binance.common.types import BinanceTicker
from nautilus_trader.model.data import OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookAction, OrderSide
from nautilus_trader.model.objects import FIXED_PRECISION

from core.events import (
    SCHEMA_VERSION,
    BookDelta,
    BookSnapshot,
    Level,
    Status,
    StatusKind,
    Ticker,
    Trade,
)
from ingest.data import DepthUpdateIds, IngestStatus

__all__ = [
    "Precision",
    "book_event",
    "empty_delta",
    "fixed",
    "status_at",
    "status_event",
    "ticker_event",
    "trade_event",
    "venue_ns",
]

_POW10 = [10**n for n in range(FIXED_PRECISION + 1)]


@dataclass(frozen=True, slots=True)
class Precision:
    """Decimals of an instrument's prices and sizes (tickSize/stepSize as the venue writes)."""

    price: int
    size: int


def fixed(raw: int, precision: int) -> int:
    """An NT raw value (x 10**FIXED_PRECISION) as a fixed-point int with ``precision`` decimals.

    >>> fixed(573711700000000000000, 8) if FIXED_PRECISION == 16 else 5737117000000
    5737117000000
    """
    shift = FIXED_PRECISION - precision
    if shift < 0:
        return raw * 10 ** (-shift)
    whole, rest = divmod(raw, _POW10[shift])
    if rest:
        raise ValueError(
            f"value {raw}e-{FIXED_PRECISION} has more than {precision} decimals; "
            "the instrument's precision is wrong or the venue sent a finer value"
        )
    return whole


def venue_ns(ts: int) -> int:
    """An NT ``ts_event`` of a Binance message back to its exact whole millisecond, in ns."""
    return (ts + 500_000) // 1_000_000 * 1_000_000


def book_event(
    deltas: OrderBookDeltas, precision: Precision, first_update_id: int | None = None
) -> BookSnapshot | BookDelta:
    """One NT batch as one event: a CLEAR-led batch is the REST snapshot (``sequence`` =
    lastUpdateId), any other batch one diff (``sequence`` = ``u``; ``first_update_id`` is the
    venue's ``U``, which NT does not keep, so the caller passes it; without it ``u`` is used)."""
    items = deltas.deltas
    bids: list[Level] = []
    asks: list[Level] = []
    pp, sp = precision.price, precision.size
    first = items[0]
    is_snapshot = first.action == BookAction.CLEAR
    for delta in items[1:] if is_snapshot else items:
        action = delta.action
        if action == BookAction.CLEAR:
            raise ValueError(f"CLEAR inside a batch of {deltas.instrument_id}: not a venue message")
        order = delta.order
        qty = 0 if action == BookAction.DELETE else fixed(order.size.raw, sp)
        level = (fixed(order.price.raw, pp), qty)
        if order.side == OrderSide.BUY:
            bids.append(level)
        else:
            asks.append(level)
    sequence = deltas.sequence
    if is_snapshot:
        return BookSnapshot(
            v=SCHEMA_VERSION,
            ts_event=deltas.ts_event,
            ts_init=deltas.ts_init,
            price_precision=pp,
            size_precision=sp,
            update_id=sequence,
            bids=bids,
            asks=asks,
        )
    return BookDelta(
        v=SCHEMA_VERSION,
        ts_event=venue_ns(deltas.ts_event),
        ts_init=deltas.ts_init,
        price_precision=pp,
        size_precision=sp,
        first_update_id=sequence if first_update_id is None else first_update_id,
        last_update_id=sequence,
        bids=bids,
        asks=asks,
    )


def empty_delta(ids: DepthUpdateIds, precision: Precision) -> BookDelta:
    """A diff message that changed no level (NT has no empty deltas batch to carry it)."""
    return BookDelta(
        v=SCHEMA_VERSION,
        ts_event=venue_ns(ids.ts_event),
        ts_init=ids.ts_init,
        price_precision=precision.price,
        size_precision=precision.size,
        first_update_id=ids.first_update_id,
        last_update_id=ids.last_update_id,
        bids=[],
        asks=[],
    )


_AGGRESSOR = {AggressorSide.BUYER: "buy", AggressorSide.SELLER: "sell"}


def trade_event(tick: TradeTick, precision: Precision) -> Trade:
    aggressor = _AGGRESSOR.get(tick.aggressor_side)
    if aggressor is None:
        raise ValueError(f"trade {tick.trade_id} of {tick.instrument_id} has no aggressor side")
    return Trade(
        v=SCHEMA_VERSION,
        ts_event=venue_ns(tick.ts_event),
        ts_init=tick.ts_init,
        price_precision=precision.price,
        size_precision=precision.size,
        price=fixed(tick.price.raw, precision.price),
        qty=fixed(tick.size.raw, precision.size),
        aggressor=aggressor,
        trade_id=tick.trade_id.value,
    )


def _dec(value: Decimal) -> str:
    """A venue decimal in one canonical form: plain notation, no trailing zeros
    (``"57371.17000000" -> "57371.17"``, ``"100.00" -> "100"``, ``"-0.500" -> "-0.5"``)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def ticker_event(ticker: BinanceTicker) -> Ticker:
    return Ticker(
        v=SCHEMA_VERSION,
        ts_event=venue_ns(ticker.ts_event),
        ts_init=ticker.ts_init,
        last_price=_dec(ticker.last_price),
        open_price=_dec(ticker.open_price),
        high_price=_dec(ticker.high_price),
        low_price=_dec(ticker.low_price),
        volume=_dec(ticker.volume),
        quote_volume=_dec(ticker.quote_volume),
        price_change_pct=_dec(ticker.price_change_percent),
        trade_count=ticker.count,
    )


def status_at(
    status: StatusKind,
    detail: str,
    ts_ns: int,
    *,
    expected: int | None = None,
    received: int | None = None,
) -> Status:
    """A status event of ingest's own (no venue time: ``ts_ns`` is both its times)."""
    return Status(
        v=SCHEMA_VERSION,
        ts_event=ts_ns,
        ts_init=ts_ns,
        status=status,
        detail=detail,
        expected_update_id=expected,
        received_update_id=received,
    )


def status_event(status: IngestStatus) -> Status:
    return Status(
        v=SCHEMA_VERSION,
        ts_event=status.ts_event,
        ts_init=status.ts_init,
        status=status.status,
        detail=status.detail,
        expected_update_id=status.expected_update_id,
        received_update_id=status.received_update_id,
    )
