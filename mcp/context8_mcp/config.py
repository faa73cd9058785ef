"""The server's settings, from the environment (``CONTEXT8_MCP_*``) and then flags.

Every field is documented once, here. ``load_config`` validates everything at start and
raises ``ConfigError`` naming the variable at fault; in particular it refuses to listen on a
non-loopback address without a bearer token.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from core.settings import ConfigError

__all__ = [
    "ENV_NAMES",
    "NO_REDIS_URL",
    "REDIS_URL_ENV",
    "ServerConfig",
    "is_loopback",
    "load_config",
]

Transport = Literal["stdio", "http"]


class ServerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    redis_url: str | None
    """CONTEXT8_MCP_REDIS_URL, else REDIS_URL: the Redis holding the reports, with the
    credentials of a user that may only read them (``core.acl``). Required over http; a
    stdio server without it starts and answers every call ``backend_unavailable``, saying
    what to set."""
    transport: Transport = "stdio"
    """CONTEXT8_MCP_TRANSPORT: ``stdio`` (one client, the parent process) or ``http``."""
    host: str = "127.0.0.1"
    """CONTEXT8_MCP_HOST: http: the address to listen on. Anything but loopback needs
    CONTEXT8_MCP_TOKEN."""
    port: Annotated[int, Meta(ge=0, le=65535)] = 8765
    """CONTEXT8_MCP_PORT: http: the port to listen on."""
    timeout_ms: Annotated[int, Meta(ge=10, le=60_000)] = 500
    """CONTEXT8_MCP_TIMEOUT_MS: deadline of one Redis read (connect, one retry, reply); past
    it the answer is ``backend_unavailable``."""
    token: str | None = None
    """CONTEXT8_MCP_TOKEN: http: when set, every route but ``/health`` and ``/openapi.json``
    needs ``Authorization: Bearer <token>``. Required off loopback."""
    rate_per_s: Annotated[float, Meta(ge=0)] = 20.0
    """CONTEXT8_MCP_RATE: http: requests per second each client address may make (token
    bucket refill); 0 turns the limit off. Over it: 429 with Retry-After."""
    burst: Annotated[int, Meta(ge=1, le=1_000_000)] = 60
    """CONTEXT8_MCP_BURST: http: requests a client may make at once (the bucket's size)."""
    max_body_bytes: Annotated[int, Meta(ge=1024, le=16 * 1024 * 1024)] = 64 * 1024
    """CONTEXT8_MCP_MAX_BODY_BYTES: http: larger request bodies are refused with 413 (the
    biggest legitimate request, a tool call, is a few hundred bytes)."""

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000


REDIS_URL_ENV: Final = "CONTEXT8_MCP_REDIS_URL"
NO_REDIS_URL: Final = (
    "CONTEXT8_MCP_REDIS_URL (or REDIS_URL) is not set: the MCP server needs the Redis holding "
    "the reports, e.g. redis://context8-mcp:PASSWORD@127.0.0.1:6379/0; set it in the client's "
    "server configuration (env) and restart the server"
)
ENV_NAMES: Final = {
    "transport": "CONTEXT8_MCP_TRANSPORT",
    "host": "CONTEXT8_MCP_HOST",
    "port": "CONTEXT8_MCP_PORT",
    "timeout_ms": "CONTEXT8_MCP_TIMEOUT_MS",
    "token": "CONTEXT8_MCP_TOKEN",
    "rate_per_s": "CONTEXT8_MCP_RATE",
    "burst": "CONTEXT8_MCP_BURST",
    "max_body_bytes": "CONTEXT8_MCP_MAX_BODY_BYTES",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def load_config(
    env: Mapping[str, str] | None = None,
    *,
    fallback_redis_url: str | None = None,
    **flags: object,
) -> ServerConfig:
    """Settings from ``env`` (default ``os.environ``), then ``flags`` (``None``: not given).
    The Redis URL: the flag, else CONTEXT8_MCP_REDIS_URL, else REDIS_URL, else
    ``fallback_redis_url`` (e.g. REDIS_URL from the context8 config file)."""
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    redis_url = (
        env.get(REDIS_URL_ENV, "").strip() or env.get("REDIS_URL", "").strip() or fallback_redis_url
    )
    if redis_url:
        raw["redis_url"] = redis_url
    for field, name in ENV_NAMES.items():
        value = env.get(name, "").strip()
        if value:
            raw[field] = value
    raw.update({k: v for k, v in flags.items() if v is not None})
    if "redis_url" not in raw:
        if raw.get("transport", "stdio") != "stdio":
            raise ConfigError(NO_REDIS_URL)
        raw["redis_url"] = None
    try:
        config = msgspec.convert(raw, ServerConfig, strict=False)
    except msgspec.ValidationError as e:
        message = str(e)
        for field, name in ENV_NAMES.items():
            if f"`$.{field}`" in message:
                raise ConfigError(f"{name}: {message.split(' - at ')[0]}") from None
        raise ConfigError(message) from None
    if config.transport == "http" and not is_loopback(config.host) and not config.token:
        raise ConfigError(
            f"CONTEXT8_MCP_TOKEN: listening on {config.host}, which is not a loopback address, "
            "needs a bearer token (set CONTEXT8_MCP_TOKEN to a long random string; clients send "
            "'Authorization: Bearer <token>'), or listen on 127.0.0.1"
        )
    return config
