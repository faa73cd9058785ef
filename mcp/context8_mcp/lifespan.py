"""The server's resources over its life: one ``ReportStore`` (one Redis pool), handed to the
tools through the typed lifespan context and lent to the plain HTTP routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import MCPServer

from context8_mcp.config import NO_REDIS_URL
from context8_mcp.errors import BackendUnavailable
from context8_mcp.store import DEFAULT_TIMEOUT_S, ReportStore

__all__ = ["AppContext", "Backend"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AppContext:
    """What every tool call sees as ``ctx.request_context.lifespan_context``."""

    reachable: ReportStore | None
    unconfigured: str = ""
    """Why there is no store (a setting missing): every answer says so."""

    @property
    def store(self) -> ReportStore:
        """The store; ``BackendUnavailable`` naming what is missing when there is none."""
        if self.reachable is None:
            raise BackendUnavailable(self.unconfigured)
        return self.reachable


class Backend:
    """Owns the lifespan of one server instance.

    The MCP lifespan is entered once for the HTTP app (by the SDK's session manager) and once
    per connection on stdio. The plain HTTP routes run in the same app but outside any MCP
    request, so they borrow the context of the running lifespan through ``current``.
    """

    def __init__(self, redis_url: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._redis_url = redis_url
        self._timeout_s = timeout_s
        self._current: AppContext | None = None

    @property
    def current(self) -> AppContext | None:
        return self._current

    @asynccontextmanager
    async def lifespan(self, server: MCPServer[Any]) -> AsyncIterator[AppContext]:
        if self._redis_url is None:
            # stdio: a client shows "connection closed" for a server that exits, and the
            # reason only on a stderr nobody reads; answer every call with it instead
            log.error(NO_REDIS_URL)
            self._current = AppContext(reachable=None, unconfigured=NO_REDIS_URL)
            try:
                yield self._current
            finally:
                self._current = None
            return
        async with ReportStore.connect(self._redis_url, timeout_s=self._timeout_s) as store:
            try:
                latency = await store.ping()
                log.info("Redis answers (%.1f ms)", latency)
            except BackendUnavailable as e:
                log.warning(
                    "%s - serving anyway: answers say backend_unavailable until Redis is back", e
                )
            app = AppContext(reachable=store)
            self._current = app
            try:
                yield app
            finally:
                self._current = None
