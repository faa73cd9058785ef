"""Fenced leases: one holder per (role, symbol), each tenure with its own fencing token.

Acquire is ``SET NX PX`` + ``INCR`` in one script; renew and release compare holder and token
first. A node waiting for a lease may say it is ready to take over (``successor``): the
holder, asked to hand off, keeps publishing until then, so the readers' gap is short.

Every owner write carries the tenure (``fence_keys``/``fence_args``) into a Lua script
that refuses it when the tenure is no longer current (``StaleLeaseError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from core import keys, lua
from core.redis_client import AnyAsyncRedis, Command

__all__ = [
    "RELEASED_CHANNEL",
    "SUCCESSOR_CHANNEL",
    "Held",
    "Lease",
    "LeaseScripts",
    "StaleLeaseError",
    "acquire",
    "is_stale",
    "release",
    "renew",
    "renew_command",
    "withdraw",
]

RELEASED_CHANNEL: Final = "nt:released"
"""Where a released lease's key is published."""
SUCCESSOR_CHANNEL: Final = "nt:successor"
"""Where a lease's key is published when a node becomes ready to take it over."""


class StaleLeaseError(Exception):
    """A fenced write was refused: the writer's lease is gone or belongs to a newer tenure."""


@dataclass(frozen=True, slots=True)
class Lease:
    role: str
    symbol: str
    node_id: str
    token: int

    @property
    def fence_keys(self) -> list[str]:
        """KEYS[1..3] of every lease and fenced-write script: lease, token counter, fence."""
        return _lease_keys(self.role, self.symbol)

    @property
    def fence_args(self) -> list[str | int]:
        return [self.node_id, self.token]


@dataclass(frozen=True, slots=True)
class Held:
    """Another node holds the lease."""

    ttl_ms: int
    """How long its lease has left: it lapses then unless renewed."""


class LeaseScripts:
    """The lease scripts registered on one client (loaded once, EVALSHA afterwards)."""

    def __init__(self, client: AnyAsyncRedis) -> None:
        self.client = client
        self.acquire = lua.register(client, "lease_acquire")
        self.renew = lua.register(client, "lease_renew")
        self.release = lua.register(client, "lease_release")
        self.withdraw = lua.register(client, "lease_withdraw")

    @property
    def all(self) -> tuple[AsyncScript, ...]:
        return (self.acquire, self.renew, self.release, self.withdraw)


def _lease_keys(role: str, symbol: str) -> list[str]:
    return [
        keys.lease_key(role, symbol),
        keys.token_key(role, symbol),
        keys.fence_key(role, symbol),
    ]


def is_stale(error: ResponseError) -> bool:
    return str(error).startswith("STALE")


async def acquire(
    scripts: LeaseScripts,
    role: str,
    symbol: str,
    node_id: str,
    ttl_ms: int,
    *,
    successor: bool = False,
) -> Lease | Held:
    """The caller's tenure, or how long another node's lease has left. ``successor``: the
    caller is ready to take over (announced on ``SUCCESSOR_CHANNEL`` when it becomes so)."""
    token, left_ms = await scripts.acquire(
        keys=[*_lease_keys(role, symbol), keys.successor_key(role, symbol)],
        args=[node_id, ttl_ms, "1" if successor else "0", SUCCESSOR_CHANNEL],
    )
    if not token:
        return Held(ttl_ms=int(left_ms))
    return Lease(role=role, symbol=symbol, node_id=node_id, token=int(token))


def renew_command(scripts: LeaseScripts, lease: Lease, ttl_ms: int) -> Command:
    """``renew`` as a batch command (``core.lua.run_batch``); its result is 1 when renewed."""
    return lua.evalsha(scripts.renew, lease.fence_keys, [*lease.fence_args, ttl_ms])


async def renew(scripts: LeaseScripts, tenure: Lease, ttl_ms: int) -> bool:
    renewed = await scripts.renew(keys=tenure.fence_keys, args=[*tenure.fence_args, ttl_ms])
    return renewed == 1


async def release(scripts: LeaseScripts, tenure: Lease) -> bool:
    """Give the lease up (announced on ``RELEASED_CHANNEL`` with the lease key)."""
    released = await scripts.release(
        keys=tenure.fence_keys, args=[*tenure.fence_args, RELEASED_CHANNEL]
    )
    return released == 1


async def withdraw(scripts: LeaseScripts, role: str, symbol: str, node_id: str) -> bool:
    """Take back the caller's word that it is ready to take the lease over (it stopped
    waiting); whether it was still the caller's."""
    withdrawn = await scripts.withdraw(keys=[keys.successor_key(role, symbol)], args=[node_id])
    return withdrawn == 1
