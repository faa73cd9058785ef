"""One-line, quotable summaries of the tools' answers (the first text block of a result)."""

from __future__ import annotations

from decimal import Decimal

from context8_mcp.models import SymbolList
from projections.report import Report

__all__ = ["age_text", "number_text", "report_summary", "symbols_summary"]


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
        f"data {age_text(report.data_age_ms)}",
        f"status {report.ingestion.status}",
    ]
    text = ", ".join(parts)
    if report.ingestion.status != "ok" and report.ingestion.reason:
        text += f" ({report.ingestion.reason})"
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
