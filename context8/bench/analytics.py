"""``context8 bench analytics``: the analytics fold and its two cycles, in this process.

A busy symbol's hour: the order-flow model (ingest/simulator/orderflow.py, BTCUSDT at
``rate`` x its default intensity) runs for ``tape_minutes`` of simulated time; its Binance
messages become events exactly as the log holds them (diffs, trades, tickers, and a REST
snapshot first); the tape is then repeated, shifted in venue time and update/trade ids and
each time led by a fresh snapshot (as ingest logs one every ``NT_SNAPSHOT_EVERY_SEC``), until
``minutes`` of event time. Generating the model's order flow costs more than folding it, so
the hour is built from a shorter tape; the per-minute price range and trade mix, which size
the profile's buckets, are those of the model.

Figures (CPU time of this process, one core):
- events/s and level updates/s of ``fold`` with every analytic on (with both cycles run
  between, as in a live processor, and alone, as in a catch-up), next to a bare
  sortedcontainers SortedDict book applying the same level updates in the same run;
- the fast cycle (``build_report``, every 250 ms of event time) and the slow cycle
  (``compute_slow``, every 2000 ms), p50/p99/max;
- memory per symbol after the hour: the size of everything reachable from the state (an
  object-graph walk), and tracemalloc's count of what a state restored from its checkpoint
  holds; the checkpoint's size and its encode/decode time.
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from dataclasses import dataclass
from types import FunctionType, ModuleType

import msgspec
from sortedcontainers import SortedDict

from context8.bench.samples import percentile, say
from core.events import (
    SCHEMA_VERSION,
    BookDelta,
    BookSnapshot,
    Event,
    Ticker,
    Trade,
    scale,
)
from ingest.simulator.instruments import spec_for
from ingest.simulator.orderflow import MarketModel
from processors.analytics.checkpoint import decode_checkpoint, encode_checkpoint
from processors.analytics.fold import AnalyticsState, fold, new_state
from processors.analytics.project import build_report
from processors.analytics.slow import SlowSections, compute_slow
from projections.report import Writer

__all__ = ["deep_size", "model_events", "run_analytics_bench"]

_NS_PER_MS = 1_000_000
_FAST_MS = 250
_SLOW_MS = 2000
_START_MS = 1_700_000_000_000


def _decimals(step: str) -> int:
    return len(step.partition(".")[2].rstrip("0"))


def model_events(symbol: str, seconds: float, *, rate: float, seed: int = 7) -> list[Event]:
    """``seconds`` of the order-flow model's market for ``symbol`` as log events: the REST
    snapshot, then the 100 ms diffs, trades and 24 h tickers (what ingest subscribes to)."""
    spec = spec_for(symbol)
    pp, sp = _decimals(spec.tick_size), _decimals(spec.step_size)
    model = MarketModel(spec, seed=seed, rate=rate)

    def levels(rows: list[list[str]]) -> list[tuple[int, int]]:
        return [(scale(p, pp), scale(q, sp)) for p, q in rows]

    book = model.snapshot(5000)
    ts = _START_MS * _NS_PER_MS
    events: list[Event] = [BookSnapshot(SCHEMA_VERSION, ts, ts, pp, sp, book["lastUpdateId"],
                                        levels(book["bids"]), levels(book["asks"]))]  # fmt: skip
    for step in range(1, int(seconds * 10) + 1):
        for kind, m in model.advance(step * 100.0, _START_MS + step * 100):
            if kind == "depth":
                ts = m["E"] * _NS_PER_MS
                events.append(BookDelta(SCHEMA_VERSION, ts, ts, pp, sp, m["U"], m["u"],
                                        levels(m["b"]), levels(m["a"])))  # fmt: skip
            elif kind == "trade":
                ts = m["T"] * _NS_PER_MS
                side = "sell" if m["m"] else "buy"  # the buyer was the maker: a seller hit
                events.append(Trade(SCHEMA_VERSION, ts, ts, pp, sp, scale(m["p"], pp),
                                    scale(m["q"], sp), side, str(m["t"])))  # fmt: skip
            elif kind == "ticker":
                ts = m["E"] * _NS_PER_MS
                events.append(Ticker(SCHEMA_VERSION, ts, ts, m["c"], m["o"], m["h"], m["l"],
                                     m["v"], m["q"], m["P"], m["n"]))  # fmt: skip
    return events


def _shifted(tape: list[Event], k: int, span_ns: int, ids: int, trades: int) -> list[Event]:
    """Repetition ``k`` of the tape: later by k spans, its ids above the previous ones."""
    if k == 0:
        return tape
    dt, di, dtr = k * span_ns, k * ids, k * trades
    replace = msgspec.structs.replace
    out: list[Event] = []
    for e in tape:
        ts = e.ts_event + dt
        match e:
            case BookDelta():
                out.append(replace(e, ts_event=ts, ts_init=ts, first_update_id=e.first_update_id
                                   + di, last_update_id=e.last_update_id + di))  # fmt: skip
            case BookSnapshot():
                out.append(replace(e, ts_event=ts, ts_init=ts, update_id=e.update_id + di))
            case Trade():
                out.append(replace(e, ts_event=ts, ts_init=ts, trade_id=str(int(e.trade_id) + dtr)))
            case _:
                out.append(replace(e, ts_event=ts, ts_init=ts))
    return out


def deep_size(root: object) -> int:
    """Bytes of every object reachable from ``root`` (each counted once; classes, modules and
    functions, shared by every state, left out)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | ModuleType | FunctionType):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


