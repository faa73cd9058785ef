"""The ingest node: a NautilusTrader ``TradingNode`` with the gap-aware Binance Spot data client
and the ingest actor. ``run(settings)`` is the only entry point (``context8 ingest``).

- Venue: Binance Spot, or whatever speaks its protocol at ``settings.binance_http_url`` /
  ``binance_ws_url`` (the simulator). Market data needs no account: without
  ``BINANCE_API_KEY``/``BINANCE_API_SECRET`` any strings do. ``testnet=True`` with the URLs
  spelled out (live Binance's when unset) skips NT's signed trade-fee call, which fails
  without a real key and then loads no instrument at all; fees mean nothing to ingest.
- NT logs at WARNING (NT writes warnings to stdout, errors to stderr); ours are JSON lines
  on stderr (``core.logs``).
- No NT cache or message-bus database, no state saving; instruments loaded once (no refresh).
- SIGINT/SIGTERM: NT's own handler stops the node; the actor's ``on_stop`` appends
  ``Status("stopped")``, then the final flush and the lease release are awaited before the
  node is disposed.
"""

from __future__ import annotations

import asyncio
import logging
import os

import redis
from nautilus_trader.adapters.binance.common.enums import BinanceAccountType
from nautilus_trader.adapters.binance.common.urls import get_http_base_url, get_ws_base_url
from nautilus_trader.adapters.binance.config import BinanceDataClientConfig
from nautilus_trader.config import (
    InstrumentProviderConfig,
    LiveDataEngineConfig,
    LoggingConfig,
    TradingNodeConfig,
)
from nautilus_trader.live.node import TradingNode
from nautilus_trader.model.identifiers import InstrumentId, TraderId

from core import metrics
from core.logs import set_log_context
from core.metrics import serve_metrics
from core.redis_client import connect_sync, display_url
from core.settings import CannotStart, ConfigError, Settings
from ingest.actor import IngestActor, IngestActorConfig
from ingest.binance import GapAwareBinanceDataClientFactory

__all__ = ["run"]

VENUE = "BINANCE"

_TIMEOUT_CONNECTION_S = 15.0
"""NT waits this long for the venue (instruments) before it gives up on starting."""

_REDIS_PROBE_TIMEOUT_S = 3.0

log = logging.getLogger("context8.ingest.node")


def run(settings: Settings) -> None:
    """Run an ingest node for ``settings.symbols`` until SIGINT/SIGTERM, then stop cleanly."""
    set_log_context(node_id=settings.node_id, role="ingest")
    if not settings.redis_url:
        raise ConfigError("REDIS_URL: ingest needs the Redis to append to; set REDIS_URL")
    foreign = [s for s in settings.symbols if not s.endswith(f".{VENUE}")]
    if foreign:
        raise ConfigError(f"SYMBOLS: ingest speaks to Binance only, not {', '.join(foreign)}")
    _check_redis(settings.redis_url)
    metrics_url = serve_metrics(settings.metrics_port, settings.metrics_host)
    metrics.count_from_zero("ingest")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    node, actor = _build(settings, settings.redis_url, loop, metrics_url)
    log.info(
        "node_starting",
        extra={
            "event": "node_starting",
            "symbols": list(settings.symbols),
            "venue_http": settings.binance_http_url or "live",
            "venue_ws": settings.binance_ws_url or "live",
        },
    )
    failed: list[str] = []

    def check_started() -> None:
        # NT gives up on a client that cannot connect (venue unreachable, unknown symbol)
        # and then idles forever without starting the actor: fail instead, so a supervisor
        # restarts the node.
        if not actor.is_running and not failed:
            failed.append(f"the venue ({venue}) did not answer in {_TIMEOUT_CONNECTION_S:.0f} s")
            log.error("start_failed", extra={"event": "start_failed", "reason": failed[0]})
            node.stop()

    venue = settings.binance_http_url or "live Binance"
    watchdog = loop.call_later(_TIMEOUT_CONNECTION_S + 2, check_started)
    try:
        node.build()
        node.run()
    finally:
        watchdog.cancel()
        timeout = actor.config.close_timeout_s + 2
        try:
            loop.run_until_complete(asyncio.wait_for(actor.closed(), timeout))
        except Exception as e:
            log.error("close_failed", extra={"event": "close_failed", "error": repr(e)})
        stats = actor.writer.stats if actor.writer is not None else None
        log.info(
            "node_stopped",
            extra={"event": "node_stopped", "writer": str(stats), "actor": str(actor.stats)},
        )
        node.dispose()
    if failed:
        raise CannotStart(
            f"ingest did not start: {failed[0]} (check NT_BINANCE_HTTP_URL/NT_BINANCE_WS_URL, "
            "the network and SYMBOLS; NT's log above says which call failed)"
        )


def _check_redis(url: str) -> None:
    # Before NT starts: with Redis down the actor never runs, and the start watchdog would
    # blame the venue.
    timeout = _REDIS_PROBE_TIMEOUT_S
    try:
        with connect_sync(url, socket_timeout=timeout, socket_connect_timeout=timeout) as client:
            client.ping()
    except redis.RedisError as e:
        where = display_url(url)
        raise CannotStart(f"Redis at {where} does not answer ({e}); check REDIS_URL") from None


def _build(
    settings: Settings, redis_url: str, loop: asyncio.AbstractEventLoop, metrics_url: str
) -> tuple[TradingNode, IngestActor]:
    spot = BinanceAccountType.SPOT
    http_url = (settings.binance_http_url or get_http_base_url(spot, False, False)).rstrip("/")
    ws_url = (settings.binance_ws_url or get_ws_base_url(spot, False, False)).rstrip("/")
    data_client = BinanceDataClientConfig(
        account_type=spot,
        api_key=os.environ.get("BINANCE_API_KEY") or "context8-market-data",
        api_secret=os.environ.get("BINANCE_API_SECRET") or "context8-market-data",
        base_url_http=http_url,
        base_url_ws=ws_url,
        testnet=True,  # skips the signed fee call; the URLs above are what is used
        instrument_provider=InstrumentProviderConfig(
            load_ids=frozenset(InstrumentId.from_str(s) for s in settings.symbols),
        ),
        update_instruments_interval_mins=None,
    )
    config = TradingNodeConfig(
        trader_id=TraderId("CONTEXT8-INGEST"),
        logging=LoggingConfig(log_level="WARNING", log_colors=False),
        data_engine=LiveDataEngineConfig(),
        data_clients={VENUE: data_client},
        timeout_connection=_TIMEOUT_CONNECTION_S,
        timeout_disconnection=5.0,
        timeout_post_stop=0.5,
        timeout_shutdown=2.0,
    )
    node = TradingNode(config=config, loop=loop)
    actor = IngestActor(
        IngestActorConfig(
            symbols=settings.symbols,
            redis_url=redis_url,
            node_id=settings.node_id,
            lease_ttl_ms=settings.lease_ttl_ms,
            min_hold_ms=settings.min_hold_ms,
            hrw_sticky_pct=settings.hrw_sticky_pct,
            stream_retention_sec=settings.stream_retention_sec,
            snapshot_every_sec=settings.snapshot_every_sec,
            flush_ms=settings.ingest_flush_ms,
            metrics_url=metrics_url,
        )
    )
    node.trader.add_actor(actor)
    node.add_data_client_factory(VENUE, GapAwareBinanceDataClientFactory)
    return node, actor
