"""``context8 status``: the fleet as Redis sees it, for operators (a table) and scripts (JSON).

Everything comes from Redis alone, in four pipelined round trips, without SCAN and without a
command spanning two hash slots (the access pattern Redis Cluster needs): the nodes from
``nt:nodes_seen`` and their heartbeat keys; the symbols from the nodes' configuration,
``{reports}:index`` and SYMBOLS when given; then per symbol its stream, dead letters, leases,
consumer groups and report. Ages are measured against Redis's clock (TIME), so a skewed
clock where this runs does not skew them.

Processor kinds are the consumer groups on ``md:{SYM}`` (group name = kind = lease role), plus
the kinds run by nodes configured for the symbol (a kind may not have created its group yet).

Lag is the number of entries of ``md:{SYM}`` after the group's last-delivered id; processors
move that id with every publish, so it is how far the kind's published report trails the log.
Redis >= 7 reports it (XINFO GROUPS ``lag``) when it can; where it does not (Redis 6.2, or 7
after an XGROUP SETID without ENTRIESREAD, which is how processors move the id), the entries
are counted with one XRANGE of at most ``LAG_COUNT_MAX + 1`` entries, and a larger lag is
reported as "at least LAG_COUNT_MAX" (``lag_capped``) rather than read in full.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Final, Literal

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError, ResponseError, TimeoutError
from redis.retry import Retry

from coordination.membership import HEARTBEAT_MS, LIVE_INTERVALS, NodeInfo
from core import keys
from ingest.writer import ROLE as INGEST_ROLE
from projections.freshness import freshen
from projections.report import IngestionStatus, Report

__all__ = [
    "LAG_COUNT_MAX",
    "FleetStatus",
    "NodeStatus",
    "ProcessorStatus",
    "SymbolStatus",
    "connect",
    "gather",
    "render",
    "run_status",
]

LAG_COUNT_MAX: Final = 1000
"""The most stream entries counted for one group's lag where Redis does not report it."""
_TIMEOUT_S: Final = 2.0
_CLEAR: Final = "\x1b[H\x1b[2J"

NodeState = Literal["live", "late", "gone"]


