import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.events import (
    SCHEMA_VERSION,
    BookDelta,
    DecodeError,
    Status,
    Trade,
    decode_event,
    encode_event,
    scale,
    to_decimal_str,
)


def test_round_trip_every_kind_is_compact():
    delta = BookDelta(SCHEMA_VERSION, 1, 2, 2, 8, 100, 102, [(6400012, 150000)], [(6400100, 0)])
    trade = Trade(SCHEMA_VERSION, 1, 2, 2, 8, 6400012, 5, "buy", "42")
    status = Status(SCHEMA_VERSION, 1, 2, "gap", "lost diff", 101, 105)
    for event in (delta, trade, status):
        assert decode_event(encode_event(event)) == event
    assert len(encode_event(delta)) < 40


def test_unknown_kind_and_garbage_are_decode_errors():
    with pytest.raises(DecodeError):
        decode_event(msgspec.msgpack.encode(["candle", 1, 2, 3]))
    with pytest.raises(DecodeError):
        decode_event(b"\xc1 not msgpack")
    with pytest.raises(DecodeError):
        decode_event(msgspec.msgpack.encode(["trade", 1, 2]))


def test_a_newer_writer_with_extra_trailing_fields_still_decodes():
    class TradeV2(msgspec.Struct, array_like=True, tag="trade", tag_field="k"):
        v: int
        ts_event: int
        ts_init: int
        price_precision: int
        size_precision: int
        price: int
        qty: int
        aggressor: str
        trade_id: str
        venue_flags: int = 0

    payload = msgspec.msgpack.encode(TradeV2(2, 1, 2, 2, 8, 100, 5, "sell", "7", 3))
    assert decode_event(payload) == Trade(2, 1, 2, 2, 8, 100, 5, "sell", "7")


@pytest.mark.parametrize(
    ("text", "precision", "value"),
    [("0.01000000", 8, 1000000), ("64000.01", 2, 6400001), ("5", 3, 5000), ("-1.5", 1, -15)],
)
def test_scale_is_exact(text, precision, value):
    assert scale(text, precision) == value


def test_scale_refuses_lost_digits():
    with pytest.raises(ValueError):
        scale("0.001", 2)


@given(st.integers(min_value=-(10**18), max_value=10**18), st.integers(0, 12))
def test_decimal_string_round_trip(value, precision):
    assert scale(to_decimal_str(value, precision), precision) == value
