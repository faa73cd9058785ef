"""The MCP server's pure parts: read-time freshness, symbol parsing, summaries, schemas,
settings, the rate limiter, the reader's ACL rules and the OpenAPI description."""

from __future__ import annotations

import jsonschema
import msgspec
import pytest

from context8_mcp.config import is_loopback, load_config
from context8_mcp.errors import InvalidInput
from context8_mcp.guard import TokenBuckets
from context8_mcp.http import openapi_document
from context8_mcp.models import (
    CandlesAnswer,
    DepthAnswer,
    Freshness,
    HistoryAnswer,
    SymbolList,
    SymbolStatus,
    output_schema,
    parse_symbol,
)
from context8_mcp.summary import (
    candles_summary,
    depth_summary,
    history_summary,
    number_text,
    report_summary,
    symbols_summary,
)
from core.acl import setuser_command, url_with_user
from core.settings import ConfigError
from projections.freshness import age_status, freshen
from projections.report import (
    Anomaly,
    BookLevel,
    Depth,
    Flow,
    Health,
    HealthComponents,
    Ingestion,
    IngestionStatus,
    Liquidity,
    Report,
    Stream,
    Writer,
)
from projections.series import Candle, HistoryPoint

NOW_MS = 1_700_000_000_000


def make_report(
    symbol: str = "BTCUSDT.BINANCE",
    *,
    now_ms: int = NOW_MS,
    age_ms: int = 120,
    status: IngestionStatus = "ok",
    reason: str = "",
    health: float = 87.0,
    anomalies: tuple[Anomaly, ...] = (),
) -> Report:
    """A report as a processor publishes it at ``now_ms``, its last event ``age_ms`` old."""
    last_event = now_ms - age_ms
    bid, ask = BookLevel(price=95012.14, qty=1.5), BookLevel(price=95012.56, qty=0.75)
    components = HealthComponents(
        spread=90, depth=80, balance=85, flow=88, anomalies=100, freshness=95
    )
    return Report(
        writer=Writer(nodeId="node-a", writerToken=7),
        updatedAt=now_ms,
        symbol=symbol,
        venue=symbol.rpartition(".")[2],
        generated_at="2023-11-14T22:13:20.000+00:00",
        data_age_ms=age_ms,
        ingestion=Ingestion(
            status=status, last_update="2023-11-14T22:13:19.880+00:00", reason=reason
        ),
        last_price=95012.35,
        change_24h_pct=1.25,
        high_24h=96000.0,
        low_24h=93000.0,
        volume_24h=12345.678,
        best_bid=bid,
        best_ask=ask,
        spread_bps=0.0442,
        mid_price=95012.35,
        micro_price=95012.42,
        depth=Depth(
            levels=20,
            bids=[bid],
            asks=[ask],
            bid_volume=1.5,
            ask_volume=0.75,
            imbalance=0.3333,
        ),
        flow=Flow(
            window_sec=10,
            events_per_sec=42.5,
            trades_per_sec=3.1,
            net_flow_window_sec=30,
            buy_volume=2.0,
            sell_volume=1.5,
            net_flow=0.5,
        ),
        liquidity=Liquidity(),
        anomalies=list(anomalies),
        health=Health(score=health, components=components),
        stream=Stream(last_id="1700000000000-0", events_folded=1234, last_event_ts_ms=last_event),
    )


@pytest.mark.parametrize(
    ("age_ms", "status"),
    [(0, "ok"), (1000, "ok"), (1001, "degraded"), (2000, "degraded"), (2001, "down")],
)
def test_age_status_boundaries(age_ms: int, status: str) -> None:
    assert age_status(age_ms) == status


def test_freshen_recomputes_age_from_the_last_event() -> None:
    report = make_report(age_ms=120)  # published with data 120 ms old
    read = freshen(report, NOW_MS + 5000)  # read 5 s after the publish
    assert read.data_age_ms == 5120
    assert read.ingestion.status == "down"
    assert "5,120 ms old" in read.ingestion.reason
    assert read.updatedAt == report.updatedAt  # publish time is not the read time


def test_freshen_lowers_but_never_raises() -> None:
    degraded = freshen(make_report(age_ms=100), NOW_MS + 1400)
    assert degraded.ingestion.status == "degraded"
    # A stored status worse than the age allows is kept, with the writer's reason.
    stored_down = make_report(status="down", reason="the book is empty")
    kept = freshen(stored_down, NOW_MS)
    assert kept.ingestion == stored_down.ingestion
    # Lowered further: the age's reason first, then the writer's.
    stored_degraded = make_report(status="degraded", reason="one side of the book is empty")
    lowered = freshen(stored_degraded, NOW_MS + 3000)
    assert lowered.ingestion.status == "down"
    assert lowered.ingestion.reason.endswith("; one side of the book is empty")


def test_freshen_clamps_a_venue_clock_ahead_of_ours() -> None:
    read = freshen(make_report(age_ms=0), NOW_MS - 250)
    assert read.data_age_ms == 0
    assert read.ingestion.status == "ok"


