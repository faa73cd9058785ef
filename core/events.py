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

from decimal import Decimal, InvalidOperation
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

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
    "check_event",
    "decode_event",
    "encode_event",
    "read_entry",
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

# What the schema itself refuses at decode (msgspec checks these constraints in C): numbers
# that fit the checkpoints' and Redis's 64-bit integers, precisions a 64-bit fixed point can
# hold, prices above zero, quantities never below it.
_INT64_MAX: Final = 2**63 - 1
_Count = Annotated[int, Meta(ge=0, le=_INT64_MAX)]
_Signed = Annotated[int, Meta(ge=-_INT64_MAX, le=_INT64_MAX)]
_Price = Annotated[int, Meta(gt=0, le=_INT64_MAX)]
_Positive = Annotated[int, Meta(gt=0, le=_INT64_MAX)]
_Precision = Annotated[int, Meta(ge=0, le=18)]
_Version = Annotated[int, Meta(ge=1)]
_BookLevel = tuple[_Price, _Count]
_TradeId = Annotated[str, Meta(min_length=1, max_length=64)]
_FUTURE_NS: Final = 60_000_000_000
"""How far ahead of its stream entry's time (Redis's clock at the append) an event's venue
time may be: clocks differ by milliseconds, not a minute."""

StatusKind = Literal["started", "stopped", "gap", "resync", "disconnected"]


class _Base(msgspec.Struct, array_like=True, frozen=True, tag_field="k"):
    v: _Version
    """The schema version it was written with; a newer one than ``SCHEMA_VERSION`` is read
    too (fields are only ever added at the end)."""
    ts_event: _Count
    """Venue time of the message, ns since the epoch."""
    ts_init: _Count
    """When ingest received it, ns since the epoch."""


class BookSnapshot(_Base, tag="snap"):
    """Full book from the venue's REST snapshot; replaces the book (processors reset on it)."""

    price_precision: _Precision
    size_precision: _Precision
    update_id: _Count
    """The venue's lastUpdateId: the first delta to apply has
    first_update_id <= update_id + 1 <= last_update_id (Binance's bridging rule)."""
    bids: list[_BookLevel]
    asks: list[_BookLevel]


class BookDelta(_Base, tag="delta"):
    """One venue diff message (Binance depthUpdate): every level it changed, absolute qty."""

    price_precision: _Precision
    size_precision: _Precision
    first_update_id: _Count
    """Binance ``U``."""
    last_update_id: _Count
    """Binance ``u``."""
    bids: list[_BookLevel]
    asks: list[_BookLevel]


class Trade(_Base, tag="trade"):
    price_precision: _Precision
    size_precision: _Precision
    price: _Price
    qty: _Positive
    aggressor: Literal["buy", "sell"]
    trade_id: _TradeId


class Ticker(_Base, tag="ticker"):
    """The venue's rolling 24 h statistics, as the venue's decimal strings normalized once."""

    last_price: str
    open_price: str
    high_price: str
    low_price: str
    volume: str
    quote_volume: str
    price_change_pct: str
    trade_count: _Count


class Status(_Base, tag="status"):
    """Ingest-side facts about the log itself: a gap means the book must not be trusted
    until the next snapshot; a resync announces that snapshot."""

    status: StatusKind
    detail: str = ""
    expected_update_id: _Count | None = None
    received_update_id: _Count | None = None


class MarkPrice(_Base, tag="mark"):
    """A perpetual's mark price, index price and funding (Binance ``@markPrice@1s``)."""

    price_precision: _Precision
    mark_price: _Price
    index_price: _Count
    estimated_settle_price: _Count
    funding_rate: _Signed
    """The current funding rate in fixed point at ``RATE_PRECISION`` decimals (Binance sends
    8: ``"0.00010000"`` is 10000, 0.01% per funding period)."""
    next_funding_ms: _Count
    """When the next funding happens (venue time, ms since the epoch)."""


class Liquidation(_Base, tag="liq"):
    """A forced order (Binance ``@forceOrder``): the venue closing a position it liquidated.
    ``side`` is the forced order's: ``sell`` liquidates a long, ``buy`` a short."""

    price_precision: _Precision
    size_precision: _Precision
    side: Literal["buy", "sell"]
    price: _Price
    """The order's limit price."""
    avg_price: _Count
    """Average fill price (0 while nothing filled)."""
    qty: _Positive
    """Original quantity."""
    filled_qty: _Count
    """Quantity filled so far (accumulated)."""
    order_status: str
    """The venue's order status (``FILLED``, ``PARTIALLY_FILLED``, ...)."""


class OpenInterest(_Base, tag="oi"):
    """A perpetual's open interest (base quantity), polled from the venue's REST API."""

    size_precision: _Precision
    open_interest: _Count


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
        raise DecodeError(str(e)[:200]) from e


def read_entry(payload: bytes | None, entry_id: str) -> Event:
    """The event of a stream entry, checked: the one gate every entry passes before any kind
    folds it (processors and replays alike). ``DecodeError`` for what the schema refuses,
    ``ValueError`` for what it cannot express: an event time more than a minute after the
    entry's own time, update ids out of order, a crossed snapshot, ticker figures that are not
    numbers. The caller dead-letters the entry; no state has seen it."""
    if payload is None:
        raise DecodeError(f"entry has no {ENTRY_FIELD.decode()!r} field")
    event = decode_event(payload)
    check_event(event, entry_id)
    return event


def check_event(event: Event, entry_id: str) -> None:
    """What ``read_entry`` checks beyond the schema, for an event already decoded (a capture
    replayed offline)."""
    entry_ms = int(entry_id.partition("-")[0])
    if event.ts_event > entry_ms * 1_000_000 + _FUTURE_NS:
        raise ValueError(f"event time {event.ts_event} ns is more than 60 s after its entry")
    check = _CHECKS.get(type(event))
    if check is not None:
        check(event)


def _check_delta(delta: BookDelta) -> None:
    if delta.first_update_id > delta.last_update_id:
        raise ValueError(f"delta update ids {delta.first_update_id} > {delta.last_update_id}")


def _check_snapshot(snapshot: BookSnapshot) -> None:
    best_bid = max((p for p, q in snapshot.bids if q), default=None)
    best_ask = min((p for p, q in snapshot.asks if q), default=None)
    if best_bid is not None and best_ask is not None and best_bid >= best_ask:
        raise ValueError(f"crossed snapshot: best bid {best_bid} >= best ask {best_ask}")


def _check_ticker(ticker: Ticker) -> None:
    for value in (ticker.last_price, ticker.open_price, ticker.high_price, ticker.low_price,
                  ticker.volume, ticker.quote_volume, ticker.price_change_pct):  # fmt: skip
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"ticker figure {value[:32]!r} is not a number") from None
        if not number.is_finite():
            raise ValueError(f"ticker figure {value[:32]!r} is not a finite number")


_CHECKS: Final = {BookDelta: _check_delta, BookSnapshot: _check_snapshot, Ticker: _check_ticker}


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
