"""Settings, one way for every role: environment variables over an optional TOML file over
defaults, into frozen msgspec Structs, validated at start.

A group of settings is a Struct (or dataclass) plus the variable name of each field:
``load_group`` reads it. The node settings below are one group (``load``); a processor
kind's parameters (``NT_<FIELD>``), where a kind starts (``NT_<KIND>_START``) and the MCP
server's settings (``CONTEXT8_MCP_*``) are others, read by the same function. Every field is
documented once, beside its default.

The file (``CONTEXT8_CONFIG``, or ``context8 --config FILE``) holds the same settings under
the same names as the environment, e.g. ``SYMBOLS = ["BTCUSDT", "ETHUSDT"]`` and
``NT_MIN_PUBLISH_MS = 50``: one name per setting everywhere. Precedence: command-line flag >
environment > file > default. A variable that is set but empty is an error, not the default
(``SYMBOLS=`` in a script whose variable went missing would otherwise serve the default
symbols without a word). ``check_file`` refuses a file key that no group knows, so a
misspelled ``NT_MIN_PUBLISH_MSS`` fails the command instead of being ignored. Errors are
``ConfigError`` naming the variable (and the file, when the value came from there).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import socket
import tomllib
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Final, TypeVar

import msgspec
from msgspec import Meta

from core.symbols import DEFAULT_VENUE, parse_symbols

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_SYMBOLS",
    "NODE_SETTINGS",
    "CannotStart",
    "ConfigError",
    "Settings",
    "check_file",
    "env_names",
    "is_set",
    "load",
    "load_group",
]

DEFAULT_SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")
CONFIG_ENV: Final = "CONTEXT8_CONFIG"
"""The variable naming the TOML settings file (``context8 --config FILE`` sets it)."""

T = TypeVar("T")
Parser = Callable[[object], object]
PositiveMs = Annotated[int, Meta(ge=1, le=3_600_000)]


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable (and the file it came
    from) and what it accepts."""


class CannotStart(RuntimeError):
    """A role cannot run because something it needs (Redis, the venue) does not answer; the
    message says what and where, and the command exits non-zero without a traceback."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A node's settings (every role reads these; each uses the ones it needs)."""

    symbols: tuple[str, ...] = tuple(f"{s}.{DEFAULT_VENUE}" for s in DEFAULT_SYMBOLS)
    """SYMBOLS: comma-separated symbols; ``BTCUSDT`` means ``BTCUSDT.BINANCE``,
    ``BTCUSDT-PERP`` the USD-M perpetual."""
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


