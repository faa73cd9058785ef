"""Times people give on the command line and in settings: milliseconds since the epoch, or
ISO 8601. One parser, exact to the millisecond (sub-millisecond digits are cut, never
rounded up into the next millisecond), and the one format reports write times in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["iso_ms", "parse_time_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_time_ms(text: str) -> int:
    """``"1633998530000"`` or ``"2021-10-12T00:28:50.250Z"`` (no zone means UTC) -> ms since
    the epoch; ValueError saying what is accepted."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is not a time: give ISO 8601 (2021-10-12T00:28:50Z) or "
            "milliseconds since the epoch"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC to the millisecond."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
