"""Read-time freshness: a stored report ages between its publish and the moment it is read.

The server computes no analytics; it only re-derives ``data_age_ms`` from the venue time of
the last folded event and lowers (never raises) ``ingestion.status`` when that age says so, so
no answer is staler than it says.
"""

from __future__ import annotations

from typing import Final

import msgspec

from projections.report import (
    DEGRADED_MAX_AGE_MS,
    OK_MAX_AGE_MS,
    IngestionStatus,
    Report,
    age_status,
)

__all__ = ["freshen"]

_RANK: Final[dict[IngestionStatus, int]] = {"ok": 0, "degraded": 1, "down": 2}


def freshen(report: Report, now_ms: int) -> Report:
    """``report`` as of ``now_ms`` (wall clock, ms): ``data_age_ms`` = now - last event's venue
    time (never negative: a venue clock ahead of ours counts as age 0), and the status the
    worse of the stored one and the one that age allows; a lowered status says why, keeping
    the writer's reason after it."""
    age = max(0, now_ms - report.stream.last_event_ts_ms)
    by_age = age_status(age)
    ingestion = report.ingestion
    if _RANK[by_age] > _RANK[ingestion.status]:
        limit = OK_MAX_AGE_MS if by_age == "degraded" else DEGRADED_MAX_AGE_MS
        reason = f"data {age:,} ms old at read time (over {limit:,} ms)"
        if ingestion.reason:
            reason = f"{reason}; {ingestion.reason}"
        ingestion = msgspec.structs.replace(ingestion, status=by_age, reason=reason)
    return msgspec.structs.replace(report, data_age_ms=age, ingestion=ingestion)
