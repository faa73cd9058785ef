"""How often a kind publishes, runs its slow cycle and checkpoints, given how many symbols
the node holds and what each costs (adaptive coalescing).

Each cadence has the configured period as its floor and a share of one core as its budget:
with ``n`` symbols and a measured cost ``c`` seconds per symbol and run, running every
symbol every ``p`` seconds takes ``n * c / p`` of a core, so the period is stretched to
``n * c / share`` when that is longer. A node with few symbols publishes at the configured
pace; one past its capacity publishes every symbol less often instead of queueing work
without bound, and says so (``over_capacity``: the fast cycle itself had to stretch). The
freshness a reader sees stays true: it is derived from the data's venue time when read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["PUBLISH_SHARE", "Cadences", "Cost", "Pacing"]

PUBLISH_SHARE: Final = 0.5
"""Of one core, what a kind's publishes (projection, encoding, the write) may take."""
SLOW_SHARE: Final = 0.2
"""... its slow cycles (profile, walls, vacuums, anomalies)."""
CHECKPOINT_SHARE: Final = 0.1
"""... its checkpoints (the whole state, encoded)."""
_ALPHA: Final = 0.05
"""Weight of a new sample in the running mean of a cost (about the last 20 batches)."""


@dataclass(slots=True)
class Cost:
    """Running mean of the seconds one symbol's run of something takes."""

    seconds: float = 0.0

    def add(self, seconds: float, runs: int) -> None:
        if runs <= 0:
            return
        sample = seconds / runs
        self.seconds = (
            sample if self.seconds == 0.0 else self.seconds + _ALPHA * (sample - self.seconds)
        )


@dataclass(frozen=True, slots=True)
class Cadences:
    publish_s: float
    """Least time between two event-driven publishes of one symbol."""
    fast_s: float
    """Longest time between two publishes of one symbol (the fast cycle)."""
    slow_s: float
    checkpoint_s: float
    over_capacity: bool
    """The fast cycle had to stretch past its configured period."""


@dataclass(slots=True)
class Pacing:
    min_publish_s: float
    report_period_s: float
    slow_period_s: float
    checkpoint_period_s: float
    publish: Cost = field(default_factory=Cost)
    slow: Cost = field(default_factory=Cost)
    checkpoint: Cost = field(default_factory=Cost)

    def cadences(self, symbols: int) -> Cadences:
        publish_s = max(self.min_publish_s, symbols * self.publish.seconds / PUBLISH_SHARE)
        fast_s = max(self.report_period_s, publish_s)
        return Cadences(
            publish_s=publish_s,
            fast_s=fast_s,
            slow_s=max(self.slow_period_s, symbols * self.slow.seconds / SLOW_SHARE),
            checkpoint_s=max(
                self.checkpoint_period_s, symbols * self.checkpoint.seconds / CHECKPOINT_SHARE
            ),
            over_capacity=fast_s > self.report_period_s,
        )
