"""Redis clients for standalone Redis and Redis Cluster alike.

``connect`` asks the server at ``REDIS_URL`` whether it is a cluster node (``INFO cluster``)
and returns the matching redis-py client, so operators give one URL either way (any node of
a cluster: the client discovers the others). Every key of a symbol carries ``{SYM}``, so a
symbol's scripts run in one slot; what spans symbols (the index, the membership keys) is
read and written key by key, never in one multi-key command.

``batch`` runs a list of commands in one round trip where Redis allows it: a pipeline on a
standalone server; on a cluster redis-py refuses scripts in pipelines, so the commands are
sent concurrently instead (each to its slot's node). Results come back in order, errors as
values, like ``pipeline.execute(raise_on_error=False)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

__all__ = [
    "AnyAsyncRedis",
    "AnySyncRedis",
    "Command",
    "async_client",
    "batch",
    "connect",
    "connect_sync",
    "display_url",
    "get_many",
    "get_many_async",
]

AnyAsyncRedis = redis.asyncio.Redis | AsyncRedisCluster
AnySyncRedis = redis.Redis | RedisCluster
Command = tuple[str, tuple[Any, ...], dict[str, Any]]
"""(client method name, positional arguments, keyword arguments)."""


def display_url(url: str) -> str:
    """``url`` fit for a log line or an error message: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit(parts._replace(netloc=user + parts.netloc.rpartition("@")[2]))


def _is_cluster(url: str, timeout_s: float) -> bool:
    # CLUSTER INFO rather than INFO: a user restricted to a few commands (the MCP server's
    # reader) is granted this one, which the cluster client needs anyway.
    with redis.Redis.from_url(url, socket_timeout=timeout_s,
                              socket_connect_timeout=timeout_s) as probe:  # fmt: skip
        try:
            probe.execute_command("CLUSTER", "INFO")
        except redis.ResponseError as e:
            if "cluster support disabled" in str(e):
                return False
            raise
        return True


async def connect(url: str, **options: Any) -> AnyAsyncRedis:
    """An asyncio client for ``url`` (``options``: redis-py connection options); raises
    redis.RedisError when the server does not answer."""
    return await asyncio.to_thread(async_client, url, **options)


def async_client(url: str, **options: Any) -> AnyAsyncRedis:
    """``connect`` for callers outside a coroutine (it blocks while it asks the server)."""
    timeout = float(options.get("socket_connect_timeout") or 2)
    if _is_cluster(url, timeout):
        return AsyncRedisCluster.from_url(url, **_cluster_options(options))
    return redis.asyncio.Redis.from_url(url, **options)


def connect_sync(url: str, **options: Any) -> AnySyncRedis:
    timeout = float(options.get("socket_connect_timeout") or 2)
    if _is_cluster(url, timeout):
        return RedisCluster.from_url(url, **_cluster_options(options))
    return redis.Redis.from_url(url, **options)


def _cluster_options(options: dict[str, Any]) -> dict[str, Any]:
    # a cluster has one database and checks its nodes' connections itself
    return {k: v for k, v in options.items() if k not in ("db", "health_check_interval")}


async def batch(client: AnyAsyncRedis, commands: Sequence[Command]) -> list[Any]:
    """Run ``commands``; their results (or errors) in order."""
    if isinstance(client, AsyncRedisCluster):
        calls = [getattr(client, name)(*args, **kwargs) for name, args, kwargs in commands]
        return await asyncio.gather(*calls, return_exceptions=True)
    async with client.pipeline(transaction=False) as pipe:
        for name, args, kwargs in commands:
            getattr(pipe, name)(*args, **kwargs)
        return await pipe.execute(raise_on_error=False)


def get_many(client: AnySyncRedis, names: Sequence[str]) -> list[bytes | None]:
    """GET of keys in any slots (MGET where one command may span them)."""
    if isinstance(client, RedisCluster):
        return client.mget_nonatomic(list(names))
    return client.mget(list(names))


async def get_many_async(client: AnyAsyncRedis, names: Sequence[str]) -> list[bytes | None]:
    if isinstance(client, AsyncRedisCluster):
        return await client.mget_nonatomic(list(names))
    return await client.mget(list(names))
