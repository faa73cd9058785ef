"""``context8 replay``: the depth sequencer both ingest paths share, the offline ingest of a
capture, the fold into reports (end of input, ``--at`` times), stream ranges from a real
Redis, ``--diff``, determinism, and the errors a user sees."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import pytest
import redis

from context8.cli import main
from context8.replay import (
    ReplayStats,
    _Progress,
    capture_entries,
    differences,
    fold_entries,
    replay_reports,
)
from core import keys
from core.events import (
    ENTRY_FIELD,
    BookDelta,
    BookSnapshot,
    Status,
    Ticker,
    Trade,
    encode_event,
)
from ingest.capture import CaptureWriter, MetaLine
from ingest.depth import DepthSequencer, Gap, Verdict
from ingest.offline import CaptureIngest
from ingest.simulator.instruments import exchange_info, spec_for, symbol_info
from ingest.simulator.synth import write_model_capture

BTC = "BTCUSDT.BINANCE"
T0 = 1_700_000_000.0  # receive time of the first line, s


# -- the depth sequencer -----------------------------------------------------------------------


class _D(NamedTuple):
    first: int
    last: int


def test_sequencer_bridges_a_snapshot_then_checks_continuity():
    seq: DepthSequencer[_D] = DepthSequencer()
    assert seq.on_diff(_D(1, 2)) is Verdict.UNSYNCED  # before anyone asked for a snapshot
    seq.await_snapshot()
    for diff in (_D(95, 100), _D(101, 104), _D(103, 107), _D(108, 110)):
        assert seq.on_diff(diff) is Verdict.BUFFERED
    outcome = seq.on_snapshot(105)
    # u <= 105 dropped; 103..107 bridges (U <= 106 <= u); then continuity.
    assert outcome == (True, [_D(103, 107), _D(108, 110)], None)
    assert seq.synced and seq.last == 110
    assert seq.on_diff(_D(108, 110)) is Verdict.STALE
    assert seq.on_diff(_D(111, 111)) is Verdict.APPLY
    gap = seq.on_diff(_D(120, 121))
    assert gap == Gap(expected=112, received=120, received_last=121)
    assert gap.detail == "diff U=120 u=121 after u=111"
    assert not seq.synced and seq.awaiting_snapshot
    assert seq.on_diff(_D(122, 125)) is Verdict.BUFFERED
    assert seq.on_snapshot(110) == (False, [], None)  # older than the stream: another one
    assert seq.on_snapshot(121) == (True, [_D(122, 125)], None)
    assert seq.last == 125


def test_sequencer_finds_a_hole_inside_its_buffer_and_bounds_it():
    seq: DepthSequencer[_D] = DepthSequencer(max_buffered=3)
    seq.await_snapshot()
    for diff in (_D(20, 21), _D(25, 26), _D(27, 28)):
        seq.on_diff(diff)
    outcome = seq.on_snapshot(20)
    assert outcome == (True, [_D(20, 21)], Gap(22, 25, 26))
    assert seq.awaiting_snapshot and seq.on_snapshot(26) == (True, [_D(27, 28)], None)

    seq.await_snapshot()
    for i in range(5):  # the oldest go beyond max_buffered
        seq.on_diff(_D(30 + i, 30 + i))
    assert seq.on_snapshot(29) == (False, [], None)  # 30 and 31 were dropped: a hole
    assert seq.on_snapshot(31) == (True, [_D(32, 32), _D(33, 33), _D(34, 34)], None)


# -- captures for the tests --------------------------------------------------------------------


def _diff(first: int, last: int, levels: bool = True, price: str = "100.00000000") -> dict:
    return {"e": "depthUpdate", "E": int(T0 * 1000) + last, "s": "BTCUSDT", "U": first,
            "u": last, "b": [[price, f"{last}.00000000"]] if levels else [], "a": []}  # fmt: skip


def _depth(last: int, bid: str = "99.00000000") -> dict:
    return {"lastUpdateId": last, "bids": [[bid, "1.00000000"]], "asks": [["101.00000000", "2.0"]]}


def _trade(stream: str, trade_id: int, price: str = "100.50000000") -> tuple[str, dict]:
    ms = int(T0 * 1000) + trade_id
    if stream == "trade":
        data = {"e": "trade", "E": ms, "s": "BTCUSDT", "t": trade_id, "p": price,
                "q": "0.50000000", "T": ms, "m": False, "M": True}  # fmt: skip
    else:
        data = {"e": "aggTrade", "E": ms, "s": "BTCUSDT", "a": trade_id, "p": price,
                "q": "0.50000000", "f": trade_id, "l": trade_id, "T": ms, "m": True,
                "M": True}  # fmt: skip
    return f"btcusdt@{stream}", data


def _write(path: Path, lines: list[tuple[str, Any]]) -> Path:
    """A capture: meta, exchangeInfo, then ("ws", (stream, data)) / ("depth", body) lines
    received 10 ms apart."""
    with CaptureWriter(path) as writer:
        writer.write(MetaLine(recv_ts=T0, source="test", symbols=["BTCUSDT"]))
        info = exchange_info([symbol_info(spec_for("BTCUSDT"))], int(T0 * 1000))
        writer.rest("/api/v3/exchangeInfo", {}, info, T0)
        for i, (kind, item) in enumerate(lines, start=1):
            ts = T0 + i / 100
            if kind == "ws":
                writer.ws(*item, recv_ts=ts)
            else:
                writer.rest("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 1000}, item, ts)
    return path


def _short(event: Any) -> tuple:
    match event:
        case BookSnapshot():
            return ("snap", event.update_id)
        case BookDelta():
            return ("delta", event.first_update_id, event.last_update_id, len(event.bids))
        case Status():
            return (event.status, event.detail, event.expected_update_id,
                    event.received_update_id)  # fmt: skip
        case Trade():
            return ("trade", event.trade_id, event.aggressor)
    return (type(event).__name__,)


def test_offline_ingest_follows_the_procedure_of_the_live_client(tmp_path):
    depth = "btcusdt@depth@100ms"
    path = _write(tmp_path / "c.jsonl", [
        ("ws", (depth, _diff(95, 100))), ("ws", (depth, _diff(101, 104))),
        ("ws", (depth, _diff(103, 107))),
        ("depth", _depth(105)),
        ("ws", (depth, _diff(108, 110))), ("ws", (depth, _diff(108, 110))),
        ("ws", (depth, _diff(111, 113, levels=False))),
        ("ws", _trade("trade", 7)), ("ws", _trade("aggTrade", 9)),
        ("ws", ("btcusdt@bookTicker", {"u": 1, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2",
                                       "A": "1"})),
        ("ws", (depth, _diff(120, 121))),  # 114..119 never came
        ("ws", (depth, _diff(122, 125))),
        ("depth", _depth(110)),  # older than the buffered stream: unusable
        ("depth", _depth(121)),
        ("ws", (depth, {**_diff(126, 126), "b": [["not a price", "1"]]})),  # refused, skipped
        ("depth", _depth(200, bid="98.00000000")),  # newer than the book: replaces it
        ("depth", _depth(150)),  # older than the book: skipped
        ("ws", (depth, _diff(190, 201))),
    ])  # fmt: skip
    ingest = CaptureIngest(path)
    events = [(e.symbol, _short(e.event)) for e in ingest.events()]
    assert {symbol for symbol, _ in events} == {BTC}
    assert [short for _, short in events] == [
        ("started", "offline replay of c.jsonl", None, None),
        ("snap", 105),
        ("delta", 103, 107, 1),  # U <= 106 <= u bridges the snapshot
        ("delta", 108, 110, 1),  # its repeat is dropped
        ("delta", 111, 113, 0),  # no level changed: an empty delta, as ingest logs it
        ("trade", "7", "buy"),  # @trade, as ingest subscribes; the @aggTrade is not used
        ("gap", "diff U=120 u=121 after u=113", 114, 120),
        ("snap", 121), ("resync", "gap", None, 121),
        ("delta", 122, 125, 1),
        ("snap", 200), ("resync", "capture snapshot", None, 200),
        ("delta", 190, 201, 1),
    ]  # fmt: skip
    stats = ingest.stats
    assert (stats.stale_diffs, stats.gaps, stats.unusable_snapshots) == (1, 1, 1)
    assert stats.skipped_snapshots == 1 and stats.errors == 1
    assert "not a price" in stats.error_samples[0] or "BTCUSDT" in stats.error_samples[0]
    assert stats.skipped_streams == {"bookTicker": 1, "aggTrade": 1}
    # Exact fixed point at the instrument's precision (tickSize "0.01000000": 8 decimals).
    snapshot = next(e.event for e in ingest.events() if isinstance(e.event, BookSnapshot))
    assert snapshot.price_precision == 8 and snapshot.bids == [(99 * 10**8, 10**8)]
    assert snapshot.ts_init == snapshot.ts_event == round((T0 + 0.04) * 1e6) * 1000

    reports = replay_reports(capture_entries(path))
    report = reports[(BTC, None)]
    assert (report.best_bid.price, report.best_bid.qty) == (100.0, 201.0)
    assert report.best_ask.price == 101.0 and report.stream.events_folded == len(events)
    assert report.stream.last_id == f"{round((T0 + 0.18) * 1000)}-0"


def test_a_capture_with_only_agg_trades_uses_them_and_ids_follow_receive_order(tmp_path):
    depth = "btcusdt@depth@100ms"
    path = _write(tmp_path / "agg.jsonl", [
        ("ws", _trade("aggTrade", 1)), ("depth", _depth(10)),
        ("ws", (depth, _diff(11, 12))), ("ws", _trade("aggTrade", 2, "100.60000000")),
    ])  # fmt: skip
    entries = list(capture_entries(path))
    assert [_short(e) for _, _, e in entries][-2:] == [("delta", 11, 12, 1), ("trade", "2", "sell")]
    ids = [tuple(map(int, entry_id.split("-"))) for _, entry_id, _ in entries]
    assert ids[0] == (round(T0 * 1000), 0)  # "started", at the first line
    assert ids == sorted(set(ids))  # increasing, as Redis gives them


def test_symbol_filter_and_errors_of_captures(tmp_path):
    path = _write(tmp_path / "one.jsonl", [("depth", _depth(10))])
    assert CaptureIngest(path, ["btcusdt"]).symbols == [BTC]
    with pytest.raises(ValueError, match="no ETHUSDT in this capture"):
        CaptureIngest(path, ["ETHUSDT"])


# -- reports: end of input, --at, determinism ----------------------------------------------------


@pytest.fixture(scope="module")
def model_capture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.jsonl"
    write_model_capture(path, ("BTCUSDT", "DOGEUSDT"), seconds=40, seed=3, rate=2.0)
    return path


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_two_replays_print_byte_identical_reports(model_capture, capsys):
    args = ["replay", "--capture", str(model_capture), "--json"]
    code, first, _ = _run(args, capsys)
    assert code == 0
    lines = first.splitlines()
    assert [json.loads(line)["symbol"] for line in lines] == ["BTCUSDT.BINANCE", "DOGEUSDT.BINANCE"]
    code, second, _ = _run(args, capsys)
    assert code == 0 and second == first
    report = json.loads(lines[0])
    # Freshness is set from the input: now = the symbol's event clock.
    assert report["writer"] == {"nodeId": "replay", "writerToken": 0}
    assert report["updatedAt"] >= report["stream"]["last_event_ts_ms"]
    assert report["data_age_ms"] == report["updatedAt"] - report["stream"]["last_event_ts_ms"]
    assert report["flow"]["trades_per_sec"] > 0 and report["ingestion"]["status"] == "ok"

    code, text, _ = _run(["replay", "--capture", str(model_capture)], capsys)
    assert code == 0 and len(text.splitlines()) == 2
    assert text.startswith("BTCUSDT.BINANCE @ end") and " bps " in text


def test_reports_at_times_are_the_states_before_the_clock_passes_them(model_capture, capsys):
    entries = list(capture_entries(model_capture))
    btc = [(i, e) for i, (s, _, e) in enumerate(entries) if s == BTC]
    start_ms = btc[0][1].ts_event // 1_000_000
    at = [start_ms + 5_000, start_ms + 20_500]
    reports = replay_reports(entries, at_ms=at)
    assert sorted(reports) == sorted([(s, t) for s in (BTC, "DOGEUSDT.BINANCE") for t in at])
    for t in at:
        clock, cut = 0, len(entries)
        for i, (symbol, _, event) in enumerate(entries):
            if symbol != BTC:
                continue
            if max(clock, event.ts_event) > t * 1_000_000:
                cut = i
                break
            clock = max(clock, event.ts_event)
        prefix = [e for e in entries[:cut] if e[0] == BTC]
        alone = replay_reports(prefix)[(BTC, None)]
        at_t = reports[(BTC, t)]
        assert at_t.updatedAt == t and at_t.stream == alone.stream
        assert (at_t.best_bid, at_t.best_ask, at_t.depth, at_t.flow) == (
            alone.best_bid, alone.best_ask, alone.depth, alone.flow,
        )  # fmt: skip
        assert at_t.stream.last_event_ts_ms <= t

    iso = "2000-01-01T00:00:00Z"  # before the capture: no report at that time
    code, out, _ = _run(["replay", "--capture", str(model_capture), "--json", "--at", iso,
                         "--at", str(at[0])], capsys)  # fmt: skip
    assert code == 0
    printed = [json.loads(line) for line in out.splitlines()]
    assert [(r["symbol"], r["updatedAt"]) for r in printed] == [
        (BTC, at[0]),
        ("DOGEUSDT.BINANCE", at[0]),
    ]
    assert printed[0]["stream"] == msgspec.to_builtins(reports[(BTC, at[0])].stream)


# -- --diff ------------------------------------------------------------------------------------


def test_diff_of_identical_runs_and_of_a_saved_output(model_capture, tmp_path, capsys):
    code, out, err = _run(["replay", "--capture", str(model_capture), "--diff",
                           str(model_capture)], capsys)  # fmt: skip
    assert (code, out) == (0, "") and "no difference" in err
    for at in ([], ["--at", "2100-01-01T00:00:00"]):
        saved = tmp_path / "saved.jsonl"
        _, text, _ = _run(["replay", "--capture", str(model_capture), "--json", *at], capsys)
        saved.write_text(text)
        code, out, err = _run(["replay", "--capture", str(model_capture), *at, "--diff",
                               str(saved)], capsys)  # fmt: skip
        assert (code, out) == (0, ""), err
        assert "B = saved reports" in err


def test_diff_prints_the_fields_that_differ(model_capture, tmp_path, capsys):
    # The same market with one BTCUSDT diff lost: a gap, and no snapshot to heal it.
    lines = model_capture.read_text().splitlines(keepends=True)
    diffs = [i for i, line in enumerate(lines) if '"btcusdt@depth@100ms"' in line]
    lossy = tmp_path / "lossy.jsonl"
    lossy.write_text("".join(line for i, line in enumerate(lines) if i != diffs[50]))
    code, out, err = _run(["replay", "--capture", str(model_capture), "--diff", str(lossy)],
                          capsys)  # fmt: skip
    assert code == 1 and "1 reports differ" in err
    changed = {line.split(": ")[1] for line in out.splitlines()}
    assert {"best_bid", "best_ask", "ingestion.status"} <= changed
    assert all(line.startswith("BTCUSDT.BINANCE @ end: ") for line in out.splitlines())
    assert "best_bid: {" in out and "| null" in out  # the lossy run has no book left

    code, out, _ = _run(["replay", "--capture", str(model_capture), "--diff", str(lossy),
                         "--json"], capsys)  # fmt: skip
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and {r["symbol"] for r in records} == {BTC}
    best = next(r for r in records if r["field"] == "best_bid")
    assert best["a"]["price"] > 0 and best["b"] is None


def test_differences_walks_nested_fields():
    a = {"x": 1, "l": [1, 2], "d": {"p": 1.0}}
    b = {"x": 1, "l": [1], "d": {"p": 1.5}, "n": None}
    assert list(differences(a, b)) == [("d.p", 1.0, 1.5), ("l[1]", 2, None)]
    assert list(differences({"v": 1}, {"v": 1.0})) == []  # numbers by value


# -- stream ranges (a real Redis) ----------------------------------------------------------------


def test_stream_range_replays_like_the_capture_and_skips_bad_entries(
    model_capture, redis_url, capsys, monkeypatch
):
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    entries = list(capture_entries(model_capture, ["BTCUSDT"]))
    ids = [entry_id for _, entry_id, _ in entries]
    ms = [int(i.split("-")[0]) for i in ids]
    # an entry that does not decode, between two others (ids must grow)
    bad_at = next(i for i in range(150, len(ids)) if ms[i] < ms[i + 1])
    bad_id = f"{ms[bad_at]}-{int(ids[bad_at].split('-')[1]) + 1}"
    for i, (_, entry_id, event) in enumerate(entries):
        client.xadd(keys.stream_key(BTC), {ENTRY_FIELD: encode_event(event)}, id=entry_id)
        if i == bad_at:
            client.xadd(keys.stream_key(BTC), {ENTRY_FIELD: b"\x92garbage"}, id=bad_id)
    base = ["replay", "--redis-url", redis_url, "--symbol", "BTCUSDT"]
    code, out, err = _run([*base, "--diff", str(model_capture)], capsys)
    assert (code, out) == (0, ""), err
    assert "1 entries skipped" in err
    code, out, err = _run([*base, "--capture", str(model_capture), "--diff", "stream"], capsys)
    assert (code, out) == (0, ""), err
    assert "B = stream BTCUSDT.BINANCE [-, +]" in err

    # A range: from the 100th entry (by id) to an ISO time.
    end_ms = ms[-100]
    iso_end = datetime.fromtimestamp(end_ms / 1000, UTC).isoformat()
    code, out, err = _run([*base, "--from", ids[100], "--to", iso_end, "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    in_range = [i for i, t in zip(ids[100:], ms[100:], strict=True) if t <= end_ms]
    assert report["stream"]["events_folded"] == len(in_range)
    assert report["stream"]["last_id"] == in_range[-1]
    assert "1 entries skipped" in err
    assert report["best_bid"] is None  # no snapshot in that range: no book, and it says so
    assert report["ingestion"]["status"] != "ok"

    monkeypatch.delenv("REDIS_URL", raising=False)
    code, _, err = _run(["replay", "--symbol", "BTCUSDT"], capsys)
    assert code == 2 and "--redis-url" in err
    code, _, err = _run([*base[:3], "--symbol", "NOPEUSDT"], capsys)
    assert code == 2 and "md:{NOPEUSDT.BINANCE} has no entry" in err
    client.close()


# -- what a user sees ----------------------------------------------------------------------------


def test_bad_input_is_explained(tmp_path, capsys):
    code, _, err = _run(["replay", "--capture", str(tmp_path / "none.jsonl")], capsys)
    assert code == 2 and "cannot read the capture" in err
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    good = _write(tmp_path / "ok.jsonl", [("depth", _depth(10))])
    code, _, err = _run(["replay", "--capture", str(good), "--diff", str(notes)], capsys)
    assert code == 2 and "neither a capture" in err
    code, _, err = _run(["replay", "--capture", str(good), "--at", "noon"], capsys)
    assert code == 2 and "not a time" in err
    code, _, err = _run(["replay", "--capture", str(good), "--from", "0-1"], capsys)
    assert code == 2 and "--from/--to" in err
    broken = tmp_path / "broken.jsonl"
    broken.write_text(good.read_text() + '{"type": "nope"}\n')
    code, _, err = _run(["replay", "--capture", str(broken)], capsys)
    assert code == 2 and "broken.jsonl:4" in err


def test_progress_bar_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, hidden = Tty(), io.StringIO()
    for out in (shown, hidden):
        bar = _Progress(30.0, "replay x", out)
        bar(15.0)
        bar.close()
    assert "replay x [" in shown.getvalue() and "50%" in shown.getvalue()
    assert hidden.getvalue() == ""


def test_fold_entries_dead_letters_what_the_fold_refuses(tmp_path):
    path = _write(tmp_path / "t.jsonl", [("depth", _depth(10))])
    entries = list(capture_entries(path))
    # a ticker whose figures are not numbers: the fold refuses it
    bad = Ticker(v=1, ts_event=entries[-1][2].ts_event + 1, ts_init=0, last_price="x",
                 open_price="1", high_price="1", low_price="1", volume="1", quote_volume="1",
                 price_change_pct="1", trade_count=1)  # fmt: skip
    stats = ReplayStats()
    folded = [ok for *_, ok in fold_entries([*entries, (BTC, "9-0", bad)], stats)]
    assert folded == [True, True, False]
    assert stats.dead == 1 and "9-0" in stats.dead_samples[0]
