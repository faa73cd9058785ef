"""Prometheus metrics (names from DESIGN.md "Observability"), one registry per process."""

from __future__ import annotations

import contextlib
import socket

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    Summary,
    disable_created_metrics,
    start_http_server,
)

from core.settings import ConfigError

__all__ = [
    "CALC_LATENCY_MS",
    "CONSUMER_LAG",
    "DATA_AGE_MS",
    "DEAD_LETTERS",
    "EVENTS_APPENDED",
    "EVENTS_FOLDED",
    "HRW_REBALANCES",
    "LEASE_CONFLICTS",
    "NODE_HEARTBEAT",
    "PUBLISH_INTERVAL_MS",
    "PUBLISH_LATENCY_MS",
    "REDIS_ERRORS",
    "REPORTS_PUBLISHED",
    "REPORT_PUBLISH_RATE",
    "STREAM_LENGTH",
    "SYMBOLS_ASSIGNED",
    "WS_RESUBSCRIBE",
    "count_from_zero",
    "forget_symbol",
    "serve_metrics",
]

# Few buckets: every bucket is a series per label set, and the fleet's series stay bounded
# (docs/decisions.md: under 1,000 for 100 symbols on 10 nodes).
_LATENCY_BUCKETS = (10, 25, 50, 100, 250, 1000)

disable_created_metrics()  # a _created series per counter doubles them for no alert or panel

NODE_HEARTBEAT = Gauge("nt_node_heartbeat", "Time of this node's last heartbeat (s since epoch)")
HRW_REBALANCES = Counter(
    "nt_hrw_rebalances_total",
    "Symbols this node handed off because the assignment moved them",
    ["kind"],
)
SYMBOLS_ASSIGNED = Gauge("nt_symbols_assigned", "Symbols this node owns", ["role"])
LEASE_CONFLICTS = Counter(
    "nt_lease_conflicts_total", "Owner writes refused by fencing (the node dropped the symbol)",
    ["role"],
)  # fmt: skip
DEAD_LETTERS = Counter(
    "nt_dead_letters_total", "Stream entries that could not be decoded or handled", ["role"]
)
REDIS_ERRORS = Counter("nt_redis_errors_total", "Redis calls that failed", ["role"])
EVENTS_APPENDED = Counter("nt_ingest_events_total", "Events appended to md:{SYM}", ["symbol"])
EVENTS_FOLDED = Counter("nt_events_folded_total", "Events folded into state", ["kind"])
REPORTS_PUBLISHED = Counter(
    "nt_reports_published_total", "Reports written to report:{SYM}", ["symbol"]
)
DATA_AGE_MS = Gauge("nt_data_age_ms", "Age of the venue data in the last report", ["symbol"])
REPORT_PUBLISH_RATE = Gauge(
    "nt_report_publish_rate", "Reports written per second over the last 10 s", ["symbol"]
)
# A summary (sum and count: the mean), not a histogram: its buckets times kinds times cycles
# were a quarter of a node's series; compute time percentiles are in `context8 bench`.
CALC_LATENCY_MS = Summary(
    "nt_calc_latency_ms", "Time to compute a projection (kind, fast or slow)", ["metric", "cycle"]
)
STREAM_LENGTH = Gauge("nt_stream_length", "Entries retained in md:{SYM}", ["symbol"])
CONSUMER_LAG = Gauge(
    "nt_consumer_lag",
    "Stream time (ms) between the kind's last folded entry of md:{SYM} and the stream's end "
    "(0 once it has read everything)",
    ["kind", "symbol"],
)
WS_RESUBSCRIBE = Counter(
    "nt_ws_resubscribe_total", "Venue book rebuilds (snapshot + resubscribe) by cause", ["reason"]
)
PUBLISH_INTERVAL_MS = Gauge(
    "nt_publish_interval_ms",
    "Effective publish pacing of a kind on this node (adaptive coalescing): cycle=event, the "
    "least time between two publishes of a symbol; cycle=fast, the most",
    ["kind", "cycle"],
)
PUBLISH_LATENCY_MS = Histogram(
    "nt_event_to_report_ms",
    "Venue time of the newest event in a report to the report being written",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)


def serve_metrics(port: int, host: str = "127.0.0.1") -> str:
    """Expose /metrics (NT_METRICS_PORT; 0 picks a free port) on ``host`` (NT_METRICS_HOST);
    returns the URL others reach it at (the host name when listening on every address)."""
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as e:
        raise ConfigError(
            f"NT_METRICS_PORT={port}: cannot serve metrics on {host}:{port} ({e.strerror}); "
            "give each node on a host its own port, or 0 for any free one"
        ) from None
    reachable = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://{reachable}:{server.server_port}/metrics"


def count_from_zero(role: str) -> None:
    """Create ``role``'s labelled counters at 0, so the first increment is an increase
    (a series that appears at 1 is invisible to ``increase()``)."""
    for counter in (LEASE_CONFLICTS, DEAD_LETTERS, REDIS_ERRORS):
        counter.labels(role)
    if role != "ingest":
        HRW_REBALANCES.labels(role)


def forget_symbol(kind: str, symbol: str, *, report: bool) -> None:
    """Drop the series of a symbol this node no longer holds for ``kind`` (and, ``report``,
    the report's), so they do not go on exporting a frozen last value."""
    series: list[tuple[Gauge, tuple[str, ...]]] = [(CONSUMER_LAG, (kind, symbol))]
    if report:
        series += [(DATA_AGE_MS, (symbol,)), (REPORT_PUBLISH_RATE, (symbol,)),
                   (STREAM_LENGTH, (symbol,))]  # fmt: skip
    for gauge, labels in series:
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)
