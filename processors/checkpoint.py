"""Checkpoints of the analytics fold: the whole state and the last applied stream id, so a
new owner re-folds only what came after it. msgpack; a checkpoint written under other
parameters (window lengths, depth) is not used, since its windows mean something else."""

from __future__ import annotations

import dataclasses

import msgspec

from context8.events import Level, Ticker, Trade
from processors.fold import AnalyticsParams, AnalyticsState, new_state
from processors.windows import WindowState

__all__ = ["CHECKPOINT_VERSION", "decode_checkpoint", "encode_checkpoint"]

CHECKPOINT_VERSION = 1


class _Checkpoint(msgspec.Struct, array_like=True, frozen=True):
    version: int
    params: dict[str, float]
    last_id: str
    events_folded: int
    price_precision: int
    size_precision: int
    update_id: int
    synced: bool
    ingest_status: str
    gaps: int
    clock_ns: int
    last_ts_event: int
    bids: list[Level]
    asks: list[Level]
    ticker: Ticker | None
    last_trade: Trade | None
    rate: WindowState
    flow: WindowState
    depth_baseline: WindowState
    depth_sampled_s: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Checkpoint)


def encode_checkpoint(state: AnalyticsState) -> bytes:
    bids, asks = state.book.levels()
    return _encoder.encode(
        _Checkpoint(
            version=CHECKPOINT_VERSION,
            params=dataclasses.asdict(state.params),
            last_id=state.last_id,
            events_folded=state.events_folded,
            price_precision=state.price_precision,
            size_precision=state.size_precision,
            update_id=state.update_id,
            synced=state.synced,
            ingest_status=state.ingest_status,
            gaps=state.gaps,
            clock_ns=state.clock_ns,
            last_ts_event=state.last_ts_event,
            bids=bids,
            asks=asks,
            ticker=state.ticker,
            last_trade=state.last_trade,
            rate=state.rate.to_state(),
            flow=state.flow.to_state(),
            depth_baseline=state.depth_baseline.to_state(),
            depth_sampled_s=state.depth_sampled_s,
        )
    )


def decode_checkpoint(payload: bytes, params: AnalyticsParams) -> AnalyticsState | None:
    """The state in ``payload``, or None when it cannot be used (other version or params,
    or not a checkpoint at all): the caller then folds from the stream's start."""
    try:
        ckpt = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if ckpt.version != CHECKPOINT_VERSION or ckpt.params != dataclasses.asdict(params):
        return None
    state = new_state(params)
    state.book.load(ckpt.bids, ckpt.asks)
    state.last_id = ckpt.last_id
    state.events_folded = ckpt.events_folded
    state.price_precision = ckpt.price_precision
    state.size_precision = ckpt.size_precision
    state.update_id = ckpt.update_id
    state.synced = ckpt.synced
    state.ingest_status = ckpt.ingest_status
    state.gaps = ckpt.gaps
    state.clock_ns = ckpt.clock_ns
    state.last_ts_event = ckpt.last_ts_event
    state.ticker = ckpt.ticker
    state.last_trade = ckpt.last_trade
    state.rate.load_state(ckpt.rate)
    state.flow.load_state(ckpt.flow)
    state.depth_baseline.load_state(ckpt.depth_baseline)
    state.depth_sampled_s = ckpt.depth_sampled_s
    return state