NODE_SETTINGS: Final = {
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
"""Field of ``Settings`` -> its variable."""


def _symbols(value: object) -> tuple[str, ...]:
    """SYMBOLS as the environment gives it (comma-separated) or a file may (a list)."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise ValueError("expected symbols, as a list of strings or one comma-separated string")
    return parse_symbols(value)


def _names(value: object) -> object:
    """A comma-separated list of names (a file may give a list)."""
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    return value


_NODE_PARSERS: Final[dict[str, Parser]] = {"symbols": _symbols, "processor_kinds": _names}


def load(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """The node's settings from ``env`` (default ``os.environ``) over the file it names in
    ``CONTEXT8_CONFIG``, then ``overrides`` (command-line flags, ``None`` meaning not given)."""
    settings = load_group(Settings, NODE_SETTINGS, env, overrides=overrides,
                          parsers=_NODE_PARSERS)  # fmt: skip
    retention = settings.stream_retention_sec
    if retention and not 0 < settings.snapshot_every_sec <= retention / 2:
        variable = _where("NT_SNAPSHOT_EVERY_SEC", *_config_file(env))
        raise ConfigError(
            f"{variable}: must be between 1 and half of NT_STREAM_RETENTION_SEC ({retention}), "
            "or a retained window may hold no snapshot to start a book from"
        )
    if not settings.node_id:
        settings = msgspec.structs.replace(
            settings, node_id=f"{socket.gethostname()}-{os.getpid()}"
        )
    return settings


def load_group(
    cls: type[T],
    names: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, object] | None = None,
    parsers: Mapping[str, Parser] | None = None,
) -> T:
    """A ``cls`` (msgspec Struct or dataclass) from the variables ``names`` gives its fields
    (field -> variable), as the module docstring says; ``parsers`` turn a field's raw value
    (a string from the environment, any TOML value from the file) into what ``cls`` takes."""
    env = os.environ if env is None else env
    path, file_values = _config_file(env)
    raw: dict[str, object] = {}
    from_file: set[str] = set()
    for field, variable in names.items():
        if variable in file_values:
            raw[field] = file_values[variable]
            from_file.add(field)
        if variable in env:
            if not env[variable].strip():
                raise ConfigError(f"{variable} is set but empty: give a value, or unset it")
            raw[field] = env[variable].strip()
            from_file.discard(field)
    where = {field: _where(names[field], path if field in from_file else "", file_values)
             for field in names}  # fmt: skip
    for field, parse in (parsers or {}).items():
        if field in raw:
            try:
                raw[field] = parse(raw[field])
            except ValueError as e:
                raise ConfigError(f"{where[field]}: {e}") from None
    for field, value in (overrides or {}).items():
        if value is not None:  # a flag: typed already
            raw[field] = value
            where[field] = names.get(field, field)
    try:
        return msgspec.convert(raw, cls, strict=False)
    except msgspec.ValidationError as e:
        raise ConfigError(_name_the_setting(str(e), where)) from None
    except ValueError as e:  # a dataclass's own check (__post_init__)
        raise ConfigError(str(e)) from None


def env_names(cls: type, prefix: str = "NT_") -> dict[str, str]:
    """``prefix`` + FIELD for each field of a dataclass or Struct (a kind's parameters)."""
    fields = (
        [f.name for f in dataclasses.fields(cls)]
        if dataclasses.is_dataclass(cls)
        else list(cls.__struct_fields__)
    )
    return {field: f"{prefix}{field.upper()}" for field in fields}


def is_set(variable: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``variable`` was chosen, in the environment or the config file (rather than
    left to its default): for commands that behave differently when, say, SYMBOLS was not."""
    env = os.environ if env is None else env
    return variable in env or variable in _config_file(env)[1]


def check_file(known: Iterable[str], env: Mapping[str, str] | None = None) -> None:
    """Refuse a config file (the one ``CONTEXT8_CONFIG`` names, if any) with a key that is
    none of the ``known`` variables: every group's, the kinds' included."""
    env = os.environ if env is None else env
    path = env.get(CONFIG_ENV, "").strip()
    if not path:
        return
    known = set(known)
    for name in _read_table(path):
        if name not in known:
            close = [k for k in sorted(known) if _similar(name, k)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"{name} in {path}: no such setting{hint}; settings are named as their "
                "environment variables (README, Configuration; docs/analytics.md for the "
                "analytics parameters)"
            )


def _similar(a: str, b: str) -> bool:
    """Names one edit apart, or one a prefix of the other (``NT_MIN_PUBLISH_MSS``)."""
    if a.startswith(b) or b.startswith(a):
        return abs(len(a) - len(b)) <= 2
    if len(a) != len(b):
        return False
    return sum(x != y for x, y in zip(a, b, strict=True)) == 1


def _config_file(env: Mapping[str, str] | None) -> tuple[str, dict[str, Any]]:
    """The config file's path and its top-level table ("" and {} without one)."""
    env = os.environ if env is None else env
    path = env.get(CONFIG_ENV, "").strip()
    return (path, _read_table(path)) if path else ("", {})


@functools.cache
def _read_table(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as e:
        raise ConfigError(f"{CONFIG_ENV}: cannot read the config file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def _where(variable: str, path: str, file_values: Mapping[str, object]) -> str:
    """``NT_X``, or ``NT_X in FILE`` for a value that came from a file."""
    return f"{variable} in {path}" if path and variable in file_values else variable


def _name_the_setting(message: str, where: Mapping[str, str]) -> str:
    # msgspec says "... - at `$.report_period_ms`"; users know the variable, not the field.
    match = re.search(r"at `\$\.(\w+)", message)
    if match and match.group(1) in where:
        what = message.split(" - at ")[0]
        return f"{where[match.group(1)]}: {what}"
    return message
