"""Real Binance data (../shared/data), and any capture of its format: the replayed book is
identical to an independent rebuild at every update, the figures pass their invariants, and
NautilusTrader's ingest path logs the same exact books from the real messages.

The oracle below shares no code with the product: it reads the capture with the ``json``
module and keeps each book as ``Decimal`` prices and quantities, following Binance's "how to
manage a local order book" procedure (and its gap rule) on its own."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

from context8.cli import main
from context8.procs import Fleet, free_port
from context8.replay import (
    ReplayStats,
    capture_entries,
    fold_entries,
    replay_reports,
    stream_entries,
)
from core.events import ENTRY_FIELD, BookDelta, BookSnapshot, Status, Trade, encode_event
from ingest.capture import CaptureWriter, MetaLine
from ingest.simulator.instruments import exchange_info, spec_for, symbol_info
from ingest.simulator.orderflow import MarketModel
from ingest.simulator.synth import write_model_capture
from processors.analytics.fold import AnalyticsState
from tests.reports import validate_report

Book = tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]
Check = tuple[str, int, Book] | tuple[str]
"""("book", update id, the book) after a snapshot or an applied diff; ("gap",) when the book
stops being known."""

ALL_LEVELS = 1_000_000


# -- the independent rebuild -------------------------------------------------------------------


class _OracleBook:
    """One symbol, Binance's procedure: buffer until a snapshot; drop what it covers; the
    first diff after it bridges it (U <= id + 1 <= u), each next one continues (U = u + 1);
    a gap leaves the book unknown until a later snapshot; a snapshot of a known book replaces
    it when it is not older than the book."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.last: int | None = None
        self.buffer: list[dict[str, Any]] = []
        self.checks: list[Check] = []

    def _apply(self, diff: dict[str, Any]) -> None:
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for price, qty in levels:
                if Decimal(qty):
                    side[Decimal(price)] = Decimal(qty)
                else:
                    side.pop(Decimal(price), None)
        self.last = diff["u"]
        self.checks.append(("book", diff["u"], (dict(self.bids), dict(self.asks))))

    def diff(self, diff: dict[str, Any]) -> None:
        if self.last is None:
            self.buffer.append(diff)
        elif diff["u"] <= self.last:
            return  # already in the book (Binance: drop diffs with u <= lastUpdateId)
        elif diff["U"] > self.last + 1:
            self.last, self.bids, self.asks = None, {}, {}
            self.buffer = [diff]
            self.checks.append(("gap",))
        else:
            self._apply(diff)

    def snapshot(self, body: dict[str, Any]) -> None:
        last_id = body["lastUpdateId"]
        if self.last is not None and last_id < self.last:
            return  # older than the book
        pending = [d for d in self.buffer if d["u"] > last_id]
        if pending and pending[0]["U"] > last_id + 1:
            return  # older than the buffered stream
        self.bids = {Decimal(p): Decimal(q) for p, q in body["bids"] if Decimal(q)}
        self.asks = {Decimal(p): Decimal(q) for p, q in body["asks"] if Decimal(q)}
        self.last, self.buffer = last_id, []
        self.checks.append(("book", last_id, (dict(self.bids), dict(self.asks))))
        for diff in pending:
            self.diff(diff)


def oracle(path: Path) -> dict[str, _OracleBook]:
    books: dict[str, _OracleBook] = {}
    with path.open() as f:
        for text in f:
            line = json.loads(text)
            if line["type"] == "rest" and line["path"] == "/api/v3/depth":
                name = line["params"]["symbol"].upper()
                books.setdefault(name, _OracleBook()).snapshot(line["body"])
            elif line["type"] == "ws" and "@depth@" in line["body"]["stream"]:
                data = line["body"]["data"]
                books.setdefault(data["s"].upper(), _OracleBook()).diff(data)
    return books


def _decimal_book(state: AnalyticsState) -> Book:
    pp, sp = state.price_precision, state.size_precision
    return (
        {
            Decimal(p).scaleb(-pp): Decimal(q).scaleb(-sp)
            for p, q in state.book.top_bids(ALL_LEVELS)
        },
        {
            Decimal(p).scaleb(-pp): Decimal(q).scaleb(-sp)
            for p, q in state.book.top_asks(ALL_LEVELS)
        },
    )


