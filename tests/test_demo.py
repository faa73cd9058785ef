"""``context8 demo``, the README's first command, as a user runs it: every role comes up on
embedded defaults (a private Redis included), the MCP server answers with a fresh report,
and stop signals arriving together (uv forwarding the SIGTERM the whole group got, a
second Ctrl-C) stop everything cleanly: exit 0, no traceback, no process left listening.
Started again on the same folder it goes on from the same event log, and the trades of the
new run count (the simulator numbers them from 1 again). One demo per folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from context8.procs import free_port

_ENV = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"SYMBOLS": "BTCUSDT"}


def _listening(url: str) -> bool:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, int(port))) == 0


class _Demo:
    def __init__(self, folder: Path, mcp_port: int, *extra: str) -> None:
        self.mcp_port = mcp_port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "context8", "demo", "--data-dir", str(folder),
             "--mcp-port", str(mcp_port), *extra],
            env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(self.process.stdout), daemon=True
        )
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def report_when(self, accept, timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.mcp_port}/get_report?symbol=BTCUSDT"
        while True:
            assert self.process.poll() is None, self.output
            assert time.monotonic() < deadline, self.output
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    report = json.loads(reply.read())
            except OSError:
                continue
            if accept(report):
                return report

    def redis_url(self) -> str:
        return next(line.split()[1] for line in self.lines if line.strip().startswith("redis "))

    def finish(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._reader.join(5)
        return self.output


def _ok(report: dict) -> bool:
    return report["ingestion"]["status"] == "ok"


def test_the_demo_serves_fresh_reports_and_stops_cleanly_on_a_double_signal(tmp_path: Path):
    folder = tmp_path / "demo"
    demo = _Demo(folder, free_port())
    try:
        first = demo.report_when(_ok)
        assert first["symbol"] == "BTCUSDT.BINANCE"
        # long enough that a restarted run's trade ids stay below this run's for seconds
        at = first["stream"]["last_event_ts_ms"]
        report = demo.report_when(lambda r: r["stream"]["last_event_ts_ms"] > at + 6000, 30)
        redis_url = demo.redis_url()
        assert _listening(redis_url)

        # a second demo on the folder stops at once, naming the first, and starts nothing
        second = subprocess.run(
            [sys.executable, "-m", "context8", "demo", "--data-dir", str(folder),
             "--mcp-port", str(free_port())],
            env=_ENV, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"in use by the demo of process {demo.process.pid}" in second.stdout
        assert "is running" not in second.stdout

        # `context8 status` finds the demo's Redis by itself
        status = subprocess.run(
            [sys.executable, "-m", "context8", "status", "--data-dir", str(folder), "--json"],
            env=_ENV, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert [s["symbol"] for s in json.loads(status.stdout)["symbols"]] == ["BTCUSDT.BINANCE"]

        # two at once (one signal twice would merge into one delivery)
        demo.process.send_signal(signal.SIGTERM)
        demo.process.send_signal(signal.SIGINT)
        assert demo.process.wait(60) == 0, demo.output
    finally:
        output = demo.finish()
    assert "stopping (SIG" in output
    assert "Traceback" not in output, output
    assert not _listening(redis_url)
    assert not _listening(f"http://127.0.0.1:{demo.mcp_port}/")
    first_run_last = report["stream"]["last_event_ts_ms"]

    # Again on the same folder: the log goes on, and the new run's trades count although
    # the seeded simulator numbers them from 1 again.
    again = _Demo(folder, free_port())
    try:
        report = again.report_when(
            lambda r: _ok(r) and r["stream"]["last_event_ts_ms"] > first_run_last
        )
        # the new run's trades move the last price at once (dropping them as repeats kept
        # it at the first run's last for as long as that run had traded)
        stuck = report["last_price"]
        moved = again.report_when(lambda r: r["last_price"] != stuck, timeout_s=5)
        assert moved["flow"]["trades_per_sec"] > 0
        assert moved["stream"]["repeated_trades"] == 0
        assert moved["stream"]["events_folded"] > report["stream"]["events_folded"]
        again.process.send_signal(signal.SIGTERM)
        assert again.process.wait(60) == 0, again.output
    finally:
        again.finish()


def test_the_demo_refuses_a_taken_port_at_once_and_reset_empties_the_log(tmp_path: Path):
    folder = tmp_path / "demo"
    (folder / "redis").mkdir(parents=True)
    (folder / "redis" / "earlier-run").write_text("what an earlier run left")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        refused = subprocess.run(
            [sys.executable, "-m", "context8", "demo", "--data-dir", str(folder),
             "--mcp-port", str(port), "--reset"],
            env=_ENV, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert refused.returncode == 1
    assert f"port {port}" in refused.stdout and "--mcp-port" in refused.stdout
    assert time.monotonic() - started < 15 and "is running" not in refused.stdout
    assert (folder / "redis" / "earlier-run").exists()  # nothing started, nothing reset

    demo = _Demo(folder, free_port(), "--reset")
    try:
        demo.report_when(_ok)
        assert not (folder / "redis" / "earlier-run").exists()
        demo.process.send_signal(signal.SIGTERM)
        assert demo.process.wait(60) == 0, demo.output
    finally:
        demo.finish()


def test_the_demo_restarts_what_dies_and_serves_again_after_a_redis_kill(tmp_path: Path):
    """kill -9 of the ingest node, then of Redis itself: the demo starts each again (Redis on
    its port and data, with the MCP server's reader user, which lives in its ACL file), and
    the MCP server answers fresh reports again, nothing else restarted by hand."""
    import redis

    folder = tmp_path / "demo"
    demo = _Demo(folder, free_port())
    try:
        demo.report_when(_ok)
        admin = redis.Redis.from_url((folder / "redis.url").read_text().strip(), socket_timeout=2)
        (ingest,) = [n for n in _nodes(folder) if n["role"] == "ingest"]
        killed_ms = time.time_ns() // 1_000_000
        os.kill(ingest["pid"], signal.SIGKILL)
        demo.report_when(lambda r: _ok(r) and r["stream"]["last_event_ts_ms"] > killed_ms + 500)
        assert "ingest restarted (it exited with -9" in demo.output

        redis_pid = admin.info("server")["process_id"]
        admin.close()
        killed = time.monotonic()
        killed_ms = time.time_ns() // 1_000_000
        os.kill(redis_pid, signal.SIGKILL)
        demo.report_when(lambda r: _ok(r) and r["stream"]["last_event_ts_ms"] > killed_ms, 60)
        print(f"fresh again {time.monotonic() - killed:.1f} s after a kill -9 of Redis")
        assert "redis restarted (it exited with -9)" in demo.output
        demo.process.send_signal(signal.SIGTERM)
        assert demo.process.wait(60) == 0, demo.output
    finally:
        demo.finish()


def _nodes(folder: Path) -> list[dict]:
    status = subprocess.run(
        [sys.executable, "-m", "context8", "status", "--data-dir", str(folder), "--json"],
        env=_ENV, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    return json.loads(status.stdout)["nodes"]
