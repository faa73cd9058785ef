"""Fast-cycle formulas on hand-checked cases (the same examples as docs/analytics.md)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.analytics import figures


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


def test_health_example_with_an_anomaly():
    # docs/analytics.md: the example above plus one medium anomaly (penalty 25)
    components = figures.health_components(
        spread_bps=26.0, spread_good_bps=2.0, spread_bad_bps=50.0, depth_ratio=1.0,
        imbalance=0.2, net_flow_share=0.0, anomaly_penalty=25.0, age_ms=100,
    )  # fmt: skip
    assert components["anomalies"] == 75.0
    assert figures.health_score(components) == 80.8


_INPUTS = {
    "spread_bps": st.one_of(st.none(), st.floats(0, 500)),
    "depth_ratio": st.floats(0, 10),
    "imbalance": st.floats(-1, 1),
    "net_flow_share": st.floats(0, 1),
    "anomaly_penalty": st.floats(0, 400),
    "age_ms": st.integers(0, 60_000),
}


def _worse(name: str, value, by: float):
    """The same input, ``by`` worse (None is the worst spread: no two-sided book)."""
    match name:
        case "spread_bps":
            return None if value is None or by > 400 else value + by
        case "depth_ratio":
            return max(0.0, value - by / 50)
        case "imbalance":
            return min(1.0, abs(value) + by / 500) * (-1 if value < 0 else 1)
        case "net_flow_share":
            return min(1.0, value + by / 500)
        case "age_ms":
            return value + int(by * 100)
    return value + by


@settings(max_examples=400, deadline=None)
@given(inputs=st.fixed_dictionaries(_INPUTS), which=st.sampled_from(sorted(_INPUTS)),
       by=st.floats(0, 500))  # fmt: skip
def test_health_is_monotone_in_each_input(inputs, which, by):
    def score(values: dict) -> tuple[float, dict[str, float]]:
        components = figures.health_components(spread_good_bps=2.0, spread_bad_bps=50.0,
                                               **values)  # fmt: skip
        return figures.health_score(components), components

    base_score, base = score(inputs)
    worse_score, worse = score({**inputs, which: _worse(which, inputs[which], by)})
    assert 0.0 <= worse_score <= 100.0 and 0.0 <= base_score <= 100.0
    assert worse_score <= base_score
    assert all(worse[name] <= base[name] for name in base)
    assert set(base) == set(figures.HEALTH_WEIGHTS)  # every component reported