def _replayed_checks(entries: Iterator) -> dict[str, list[Check]]:
    """What the replay's fold holds after every book event, in the oracle's terms."""
    checks: dict[str, list[Check]] = {}
    for symbol, event, state, folded in fold_entries(entries, ReplayStats()):
        assert folded, (symbol, event)
        seen = checks.setdefault(symbol.partition(".")[0], [])
        match event:
            case BookSnapshot() | BookDelta():
                assert state.synced, (symbol, event)
                seen.append(("book", state.update_id, _decimal_book(state)))
            case Status(status="gap"):
                assert not state.synced and state.book.best_bid is None
                seen.append(("gap",))
    return checks


# -- captures ------------------------------------------------------------------------------------


def _gappy_capture(path: Path) -> Path:
    """The order-flow model's market with a lost diff and, later, a fresh snapshot."""
    symbols = ("ETHUSDT", "FOOBTC")
    models = {s: MarketModel(spec_for(s), seed=4, rate=3.0) for s in symbols}
    t0 = 1_700_000_000.0
    with CaptureWriter(path) as writer:
        writer.write(MetaLine(recv_ts=t0, source="order-flow model, one diff lost",
                              symbols=list(symbols)))  # fmt: skip
        writer.rest("/api/v3/exchangeInfo", {}, exchange_info(
            [symbol_info(spec_for(s)) for s in symbols], int(t0 * 1000)), t0)  # fmt: skip
        for step in range(1, 301):
            ts = t0 + step / 10
            for symbol, model in models.items():
                for kind, data in model.advance(step * 100.0, int(ts * 1000)):
                    lost = kind == "depth" and symbol == "ETHUSDT" and step == 100
                    if kind in ("depth", "trade", "aggTrade", "ticker") and not lost:
                        stream = "depth@100ms" if kind == "depth" else kind
                        writer.ws(f"{symbol.lower()}@{stream}", data, ts)
                if step in (1, 200):  # the first snapshot after the stream started
                    writer.rest("/api/v3/depth", {"symbol": symbol, "limit": 1000},
                                model.snapshot(1000), ts)  # fmt: skip
    return path


@pytest.fixture(params=["recorded", "model", "gappy"])
def any_capture(request, tmp_path) -> Path:
    if request.param == "recorded":
        return request.getfixturevalue("capture_path")
    if request.param == "model":
        path = tmp_path / "model.jsonl"
        write_model_capture(path, ("BTCUSDT", "SOLUSDT", "DOGEUSDT"), seconds=60, seed=5)
        return path
    return _gappy_capture(tmp_path / "gappy.jsonl")


# -- replay --------------------------------------------------------------------------------------


def test_replayed_books_equal_an_independent_rebuild_at_every_update(any_capture):
    expected = {name: book.checks for name, book in oracle(any_capture).items()}
    replayed = _replayed_checks(capture_entries(any_capture))
    assert replayed.keys() == expected.keys()
    for name, checks in expected.items():
        updates = [c for c in checks if c[0] == "book"]
        assert len(updates) > 1, name  # a snapshot and diffs after it
        assert len(replayed[name]) == len(checks), name
        for i, (ours, theirs) in enumerate(zip(replayed[name], checks, strict=True)):
            assert ours == theirs, (name, i, ours[:2], theirs[:2])
    if any_capture.name == "gappy.jsonl":
        assert expected["ETHUSDT"].count(("gap",)) == 1
        assert expected["ETHUSDT"][-1][0] == "book"  # healed by the later snapshot


