"""Shared fixtures: real Redis servers (testcontainers where a Docker engine answers, else a
private redis-server on loopback), the recorded data, and bounded process handling."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from context8.redis_server import PrivateCluster, PrivateRedis

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CAPTURE = SHARED_DATA / "binance-spot-2021-10-12.jsonl"

log = logging.getLogger(__name__)


def _docker_redis() -> contextlib.AbstractContextManager[str] | None:
    """A Redis container when a Docker engine answers, else None (the private fallback)."""
    try:
        import docker
        from testcontainers.community.redis import RedisContainer

        docker.from_env(timeout=2).ping()
    except Exception as e:  # no engine, no socket, no permission: all mean "fall back"
        log.info("no Docker engine (%s); using a private redis-server", e)
        return None

    @contextlib.contextmanager
    def running() -> Iterator[str]:
        with RedisContainer("redis:7-alpine") as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"

    return running()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Redis for the session; tests isolate themselves with redis_url (FLUSHALL)."""
    container = _docker_redis()
    if container is not None:
        with container as url:
            yield url
        return
    server = PrivateRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied for this test (data and the Lua script cache)."""
    client = redis.Redis.from_url(redis_server, socket_timeout=5)
    client.flushall()
    client.script_flush()
    client.close()
    return redis_server


@pytest.fixture(scope="session")
def redis_cluster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """A 3-master Redis Cluster on loopback, started from the redis-server binary."""
    cluster = PrivateCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster_server: PrivateCluster) -> str:
    """The session's cluster, every master emptied for this test."""
    for server in redis_cluster_server.servers:
        with redis.Redis(port=server.port, socket_timeout=5) as client:
            client.flushall()
            client.script_flush()
    return redis_cluster_server.url


@pytest.fixture
def capture_path() -> Path:
    if not CAPTURE.exists():
        pytest.skip(f"recorded Binance data not found at {CAPTURE} (../shared/data is absent)")
    return CAPTURE
