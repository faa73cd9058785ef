"""What the tenures of one processor kind on a node share, and how a tenure is asked to end."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coordination.lease import LeaseScripts
from core.redis_client import AnyAsyncRedis
from core.settings import Settings
from processors.runtime.kind import Kind, StartAt
from projections.writer import ProjectionScripts

if TYPE_CHECKING:
    from processors.runtime.follower import Follower

__all__ = ["HandOff", "KindContext", "wait_any"]


@dataclass(slots=True)
class KindContext:
    """One kind on one node: its settings, client and scripts, and what its tenures share."""

    settings: Settings
    client: AnyAsyncRedis
    leases: LeaseScripts
    projections: ProjectionScripts
    kind: Kind[Any]
    start: StartAt
    """Where this kind starts a symbol it has no checkpoint of."""
    released: dict[str, asyncio.Event] = field(default_factory=dict)
    """Lease key -> set when that lease is announced released (the node's listener sets it;
    shared by the node's kinds)."""
    successors: dict[str, asyncio.Event] = field(default_factory=dict)
    """Lease key -> set when a node announces it is ready to take that lease over (the
    listener sets it, for tenures handing off)."""
    held_since: dict[str, float] = field(default_factory=dict)
    """Symbol -> monotonic time its current tenure began."""
    follower: Follower | None = None
    """Reads, folds and publishes every symbol this node holds of this kind."""


@dataclass(slots=True)
class HandOff:
    """A request to end a tenure: set by the node, read by the tenure."""

    asked: asyncio.Event = field(default_factory=asyncio.Event)
    successor_wait_s: float = 0.0
    """How long the tenure goes on publishing while no successor has said it is ready."""

    def ask(self, successor_wait_s: float) -> None:
        self.successor_wait_s = successor_wait_s
        self.asked.set()


async def wait_any(timeout_s: float | None, *events: asyncio.Event) -> None:
    """Until one of ``events`` is set, or ``timeout_s`` passed (None: no time limit)."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        timeout = None if timeout_s is None else max(0.0, timeout_s)
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