def test_replayed_figures_pass_their_invariants(any_capture):
    entries = list(capture_entries(any_capture))
    times = [e.ts_event // 1_000_000 for _, _, e in entries]
    every_half_second = range(min(times), max(times) + 1, 500)
    reports = replay_reports(entries, at_ms=every_half_second)
    reports |= replay_reports(entries)
    books = profiles = 0
    for report in reports.values():
        validate_report(msgspec.to_builtins(report))
        bid, ask = report.best_bid, report.best_ask
        assert -1 <= report.depth.imbalance <= 1
        if bid and ask:
            books += 1
            assert bid.price < ask.price
            assert bid.price <= report.micro_price <= ask.price
            assert bid.price <= report.mid_price <= ask.price
            assert report.spread_bps > 0
        profile = report.liquidity.volume_profile
        if profile is not None:
            profiles += 1
            assert profile.val <= profile.poc <= profile.vah
    assert books > len(reports) / 2
    if any_capture.name == "model.jsonl":  # busy enough for volume profiles
        assert profiles > len(reports) / 2


# -- NautilusTrader's ingest path on the real messages ------------------------------------------


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def _top(book: _OracleBook, levels: int = 20) -> tuple[list, list]:
    bids = sorted(book.bids.items(), reverse=True)[:levels]
    asks = sorted(book.asks.items())[:levels]
    return [(float(p), float(q)) for p, q in bids], [(float(p), float(q)) for p, q in asks]


def _report_top(report: dict) -> tuple[list, list]:
    depth = report["depth"]
    return [(b["price"], b["qty"]) for b in depth["bids"]], [
        (a["price"], a["qty"]) for a in depth["asks"]
    ]


@pytest.mark.timeout(150)
def test_ingest_node_logs_exact_books_from_the_recorded_messages(
    capture_path, redis_url, tmp_path, capsys
):
    truth = oracle(capture_path)
    by_id = {
        name: {c[1]: c[2] for c in book.checks if c[0] == "book"} for name, book in truth.items()
    }
    final = {name: book.last for name, book in truth.items()}
    symbols = sorted(f"{name}.BINANCE" for name in truth)
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "SYMBOLS": ",".join(symbols),
        "NT_NODE_ID": "ingest-real-data",
        "NT_METRICS_PORT": str(free_port()),
        "NT_BINANCE_HTTP_URL": base,
        "NT_BINANCE_WS_URL": f"ws://127.0.0.1:{port}",
    }

    def logged_entries(symbol: str) -> list:
        return list(stream_entries(client, [symbol], stats=ReplayStats()))

    def logged(symbol: str) -> list:
        return [e for _, _, e in logged_entries(symbol)]

    def reached(symbol: str) -> bool:
        name = symbol.partition(".")[0]
        if _get(f"{base}/api/v3/depth?symbol={name}&limit=5")["lastUpdateId"] != final[name]:
            return False  # the simulator has not sent the whole capture yet
        if not client.exists(f"md:{{{symbol}}}"):
            return False
        ids = {getattr(e, "last_update_id", getattr(e, "update_id", None)) for e in logged(symbol)}
        return final[name] in ids

    with Fleet(tmp_path / "logs") as fleet:
        fleet.spawn("simulator", ["simulate", "--port", str(port), "--capture",
                                  str(capture_path), "--speed", "4"], env)  # fmt: skip
        fleet.wait_http(f"{base}/api/v3/ping", time.monotonic() + 30)
        fleet.spawn("ingest", ["ingest"], env)
        deadline = time.monotonic() + 90
        while not all(reached(s) for s in symbols):
            fleet.check_alive()
            assert time.monotonic() < deadline, "the streams did not reach the capture's end"
            time.sleep(0.25)

    offline_trades = {(s, e) for s, _, e in capture_entries(capture_path) if isinstance(e, Trade)}
    for symbol in symbols:
        name = symbol.partition(".")[0]
        events = logged(symbol)
        assert isinstance(events[0], Status) and events[0].status == "started"
        assert isinstance(events[-1], Status) and events[-1].status == "stopped"
        compared = 0
        for _, event, state, folded in fold_entries(logged_entries(symbol), ReplayStats()):
            assert folded
            if isinstance(event, BookSnapshot | BookDelta):
                assert state.synced
                assert _decimal_book(state) == by_id[name][state.update_id], (symbol, event)
                compared += 1
        assert compared >= 2 and state.update_id == final[name]
        # The simulator serves the recorded aggregate trades as @trade: same trades logged.
        trades = {(t.price, t.qty, t.aggressor, t.trade_id) for t in events if isinstance(t, Trade)}
        assert trades == {
            (t.price, t.qty, t.aggressor, t.trade_id) for s, t in offline_trades if s == symbol
        }

    # `replay` of the logged streams: reports of the rebuild's last books.
    capsys.readouterr()
    code = main(["replay", "--redis-url", redis_url, *(f"--symbol={s}" for s in symbols),
                 "--json"])  # fmt: skip
    assert code == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["symbol"] for r in reports] == symbols
    for report in reports:
        assert _report_top(report) == _top(truth[report["symbol"].partition(".")[0]])
    client.close()


def test_a_stream_range_replays_to_the_rebuilds_book(capture_path, redis_url, capsys):
    """The offline events appended to md:{SYM} and replayed as a stream range."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    for symbol, entry_id, event in capture_entries(capture_path, ["NKNUSDT"]):
        client.xadd(f"md:{{{symbol}}}", {ENTRY_FIELD: encode_event(event)}, id=entry_id)
    client.close()
    assert main(["replay", "--redis-url", redis_url, "--symbol", "NKNUSDT", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert _report_top(report) == _top(oracle(capture_path)["NKNUSDT"])
