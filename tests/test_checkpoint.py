"""A fold resumed from a checkpoint equals the uninterrupted fold, at any split point."""

import random

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from context8.events import SCHEMA_VERSION, BookDelta, BookSnapshot, Status, Ticker, Trade
from processors.checkpoint import decode_checkpoint, encode_checkpoint
from processors.fold import AnalyticsParams, fold, new_state
from processors.project import build_report
from projections.report import Writer

V = SCHEMA_VERSION
MS = 1_000_000


def tape(seed: int, n: int) -> list:
    rng = random.Random(seed)
    ts = 1_700_000_000_000 * MS
    update_id = 100
    events = [BookSnapshot(V, ts, ts, 2, 3, update_id,
                           [(10000 - i, rng.randint(1, 900)) for i in range(30)],
                           [(10001 + i, rng.randint(1, 900)) for i in range(30)])]  # fmt: skip
    for _ in range(n):
        ts += rng.randint(0, 400) * MS
        kind = rng.random()
        if kind < 0.6:
            first = update_id + 1
            update_id += rng.randint(1, 3)
            bid = (10000 - rng.randint(0, 40), rng.randint(0, 900))
            ask = (10001 + rng.randint(0, 40), rng.randint(0, 900))
            events.append(BookDelta(V, ts, ts, 2, 3, first, update_id, [bid], [ask]))
        elif kind < 0.9:
            side = rng.choice(("buy", "sell"))
            events.append(Trade(V, ts, ts, 2, 3, 10000, rng.randint(1, 50), side, str(ts)))
        elif kind < 0.97:
            events.append(Ticker(V, ts, ts, "100.00", "99.00", "101.00", "98.00", "5", "500",
                                 "1.01", 42))  # fmt: skip
        else:
            events.append(Status(V, ts, ts, "gap", "", update_id + 1, update_id + 5))
            update_id += 5
            events.append(BookSnapshot(V, ts, ts, 2, 3, update_id, [(9990, 5)], [(10010, 5)]))
    return events


def report_of(state) -> bytes:
    writer = Writer(nodeId="n", writerToken=1)
    now_ms = state.last_ts_event // MS + 10
    return msgspec.json.encode(build_report(state, instrument_id="X.BINANCE", writer=writer,
                                            now_ms=now_ms))  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), split=st.floats(0, 1))
def test_resumed_fold_equals_uninterrupted(seed, split):
    events = tape(seed, 400)
    whole = new_state()
    for i, event in enumerate(events):
        fold(whole, event, f"{i + 1}-0")
    cut = int(split * len(events))
    first = new_state()
    for i, event in enumerate(events[:cut]):
        fold(first, event, f"{i + 1}-0")
    resumed = decode_checkpoint(encode_checkpoint(first), AnalyticsParams())
    assert resumed is not None
    for i, event in enumerate(events[cut:], cut):
        fold(resumed, event, f"{i + 1}-0")
    assert report_of(resumed) == report_of(whole)
    assert encode_checkpoint(resumed) == encode_checkpoint(whole)


def test_a_checkpoint_of_other_parameters_or_garbage_is_not_used():
    state = new_state()
    fold(state, tape(1, 0)[0], "1-0")
    payload = encode_checkpoint(state)
    assert decode_checkpoint(payload, AnalyticsParams(depth_levels=10)) is None
    assert decode_checkpoint(b"garbage", AnalyticsParams()) is None
