"""Fast-cycle formulas (docs/analytics.md gives each with a worked example).

Inputs are the book's exact fixed-point integers; each figure is one correctly rounded
division of exact integers, then rounded to the documented decimals.
"""

from __future__ import annotations

from projections.report import IngestionStatus, age_status

__all__ = [
    "HEALTH_WEIGHTS",
    "health_components",
    "health_score",
    "imbalance",
    "ingestion_status",
    "linear_score",
    "micro_price",
    "mid_price",
    "spread_bps",
]

HEALTH_WEIGHTS = {
    "spread": 0.25,
    "depth": 0.20,
    "balance": 0.15,
    "flow": 0.15,
    "anomalies": 0.15,
    "freshness": 0.10,
}


def spread_bps(bid: int, ask: int) -> float:
    """(ask - bid) / mid x 1e4, 4 decimals."""
    return round((ask - bid) * 20_000 / (ask + bid), 4)


def mid_price(bid: int, ask: int, precision: int) -> float:
    """(bid + ask) / 2, 8 decimals."""
    return round((bid + ask) / (2 * 10**precision), 8)


def micro_price(bid: int, bid_qty: int, ask: int, ask_qty: int, precision: int) -> float:
    """(ask x bid_qty + bid x ask_qty) / (bid_qty + ask_qty), 8 decimals: the mid weighted
    toward the side more likely to trade next (the thinner one)."""
    return round((ask * bid_qty + bid * ask_qty) / ((bid_qty + ask_qty) * 10**precision), 8)


def imbalance(bid_volume: int, ask_volume: int) -> float:
    """(B - A) / (B + A) in [-1, 1]; 0 for an empty book."""
    total = bid_volume + ask_volume
    return round((bid_volume - ask_volume) / total, 6) if total else 0.0


def linear_score(value: float, good: float, bad: float) -> float:
    """100 at ``good`` or better, 0 at ``bad`` or worse, linear between; works for either
    direction (good < bad: lower is better; good > bad: higher is better)."""
    if good == bad:
        return 100.0 if value == good else 0.0
    fraction = (value - bad) / (good - bad)
    return 100.0 * min(1.0, max(0.0, fraction))


def ingestion_status(
    age_ms: int, has_bids: bool, has_asks: bool, synced: bool
) -> tuple[IngestionStatus, str]:
    """ok: age <= 1 s and a synced two-sided book; degraded: age <= 2 s, one side empty, or
    resyncing; down: older than 2 s or no book at all."""
    by_age = age_status(age_ms)
    if by_age == "down":
        return "down", f"no venue data for {age_ms} ms"
    if not synced:
        return "degraded", "resyncing the book after a sequence gap"
    if not has_bids and not has_asks:
        return "down", "the book is empty"
    if not (has_bids and has_asks):
        return "degraded", "one side of the book is empty"
    if by_age == "degraded":
        return "degraded", f"venue data {age_ms} ms old"
    return "ok", ""


def health_components(
    *,
    spread_bps: float | None,
    spread_good_bps: float,
    spread_bad_bps: float,
    depth_ratio: float,
    imbalance: float,
    net_flow_share: float,
    anomaly_penalty: float,
    age_ms: int,
) -> dict[str, float]:
    """Each component 0-100 (1 decimal), each monotone in its input (a worse input never
    scores higher).

    depth_ratio: current top-N depth over its recent mean; net_flow_share: |buy - sell| /
    (buy + sell) of aggressive flow; anomaly_penalty: summed severity weights of anomalies.
    """
    components = {
        "spread": 0.0
        if spread_bps is None
        else linear_score(spread_bps, spread_good_bps, spread_bad_bps),
        "depth": linear_score(depth_ratio, 1.0, 0.2),
        "balance": 100.0 * (1.0 - min(1.0, abs(imbalance))),
        "flow": 100.0 * (1.0 - min(1.0, net_flow_share)),
        "anomalies": max(0.0, 100.0 - anomaly_penalty),
        "freshness": linear_score(age_ms, 1000, 5000),
    }
    return {name: round(value, 1) for name, value in components.items()}


def health_score(components: dict[str, float]) -> float:
    """The weighted mean of the components (weights in ``HEALTH_WEIGHTS``), 1 decimal."""
    return round(sum(HEALTH_WEIGHTS[name] * value for name, value in components.items()), 1)
