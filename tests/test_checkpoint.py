"""A fold resumed from a checkpoint equals the uninterrupted fold, at any split point: the
report, the slow-cycle sections and the checkpoint itself."""

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.analytics.checkpoint import decode_checkpoint, encode_checkpoint
from processors.analytics.fold import AnalyticsParams, fold, new_state
from processors.analytics.project import build_report
from processors.analytics.slow import compute_slow
from projections.report import Writer
from tests.tapes import gen_tape

MS = 1_000_000


def tape(seed: int, n: int) -> list:
    return gen_tape(seed, n)


def report_of(state) -> bytes:
    writer = Writer(nodeId="n", writerToken=1)
    now_ms = state.last_ts_event // MS + 10
    return msgspec.json.encode(build_report(state, instrument_id="X.BINANCE", writer=writer,
                                            now_ms=now_ms, slow=compute_slow(state)))  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), split=st.floats(0, 1), resumes=st.integers(1, 3))
def test_resumed_fold_equals_uninterrupted(seed, split, resumes):
    events = tape(seed, 600)
    whole = new_state()
    for i, event in enumerate(events):
        fold(whole, event, f"{i + 1}-0")
    # hand over at `resumes` points from the split on, each through a checkpoint
    cuts = sorted({int(split * len(events) * k / resumes) for k in range(1, resumes + 1)})
    state, done = new_state(), 0
    for cut in [*cuts, len(events)]:
        for i, event in enumerate(events[done:cut], done):
            fold(state, event, f"{i + 1}-0")
        done = cut
        resumed = decode_checkpoint(encode_checkpoint(state), AnalyticsParams())
        assert resumed is not None
        assert encode_checkpoint(resumed) == encode_checkpoint(state)
        state = resumed
    assert report_of(state) == report_of(whole)
    assert encode_checkpoint(state) == encode_checkpoint(whole)


def test_the_checkpoint_holds_every_tracker():
    state = new_state()
    for i, event in enumerate(tape(11, 1500)):
        fold(state, event, f"{i + 1}-0")
    restored = decode_checkpoint(encode_checkpoint(state), AnalyticsParams())
    assert restored is not None
    assert state.spoof.pulled and list(restored.spoof.pulled) == list(state.spoof.pulled)
    assert restored.spoof.bids == state.spoof.bids and restored.spoof.asks == state.spoof.asks
    assert restored.icebergs.to_state() == state.icebergs.to_state()
    assert restored.profile.to_state() == state.profile.to_state()
    assert restored.quantities.to_state() == state.quantities.to_state()
    assert restored.watch.min_qty == state.watch.min_qty
    # the book's watch lists are the tracker's own dicts, in the restored state too
    assert restored.watch.bids is restored.spoof.bids
    assert msgspec.json.encode(compute_slow(restored)) == msgspec.json.encode(compute_slow(state))


def test_a_checkpoint_of_other_parameters_or_garbage_is_not_used():
    state = new_state()
    fold(state, tape(1, 0)[0], "1-0")
    payload = encode_checkpoint(state)
    assert decode_checkpoint(payload, AnalyticsParams(depth_levels=10)) is None
    assert decode_checkpoint(payload, AnalyticsParams(spoof_window_s=30)) is None
    assert decode_checkpoint(b"garbage", AnalyticsParams()) is None
    assert decode_checkpoint(payload, AnalyticsParams()) is not None
