"""Membership: every node heartbeats its metadata; live nodes are read from one zset.

``nt:node:{ID}`` holds the node's JSON metadata with a PX expiry; ``nt:nodes_seen`` maps node
id -> last heartbeat (ms), so finding the live nodes is one ZRANGEBYSCORE plus one pipelined
GET per node: no SCAN, and it works on Redis Cluster (node keys live in any slot).
A node leaving on purpose deletes both and publishes on ``nt:membership`` so the others
re-assign at once instead of waiting for its heartbeat to age out.
"""

from __future__ import annotations

import random
import socket
from typing import Final

import msgspec

from core import keys
from core.redis_client import AnyAsyncRedis, batch

__all__ = [
    "HEARTBEAT_MS",
    "LIVE_INTERVALS",
    "MEMBERSHIP_CHANNEL",
    "NodeInfo",
    "beat",
    "leave",
    "live_nodes",
    "next_beat_s",
]

HEARTBEAT_MS: Final = 1000
LIVE_INTERVALS: Final = 2
"""A node is live for assignment while its last heartbeat is this many intervals old or less."""
_NODE_KEY_TTL_MS: Final = 5000
_FORGET_AFTER_MS: Final = 3_600_000
MEMBERSHIP_CHANNEL: Final = "nt:membership"


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    role: str
    """``ingest`` or ``processor``."""
    symbols: list[str]
    """The symbols this node is configured for: only they may be assigned to it."""
    kinds: list[str] = []
    """The processor kinds a processor node runs: it takes part in their assignment only."""
    owned: list[str] = []
    """Symbols this node holds a lease of (any kind)."""
    owned_by_kind: dict[str, list[str]] = {}
    host: str = msgspec.field(default_factory=socket.gethostname)
    pid: int = 0
    metrics_url: str = ""
    started_ms: int = 0
    heartbeat_ms: int = 0


_decoder = msgspec.json.Decoder(NodeInfo)


def next_beat_s() -> float:
    """The next heartbeat's delay: 1000 ms +-10% jitter, so a fleet started together does
    not beat in lockstep."""
    return HEARTBEAT_MS * random.uniform(0.9, 1.1) / 1000


async def beat(client: AnyAsyncRedis, info: NodeInfo, now_ms: int) -> None:
    info = msgspec.structs.replace(info, heartbeat_ms=now_ms)
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(keys.node_key(info.node_id), msgspec.json.encode(info), px=_NODE_KEY_TTL_MS)
        pipe.zadd(keys.NODES_SEEN_KEY, {info.node_id: now_ms})
        pipe.zremrangebyscore(keys.NODES_SEEN_KEY, "-inf", now_ms - _FORGET_AFTER_MS)
        await pipe.execute()


async def live_nodes(client: AnyAsyncRedis, role: str, now_ms: int) -> list[NodeInfo]:
    """Nodes of ``role`` (``ingest`` or ``processor``) whose last heartbeat is at most
    LIVE_INTERVALS old."""
    oldest = now_ms - LIVE_INTERVALS * HEARTBEAT_MS
    ids = await client.zrangebyscore(keys.NODES_SEEN_KEY, oldest, "+inf")
    if not ids:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for node_id in ids:
            pipe.get(keys.node_key(node_id.decode()))
        raw = await pipe.execute()
    nodes = []
    for value in raw:
        if value is None:
            continue  # left, or its key expired between the two reads
        try:
            info = _decoder.decode(value)
        except msgspec.DecodeError:
            continue  # a node of another build; it is not ours to assign to
        if info.role == role:
            nodes.append(info)
    return nodes


async def leave(client: AnyAsyncRedis, node_id: str) -> None:
    results = await batch(client, [
        ("delete", (keys.node_key(node_id),), {}),
        ("zrem", (keys.NODES_SEEN_KEY, node_id), {}),
        ("publish", (MEMBERSHIP_CHANNEL, node_id), {}),
    ])  # fmt: skip
    for result in results:
        if isinstance(result, Exception):
            raise result
