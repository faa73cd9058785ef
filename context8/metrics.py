"""Prometheus metrics (names from DESIGN.md "Observability"), one registry per process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = [
    "DATA_AGE_MS",
    "DEAD_LETTERS",
    "EVENTS_APPENDED",
    "EVENTS_FOLDED",
    "HRW_REBALANCES",
    "LEASE_CONFLICTS",
    "NODE_HEARTBEAT",
    "PUBLISH_LATENCY_MS",
    "REDIS_ERRORS",
    "REPORTS_PUBLISHED",
    "SYMBOLS_ASSIGNED",
    "serve_metrics",
]

_MS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000)

NODE_HEARTBEAT = Gauge("nt_node_heartbeat", "Time of this node's last heartbeat (s since epoch)")
HRW_REBALANCES = Counter(
    "nt_hrw_rebalances_total", "Symbols this node handed off because the assignment moved them"
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
EVENTS_FOLDED = Counter("nt_events_folded_total", "Events folded into state", ["kind", "stream"])
REPORTS_PUBLISHED = Counter(
    "nt_reports_published_total", "Reports written to report:{SYM}", ["symbol"]
)
DATA_AGE_MS = Gauge("nt_data_age_ms", "Age of the venue data in the last report", ["symbol"])
PUBLISH_LATENCY_MS = Histogram(
    "nt_event_to_report_ms",
    "Venue time of the newest event in a report to the report being written",
    buckets=_MS_BUCKETS,
)


def serve_metrics(port: int, host: str = "127.0.0.1") -> str:
    """Expose /metrics (NT_METRICS_PORT; 0 picks a free port); returns its URL."""
    server, _thread = start_http_server(port, addr=host)
    return f"http://{host}:{server.server_port}/metrics"
