"""Settings from the environment (names of the original context8 where it had them) and an
optional TOML file.

Every field is documented once, here. The file (``CONTEXT8_CONFIG``, or ``context8 --config
FILE``) holds the same settings under the same names as the environment variables, e.g.
``SYMBOLS = ["BTCUSDT", "ETHUSDT"]`` and ``NT_MIN_PUBLISH_MS = 50``; one name per setting
everywhere, so the file, the environment and the docs never disagree. Precedence: command-line
flag > environment > file > default. ``load`` validates everything at start and raises
``ConfigError`` naming the setting at fault (and the file, when it came from there), so a bad
deployment fails before it runs.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from typing import Annotated, Final

import msgspec
from msgspec import Meta

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_SYMBOLS",
    "DEFAULT_VENUE",
    "ConfigError",
    "Settings",
    "environ",
    "given",
    "load",
    "parse_symbols",
]

DEFAULT_VENUE: Final = "BINANCE"
DEFAULT_SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")
CONFIG_ENV: Final = "CONTEXT8_CONFIG"
"""The variable naming the TOML settings file (``context8 --config FILE`` sets it)."""

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}(\.[A-Z0-9_]{2,20})?$")

PositiveMs = Annotated[int, Meta(ge=1, le=3_600_000)]


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable (and the file it came
    from) and what it accepts."""


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
    metrics_host: str = "127.0.0.1"
    """NT_METRICS_HOST: address the Prometheus endpoint listens on; ``0.0.0.0`` where the
    scraper is on another host or container (deploy/compose.yaml)."""
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
    processor_kinds: tuple[str, ...] = ()
    """NT_PROCESSOR_KINDS: comma-separated processor kinds a processor node runs (see
    docs/processors.md); empty runs every installed kind."""
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
    "metrics_host": "NT_METRICS_HOST",
    "cache_ttl_sec": "CACHE_TTL_SEC",
    "stream_retention_sec": "NT_STREAM_RETENTION_SEC",
    "snapshot_every_sec": "NT_SNAPSHOT_EVERY_SEC",
    "ingest_flush_ms": "NT_INGEST_FLUSH_MS",
    "processor_kinds": "NT_PROCESSOR_KINDS",
    "binance_http_url": "NT_BINANCE_HTTP_URL",
    "binance_ws_url": "NT_BINANCE_WS_URL",
}
_FIELDS: Final = {name: field for field, name in _ENV_NAMES.items()}
_KIND_SETTING: Final = re.compile(r"NT_[A-Z0-9_]+")


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
    """Settings from ``env`` (default ``os.environ``) over the file it names in
    ``CONTEXT8_CONFIG``, then ``overrides`` (command-line flags, ``None`` meaning not given)."""
    raw, from_file = _given(os.environ if env is None else env)
    for field, value in overrides.items():
        if value is not None:
            raw[field] = value
            from_file.pop(field, None)
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as e:
        raise ConfigError(_name_the_setting(str(e), from_file)) from None
    retention = settings.stream_retention_sec
    if retention and not 0 < settings.snapshot_every_sec <= retention / 2:
        raise ConfigError(
            f"{_where('snapshot_every_sec', from_file)}: must be between 1 and half of "
            f"NT_STREAM_RETENTION_SEC ({retention}), or a retained window may hold no snapshot "
            "to start a book from"
        )
    if not settings.node_id:
        settings = msgspec.structs.replace(
            settings, node_id=f"{socket.gethostname()}-{os.getpid()}"
        )
    return settings


def given(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The names of the settings the environment or the config file sets (the rest are
    defaults): for commands whose behaviour differs when, say, SYMBOLS was not chosen."""
    raw, _from_file = _given(os.environ if env is None else env)
    return frozenset(_ENV_NAMES[field] for field in raw)


def _given(env: Mapping[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    """Field -> value from the config file with the environment over it, and field -> file
    path for the values that came from the file (error messages name it)."""
    path = env.get(CONFIG_ENV, "").strip()
    raw = _read_file(path) if path else {}
    from_file = dict.fromkeys(raw, path)
    for field, name in _ENV_NAMES.items():
        value = env.get(name, "").strip()
        if value:
            raw[field] = value
            from_file.pop(field, None)
    if "symbols" in raw:
        try:
            raw["symbols"] = _symbols(raw["symbols"])
        except ValueError as e:
            raise ConfigError(f"{_where('symbols', from_file)}: {e}") from None
    if isinstance(raw.get("processor_kinds"), str):
        raw["processor_kinds"] = tuple(
            kind.strip() for kind in str(raw["processor_kinds"]).split(",") if kind.strip()
        )
    return raw, from_file


def environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables as a processor kind reads its own settings (``NT_HEAVY_LEVELS``, ...):
    the config file's ``NT_*`` entries that are not node settings, with the environment
    over them. Kinds validate their settings themselves (docs/processors.md)."""
    env = os.environ if env is None else env
    path = env.get(CONFIG_ENV, "").strip()
    table = _read_table(path) if path else {}
    merged = {name: _as_variable(value) for name, value in table.items() if name not in _FIELDS}
    return {**merged, **env}


def _as_variable(value: object) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _read_table(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as e:
        raise ConfigError(f"{CONFIG_ENV}: cannot read the config file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def _read_file(path: str) -> dict[str, object]:
    """Field -> value from a TOML settings file (top-level keys named as the variables).
    Other ``NT_*`` names are processor kinds' settings (see ``environ``)."""
    raw: dict[str, object] = {}
    for name, value in _read_table(path).items():
        if name in _FIELDS:
            raw[_FIELDS[name]] = value
        elif not _KIND_SETTING.fullmatch(name):
            raise ConfigError(
                f"{name} in {path}: no such setting; settings are named as their environment "
                f"variables: {', '.join(_FIELDS)}, or NT_* for a processor kind's settings"
            )
    return raw


def _symbols(value: object) -> tuple[str, ...]:
    """SYMBOLS as the environment gives it (comma-separated) or a file may (a list)."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise ValueError("expected symbols, as a list of strings or one comma-separated string")
    return parse_symbols(value)


def _where(field: str, from_file: Mapping[str, str]) -> str:
    """``NT_X``, or ``NT_X in FILE`` for a value that came from a file."""
    name = _ENV_NAMES[field]
    return f"{name} in {from_file[field]}" if field in from_file else name


def _name_the_setting(message: str, from_file: Mapping[str, str]) -> str:
    # msgspec says "... - at `$.report_period_ms`"; users know the variable, not the field.
    match = re.search(r"at `\$\.(\w+)", message)
    if match and match.group(1) in _ENV_NAMES:
        what = message.split(" - at ")[0]
        return f"{_where(match.group(1), from_file)}: {what}"
    return message