@pytest.mark.parametrize(
    ("text", "symbol"),
    [
        ("BTCUSDT", "BTCUSDT.BINANCE"),
        ("btcusdt", "BTCUSDT.BINANCE"),
        ("eth.coinbase", "ETH.COINBASE"),
    ],
)
def test_parse_symbol_normalizes(text: str, symbol: str) -> None:
    assert parse_symbol(text) == symbol


@pytest.mark.parametrize("text", ["", "B", "BTC-USDT", "BTCUSDT,ETHUSDT", "BTC.USDT.X", "A" * 31])
def test_parse_symbol_rejects(text: str) -> None:
    with pytest.raises(InvalidInput, match="not a symbol like BTCUSDT"):
        parse_symbol(text)


def test_report_summary_is_quotable() -> None:
    text = report_summary(make_report())
    assert text == (
        "BTCUSDT.BINANCE mid 95,012.35, spread 0.0442 bps, imbalance +0.33, health 87/100, "
        "data 120 ms old, status ok"
    )
    stale = freshen(
        make_report(anomalies=(Anomaly(type="spoofing", severity="high", note=""),)), NOW_MS + 5000
    )
    text = report_summary(stale)
    assert "status down (data 5,120 ms old at read time (over 2,000 ms))" in text
    assert text.endswith("; anomalies: spoofing high")


def test_number_text_never_uses_exponents() -> None:
    assert number_text(0.0000123) == "0.0000123"
    assert number_text(-0.12, signed=True) == "-0.12"
    assert number_text(None) == "n/a"


def test_symbols_summary() -> None:
    answer = SymbolList(
        symbols=[
            SymbolStatus(
                symbol="BTCUSDT.BINANCE",
                status="ok",
                data_age_ms=120,
                health_score=87.0,
                last_update_ms=NOW_MS,
            ),
            SymbolStatus(
                symbol="ETHUSDT.BINANCE",
                status="down",
                data_age_ms=None,
                health_score=None,
                last_update_ms=NOW_MS,
                reason="report expired",
            ),
        ]
    )
    assert symbols_summary(answer) == (
        "2 symbols: BTCUSDT.BINANCE ok (120 ms old, health 87); "
        "ETHUSDT.BINANCE down (unknown age, health n/a)"
    )


def test_output_schemas_have_an_object_root_and_accept_the_payloads() -> None:
    for tp, payload in [
        (Report, make_report()),
        (SymbolList, SymbolList(symbols=[])),
    ]:
        schema = output_schema(tp)
        assert schema["type"] == "object"
        assert "$ref" not in schema
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(msgspec.to_builtins(payload), schema)


def _freshness(status: IngestionStatus = "ok", reason: str = "") -> Freshness:
    return Freshness(status=status, data_age_ms=120, last_event_ts_ms=NOW_MS, reason=reason)


def test_new_answers_match_their_output_schemas() -> None:
    point = HistoryPoint(ts_ms=NOW_MS, mid_price=1.5, spread_bps=None, imbalance=-0.2,
                         net_flow=3.0, last_price=None, health=50.0)  # fmt: skip
    bar = Candle(open_ms=NOW_MS, close_ms=NOW_MS + 60_000, open=1.0, high=2.0, low=0.5,
                 close=1.5, volume=3.0, quote_volume=4.0, trades=2, vwap=1.33, buy_volume=2.0,
                 sell_volume=1.0, closed=False)  # fmt: skip
    level = BookLevel(price=1.0, qty=2.0)
    for tp, payload in [
        (
            DepthAnswer,
            DepthAnswer(
                symbol="X.B",
                freshness=_freshness(),
                levels_requested=5,
                levels_published=500,
                bids=[level],
                asks=[],
                complete=False,
                note="n",
            ),
        ),
        (
            HistoryAnswer,
            HistoryAnswer(
                symbol="X.B",
                freshness=_freshness(),
                minutes=1,
                points_in_window=1,
                every=1,
                points=[point],
            ),
        ),
        (
            CandlesAnswer,
            CandlesAnswer(symbol="X.B", freshness=_freshness(), interval="1m", candles=[bar]),
        ),
    ]:
        schema = output_schema(tp)
        assert schema["type"] == "object" and "$ref" not in schema
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(msgspec.to_builtins(payload), schema)
        with pytest.raises(jsonschema.ValidationError):  # the schema is not a blank cheque
            jsonschema.validate({**msgspec.to_builtins(payload), "freshness": {}}, schema)


