"""Checkpoints of the analytics fold: the whole state and the last applied stream id, so a
new owner re-folds only what came after it. msgpack; a checkpoint written under other
parameters (window lengths, depth) or by another version is not used, since its windows mean
something else: the new owner folds from the stream's start instead.

Everything the fold keeps is in it (book, windows, the level-quantity window, the profile's
buckets, the anomaly trackers), so a resumed fold continues exactly where the old one stood:
a run with takeovers projects the same derived report as one uninterrupted fold.
"""

from __future__ import annotations

import dataclasses

import msgspec

from core.events import Level, Ticker, Trade
from processors.analytics.anomalies import IcebergState, SpoofState
from processors.analytics.fold import AnalyticsParams, AnalyticsState, new_state
from processors.analytics.profile import ProfileState
from processors.analytics.windows import WindowState
from processors.runtime.recent import RecentTrades

__all__ = ["CHECKPOINT_VERSION", "decode_checkpoint", "encode_checkpoint"]

CHECKPOINT_VERSION = 3
_NS_PER_S = 1_000_000_000


class _Checkpoint(msgspec.Struct, array_like=True, frozen=True):
    version: int
    params: dict[str, int | float]
    last_id: str
    events_folded: int
    price_precision: int
    size_precision: int
    price_tick: int
    update_id: int
    synced: bool
    ingest_status: str
    book_lost: str
    gaps: int
    clock_ns: int
    book_ts: int
    last_ts_event: int
    bids: list[Level]
    asks: list[Level]
    ticker: Ticker | None
    last_trade: Trade | None
    recent_trades: list[tuple[int, str]]
    repeated_trades: int
    rate: WindowState
    flow: WindowState
    depth_baseline: WindowState
    spread_baseline: WindowState
    sampled_s: int
    quantities: list[int]
    profile: ProfileState
    spoof: SpoofState
    icebergs: IcebergState


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
            price_tick=state.price_tick,
            update_id=state.update_id,
            synced=state.synced,
            ingest_status=state.ingest_status,
            book_lost=state.book_lost,
            gaps=state.gaps,
            clock_ns=state.clock_ns,
            book_ts=state.book_ts,
            last_ts_event=state.last_ts_event,
            bids=bids,
            asks=asks,
            ticker=state.ticker,
            last_trade=state.last_trade,
            recent_trades=state.recent_trades.kept(),
            repeated_trades=state.recent_trades.repeats,
            rate=state.rate.to_state(),
            flow=state.flow.to_state(),
            depth_baseline=state.depth_baseline.to_state(),
            spread_baseline=state.spread_baseline.to_state(),
            sampled_s=state.sampled_s,
            quantities=state.quantities.to_state(),
            profile=state.profile.to_state(),
            spoof=state.spoof.to_state(),
            icebergs=state.icebergs.to_state(),
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
    state.price_tick = ckpt.price_tick
    state.update_id = ckpt.update_id
    state.synced = ckpt.synced
    state.ingest_status = ckpt.ingest_status
    state.book_lost = ckpt.book_lost
    state.gaps = ckpt.gaps
    state.clock_ns = ckpt.clock_ns
    state.book_ts = ckpt.book_ts
    state.last_ts_event = ckpt.last_ts_event
    state.ticker = ckpt.ticker
    state.last_trade = ckpt.last_trade
    state.recent_trades = RecentTrades(ckpt.recent_trades, ckpt.repeated_trades)
    state.rate.load_state(ckpt.rate)
    state.flow.load_state(ckpt.flow)
    state.depth_baseline.load_state(ckpt.depth_baseline)
    state.spread_baseline.load_state(ckpt.spread_baseline)
    state.sampled_s = ckpt.sampled_s
    state.next_sample_ns = (ckpt.sampled_s + 1) * _NS_PER_S
    state.quantities.load_state(ckpt.quantities)
    state.profile.load_state(ckpt.profile)
    state.spoof.load_state(ckpt.spoof)
    state.icebergs.load_state(ckpt.icebergs)
    state.refresh_thresholds()
    return state
