"""Fast-cycle formulas on hand-checked cases (the same examples as docs/analytics.md)."""

import pytest

from processors import figures


def test_spread_mid_micro_hand_checked():
    # bid 100.00 x 3, ask 100.10 x 1, price precision 2
    bid, ask = 10000, 10010
    assert figures.spread_bps(bid, ask) == 9.995  # 0.10 / 100.05 * 1e4 = 9.99500...
    assert figures.mid_price(bid, ask, 2) == 100.05
    # (100.10 * 3 + 100.00 * 1) / 4 = 100.075: leans to the ask, the thinner side
    assert figures.micro_price(bid, 3, ask, 1, 2) == 100.075


def test_micro_price_stays_within_the_touch():
    assert figures.micro_price(10000, 1, 10001, 10**12, 2) >= 100.00
    assert figures.micro_price(10000, 10**12, 10001, 1, 2) <= 100.01


def test_imbalance_bounds_and_sign():
    assert figures.imbalance(3, 1) == 0.5
    assert figures.imbalance(0, 7) == -1.0
    assert figures.imbalance(0, 0) == 0.0


@pytest.mark.parametrize(
    ("age_ms", "bids", "asks", "synced", "status"),
    [
        (200, True, True, True, "ok"),
        (1000, True, True, True, "ok"),
        (1500, True, True, True, "degraded"),
        (200, True, False, True, "degraded"),
        (200, True, True, False, "degraded"),
        (2001, True, True, True, "down"),
        (200, False, False, True, "down"),
    ],
)
def test_ingestion_status(age_ms, bids, asks, synced, status):
    assert figures.ingestion_status(age_ms, bids, asks, synced)[0] == status


def test_linear_score_both_directions():
    assert figures.linear_score(2.0, good=2.0, bad=50.0) == 100.0
    assert figures.linear_score(26.0, good=2.0, bad=50.0) == 50.0
    assert figures.linear_score(80.0, good=2.0, bad=50.0) == 0.0
    assert figures.linear_score(0.6, good=1.0, bad=0.2) == pytest.approx(50.0)


def test_health_is_the_weighted_mean():
    components = dict.fromkeys(figures.HEALTH_WEIGHTS, 100.0)
    assert figures.health_score(components) == 100.0
    components["spread"] = 0.0
    assert figures.health_score(components) == 75.0
