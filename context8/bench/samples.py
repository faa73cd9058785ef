"""What every benchmark prints: lines as they come, and percentiles of samples."""

from __future__ import annotations

import numpy as np

__all__ = ["percentile", "say", "summary"]


def say(line: str) -> None:
    print(line, flush=True)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, interpolated between the two nearest samples
    (of 100 samples, p99 lies between the 99th and the largest, not at the largest)."""
    return float(np.quantile(values, q))


def summary(values: list[float]) -> str:
    """p50, p99 and max of ``values`` (ms)."""
    if not values:
        return "no samples"
    return (
        f"p50 {percentile(values, 0.5):.1f} ms, p99 {percentile(values, 0.99):.1f} ms, "
        f"max {max(values):.1f} ms"
    )
