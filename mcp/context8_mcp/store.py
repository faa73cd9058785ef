"""Redis reads, and nothing else: the server never writes.

``ReportStore`` owns one ``redis.asyncio`` client (one connection pool) for the server's life.
Every read has a deadline (``timeout_s``, default 0.5 s) that covers connecting, a retry and
the reply, so a dead or hung Redis is answered with ``BackendUnavailable`` fast instead of
hanging the caller. Key names: ``core.keys``; value models: ``projections``.

Every answer about one symbol is one round trip: the report (its freshness and whether the
symbol is live) pipelined with the projection asked for. A second round trip only explains a
missing report (expired, or never indexed).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, NoReturn, TypeVar, cast

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from context8_mcp.errors import (
    BackendUnavailable,
    NotPublished,
    ReportExpired,
    ReportInvalid,
    ServerError,
    SymbolNotIndexed,
)
from context8_mcp.models import (
    CandleInterval,
    CandlesAnswer,
    DepthAnswer,
    Freshness,
    HistoryAnswer,
    SymbolList,
    SymbolStatus,
)
from core import keys
from core.redis_client import AnyAsyncRedis, connect
from projections.freshness import freshen
from projections.report import Report
from projections.series import Candle, Heavy, HistoryPoint

__all__ = ["DEFAULT_TIMEOUT_S", "ReportStore", "wall_ms"]

DEFAULT_TIMEOUT_S: Final = 0.5
"""Deadline of one read (connect + retry + reply)."""

_MAX_CONNECTIONS: Final = 64
_MS_PER_MINUTE: Final = 60_000
_RETRY: Final = object()
"""A shared read's leader was cancelled: its followers read for themselves."""
_T = TypeVar("_T")
_M = TypeVar("_M")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ReportStore:
    def __init__(
        self,
        client: AnyAsyncRedis,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._clock = clock
        self._report = msgspec.json.Decoder(Report)
        self._heavy = msgspec.json.Decoder(Heavy)
        self._point = msgspec.json.Decoder(HistoryPoint)
        self._candle = msgspec.json.Decoder(Candle)
        self._in_flight: dict[str, asyncio.Future[object]] = {}

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, redis_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> AsyncIterator[ReportStore]:
        """A store over a new client for ``redis_url`` (standalone or cluster: the server is
        asked), closed on exit. A Redis that is down at start is taken for a standalone one
        and reported per request, not by failing the server."""
        options: dict[str, Any] = {
            "socket_connect_timeout": timeout_s / 2,
            "socket_timeout": timeout_s,
            # One immediate retry heals a pooled connection that Redis closed (a restart);
            # the default policy (10 retries, backoff to 1 s) would blow the deadline.
            "retry": Retry(NoBackoff(), 1),
            "max_connections": _MAX_CONNECTIONS,
        }
        try:
            client = await connect(redis_url, **options)
        except (RedisError, OSError):
            client = Redis.from_url(redis_url, **options)
        try:
            yield cls(client, timeout_s=timeout_s)
        finally:
            await client.aclose()

    async def report(self, symbol: str) -> Report:
        """The report of ``symbol`` (normalized, e.g. ``BTCUSDT.BINANCE``) as of now: one
        ``GET`` when it exists (the hot path: no pipeline), shared by the requests for the
        same symbol that arrive while it is in flight."""
        raw = await self._coalesced(keys.report_key(symbol))
        return await self._live_report(symbol, raw)

    async def depth(self, symbol: str, levels: int) -> DepthAnswer:
        """Up to ``levels`` per side of the full-depth section (``report:{SYM}:heavy``)."""
        report, raw = await self._with_report(symbol, lambda p: p.get(keys.heavy_key(symbol)))
        if raw is None:
            raise NotPublished(
                f"{symbol} has a report but no full-depth section (report:{{{symbol}}}:heavy): "
                f"its processor does not publish one; get_report has the top "
                f"{report.depth.levels} levels",
                symbol=symbol,
            )
        heavy = self._decode(self._heavy, raw, symbol, "full-depth section")
        bids, asks = heavy.bids[:levels], heavy.asks[:levels]
        complete = len(bids) == len(asks) == levels
        note = ""
        if not complete:
            if levels > heavy.levels:
                note = f"asked for {levels} levels per side; at most {heavy.levels} are published"
            else:
                note = f"asked for {levels} levels per side"
            note += f"; returned {len(bids)} bids and {len(asks)} asks (all there are)"
        return DepthAnswer(
            symbol=symbol,
            freshness=Freshness.of(report),
            levels_requested=levels,
            levels_published=heavy.levels,
            bids=bids,
            asks=asks,
            complete=complete,
            note=note,
        )

    async def history(self, symbol: str, minutes: int, max_points: int) -> HistoryAnswer:
        """The last ``minutes`` of the history series (ending at its newest point), every
        n-th point when there are more than ``max_points``."""
        # At most one point per event-time second: the window [newest - minutes, newest]
        # holds at most minutes * 60 + 1 of them, so a bounded index range covers it.
        count = minutes * 60 + 1
        report, raws = await self._with_report(
            symbol, lambda p: p.zrange(keys.history_key(symbol), -count, -1)
        )
        points = self._decode_all(self._point, raws, symbol, "history point")
        note = ""
        if points:
            start = points[-1].ts_ms - minutes * _MS_PER_MINUTE
            # Covered when a point precedes the window, or the range was full (all in it).
            covered = len(raws) == count or points[0].ts_ms < start
            points = [p for p in points if p.ts_ms >= start]
            span_ms = points[-1].ts_ms - points[0].ts_ms
            # A point per second: a series one second short of the window still fills it.
            if not covered and span_ms < minutes * _MS_PER_MINUTE - 1000:
                note = (
                    f"asked for {minutes} min; the series begins {span_ms / 1000:,.0f} s "
                    "before its end"
                )
        else:
            note = f"no history is published for {symbol} yet (one point per second of events)"
        in_window = len(points)
        every = max(1, math.ceil(in_window / max_points))
        if every > 1:
            points = points[::-1][::every][::-1]  # keep the newest point
        return HistoryAnswer(
            symbol=symbol,
            freshness=Freshness.of(report),
            minutes=minutes,
            points_in_window=in_window,
            every=every,
            points=points,
            note=note,
        )

    async def candles(self, symbol: str, interval: CandleInterval, limit: int) -> CandlesAnswer:
        """The newest ``limit`` bars of ``interval``, oldest first."""
        report, raws = await self._with_report(
            symbol, lambda p: p.zrange(keys.candles_key(symbol, interval), -limit, -1)
        )
        candles = self._decode_all(self._candle, raws, symbol, f"{interval} candle")
        note = ""
        if not candles:
            note = f"no {interval} candles are published for {symbol} yet"
        elif len(candles) < limit:
            note = f"asked for {limit} bars; {len(candles)} are published"
        return CandlesAnswer(
            symbol=symbol,
            freshness=Freshness.of(report),
            interval=interval,
            candles=candles,
            note=note,
        )

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

    async def indexed(self) -> list[str]:
        """The indexed symbols, alphabetically (one ``ZRANGE``)."""
        members = await self._read(self._client.zrange(keys.INDEX_KEY, 0, -1))
        return sorted(m.decode() for m in members)

    async def ping(self) -> float:
        """Round-trip time to Redis in ms; raises ``BackendUnavailable``."""
        start = time.perf_counter()
        await self._read(self._client.ping())
        return (time.perf_counter() - start) * 1000

    async def _with_report(
        self, symbol: str, queue: Callable[[Pipeline], object]
    ) -> tuple[Report, Any]:
        """The live report of ``symbol`` and the result of the read ``queue`` adds to the
        same pipeline (one round trip)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.get(keys.report_key(symbol))
        queue(pipe)
        raw, result = await self._read(pipe.execute())
        return await self._live_report(symbol, raw), result

    async def _live_report(self, symbol: str, raw: bytes | None) -> Report:
        if raw is None:
            await self._explain_missing(symbol)
        return freshen(self._decode(self._report, raw, symbol, "report"), self._clock())

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

    @staticmethod
    def _decode(decoder: msgspec.json.Decoder[_M], raw: bytes, symbol: str, what: str) -> _M:
        try:
            return decoder.decode(raw)
        except msgspec.DecodeError as e:
            raise ReportInvalid(
                f"the stored {what} of {symbol} does not match this server's schema of it: {e}",
                symbol=symbol,
            ) from e

    def _decode_all(
        self, decoder: msgspec.json.Decoder[_M], raws: list[bytes], symbol: str, what: str
    ) -> list[_M]:
        return [self._decode(decoder, raw, symbol, what) for raw in raws]

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
            report = freshen(self._decode(self._report, raw, symbol, "report"), now_ms)
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

    async def _coalesced(self, key: str) -> bytes | None:
        """``GET key``, or the answer of the ``GET key`` already in flight (single flight):
        under many clients asking for one symbol, Redis and this process do one read per
        round trip instead of one per request. Nothing older than the request is returned."""
        while (shared := self._in_flight.get(key)) is not None:
            raw = await asyncio.shield(shared)
            if raw is not _RETRY:
                return cast("bytes | None", raw)
        leader = asyncio.get_running_loop().create_future()
        # Retrieved, so a failure nobody else waited for is not logged as unretrieved.
        leader.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._in_flight[key] = leader
        try:
            raw = await self._read(self._client.get(key))
        except BackendUnavailable as e:
            leader.set_exception(e)
            raise
        except BaseException:
            leader.set_result(_RETRY)  # cancelled (client gone): the others read themselves
            raise
        else:
            leader.set_result(raw)
            return raw
        finally:
            del self._in_flight[key]

    async def _read(self, pending: Awaitable[_T]) -> _T:
        try:
            # asyncio's own timeout: the server runs on asyncio, and anyio's cancel scope
            # costs about a fifth of a Redis round trip.
            async with asyncio.timeout(self._timeout_s):
                return await pending
        except TimeoutError as e:
            raise BackendUnavailable(
                f"Redis did not answer within {self._timeout_s * 1000:.0f} ms"
            ) from e
        except (RedisError, OSError) as e:
            raise BackendUnavailable(f"Redis is unavailable: {type(e).__name__}: {e}") from e
