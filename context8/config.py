"""Settings from the environment (names of the original context8 where it had them).

Every field is documented once, here. ``load`` validates everything at start and raises
``ConfigError`` naming the variable at fault, so a bad deployment fails before it runs.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Annotated, Final

import msgspec
from msgspec import Meta

__all__ = ["DEFAULT_SYMBOLS", "DEFAULT_VENUE", "ConfigError", "Settings", "load", "parse_symbols"]

DEFAULT_VENUE: Final = "BINANCE"
DEFAULT_SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}(\.[A-Z0-9_]{2,20})?$")

PositiveMs = Annotated[int, Meta(ge=1, le=3_600_000)]


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable and what it accepts."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbols: tuple[str, ...] = tuple(f"{s}.{DEFAULT_VENUE}" for s in DEFAULT_SYMBOLS)
    """SYMBOLS: comma-separated venue symbols; ``BTCUSDT`` means ``BTCUSDT.BINANCE``."""
    redis_url: str | None = None
    """REDIS_URL: the Redis to use; unset, the demo starts a private one."""
    node_id: str = ""
    """NT_NODE_ID: this node's id in the fleet; default ``<host>-<pid>``."""
    report_period_ms: PositiveMs = 250
    """NT_REPORT_PERIOD_MS: fast cycle; a report is published at least this often."""
    min_publish_ms: Annotated[int, Meta(ge=0, le=60_000)] = 50
    """NT_MIN_PUBLISH_MS: event-driven publishes of one symbol are at least this far apart."""
    slow_period_ms: PositiveMs = 2000
    """NT_SLOW_PERIOD_MS: slow cycle (profile, walls, vacuums, anomalies)."""
    lease_ttl_ms: Annotated[int, Meta(ge=100, le=600_000)] = 2000
    """NT_LEASE_TTL_MS: lease time-to-live; renewed every ttl/2."""
    min_hold_ms: Annotated[int, Meta(ge=0, le=600_000)] = 2000
    """NT_MIN_HOLD_MS: a symbol is not moved again within this time of its last move."""
    hrw_sticky_pct: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.02
    """NT_HRW_STICKY_PCT: weight bonus of the current owner in rendezvous hashing."""
    metrics_port: Annotated[int, Meta(ge=0, le=65535)] = 9101
    """NT_METRICS_PORT: Prometheus endpoint; 0 picks a free port."""
    cache_ttl_sec: Annotated[int, Meta(ge=1, le=86_400)] = 300
    """CACHE_TTL_SEC: report key time-to-live; a symbol no longer published vanishes after it."""
    stream_retention_sec: Annotated[int, Meta(ge=0, le=30 * 86_400)] = 3600
    """NT_STREAM_RETENTION_SEC: ``md:{SYM}`` keeps this much history (XTRIM MINID); 0 keeps all."""
    snapshot_every_sec: Annotated[int, Meta(ge=0, le=86_400)] = 600
    """NT_SNAPSHOT_EVERY_SEC: ingest logs a fresh venue snapshot this often, so every retained
    window of ``md:{SYM}`` holds a book to start from; 0 only at start and after gaps. Must
    be at most half the retention."""
    ingest_flush_ms: Annotated[int, Meta(ge=0, le=1000)] = 2
    """NT_INGEST_FLUSH_MS: ingest batches appends for at most this long (one round trip each)."""
    binance_http_url: str | None = None
    """NT_BINANCE_HTTP_URL: Binance REST base URL; unset means live Binance Spot."""
    binance_ws_url: str | None = None
    """NT_BINANCE_WS_URL: Binance websocket base URL (without /stream); unset means live."""


_ENV_NAMES: Final = {
    "symbols": "SYMBOLS",
    "redis_url": "REDIS_URL",
    "node_id": "NT_NODE_ID",
    "report_period_ms": "NT_REPORT_PERIOD_MS",
    "min_publish_ms": "NT_MIN_PUBLISH_MS",
    "slow_period_ms": "NT_SLOW_PERIOD_MS",
    "lease_ttl_ms": "NT_LEASE_TTL_MS",
    "min_hold_ms": "NT_MIN_HOLD_MS",
    "hrw_sticky_pct": "NT_HRW_STICKY_PCT",
    "metrics_port": "NT_METRICS_PORT",
    "cache_ttl_sec": "CACHE_TTL_SEC",
    "stream_retention_sec": "NT_STREAM_RETENTION_SEC",
    "snapshot_every_sec": "NT_SNAPSHOT_EVERY_SEC",
    "ingest_flush_ms": "NT_INGEST_FLUSH_MS",
    "binance_http_url": "NT_BINANCE_HTTP_URL",
    "binance_ws_url": "NT_BINANCE_WS_URL",
}


def parse_symbols(text: str, venue: str = DEFAULT_VENUE) -> tuple[str, ...]:
    """``"btcusdt, ETHUSDT.BINANCE"`` -> ``("BTCUSDT.BINANCE", "ETHUSDT.BINANCE")``."""
    symbols: list[str] = []
    for raw in text.split(","):
        name = raw.strip().upper()
        if not name:
            continue
        if not _SYMBOL_RE.match(name):
            raise ValueError(f"{raw.strip()!r} is not a symbol like BTCUSDT or BTCUSDT.BINANCE")
        qualified = name if "." in name else f"{name}.{venue}"
        if qualified not in symbols:
            symbols.append(qualified)
    if not symbols:
        raise ValueError("no symbols given")
    return tuple(symbols)


def load(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from ``env`` (default ``os.environ``), then ``overrides`` (command-line flags,
    ``None`` meaning not given)."""
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    for field, name in _ENV_NAMES.items():
        value = env.get(name, "").strip()
        if value:
            raw[field] = value
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(raw.get("symbols"), str):
        try:
            raw["symbols"] = parse_symbols(raw["symbols"])
        except ValueError as e:
            raise ConfigError(f"SYMBOLS: {e}") from None
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as e:
        raise ConfigError(_name_the_variable(str(e))) from None
    retention = settings.stream_retention_sec
    if retention and not 0 < settings.snapshot_every_sec <= retention / 2:
        raise ConfigError(
            f"NT_SNAPSHOT_EVERY_SEC: must be between 1 and half of NT_STREAM_RETENTION_SEC "
            f"({retention}), or a retained window may hold no snapshot to start a book from"
        )
    if not settings.node_id:
        settings = msgspec.structs.replace(
            settings, node_id=f"{socket.gethostname()}-{os.getpid()}"
        )
    return settings


def _name_the_variable(message: str) -> str:
    # msgspec says "... - at `$.report_period_ms`"; users know the variable, not the field.
    match = re.search(r"at `\$\.(\w+)", message)
    if match and match.group(1) in _ENV_NAMES:
        what = message.split(" - at ")[0]
        return f"{_ENV_NAMES[match.group(1)]}: {what}"
    return message
