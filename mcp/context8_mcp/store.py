"""Redis reads, and nothing else: the server never writes.

``ReportStore`` owns one ``redis.asyncio`` client (one connection pool) for the server's life.
Every read has a deadline (``timeout_s``, default 0.5 s) that covers connecting, a retry and
the reply, so a dead or hung Redis is answered with ``BackendUnavailable`` fast instead of
hanging the caller. Key names: ``context8.keys``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final, NoReturn, TypeVar

import anyio
import msgspec
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from context8 import keys
from context8_mcp.errors import (
    BackendUnavailable,
    ReportExpired,
    ReportInvalid,
    ServerError,
    SymbolNotIndexed,
)
from context8_mcp.freshness import freshen
from context8_mcp.models import SymbolList, SymbolStatus
from projections.report import Report

__all__ = ["DEFAULT_TIMEOUT_S", "ReportStore", "wall_ms"]

DEFAULT_TIMEOUT_S: Final = 0.5
"""Deadline of one read (connect + retry + reply)."""

_MAX_CONNECTIONS: Final = 64
_T = TypeVar("_T")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ReportStore:
    def __init__(
        self,
        client: Redis,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._clock = clock
        self._decoder = msgspec.json.Decoder(Report)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, redis_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> AsyncIterator[ReportStore]:
        """A store over a new client for ``redis_url``, closed on exit. Connects lazily: a
        Redis that is down at start is reported per request, not by failing the server."""
        client = Redis.from_url(
            redis_url,
            socket_connect_timeout=timeout_s / 2,
            socket_timeout=timeout_s,
            # One immediate retry heals a pooled connection that Redis closed (a restart);
            # the default policy (10 retries, backoff to 1 s) would blow the deadline.
            retry=Retry(NoBackoff(), 1),
            max_connections=_MAX_CONNECTIONS,
        )
        try:
            yield cls(client, timeout_s=timeout_s)
        finally:
            await client.aclose()

    async def report(self, symbol: str) -> Report:
        """The report of ``symbol`` (normalized, e.g. ``BTCUSDT.BINANCE``) as of now: one round
        trip when it exists; a second to say why when it does not."""
        raw = await self._read(self._client.get(keys.report_key(symbol)))
        if raw is None:
            await self._explain_missing(symbol)
        report = self._decode(symbol, raw)
        return freshen(report, self._clock())

    async def symbols(self) -> SymbolList:
        """Every indexed symbol with its status: the index, then all reports in one pipelined
        round trip."""
        entries = await self._read(self._client.zrange(keys.INDEX_KEY, 0, -1, withscores=True))
        indexed = sorted((member.decode(), int(score)) for member, score in entries)
        if not indexed:
            return SymbolList(symbols=[])
        pipe = self._client.pipeline(transaction=False)
        for symbol, _ in indexed:
            pipe.get(keys.report_key(symbol))
        raws = await self._read(pipe.execute())
        now = self._clock()
        return SymbolList(
            symbols=[
                self._status(symbol, updated, raw, now)
                for (symbol, updated), raw in zip(indexed, raws, strict=True)
            ]
        )

    async def ping(self) -> float:
        """Round-trip time to Redis in ms; raises ``BackendUnavailable``."""
        start = time.perf_counter()
        await self._read(self._client.ping())
        return (time.perf_counter() - start) * 1000

    async def _explain_missing(self, symbol: str) -> NoReturn:
        pipe = self._client.pipeline(transaction=False)
        pipe.zscore(keys.INDEX_KEY, symbol)
        pipe.zrange(keys.INDEX_KEY, 0, -1)
        score, members = await self._read(pipe.execute())
        if score is not None:
            age_s = max(0, self._clock() - int(score)) / 1000
            raise ReportExpired(
                f"{symbol} is indexed but its report has expired: last published {age_s:,.0f} s "
                "ago, so no processor is publishing it",
                symbol=symbol,
            )
        raise SymbolNotIndexed(symbol, sorted(m.decode() for m in members))

    def _decode(self, symbol: str, raw: bytes) -> Report:
        try:
            return self._decoder.decode(raw)
        except msgspec.DecodeError as e:
            raise ReportInvalid(
                f"the stored report of {symbol} does not match this server's report schema: {e}",
                symbol=symbol,
            ) from e

    def _status(self, symbol: str, updated_ms: int, raw: bytes | None, now_ms: int) -> SymbolStatus:
        if raw is None:
            return SymbolStatus(
                symbol=symbol,
                status="down",
                data_age_ms=None,
                health_score=None,
                last_update_ms=updated_ms,
                reason="report expired: no processor is publishing it",
            )
        try:
            report = freshen(self._decode(symbol, raw), now_ms)
        except ServerError as e:
            return SymbolStatus(
                symbol=symbol,
                status="down",
                data_age_ms=None,
                health_score=None,
                last_update_ms=updated_ms,
                reason=str(e),
            )
        return SymbolStatus(
            symbol=symbol,
            status=report.ingestion.status,
            data_age_ms=report.data_age_ms,
            health_score=report.health.score,
            last_update_ms=updated_ms,
            reason=report.ingestion.reason,
        )

    async def _read(self, pending: Awaitable[_T]) -> _T:
        try:
            with anyio.fail_after(self._timeout_s):
                return await pending
        except TimeoutError as e:
            raise BackendUnavailable(
                f"Redis did not answer within {self._timeout_s * 1000:.0f} ms"
            ) from e
        except (RedisError, OSError) as e:
            raise BackendUnavailable(f"Redis is unavailable: {type(e).__name__}: {e}") from e
