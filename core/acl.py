"""The Redis user the MCP server reads as: it may read the keys the server reads, run the few
commands it sends, and nothing else.

Redis 6.2 has no read-only key selectors (``%R~``, Redis 7), so the key patterns alone would
let a user write the keys they name: the commands are restricted instead, to reads (``GET``,
``ZRANGE``, ``ZSCORE``, ``HGET``, ``HMGET``, ``HGETALL``) plus ``PING`` (health) and
``SELECT`` (a URL naming a database), and ``SUBSCRIBE`` to the one channel announcing new
reports. The keys: ``report:*`` (report, heavy section, history), ``candles:*``, the index
``{reports}:index`` and the overview ``{reports}:overview``. Every write, script, admin or
key-scanning command is refused by Redis itself (NOPERM).

For an external Redis, ``setuser_command`` gives the line to run (docs/mcp.md shows it).
"""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Final

import redis
from redis.cluster import RedisCluster

from core import keys

__all__ = [
    "READER",
    "READER_CHANNELS",
    "READER_COMMANDS",
    "READER_KEY_PATTERNS",
    "create_reader",
    "reader_rules",
    "setuser_command",
    "url_with_user",
]

READER: Final = "context8-mcp"
READER_COMMANDS: Final = (
    "get", "zrange", "zscore", "hget", "hmget", "hgetall", "ping", "select",
    "subscribe", "unsubscribe",
    # a Redis Cluster client discovers the slots and the commands' key positions
    "cluster|info", "cluster|slots", "command",
)  # fmt: skip
READER_KEY_PATTERNS: Final = ("report:*", "candles:*", keys.INDEX_KEY, keys.OVERVIEW_KEY)
READER_CHANNELS: Final = (keys.REPORT_UPDATED_CHANNEL,)


def reader_rules(password: str) -> list[str]:
    """The ``ACL SETUSER`` rules of the reader, from a clean slate (``reset``)."""
    return [
        "reset",
        "on",
        f">{password}",
        "resetchannels",
        *(f"&{channel}" for channel in READER_CHANNELS),
        *(f"~{pattern}" for pattern in READER_KEY_PATTERNS),
        "-@all",
        *(f"+{command}" for command in READER_COMMANDS),
    ]


def setuser_command(username: str = READER, password: str = "CHANGE-ME") -> str:
    """``ACL SETUSER context8-mcp reset on >CHANGE-ME ...``, to paste into redis-cli."""
    return " ".join(["ACL", "SETUSER", username, *reader_rules(password)])


def create_reader(
    client: redis.Redis | RedisCluster, username: str = READER, password: str | None = None
) -> str:
    """Create (or reset) the reader on the Redis behind ``client`` (an admin connection; on
    a cluster, on every node: users are per node); returns its password (a fresh random one
    unless given)."""
    password = password or secrets.token_urlsafe(24)
    command = ("ACL", "SETUSER", username, *reader_rules(password))
    if isinstance(client, RedisCluster):
        client.execute_command(*command, target_nodes=RedisCluster.ALL_NODES)
    else:
        client.execute_command(*command)
    return password


def url_with_user(redis_url: str, username: str, password: str) -> str:
    """``redis_url`` with ``username:password`` in place of any credentials it had."""
    parts = urllib.parse.urlsplit(redis_url)
    if parts.hostname is None:
        raise ValueError(f"{redis_url!r} has no host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    user = urllib.parse.quote(username, safe="")
    secret = urllib.parse.quote(password, safe="")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{secret}@{host}{port}"))