def test_series_summaries_are_quotable() -> None:
    depth = DepthAnswer(
        symbol="BTCUSDT.BINANCE",
        freshness=_freshness("degraded", "one side of the book is empty"),
        levels_requested=3,
        levels_published=500,
        bids=[BookLevel(price=100.5, qty=1), BookLevel(price=100.25, qty=2)],
        asks=[],
        complete=False,
        note="asked for 3 levels per side; returned 2 bids and 0 asks (all there are)",
    )
    assert depth_summary(depth) == (
        "BTCUSDT.BINANCE depth 2 bids 100.5..100.25, 0 asks, data 120 ms old, status degraded "
        "(one side of the book is empty); asked for 3 levels per side; returned 2 bids and 0 "
        "asks (all there are)"
    )
    points = [
        HistoryPoint(ts_ms=NOW_MS + i * 1000, mid_price=100.0 + i, spread_bps=0.5,
                     imbalance=0.123, net_flow=-1.5, last_price=100.0, health=80.0 + i)
        for i in range(3)
    ]  # fmt: skip
    history = HistoryAnswer(symbol="BTCUSDT.BINANCE", freshness=_freshness(), minutes=1,
                            points_in_window=6, every=2, points=points)  # fmt: skip
    assert history_summary(history) == (
        "BTCUSDT.BINANCE history 3 points of 6 (1 in 2) over 2 s: mid 100.0 -> 102.0, "
        "spread 0.5 bps, imbalance +0.12, net flow -1.5, health 80 -> 82, data 120 ms old, "
        "status ok"
    )
    note = "no 5m candles are published for BTCUSDT.BINANCE yet"
    empty = CandlesAnswer(
        symbol="BTCUSDT.BINANCE", freshness=_freshness(), interval="5m", candles=[], note=note
    )
    assert candles_summary(empty) == (
        "BTCUSDT.BINANCE 0 5m candles, data 120 ms old, status ok; no 5m candles are "
        "published for BTCUSDT.BINANCE yet"
    )


def test_token_buckets_grant_a_burst_then_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(2.0, 3, max_clients=2, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)  # empty: one token in 1/rate
    assert buckets.take("b") == 0  # per client
    now[0] = 0.5
    assert buckets.take("a") == 0  # refilled one
    assert buckets.take("a") > 0
    now[0] = 100.0
    assert [buckets.take("a") for _ in range(4)][-1] > 0  # refill stops at the burst
    buckets.take("c")  # a third client: the least recently seen ("b") is forgotten
    assert set(buckets._buckets) == {"a", "c"}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("127.0.0.2", True), ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_load_config_precedence_and_errors() -> None:
    env = {"REDIS_URL": "redis://admin@h/0", "CONTEXT8_MCP_REDIS_URL": "redis://reader@h/0"}
    assert load_config(env).redis_url == "redis://reader@h/0"
    assert load_config(env, redis_url="redis://flag@h/0").redis_url == "redis://flag@h/0"
    assert load_config({}, fallback_redis_url="redis://file@h/0").redis_url == "redis://file@h/0"
    assert load_config({"REDIS_URL": "redis://a@h/0"}).redis_url == "redis://a@h/0"
    with pytest.raises(ConfigError, match="CONTEXT8_MCP_REDIS_URL"):
        load_config({"CONTEXT8_MCP_TRANSPORT": "http"})
    assert load_config({}).redis_url is None  # stdio: it starts, and answers what to set
    with pytest.raises(ConfigError, match="CONTEXT8_MCP_RATE"):
        load_config({**env, "CONTEXT8_MCP_RATE": "-1"})
    with pytest.raises(ConfigError, match="CONTEXT8_MCP_PORT"):
        load_config({**env, "CONTEXT8_MCP_PORT": "http"})
    exposed = {**env, "CONTEXT8_MCP_TRANSPORT": "http", "CONTEXT8_MCP_HOST": "0.0.0.0"}
    with pytest.raises(ConfigError, match=r"CONTEXT8_MCP_TOKEN: listening on 0\.0\.0\.0"):
        load_config(exposed)
    assert load_config({**exposed, "CONTEXT8_MCP_TOKEN": "t"}).token == "t"
    assert load_config(exposed, transport="stdio").transport == "stdio"  # stdio listens nowhere


def test_reader_acl_rules() -> None:
    line = setuser_command(password="pw")
    assert line == (
        "ACL SETUSER context8-mcp reset on >pw resetchannels &nt:report_updated ~report:* "
        "~candles:* ~{reports}:index ~{reports}:overview -@all +get +zrange +zscore +hget "
        "+hmget +hgetall +ping +select +subscribe +unsubscribe +cluster|info +cluster|slots "
        "+command"
    )
    assert url_with_user("redis://old:x@127.0.0.1:6379/2", "u", "p@ss/w") == (
        "redis://u:p%40ss%2Fw@127.0.0.1:6379/2"
    )


def test_openapi_document_is_valid_openapi() -> None:
    from openapi_spec_validator import validate

    for authenticated in (False, True):
        document = openapi_document("1.0", authenticated=authenticated)
        validate(document)
        responses = document["paths"]["/get_report"]["get"]["responses"]
        assert {"200", "400", "404", "429", "502", "503"} <= set(responses)
        assert ("401" in responses) is authenticated
