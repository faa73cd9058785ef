"""The MCP server's pure parts: read-time freshness, symbol parsing, summaries, schemas."""

from __future__ import annotations

import jsonschema
import msgspec
import pytest

from context8_mcp.errors import InvalidInput
from context8_mcp.freshness import age_status, freshen
from context8_mcp.models import SymbolList, SymbolStatus, output_schema, parse_symbol
from context8_mcp.summary import number_text, report_summary, symbols_summary
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
