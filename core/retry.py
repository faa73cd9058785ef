"""Retrying what failed, one way: exponential backoff with jitter, bounded, stoppable.

Every loop that waits for something to come back (Redis at start-up, a venue snapshot, a
flush after an outage) uses ``Backoff``; redis-py's own ``Retry`` covers the single
immediate retry of a dropped connection inside one call.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["Backoff", "retry_until_stopped", "wait_or_stop"]

T = TypeVar("T")


@dataclass(slots=True)
class Backoff:
    """Delays ``start_s``, then x``factor`` each failure up to ``max_s``, each +-``jitter``
    (a fleet restarted together does not retry in lockstep); ``reset`` after a success."""

    start_s: float = 0.05
    max_s: float = 2.0
    factor: float = 2.0
    jitter: float = 0.1
    _next_s: float = field(default=0.0, init=False)

    def next(self) -> float:
        delay = self._next_s or self.start_s
        self._next_s = min(delay * self.factor, self.max_s)
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self._next_s = 0.0


async def wait_or_stop(stop: asyncio.Event | None, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop`` is set; whether it was set."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def retry_until_stopped(
    call: Callable[[], Awaitable[T]],
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    stop: asyncio.Event | None = None,
    backoff: Backoff | None = None,
    on_error: Callable[[BaseException, float], None] | None = None,
) -> T | None:
    """``await call()`` until it succeeds (its result) or ``stop`` is set (None); errors of
    ``retry_on`` are retried after the backoff's delay, told to ``on_error(error, delay)``."""
    backoff = backoff or Backoff()
    while stop is None or not stop.is_set():
        try:
            return await call()
        except retry_on as e:
            delay = backoff.next()
            if on_error is not None:
                on_error(e, delay)
            if await wait_or_stop(stop, delay):
                break
    return None
