"""One-line, quotable summaries of the tools' answers (the first text block of a result)."""

from __future__ import annotations

from decimal import Decimal

from context8_mcp.models import CandlesAnswer, DepthAnswer, Freshness, HistoryAnswer, SymbolList
from projections.report import Report

__all__ = [
    "age_text",
    "candles_summary",
    "depth_summary",
    "history_summary",
    "number_text",
    "report_summary",
    "symbols_summary",
]


def number_text(value: float | None, *, signed: bool = False) -> str:
    """A price or figure as stored (shortest exact float text), with thousands separators and
    never in exponent form: ``95012.35`` -> ``95,012.35``, ``1.2e-05`` -> ``0.000012``."""
    if value is None:
        return "n/a"
    text = format(Decimal(repr(float(value))), ",f")
    if signed and value >= 0:
        text = "+" + text
    return text


def age_text(age_ms: int | None) -> str:
    if age_ms is None:
        return "unknown age"
    if age_ms < 60_000:
        return f"{age_ms:,} ms old"
    return f"{age_ms / 1000:,.0f} s old"


def report_summary(report: Report) -> str:
    """``BTCUSDT.BINANCE mid 95,012.35, spread 0.42 bps, imbalance +0.12, health 87/100,
    data 120 ms old, status ok``, plus why when the status is not ok, and the anomalies."""
    parts = [
        f"{report.symbol} mid {number_text(report.mid_price)}",
        f"spread {number_text(report.spread_bps)} bps",
        f"imbalance {number_text(round(report.depth.imbalance, 2), signed=True)}",
        f"health {report.health.score:.0f}/100",
        _freshness_text(Freshness.of(report)),
    ]
    text = ", ".join(parts)
    if report.anomalies:
        listed = ", ".join(f"{a.type} {a.severity}" for a in report.anomalies)
        text += f"; anomalies: {listed}"
    return text


def symbols_summary(answer: SymbolList) -> str:
    """``2 symbols: BTCUSDT.BINANCE ok (120 ms old, health 87); ETHUSDT.BINANCE down (...)``."""
    if not answer.symbols:
        return "0 symbols: nothing is indexed (no processor has published a report yet)"
    items = []
    for s in answer.symbols:
        health = "n/a" if s.health_score is None else f"{s.health_score:.0f}"
        items.append(f"{s.symbol} {s.status} ({age_text(s.data_age_ms)}, health {health})")
    count = len(answer.symbols)
    return f"{count} symbol{'s' if count != 1 else ''}: " + "; ".join(items)


def _freshness_text(freshness: Freshness) -> str:
    text = f"data {age_text(freshness.data_age_ms)}, status {freshness.status}"
    if freshness.status != "ok" and freshness.reason:
        text += f" ({freshness.reason})"
    return text


def _with_note(text: str, note: str) -> str:
    return f"{text}; {note}" if note else text


def depth_summary(answer: DepthAnswer) -> str:
    """``BTCUSDT.BINANCE depth 50 bids 95,012.14..94,990.1, 50 asks ...; data ... status ok``."""
    sides = []
    for name, levels in (("bids", answer.bids), ("asks", answer.asks)):
        if levels:
            span = f"{number_text(levels[0].price)}..{number_text(levels[-1].price)}"
            sides.append(f"{len(levels)} {name} {span}")
        else:
            sides.append(f"0 {name}")
    text = f"{answer.symbol} depth {', '.join(sides)}, {_freshness_text(answer.freshness)}"
    return _with_note(text, answer.note)


def history_summary(answer: HistoryAnswer) -> str:
    """``BTCUSDT.BINANCE history 300 points over 299 s: mid 95,000.1 -> 95,012.35, ...``."""
    points = answer.points
    if not points:
        return _with_note(
            f"{answer.symbol} history: 0 points, {_freshness_text(answer.freshness)}", answer.note
        )
    first, last = points[0], points[-1]
    sampled = f" of {answer.points_in_window} (1 in {answer.every})" if answer.every > 1 else ""
    text = (
        f"{answer.symbol} history {len(points)} points{sampled} over "
        f"{(last.ts_ms - first.ts_ms) / 1000:,.0f} s: mid {number_text(first.mid_price)} -> "
        f"{number_text(last.mid_price)}, spread {number_text(last.spread_bps)} bps, "
        f"imbalance {number_text(round(last.imbalance, 2), signed=True)}, net flow "
        f"{number_text(last.net_flow, signed=True)}, health {first.health:.0f} -> "
        f"{last.health:.0f}, {_freshness_text(answer.freshness)}"
    )
    return _with_note(text, answer.note)


def candles_summary(answer: CandlesAnswer) -> str:
    """``BTCUSDT.BINANCE 60 x 1m candles: open 95,000.1, high ..., low ..., close ...``."""
    bars = answer.candles
    if not bars:
        text = f"{answer.symbol} 0 {answer.interval} candles, {_freshness_text(answer.freshness)}"
        return _with_note(text, answer.note)
    high = max(bar.high for bar in bars)
    low = min(bar.low for bar in bars)
    volume = sum(bar.volume for bar in bars)
    text = (
        f"{answer.symbol} {len(bars)} x {answer.interval} candles: open "
        f"{number_text(bars[0].open)}, high {number_text(high)}, low {number_text(low)}, close "
        f"{number_text(bars[-1].close)}{'' if bars[-1].closed else ' (bar still open)'}, volume "
        f"{number_text(round(volume, 8))}, {_freshness_text(answer.freshness)}"
    )
    return _with_note(text, answer.note)
