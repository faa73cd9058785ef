"""``context8 demo``, the README's first command, as a user runs it: every role comes up on
embedded defaults (a private Redis included), the MCP server answers with a fresh report,
and stop signals arriving together (uv forwarding the SIGTERM the whole group got, a
second Ctrl-C) stop everything cleanly: exit 0, no traceback, no process left listening."""

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


def _listening(url: str) -> bool:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, int(port))) == 0


def test_the_demo_serves_fresh_reports_and_stops_cleanly_on_a_double_signal(tmp_path: Path):
    mcp_port = free_port()
    env = {**os.environ, "SYMBOLS": "BTCUSDT"}
    env.pop("REDIS_URL", None)  # the demo's own private Redis
    demo = subprocess.Popen(
        [sys.executable, "-m", "context8", "demo", "--data-dir", str(tmp_path / "demo"),
         "--mcp-port", str(mcp_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        report = None
        while report is None or report["ingestion"]["status"] != "ok":
            assert demo.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
            url = f"http://127.0.0.1:{mcp_port}/get_report?symbol=BTCUSDT"
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    report = json.loads(reply.read())
            except OSError:
                continue
        assert report["symbol"] == "BTCUSDT.BINANCE"
        redis_url = next(line.split()[1] for line in lines if line.strip().startswith("redis "))
        assert _listening(redis_url)

        # two at once (one signal twice would merge into one delivery)
        demo.send_signal(signal.SIGTERM)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, "".join(lines)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
    reader.join(5)
    output = "".join(lines)
    assert "stopping (SIG" in output
    assert "Traceback" not in output, output
    assert not _listening(redis_url)
    assert not _listening(f"http://127.0.0.1:{mcp_port}/")