@dataclass
class _Tally:
    fold_s: float = 0.0
    events: int = 0
    levels: int = 0


def _fold_hour(
    repetitions: list[list[Event]],
) -> tuple[AnalyticsState, _Tally, list[float], list[float]]:
    state = new_state()
    tally = _Tally()
    fast_ms: list[float] = []
    slow_ms: list[float] = []
    writer = Writer(nodeId="bench", writerToken=1)
    slow: SlowSections | None = None
    clock = time.process_time
    next_fast = next_slow = 0
    entry = 0
    for events in repetitions:
        tally.events += len(events)
        tally.levels += sum(len(e.bids) + len(e.asks) for e in events if type(e) is BookDelta)
        ids = [f"{entry + j}-0" for j in range(1, len(events) + 1)]  # as XREAD hands them
        entry += len(events)
        i, n = 0, len(events)
        while i < n:
            # fold up to the next cycle due in event time, timing the fold alone
            due = min(next_fast, next_slow)
            started = clock()
            while i < n and events[i].ts_event < due:
                fold(state, events[i], ids[i])
                i += 1
            if i == n:
                tally.fold_s += clock() - started
                break
            fold(state, events[i], ids[i])
            i += 1
            tally.fold_s += clock() - started
            now_ns = state.clock_ns
            if now_ns >= next_slow:
                started = clock()
                slow = compute_slow(state)
                slow_ms.append((clock() - started) * 1000)
                next_slow = now_ns + _SLOW_MS * _NS_PER_MS
            if now_ns >= next_fast:
                started = clock()
                build_report(state, instrument_id="BTCUSDT.BINANCE", writer=writer,
                             now_ms=now_ns // _NS_PER_MS, slow=slow)  # fmt: skip
                fast_ms.append((clock() - started) * 1000)
                next_fast = now_ns + _FAST_MS * _NS_PER_MS
    return state, tally, fast_ms, slow_ms


def _fold_alone(repetitions: list[list[Event]]) -> float:
    """CPU seconds of folding every event into a fresh state, nothing else in between."""
    state = new_state()
    elapsed = 0.0
    for k, events in enumerate(repetitions):
        ids = [f"{k}-{i}" for i in range(len(events))]
        started = time.process_time()
        for event, entry_id in zip(events, ids, strict=True):
            fold(state, event, entry_id)
        elapsed += time.process_time() - started
    return elapsed


def _bare_rate(repetitions: list[list[Event]]) -> float:
    """Level updates/s of a bare SortedDict per side applying the same updates."""
    levels = 0
    elapsed = 0.0
    bids: SortedDict = SortedDict()
    asks: SortedDict = SortedDict()
    for events in repetitions:
        started = time.process_time()
        for e in events:
            if type(e) is BookDelta:
                for price, qty in e.bids:
                    if qty:
                        bids[-price] = qty
                    else:
                        bids.pop(-price, None)
                for price, qty in e.asks:
                    if qty:
                        asks[price] = qty
                    else:
                        asks.pop(price, None)
                levels += len(e.bids) + len(e.asks)
            elif type(e) is BookSnapshot:
                bids = SortedDict({-p: q for p, q in e.bids})
                asks = SortedDict(e.asks)
        elapsed += time.process_time() - started
    return levels / elapsed


def _times(values: list[float]) -> str:
    return (f"p50 {percentile(values, 0.5):.3f} ms, p99 {percentile(values, 0.99):.3f} ms, "
            f"max {max(values):.3f} ms ({len(values)} runs)")  # fmt: skip


def run_analytics_bench(
    *, minutes: float = 60.0, rate: float = 10.0, tape_minutes: float = 5.0, symbol: str = "BTCUSDT"
) -> int:
    tape_minutes = min(tape_minutes, minutes)
    say(f"context8 bench analytics: {symbol} at {rate:g}x the model's intensity, "
        f"{minutes:g} min of event time (a {tape_minutes:g} min tape repeated)")  # fmt: skip
    started = time.perf_counter()
    tape = model_events(symbol, tape_minutes * 60, rate=rate)
    say(f"tape generated in {time.perf_counter() - started:.1f} s: {len(tape):,} events")
    span_ns = (tape[-1].ts_event - tape[0].ts_event) + 100 * _NS_PER_MS
    ids = max(e.last_update_id for e in tape if type(e) is BookDelta) + 1
    trades = max(int(e.trade_id) for e in tape if type(e) is Trade) + 1
    count = max(1, round(minutes / tape_minutes))
    repetitions = [_shifted(tape, k, span_ns, ids, trades) for k in range(count)]

    # The hour's events are all in memory here (a consumer holds one read batch): keep the
    # collector from rescanning them, as it would not have them to scan in a processor.
    gc.collect()
    gc.freeze()
    state, tally, fast_ms, slow_ms = _fold_hour(repetitions)
    catch_up_s = _fold_alone(repetitions)
    bare = _bare_rate(repetitions)
    hours = (state.clock_ns - tape[0].ts_event) / 3.6e12
    say(f"folded {tally.events:,} events, {tally.levels:,} level updates "
        f"({hours * 60:.0f} min of event time; {tally.events / hours / 3600:,.0f} events/s, "
        f"{tally.levels / hours / 3600:,.0f} level updates/s of venue traffic)")  # fmt: skip
    fold_levels = tally.levels / tally.fold_s
    events_rate = tally.events / tally.fold_s
    say(f"fold, every analytic on, both cycles run between (one core): "
        f"{events_rate:,.0f} events/s, {fold_levels:,.0f} level updates/s")  # fmt: skip
    say(f"fold alone, as in a catch-up (one core): {tally.events / catch_up_s:,.0f} events/s, "
        f"{tally.levels / catch_up_s:,.0f} level updates/s")  # fmt: skip
    say(f"bare SortedDict book, same level updates: {bare:,.0f} level updates/s "
        f"(fold / bare = {fold_levels / bare:.2f} with the cycles, "
        f"{tally.levels / catch_up_s / bare:.2f} alone)")  # fmt: skip
    say(f"fast cycle (build_report, every {_FAST_MS} ms): {_times(fast_ms)}")
    say(f"slow cycle (compute_slow, every {_SLOW_MS} ms): {_times(slow_ms)}")

    gc.collect()
    graph = deep_size(state)
    started = time.process_time()
    payload = encode_checkpoint(state)
    encode_ms = (time.process_time() - started) * 1000
    started = time.process_time()
    decode_checkpoint(payload, state.params)
    decode_ms = (time.process_time() - started) * 1000
    tracemalloc.start()
    restored = decode_checkpoint(payload, state.params)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert restored is not None
    say(
        f"memory per symbol after {hours * 60:.0f} min: state object graph {graph / 1e6:.2f} "
        f"MB; a state restored from its checkpoint holds {held / 1e6:.2f} MB (tracemalloc)"
    )
    say(f"  book {state.book.bid_count} + {state.book.ask_count} levels, level window "
        f"{len(state.quantities):,} quantities, profile buckets "
        f"{len(state.profile.to_state().closed) + 1}")  # fmt: skip
    say(f"checkpoint: {len(payload) / 1e3:.0f} kB, encode {encode_ms:.1f} ms, "
        f"decode {decode_ms:.1f} ms")  # fmt: skip
    return 0
