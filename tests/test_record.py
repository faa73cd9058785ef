"""``context8 record``: a capture written from the simulator (a real process, on loopback) is
well-formed and replays to the simulator's own book; failures are explained. Live Binance is
never contacted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from context8.cli import main
from context8.procs import Fleet, free_port
from context8.replay import ReplayStats, capture_entries, fold_entries
from core.events import Status, scale
from ingest.capture import MetaLine, RestLine, WsLine, read_capture
from ingest.record import LIVE_HTTP_URL, LIVE_WS_URL, RecordConfig, venue_urls

REPO = Path(__file__).resolve().parents[1]
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _call(method: str, url: str) -> Any:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


def _record(args: list[str], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "context8", "record", "--out", str(out), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _lines(path: Path) -> list:
    return list(read_capture(path)) if path.exists() else []


@pytest.mark.timeout(120)
def test_a_recording_of_the_simulator_replays_to_its_book(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out = tmp_path / "sim.jsonl"
    with Fleet(tmp_path / "logs") as fleet:
        fleet.spawn("simulator", ["simulate", "--port", str(port), "--symbols",
                                  ",".join(SYMBOLS), "--rate", "2"], dict(os.environ))  # fmt: skip
        fleet.wait_http(f"{base}/api/v3/ping", time.monotonic() + 30)
        recorder = _record(["--symbols", ",".join(SYMBOLS), "--seconds", "9", "--venue-url",
                            base], out)  # fmt: skip
        try:

            def snapshots() -> Counter[str]:
                return Counter(
                    line.params["symbol"]
                    for line in _lines(out)
                    if isinstance(line, RestLine) and line.path == "/api/v3/depth"
                )

            deadline = time.monotonic() + 20
            while len(snapshots()) < len(SYMBOLS):
                assert recorder.poll() is None, recorder.communicate()
                assert time.monotonic() < deadline, "no snapshots recorded"
                time.sleep(0.1)
            # The venue drops the websocket: the recorder reconnects and snapshots again.
            time.sleep(1.0)
            assert _call("POST", f"{base}/_sim/disconnect")["closed"] == 1
            deadline = time.monotonic() + 10
            while min(snapshots().values()) < 2:
                assert time.monotonic() < deadline, "no snapshots after the reconnect"
                time.sleep(0.1)
            time.sleep(1.5)
            # Hold the market: the venue's book is then the one at the capture's last diff.
            _call("POST", f"{base}/_sim/pause")
            venue = {s: _call("GET", f"{base}/api/v3/depth?symbol={s}&limit=5000") for s in SYMBOLS}
            _, err = recorder.communicate(timeout=30)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait(5)
        assert recorder.returncode == 0, err.decode()
        assert "2 connection(s)" in err.decode()

    lines = _lines(out)
    assert isinstance(lines[0], MetaLine) and lines[0].symbols == list(SYMBOLS)
    assert lines[0].ws_url.startswith(f"ws://127.0.0.1:{port}/stream?streams=btcusdt@depth@100ms")
    assert isinstance(lines[1], RestLine) and lines[1].path == "/api/v3/exchangeInfo"
    assert [s["symbol"] for s in lines[1].body["symbols"]] == list(SYMBOLS)
    stamps = [line.recv_ts for line in lines[1:]]
    assert stamps == sorted(stamps)  # receive order
    ws = [line for line in lines if isinstance(line, WsLine)]
    kinds = Counter(line.body.stream.partition("@")[2] for line in ws)
    assert kinds["depth@100ms"] > 30 and kinds["trade"] > 5 and kinds["ticker"] >= 2, kinds
    for symbol in SYMBOLS:
        # Each snapshot after the first diff of its connection, and bridging it.
        first = next(
            i for i, line in enumerate(lines)
            if isinstance(line, WsLine) and line.body.stream == f"{symbol.lower()}@depth@100ms"
        )  # fmt: skip
        snap = next(
            i for i, line in enumerate(lines)
            if isinstance(line, RestLine) and line.params.get("symbol") == symbol
        )  # fmt: skip
        assert first < snap
        assert lines[snap].body["lastUpdateId"] + 1 >= lines[first].body.data["U"]

    # Offline, the capture folds to exactly the venue's book at its last update id, the
    # reconnect healed by the snapshots taken after it.
    states = {}
    resyncs: Counter[str] = Counter()
    for symbol, event, state, folded in fold_entries(capture_entries(out), ReplayStats()):
        assert folded
        states[symbol] = state
        if isinstance(event, Status) and event.status == "resync":
            resyncs[symbol] += 1
    assert resyncs == {f"{s}.BINANCE": 1 for s in SYMBOLS}
    for symbol in SYMBOLS:
        state = states[f"{symbol}.BINANCE"]
        book = venue[symbol]
        assert state.synced and state.update_id == book["lastUpdateId"]
        pp, sp = state.price_precision, state.size_precision
        assert state.book.top_bids(10**6) == [(scale(p, pp), scale(q, sp)) for p, q in book["bids"]]
        assert state.book.top_asks(10**6) == [(scale(p, pp), scale(q, sp)) for p, q in book["asks"]]


def test_record_explains_what_it_cannot_do(tmp_path, capsys):
    port = free_port()  # nothing listens there
    out = tmp_path / "none.jsonl"
    started = time.monotonic()
    assert main(["record", "--out", str(out), "--symbols", "BTCUSDT", "--seconds", "1",
                 "--venue-url", f"http://127.0.0.1:{port}"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "exchangeInfo failed" in err and time.monotonic() - started < 15
    assert not out.exists()

    out.write_text("")
    assert main(["record", "--out", str(out), "--symbols", "BTCUSDT", "--venue-url",
                 f"http://127.0.0.1:{port}"]) == 1  # fmt: skip
    assert "already exists" in capsys.readouterr().err
    assert main(["record", "--out", str(tmp_path / "x"), "--seconds", "0", "--symbols",
                 "BTCUSDT", "--venue-url", "http://127.0.0.1:1"]) == 2  # fmt: skip
    assert "seconds must be > 0" in capsys.readouterr().err
    assert main(["record", "--out", str(tmp_path / "x"), "--venue-url", "ftp://x"]) == 2
    assert "give http://HOST:PORT" in capsys.readouterr().err


def test_unknown_symbols_are_refused_by_the_venue(tmp_path, capsys):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Fleet(tmp_path / "logs") as fleet:
        fleet.spawn("simulator", ["simulate", "--port", str(port), "--symbols", "BTCUSDT"],
                    dict(os.environ))  # fmt: skip
        fleet.wait_http(f"{base}/api/v3/ping", time.monotonic() + 30)
        out = tmp_path / "nope.jsonl"
        code = main(["record", "--out", str(out), "--symbols", "BTCUSDT,NOPEUSDT",
                     "--seconds", "2", "--venue-url", base])  # fmt: skip
    assert code == 1 and "Invalid symbol" in capsys.readouterr().err
    assert not out.exists()


def test_venue_urls_default_to_live_binance_and_follow_the_simulator():
    assert venue_urls(None, None, None) == (LIVE_HTTP_URL, LIVE_WS_URL)
    assert venue_urls("http://127.0.0.1:5/", None, None) == (
        "http://127.0.0.1:5",
        "ws://127.0.0.1:5",
    )
    assert venue_urls(None, "https://sim.local", "wss://sim.local:9") == (
        "https://sim.local",
        "wss://sim.local:9",
    )
    assert venue_urls(None, "https://sim.local", None) == ("https://sim.local", "wss://sim.local")
    config = RecordConfig(out=Path("x"), symbols=("BTCUSDT",), trades="aggTrade")
    assert config.stream_url == (
        f"{LIVE_WS_URL}/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade/btcusdt@ticker"
    )
    with pytest.raises(ValueError, match="upper-case"):
        RecordConfig(out=Path("x"), symbols=("btc-usdt",))
