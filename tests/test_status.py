"""``context8 status``: a running fleet of real processor processes as it reports it (JSON and
the table), lag counting, node states and kinds on a hand-built keyspace, and the command's
behaviour when Redis does not answer or Ctrl-C stops ``--watch``."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest
import redis

from context8.bench.probes import Feeder, lease_holders, start_processor, stop_probes
from context8.procs import Fleet, free_port
from context8.status import LAG_COUNT_MAX, FleetStatus, gather, run_status
from coordination.membership import NodeInfo
from core import keys
from core.events import ENTRY_FIELD
from processors.runtime.node import ROLE as PROCESSOR_ROLE

SYMBOLS = tuple(f"ST{i}USDT.BINANCE" for i in range(4))
KIND = "analytics"
CLEAR = b"\x1b[H\x1b[2J"


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without settings that would change what status shows."""
    env = {k: v for k, v in os.environ.items() if k not in ("SYMBOLS", "CONTEXT8_CONFIG")}
    return {**env, **extra}


def _status(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "context8", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _fleet_state(client: redis.Redis) -> tuple[dict, dict, dict]:
    lengths = {s: client.xlen(keys.stream_key(s)) for s in SYMBOLS}
    tokens = {s: int(client.get(keys.token_key(KIND, s)) or 0) for s in SYMBOLS}
    return lease_holders(client, SYMBOLS, KIND), tokens, lengths


def test_status_json_and_table_match_a_running_fleet(redis_url: str, tmp_path: Path, capsys):
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    feeder = Feeder(redis_url, SYMBOLS)
    # one entry no processor can decode: it must show as a dead letter of its symbol
    poisoned = SYMBOLS[0]
    feeder.append(
        keys=[keys.lease_key("ingest", poisoned), keys.token_key("ingest", poisoned),
              keys.fence_key("ingest", poisoned), keys.stream_key(poisoned)],
        args=["feeder", feeder.tokens[poisoned], ENTRY_FIELD, 0, b"\xc1 not an event"],
    )  # fmt: skip
    feeder.start()
    try:
        with Fleet(tmp_path / "logs") as fleet:
            nodes = {n: start_processor(fleet, redis_url, n, SYMBOLS) for n in ("p1", "p2")}
            deadline = time.monotonic() + 30
            while True:
                fleet.check_alive()
                held = lease_holders(client, SYMBOLS, KIND)
                reports = client.mget([keys.report_key(s) for s in SYMBOLS])
                writers = [msgspec.json.decode(r)["writer"]["nodeId"] if r else None
                           for r in reports]  # fmt: skip
                if (
                    set(Counter(held.values())) == {"p1", "p2"}
                    and writers == [held[s] for s in SYMBOLS]
                    and client.xlen(keys.dead_letter_key(poisoned)) == 1
                ):
                    break
                assert time.monotonic() < deadline, f"fleet not settled: {held}, {writers}"
                time.sleep(0.1)

            holders, tokens, lengths_before = _fleet_state(client)
            asked = ",".join([*SYMBOLS, "NOSUCH"])
            result = _status("status", "--json", "--symbols", asked,
                             env=_env(REDIS_URL=redis_url))  # fmt: skip
            holders_after, tokens_after, lengths_after = _fleet_state(client)
            assert result.returncode == 0, result.stderr
            assert (holders_after, tokens_after) == (holders, tokens), "the fleet moved meanwhile"
            status = msgspec.json.decode(result.stdout, type=FleetStatus)

            assert [n.node_id for n in status.nodes] == ["p1", "p2"]
            for node in status.nodes:
                child, port = nodes[node.node_id]
                assert node.state == "live" and node.heartbeat_age_ms <= 2000
                assert node.role == PROCESSOR_ROLE and KIND in node.kinds
                assert node.pid == child.process.pid
                assert node.metrics_url.startswith(f"http://127.0.0.1:{port}")
                assert node.symbols == list(SYMBOLS)

            by_symbol = {s.symbol: s for s in status.symbols}
            assert sorted(by_symbol) == sorted([*SYMBOLS, "NOSUCH.BINANCE"])
            only = _status("status", "--json", "--symbols", "nosuch",
                           env=_env(REDIS_URL=redis_url))  # fmt: skip
            filtered = msgspec.json.decode(only.stdout, type=FleetStatus)
            assert [s.symbol for s in filtered.symbols] == ["NOSUCH.BINANCE"]  # only those
            for symbol in SYMBOLS:
                row = by_symbol[symbol]
                assert row.status == "ok", row
                assert row.data_age_ms is not None and row.data_age_ms <= 1000
                assert row.report_writer == holders[symbol]
                assert (row.ingest_owner, row.ingest_token) == ("feeder", feeder.tokens[symbol])
                assert lengths_before[symbol] <= row.stream_length <= lengths_after[symbol]
                assert row.dead_letters == (1 if symbol == poisoned else 0)
                [processor] = [p for p in row.processors if p.kind == KIND]
                assert (processor.owner, processor.token) == (holders[symbol], tokens[symbol])
                assert processor.cursor is not None and not processor.lag_capped
                # the processors keep up with 20 entries/s: a handful behind at most
                assert processor.lag is not None and 0 <= processor.lag <= 40
            absent = by_symbol["NOSUCH.BINANCE"]
            assert (absent.status, absent.stream_length, absent.ingest_owner) == ("down", 0, None)
            assert absent.processors == [] and absent.data_age_ms is None

            # the table: same data, one row per node and per symbol
            capsys.readouterr()
            assert run_status(redis_url) == 0
            table = capsys.readouterr().out
            assert "2 nodes (2 live), 4 symbols (4 ok)" in table
            for name in (*SYMBOLS, "p1", "p2", KIND, "feeder #"):
                assert name in table
    finally:
        stop_probes(feeder)
        client.close()


def test_gather_reads_lag_node_states_kinds_and_bad_reports(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    busy, idle, listed = "AAAUSDT.BINANCE", "BBBUSDT.BINANCE", "CCCUSDT.BINANCE"
    stream = keys.stream_key(busy)
    with client.pipeline(transaction=False) as pipe:
        for i in range(1105):
            pipe.xadd(stream, {ENTRY_FIELD: b"x"}, id=f"1-{i + 1}")
        pipe.execute()
    client.xgroup_create(stream, KIND, id="1-5")  # 1,100 entries behind: counted to the cap
    client.xgroup_create(stream, "depth", id="1-1101")  # 4 behind
    client.set(keys.lease_key(KIND, busy), "n1")
    client.set(keys.token_key(KIND, busy), 7)
    client.xadd(keys.dead_letter_key(busy), {"error": "x"})
    client.xadd(keys.dead_letter_key(busy), {"error": "y"})
    client.set(keys.report_key(listed), b'{"not": "a report"}')
    client.zadd(keys.INDEX_KEY, {listed: 1})
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    n1 = NodeInfo(node_id="n1", role=PROCESSOR_ROLE, kinds=[KIND, "depth"],
                  symbols=[busy, idle], pid=11, heartbeat_ms=now_ms)  # fmt: skip
    n2 = NodeInfo(node_id="n2", role="ingest", symbols=[busy], heartbeat_ms=now_ms - 4000)
    client.set(keys.node_key("n1"), msgspec.json.encode(n1))
    client.set(keys.node_key("n2"), msgspec.json.encode(n2))
    client.zadd(keys.NODES_SEEN_KEY, {"n1": now_ms, "n2": now_ms - 4000, "n3": now_ms - 9000})

    status = gather(client)

    nodes = {n.node_id: n for n in status.nodes}
    assert (nodes["n1"].state, nodes["n1"].kinds, nodes["n1"].pid) == ("live", [KIND, "depth"], 11)
    assert nodes["n2"].state == "late" and 4000 <= nodes["n2"].heartbeat_age_ms < 5000
    assert (nodes["n3"].state, nodes["n3"].role) == ("gone", "")
    rows = {s.symbol: s for s in status.symbols}
    assert sorted(rows) == [busy, idle, listed]
    row = rows[busy]
    assert (row.stream_length, row.dead_letters, row.status) == (1105, 2, "down")
    analytics, depth = row.processors
    assert (analytics.kind, analytics.owner, analytics.token) == (KIND, "n1", 7)
    assert analytics.cursor == "1-5"
    # Redis 6.2 cannot say: counted, to the cap; Redis 7 may know the exact figure
    assert (analytics.lag, analytics.lag_capped) in {(LAG_COUNT_MAX, True), (1100, False)}
    assert (depth.kind, depth.owner, depth.cursor, depth.lag) == ("depth", None, "1-1101", 4)
    # a kind configured on a node but without a group yet: shown, lag unknown
    assert [(p.kind, p.cursor, p.lag) for p in rows[idle].processors] == [
        (KIND, None, None),
        ("depth", None, None),
    ]
    assert rows[listed].status == "down" and "does not decode" in rows[listed].reason
    assert rows[listed].processors == []
    client.close()


def test_config_file_feeds_status(redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "context8.toml"
    config.write_text(f'REDIS_URL = "{redis_url}"\nSYMBOLS = ["zzzusdt"]\n')
    result = _status("--config", str(config), "status", "--json", env=_env())
    assert result.returncode == 0, result.stderr
    status = msgspec.json.decode(result.stdout, type=FleetStatus)
    assert [s.symbol for s in status.symbols] == ["ZZZUSDT.BINANCE"]


@pytest.mark.parametrize("args", [("status",), ("status", "--json")])
def test_unreachable_redis_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    result = _status(*args, env=_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "unavailable" in result.stderr and "Traceback" not in result.stderr


def _watch_until_interrupted(redis_url: str, screens: int) -> tuple[bytes, str, int]:
    """``status --watch`` until it has drawn ``screens`` screens, then Ctrl-C."""
    process = subprocess.Popen(
        [sys.executable, "-m", "context8", "status", "--watch", "0.2"],
        env=_env(REDIS_URL=redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    output = b""
    try:
        deadline = time.monotonic() + 20
        while output.count(CLEAR) < screens:
            assert time.monotonic() < deadline, f"no redraws: {output!r}"
            if select.select([process.stdout], [], [], 0.5)[0]:
                output += os.read(process.stdout.fileno(), 65536)
        process.send_signal(signal.SIGINT)
        returncode = process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    return output, process.stderr.read().decode(), returncode


def test_watch_redraws_until_ctrl_c(redis_url: str) -> None:
    output, errors, returncode = _watch_until_interrupted(redis_url, screens=3)
    assert returncode == 0 and "Traceback" not in errors, errors
    assert output.count(b"context8 status at") >= 3


def test_watch_shows_redis_unavailable_and_keeps_trying() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    output, errors, returncode = _watch_until_interrupted(url, screens=2)
    assert returncode == 0 and "Traceback" not in errors, errors
    assert output.count(b"unavailable") >= 2