class NodeStatus(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    state: NodeState
    """live: heartbeat within LIVE_INTERVALS intervals (counts for assignment); late: older,
    heartbeat key not expired yet; gone: key expired (crashed or partitioned)."""
    heartbeat_age_ms: int
    role: str = ""
    """``ingest`` or ``processor``; empty when gone (its metadata expired with the key)."""
    kinds: list[str] = []
    """The processor kinds a processor node runs."""
    host: str = ""
    pid: int = 0
    metrics_url: str = ""
    started_ms: int = 0
    symbols: list[str] = []
    """The symbols the node is configured for."""
    owned: list[str] = []
    """The symbols it held at its last heartbeat."""


class ProcessorStatus(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    owner: str | None
    """The lease holder (node id); None while nobody holds the lease."""
    token: int | None
    """The fencing token last handed out for this kind and symbol."""
    cursor: str | None
    """The consumer group's last-delivered id; None: no group yet."""
    lag: int | None
    """Stream entries after ``cursor``; None: no group yet."""
    lag_capped: bool = False
    """The count stopped at LAG_COUNT_MAX: the lag is at least ``lag``."""


class SymbolStatus(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    status: IngestionStatus
    """As the MCP server would answer now: the report's status, lowered by its data age."""
    reason: str
    data_age_ms: int | None
    """Now minus the venue time of the last event the report folded; None: no report."""
    published_age_ms: int | None
    """Now minus the report's last publish (``updatedAt``): a processor that stopped
    publishing shows here, a quiet or stalled venue in ``data_age_ms`` only."""
    report_writer: str | None
    stream_length: int
    dead_letters: int
    ingest_owner: str | None
    ingest_token: int | None
    processors: list[ProcessorStatus]


class FleetStatus(msgspec.Struct, frozen=True, kw_only=True):
    redis_time_ms: int
    nodes: list[NodeStatus]
    symbols: list[SymbolStatus]


_node_decoder = msgspec.json.Decoder(NodeInfo)
_report_decoder = msgspec.json.Decoder(Report)


def connect(url: str) -> redis.Redis:
    """A client whose every call is bounded by ``_TIMEOUT_S``, retried once at once."""
    return redis.Redis.from_url(
        url,
        socket_timeout=_TIMEOUT_S,
        socket_connect_timeout=_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),
    )


def gather(client: redis.Redis, symbols: Iterable[str] = ()) -> FleetStatus:
    """The fleet now: the symbols it knows of, or only ``symbols`` when given (known or
    not). Raises ``RedisError`` when Redis does not answer."""
    with client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zrange(keys.NODES_SEEN_KEY, 0, -1, withscores=True)
        pipe.zrange(keys.INDEX_KEY, 0, -1)
        (seconds, micros), seen, indexed = pipe.execute()
    now_ms = seconds * 1000 + micros // 1000
    nodes = _nodes(client, [(m.decode(), int(score)) for m, score in seen], now_ms)
    names = set(symbols)
    if not names:
        names = {m.decode() for m in indexed}
        for node in nodes:
            names.update(node.symbols)
    return FleetStatus(
        redis_time_ms=now_ms, nodes=nodes, symbols=_symbols(client, sorted(names), nodes, now_ms)
    )


def _nodes(client: redis.Redis, seen: list[tuple[str, int]], now_ms: int) -> list[NodeStatus]:
    with client.pipeline(transaction=False) as pipe:
        for node_id, _beat_ms in seen:
            pipe.get(keys.node_key(node_id))
        raws = pipe.execute()
    nodes = []
    for (node_id, beat_ms), raw in zip(seen, raws, strict=True):
        age = max(0, now_ms - beat_ms)
        if raw is None:
            nodes.append(NodeStatus(node_id=node_id, state="gone", heartbeat_age_ms=age))
            continue
        state: NodeState = "live" if age <= LIVE_INTERVALS * HEARTBEAT_MS else "late"
        try:
            info = _node_decoder.decode(raw)
        except msgspec.DecodeError:
            # a node of another build: its heartbeat is still worth showing
            nodes.append(NodeStatus(node_id=node_id, state=state, heartbeat_age_ms=age))
            continue
        nodes.append(
            NodeStatus(
                node_id=node_id, state=state, heartbeat_age_ms=age, role=info.role,
                kinds=info.kinds, host=info.host, pid=info.pid, metrics_url=info.metrics_url,
                started_ms=info.started_ms, symbols=info.symbols, owned=info.owned,
            )
        )  # fmt: skip
    return sorted(nodes, key=lambda n: (n.role, n.node_id))


def _symbols(
    client: redis.Redis, symbols: list[str], nodes: list[NodeStatus], now_ms: int
) -> list[SymbolStatus]:
    with client.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            stream = keys.stream_key(symbol)
            pipe.xlen(stream)
            pipe.xlen(keys.dead_letter_key(symbol))
            pipe.xinfo_groups(stream)
            pipe.get(keys.lease_key(INGEST_ROLE, symbol))
            pipe.get(keys.token_key(INGEST_ROLE, symbol))
            pipe.get(keys.report_key(symbol))
        per_symbol = _chunks(pipe.execute(raise_on_error=False), 6)
    rows = []
    groups_of: dict[str, dict[str, dict[str, object]]] = {}
    for symbol, (length, dead, groups, owner, token, report) in zip(
        symbols, per_symbol, strict=True
    ):
        _raise_errors(length, dead, owner, token, report)
        if isinstance(groups, ResponseError):
            if "no such key" not in str(groups).lower():
                raise groups
            groups = []  # no stream yet
        groups_of[symbol] = {g["name"].decode(): g for g in groups}
        rows.append((symbol, length, dead, _text(owner), _int(token), report))
    processors = _processors(client, groups_of, nodes)
    return [
        SymbolStatus(
            symbol=symbol,
            **_report_fields(symbol, report, now_ms),
            stream_length=length,
            dead_letters=dead,
            ingest_owner=owner,
            ingest_token=token,
            processors=processors[symbol],
        )
        for symbol, length, dead, owner, token, report in rows
    ]


def _processors(
    client: redis.Redis,
    groups_of: dict[str, dict[str, dict[str, object]]],
    nodes: list[NodeStatus],
) -> dict[str, list[ProcessorStatus]]:
    """Per symbol, each processor kind's owner, token, cursor and lag (one round trip)."""
    kinds_of = {}
    for symbol, groups in groups_of.items():
        configured = {kind for n in nodes if symbol in n.symbols for kind in n.kinds}
        kinds_of[symbol] = sorted(set(groups) | configured)
    with client.pipeline(transaction=False) as pipe:
        counted: list[tuple[str, str]] = []
        for symbol, kinds in kinds_of.items():
            for kind in kinds:
                pipe.get(keys.lease_key(kind, symbol))
                pipe.get(keys.token_key(kind, symbol))
        for symbol, groups in groups_of.items():
            for kind, group in groups.items():
                if not isinstance(group.get("lag"), int):
                    cursor = group["last-delivered-id"].decode()
                    pipe.xrange(keys.stream_key(symbol), f"({cursor}", "+", LAG_COUNT_MAX + 1)
                    counted.append((symbol, kind))
        results = iter(pipe.execute())
    leases = {
        (symbol, kind): (_text(next(results)), _int(next(results)))
        for symbol, kinds in kinds_of.items()
        for kind in kinds
    }
    counts = {key: len(next(results)) for key in counted}
    processors: dict[str, list[ProcessorStatus]] = {}
    for symbol, kinds in kinds_of.items():
        processors[symbol] = []
        for kind in kinds:
            owner, token = leases[symbol, kind]
            group = groups_of[symbol].get(kind)
            cursor, lag, capped = None, None, False
            if group is not None:
                cursor = group["last-delivered-id"].decode()
                if (symbol, kind) in counts:
                    count = counts[symbol, kind]
                    lag, capped = min(count, LAG_COUNT_MAX), count > LAG_COUNT_MAX
                else:
                    lag = group["lag"]
            processors[symbol].append(
                ProcessorStatus(
                    kind=kind, owner=owner, token=token, cursor=cursor, lag=lag, lag_capped=capped
                )
            )
    return processors


def _report_fields(symbol: str, raw: bytes | None, now_ms: int) -> dict[str, object]:
    """SymbolStatus's fields from the report: as the MCP server would answer now."""
    report, problem = None, "no report: none published yet, or it expired"
    if raw is not None:
        try:
            report = freshen(_report_decoder.decode(raw), now_ms)
        except msgspec.DecodeError as e:
            problem = f"the report of {symbol} does not decode: {e}"
    if report is None:
        return {"status": "down", "reason": problem, "data_age_ms": None,
                "published_age_ms": None, "report_writer": None}  # fmt: skip
    return {
        "status": report.ingestion.status,
        "reason": report.ingestion.reason,
        "data_age_ms": report.data_age_ms,
        "published_age_ms": max(0, now_ms - report.updatedAt),
        "report_writer": report.writer.nodeId,
    }


def _chunks(values: list[object], size: int) -> list[list[object]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _raise_errors(*results: object) -> None:
    for result in results:
        if isinstance(result, Exception):
            raise result


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def _int(raw: bytes | None) -> int | None:
    return None if raw is None else int(raw)


# -- the terminal table -------------------------------------------------------------------


def render(fleet: FleetStatus) -> str:
    """The fleet as two plain-text tables (nodes, symbols) under a one-line summary."""
    now = datetime.datetime.fromtimestamp(fleet.redis_time_ms / 1000, datetime.UTC)
    live = sum(n.state == "live" for n in fleet.nodes)
    ok = sum(s.status == "ok" for s in fleet.symbols)
    lines = [
        f"context8 status at {now:%Y-%m-%d %H:%M:%S} UTC (Redis time): "
        f"{len(fleet.nodes)} nodes ({live} live), {len(fleet.symbols)} symbols ({ok} ok)",
        "",
    ]
    node_rows = [
        [n.node_id, n.role or "-", ",".join(n.kinds) or "-", n.state, _age(n.heartbeat_age_ms),
         n.host or "-", str(n.pid or "-"),
         _age(fleet.redis_time_ms - n.started_ms) if n.started_ms else "-",
         str(len(n.owned)), n.metrics_url or "-"]
        for n in fleet.nodes
    ]  # fmt: skip
    lines += _table(
        ["NODE", "ROLE", "KINDS", "STATE", "HEARTBEAT", "HOST", "PID", "UP", "OWNED", "METRICS"],
        node_rows,
    )
    lines.append("")
    symbol_rows = []
    for s in fleet.symbols:
        ingest = _owner(s.ingest_owner, s.ingest_token)
        head = [s.symbol, s.status, _age(s.data_age_ms), _age(s.published_age_ms),
                f"{s.stream_length:,}", f"{s.dead_letters:,}", ingest]  # fmt: skip
        blank = [""] * len(head)
        kinds = s.processors or [None]
        for i, p in enumerate(kinds):
            tail = ["-", "-", "-"] if p is None else [p.kind, _owner(p.owner, p.token), _lag(p)]
            note = s.reason if i == 0 else ""
            symbol_rows.append([*(head if i == 0 else blank), *tail, note])
    lines += _table(
        ["SYMBOL", "STATUS", "DATA AGE", "PUBLISHED", "STREAM", "DEAD", "INGEST", "KIND",
         "OWNER", "LAG", "NOTE"],
        symbol_rows,
    )  # fmt: skip
    return "\n".join(lines)


def _table(headers: list[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(c) for c in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]


def _age(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 10_000:
        return f"{ms:,} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    if ms < 7_200_000:
        return f"{ms // 60_000} min"
    return f"{ms / 3_600_000:.1f} h"


def _owner(node_id: str | None, token: int | None) -> str:
    return f"{node_id or '-'} #{token}" if token is not None else node_id or "-"


def _lag(p: ProcessorStatus) -> str:
    if p.lag is None:
        return "n/a"
    return f">= {p.lag:,}" if p.lag_capped else f"{p.lag:,}"


# -- the command ----------------------------------------------------------------------------


def run_status(
    redis_url: str, symbols: Sequence[str] = (), *, as_json: bool = False, watch_s: float = 0
) -> int:
    """Print the fleet once (a table, or one JSON document), or redraw the table every
    ``watch_s`` seconds until Ctrl-C. Exit code 2, with one line on stderr, when Redis does
    not answer (watching, the error is shown in place of the table and retried)."""
    try:
        client = connect(redis_url)
    except ValueError as e:  # a URL redis-py cannot parse
        print(f"context8 status: REDIS_URL: {e}", file=sys.stderr)
        return 2
    with client:
        if watch_s > 0:
            return _watch(client, symbols, watch_s)
        try:
            fleet = gather(client, symbols)
        except RedisError as e:
            print(f"context8 status: {_unavailable(client, e)}", file=sys.stderr)
            return 2
    if as_json:
        print(msgspec.json.format(msgspec.json.encode(fleet), indent=2).decode())
    else:
        print(render(fleet))
    return 0


def _watch(client: redis.Redis, symbols: Sequence[str], every_s: float) -> int:
    try:
        while True:
            try:
                text = render(gather(client, symbols))
            except RedisError as e:
                text = f"context8 status: {_unavailable(client, e)} (retrying every {every_s:g} s)"
            sys.stdout.write(f"{_CLEAR}{text}\n")
            sys.stdout.flush()
            time.sleep(every_s)
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return 0


def _unavailable(client: redis.Redis, error: RedisError) -> str:
    # where, without the URL's credentials
    kwargs = client.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
    what = "unavailable" if isinstance(error, ConnectionError | TimeoutError) else "error"
    return f"Redis at {where} {what}: {type(error).__name__}: {error}"
