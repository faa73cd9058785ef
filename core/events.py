"""The event log's schema: what ingest appends to ``md:{SYM}`` and processors fold.

One stream entry per venue message, the event msgpack-encoded in the entry's ``e`` field.
Events are array-like tagged msgspec Structs: compact on the wire, and still evolvable by
adding fields at the end with defaults (older decoders ignore trailing items, newer ones fill
the defaults). Never change a field's type or order; bump ``SCHEMA_VERSION`` when adding.

Prices and quantities are fixed-point integers: ``price * 10**price_precision`` with the
instrument's precision as the venue declares it (tickSize/stepSize decimals), so book keys are
exact and equal across replays. ``to_decimal_str`` turns them back for people.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

__all__ = [
    "ENTRY_FIELD",
    "RATE_PRECISION",
    "SCHEMA_VERSION",
    "BookDelta",
    "BookSnapshot",
    "DecodeError",
    "Event",
    "Level",
    "Liquidation",
    "MarkPrice",
    "OpenInterest",
    "Status",
    "StatusKind",
    "Ticker",
    "Trade",
    "decode_event",
    "encode_event",
    "scale",
    "to_decimal_str",
    "to_float",
]

SCHEMA_VERSION: Final = 2
"""1: book, trade, ticker, status. 2: the perpetual-futures kinds (mark price and funding,
liquidation, open interest)."""
ENTRY_FIELD: Final = b"e"

# (price, qty) in fixed point; qty 0 in a delta removes the level.
Level = tuple[int, int]

StatusKind = Literal["started", "stopped", "gap", "resync", "disconnected"]


class _Base(msgspec.Struct, array_like=True, frozen=True, tag_field="k"):
    v: int
    ts_event: int
    """Venue time of the message, ns since the epoch."""
    ts_init: int
    """When ingest received it, ns since the epoch."""


class BookSnapshot(_Base, tag="snap"):
    """Full book from the venue's REST snapshot; replaces the book (processors reset on it)."""

    price_precision: int
    size_precision: int
    update_id: int
    """The venue's lastUpdateId: the first delta to apply has
    first_update_id <= update_id + 1 <= last_update_id (Binance's bridging rule)."""
    bids: list[Level]
    asks: list[Level]


class BookDelta(_Base, tag="delta"):
    """One venue diff message (Binance depthUpdate): every level it changed, absolute qty."""

    price_precision: int
    size_precision: int
    first_update_id: int
    """Binance ``U``."""
    last_update_id: int
    """Binance ``u``."""
    bids: list[Level]
    asks: list[Level]


class Trade(_Base, tag="trade"):
    price_precision: int
    size_precision: int
    price: int
    qty: int
    aggressor: Literal["buy", "sell"]
    trade_id: str


class Ticker(_Base, tag="ticker"):
    """The venue's rolling 24 h statistics, as the venue's decimal strings normalized once."""

    last_price: str
    open_price: str
    high_price: str
    low_price: str
    volume: str
    quote_volume: str
    price_change_pct: str
    trade_count: int


class Status(_Base, tag="status"):
    """Ingest-side facts about the log itself: a gap means the book must not be trusted
    until the next snapshot; a resync announces that snapshot."""

    status: StatusKind
    detail: str = ""
    expected_update_id: int | None = None
    received_update_id: int | None = None


class MarkPrice(_Base, tag="mark"):
    """A perpetual's mark price, index price and funding (Binance ``@markPrice@1s``)."""

    price_precision: int
    mark_price: int
    index_price: int
    estimated_settle_price: int
    funding_rate: int
    """The current funding rate in fixed point at ``RATE_PRECISION`` decimals (Binance sends
    8: ``"0.00010000"`` is 10000, 0.01% per funding period)."""
    next_funding_ms: int
    """When the next funding happens (venue time, ms since the epoch)."""


class Liquidation(_Base, tag="liq"):
    """A forced order (Binance ``@forceOrder``): the venue closing a position it liquidated.
    ``side`` is the forced order's: ``sell`` liquidates a long, ``buy`` a short."""

    price_precision: int
    size_precision: int
    side: Literal["buy", "sell"]
    price: int
    """The order's limit price."""
    avg_price: int
    """Average fill price (0 while nothing filled)."""
    qty: int
    """Original quantity."""
    filled_qty: int
    """Quantity filled so far (accumulated)."""
    order_status: str
    """The venue's order status (``FILLED``, ``PARTIALLY_FILLED``, ...)."""


class OpenInterest(_Base, tag="oi"):
    """A perpetual's open interest (base quantity), polled from the venue's REST API."""

    size_precision: int
    open_interest: int


Event = BookSnapshot | BookDelta | Trade | Ticker | Status | MarkPrice | Liquidation | OpenInterest
RATE_PRECISION: Final = 8
"""Decimals of ``MarkPrice.funding_rate`` (Binance's funding rate strings have 8)."""

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Event)


class DecodeError(ValueError):
    """An entry that is not a valid event of a kind this build knows."""


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(payload: bytes) -> Event:
    try:
        return _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise DecodeError(str(e)) from e


def scale(value: str, precision: int) -> int:
    """A venue decimal string to fixed point, exactly (``"0.0100", 4 -> 100``)."""
    whole, _, frac = value.partition(".")
    frac = frac.rstrip("0")
    if len(frac) > precision:
        raise ValueError(f"{value!r} has more than {precision} decimals")
    negative = whole.startswith("-")
    digits = int((whole.lstrip("-") or "0") + frac.ljust(precision, "0"))
    return -digits if negative else digits


def to_float(value: int, precision: int) -> float:
    return value / 10**precision


def to_decimal_str(value: int, precision: int) -> str:
    if precision == 0:
        return str(value)
    sign = "-" if value < 0 else ""
    digits = str(abs(value)).rjust(precision + 1, "0")
    return f"{sign}{digits[:-precision]}.{digits[-precision:]}"
