"""Walls and vacuums: levels that stand out against the recent distribution of level sizes.

The distribution is the level-quantity window (``QuantityWindow``): once per event-time
second, the quantities of the top ``liquidity_levels`` levels of each side. A wall is a level
among those top levels with qty >= ``wall_factor`` x P95 of the window; a vacuum is a run of
consecutive levels, each below P10. Neither is reported before the window holds
``min_level_observations`` quantities. Notes are sentences an LLM can quote.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Literal

from core.events import Level, to_decimal_str
from processors.analytics.params import AnalyticsParams
from processors.analytics.windows import QuantityWindow
from projections.report import Severity, Vacuum, Wall

__all__ = [
    "Side",
    "Thresholds",
    "find_vacuums",
    "find_walls",
    "fmt_price",
    "fmt_qty",
    "severity",
    "thresholds",
]

Side = Literal["bid", "ask"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    wall: float
    """A level at or above this is a wall (wall_factor x the wall percentile)."""
    thin: int
    """A level below this is thin (the vacuum percentile)."""

    @property
    def large_qty(self) -> int:
        """The smallest integer quantity that is a wall."""
        return ceil(self.wall)


def thresholds(window: QuantityWindow, params: AnalyticsParams) -> Thresholds | None:
    """None until the window holds ``min_level_observations`` quantities."""
    if len(window) < params.min_level_observations:
        return None
    return Thresholds(
        wall=params.wall_factor * window.percentile(params.wall_percentile),
        thin=window.percentile(params.vacuum_percentile),
    )


def severity(value: float, medium: float, high: float) -> Severity:
    return "high" if value >= high else "medium" if value >= medium else "low"


def fmt_price(value: int, precision: int, tick: int = 1) -> str:
    """An exact price as a person writes it: thousands separated, the decimals of the tick
    (``tick`` at ``precision``: 1000000 at 8 is 0.01, two decimals), more only where the
    price has them. Never rounded."""
    shown = precision
    while shown and tick % 10 == 0:
        tick //= 10
        shown -= 1
    whole, _, decimals = to_decimal_str(value, precision).partition(".")
    decimals = decimals.rstrip("0").ljust(shown, "0")
    return f"{int(whole):,}.{decimals}" if decimals else f"{int(whole):,}"


def fmt_qty(value: int, precision: int) -> str:
    text = f"{value / 10**precision:,.{precision}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def find_walls(
    side: Side,
    levels: list[Level],
    limits: Thresholds,
    params: AnalyticsParams,
    price_precision: int,
    size_precision: int,
    price_tick: int = 1,
) -> list[tuple[Wall, int]]:
    """Walls among ``levels`` (best first), in book order, each with its exact price."""
    walls = []
    scale_p, scale_q = 10**price_precision, 10**size_precision
    for price, qty in levels:
        if qty < limits.wall:
            continue
        multiple = qty / limits.wall
        walls.append(
            (
                Wall(
                    side=side,
                    price=price / scale_p,
                    qty=qty / scale_q,
                    multiple=round(multiple, 2),
                    severity=severity(
                        multiple, params.wall_medium_multiple, params.wall_high_multiple
                    ),
                    note=f"{side} wall {fmt_qty(qty, size_precision)} at "
                    f"{fmt_price(price, price_precision, price_tick)}, {multiple:.1f}x threshold",
                ),
                price,
            )
        )
    return walls


def find_vacuums(
    side: Side,
    levels: list[Level],
    limits: Thresholds,
    params: AnalyticsParams,
    price_precision: int,
    size_precision: int,
    price_tick: int = 1,
) -> list[tuple[Vacuum, int]]:
    """Maximal runs of at least ``vacuum_min_levels`` consecutive thin levels among
    ``levels`` (best first), nearest the touch first, each with its exact first price."""
    vacuums = []
    run: list[Level] = []
    for level in [*levels, None]:
        if level is not None and level[1] < limits.thin:
            run.append(level)
            continue
        if len(run) >= params.vacuum_min_levels:
            first, last = run[0][0], run[-1][0]
            span = (f"{fmt_price(first, price_precision, price_tick)} to "
                    f"{fmt_price(last, price_precision, price_tick)}")  # fmt: skip
            vacuums.append(
                (
                    Vacuum(
                        side=side,
                        from_price=first / 10**price_precision,
                        to_price=last / 10**price_precision,
                        levels=len(run),
                        severity=severity(
                            len(run), params.vacuum_medium_levels, params.vacuum_high_levels
                        ),
                        note=f"{side} vacuum {span}: {len(run)} consecutive levels "
                        f"below {fmt_qty(limits.thin, size_precision)}",
                    ),
                    first,
                )
            )
        run = []
    return vacuums
