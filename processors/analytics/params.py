"""The analytics parameters: every figure's window, threshold and severity cut, with its
default. docs/analytics.md gives each one's formula and a worked example.

Each field is settable as ``NT_<FIELD NAME IN UPPER CASE>`` (``analytics_params``, through the
one settings loader: environment over the config file); a bad value fails at start with
``ConfigError`` naming the variable. A checkpoint written under
other parameters is not used (its windows would mean something else).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from msgspec import Meta

from core.settings import env_names, load_group

__all__ = ["AnalyticsParams", "AnalyticsSettings", "analytics_params", "env_name"]

Seconds = Annotated[int, Meta(ge=1, le=86_400)]
Levels = Annotated[int, Meta(ge=1, le=100_000)]
Count = Annotated[int, Meta(ge=1, le=1_000_000)]
Share = Annotated[float, Meta(gt=0.0, le=1.0)]
Percentile = Annotated[float, Meta(gt=0.0, le=100.0)]
Factor = Annotated[float, Meta(gt=0.0, le=1_000.0)]
# Written exactly as the report's Score: typing caches Annotated types by equality, and
# Meta(ge=0.0, le=100.0) == Meta(ge=0, le=100), so another spelling would change how the
# report's JSON Schema prints its bounds, depending on which module is imported first.
Penalty = Annotated[float, Meta(ge=0, le=100)]


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyticsParams:
    # -- fast cycle ----------------------------------------------------------------------
    depth_levels: Levels = 20
    """Levels per side in ``depth`` and its sums (imbalance, the depth health input)."""
    rate_window_s: Seconds = 10
    """Window of ``flow.events_per_sec`` and ``trades_per_sec``."""
    flow_window_s: Seconds = 30
    """Window of ``flow.buy_volume``, ``sell_volume``, ``net_flow``."""
    depth_baseline_window_s: Seconds = 300
    """Mean top-N depth (sampled once per event-time second) the depth health input divides by."""
    spread_good_bps: Annotated[float, Meta(ge=0.0, le=10_000.0)] = 2.0
    """Spread health is 100 at or below this ..."""
    spread_bad_bps: Annotated[float, Meta(gt=0.0, le=10_000.0)] = 50.0
    """... and 0 at or above this (linear between)."""
    book_max_levels: Levels = 5000
    """Levels kept per side; beyond it the farthest level is dropped (bounds memory; Binance's
    deepest REST snapshot has 5000)."""

    # -- liquidity: walls and vacuums ----------------------------------------------------
    liquidity_levels: Levels = 20
    """Levels per side sampled into the level window each event-time second, and scanned for
    walls and vacuums."""
    level_window_size: Count = 10_000
    """Level quantities kept in the rolling window (the newest samples)."""
    min_level_observations: Count = 20
    """No walls, vacuums or spoofing before the window holds this many quantities."""
    wall_percentile: Percentile = 95.0
    wall_factor: Factor = 1.5
    """A wall is a level with qty >= wall_factor x P(wall_percentile) of the window."""
    wall_medium_multiple: Factor = 2.0
    wall_high_multiple: Factor = 3.0
    """Wall severity by qty / threshold: low below medium, medium below high, high above."""
    vacuum_percentile: Percentile = 10.0
    """A thin level has qty below P(vacuum_percentile) of the window."""
    vacuum_min_levels: Levels = 3
    """A vacuum is a run of at least this many consecutive thin levels (low severity) ..."""
    vacuum_medium_levels: Levels = 6
    vacuum_high_levels: Levels = 10
    """... of at least this many, medium; of at least this many, high."""

    # -- volume profile ------------------------------------------------------------------
    profile_window_min: Annotated[int, Meta(ge=1, le=1440)] = 30
    """Trades of the last this many one-minute buckets (the current one included)."""
    profile_bin_ticks: Levels = 5
    """Bin width in price ticks."""
    profile_value_area: Share = 0.70
    """Share of the volume the value area holds, grown from the POC."""
    profile_min_trades: Count = 10
    """No profile with fewer trades in the window."""

    # -- anomalies -----------------------------------------------------------------------
    spoof_distance_spreads: Factor = 3.0
    """A large level (at or above the wall threshold) is watched when it appears farther than
    this many spreads from the mid."""
    spoof_cancel_rate: Share = 0.70
    """Spoofing when the watched levels of a side cancelled at least this share of the quantity
    they showed (low severity) ..."""
    spoof_medium_rate: Share = 0.80
    spoof_high_rate: Share = 0.90
    """... at least this share, medium; at least this share, high."""
    spoof_window_s: Seconds = 60
    """Watched levels placed or pulled within this window count."""
    spoof_min_levels: Count = 2
    """... and at least this many of them must have been pulled."""
    spoof_max_records: Count = 1000
    """Pulled levels remembered at most (bounds memory)."""
    iceberg_min_fills: Count = 5
    """An iceberg: at least this many fills (trade prints) at one price ..."""
    iceberg_tolerance: Share = 0.10
    """... while the visible qty there stays within this share of its value at the first fill,
    although the fills exceed that share (so something refilled it)."""
    iceberg_window_s: Seconds = 30
    """A price's fill count restarts after this long without a fill there."""
    iceberg_medium_multiple: Factor = 2.0
    iceberg_high_multiple: Factor = 3.0
    """Iceberg severity by traded / visible qty: low below medium, medium below high."""
    iceberg_max_tracked: Count = 1000
    """Prices watched for icebergs at most per side (the oldest goes first; bounds memory)."""
    spread_mean_window_s: Seconds = 300
    """The recent mean spread (sampled once per event-time second) flash-crash risk compares to."""
    flash_spread_factor: Factor = 2.0
    """Flash-crash signal 1: spread > this x its recent mean."""
    flash_min_vacuums: Count = 3
    """Signal 2: at least this many vacuums (both sides)."""
    flash_flow_window_s: Seconds = 10
    """Signal 3, accelerating selling: over the last this many seconds ..."""
    flash_flow_share: Share = 0.3
    """... net selling (sell - buy) is at least this share of the volume traded, and larger
    than the net selling of the window before."""
    flash_min_signals: Annotated[int, Meta(ge=1, le=3)] = 2
    """Flash-crash risk with at least this many signals (medium; all three: high)."""
    penalty_low: Penalty = 10.0
    penalty_medium: Penalty = 25.0
    penalty_high: Penalty = 50.0
    """Health anomaly penalty per anomaly of each severity; the component is 100 - their sum."""

    def __post_init__(self) -> None:
        ordered = (
            ("spread_good_bps", "spread_bad_bps"),
            ("wall_medium_multiple", "wall_high_multiple"),
            ("vacuum_min_levels", "vacuum_medium_levels"),
            ("vacuum_medium_levels", "vacuum_high_levels"),
            ("spoof_cancel_rate", "spoof_medium_rate"),
            ("spoof_medium_rate", "spoof_high_rate"),
            ("iceberg_medium_multiple", "iceberg_high_multiple"),
            ("penalty_low", "penalty_medium"),
            ("penalty_medium", "penalty_high"),
        )
        for low, high in ordered:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{env_name(low)} must not exceed {env_name(high)}")
        if 2 * self.flash_flow_window_s > self.flow_window_s:
            raise ValueError(
                f"{env_name('flash_flow_window_s')}: two of its windows must fit in "
                f"{env_name('flow_window_s')} ({self.flow_window_s})"
            )


def env_name(field: str) -> str:
    return f"NT_{field.upper()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyticsSettings(AnalyticsParams):
    """The parameters, and what the analytics kind writes beside the report."""

    heavy_levels: Annotated[int, Meta(ge=1, le=5000)] = 500
    """Levels per side in ``report:{SYM}:heavy`` (MCP ``get_depth``)."""
    history_minutes: Annotated[int, Meta(ge=1, le=7 * 24 * 60)] = 60
    """History points kept in ``report:{SYM}:history`` (one per event-time second)."""

    def params(self) -> AnalyticsParams:
        """The parameters alone: what a checkpoint is tied to."""
        return AnalyticsParams(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(AnalyticsParams)}
        )


def analytics_params(env: Mapping[str, str]) -> AnalyticsParams:
    """The parameters from ``NT_<FIELD>`` variables (and the config file), defaults for the
    others; raises ``ConfigError`` naming the variable at fault."""
    return load_group(AnalyticsParams, env_names(AnalyticsParams), env)
