"""Symbols: how context8 names an instrument, everywhere (settings, MCP, ingest, status).

An instrument id is NautilusTrader's: the venue symbol plus the venue, ``BTCUSDT.BINANCE``
for the spot pair and ``BTCUSDT-PERP.BINANCE`` for the USD-M perpetual. People may leave the
venue out (``BTCUSDT``, ``btcusdt-perp``): it is then the default venue.
"""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = [
    "DEFAULT_VENUE",
    "PERP_SUFFIX",
    "SYMBOL_PATTERN",
    "Market",
    "market_of",
    "parse_symbol",
    "parse_symbols",
    "quote",
    "twin_of",
    "venue_symbol",
]

DEFAULT_VENUE: Final = "BINANCE"
PERP_SUFFIX: Final = "-PERP"
SYMBOL_PATTERN: Final = r"^[A-Za-z0-9]{2,30}(-[Pp][Ee][Rr][Pp])?(\.[A-Za-z0-9_]{2,20})?$"
"""A venue symbol, optionally ``-PERP`` and ``.VENUE``: ``BTCUSDT``, ``btcusdt-perp``,
``BTCUSDT.BINANCE``, ``ETHUSDT-PERP.BINANCE``."""
_SYMBOL_RE: Final = re.compile(SYMBOL_PATTERN)
_QUOTED_MAX: Final = 40

Market = Literal["spot", "perp"]


def quote(text: object) -> str:
    """``text`` for an error message: repr'd, and cut to a short prefix, so a 64 KB argument
    does not come back as a 64 KB error."""
    shown = repr(text)
    return shown if len(shown) <= _QUOTED_MAX else f"{shown[:_QUOTED_MAX]}... ({len(shown)} chars)"


def parse_symbol(text: str, venue: str = DEFAULT_VENUE) -> str:
    """``"btcusdt"`` -> ``"BTCUSDT.BINANCE"``; ValueError for anything that is not one symbol."""
    name = text.strip() if isinstance(text, str) else text
    if not isinstance(name, str) or not _SYMBOL_RE.fullmatch(name):
        raise ValueError(
            f"{quote(text)} is not a symbol like BTCUSDT, BTCUSDT-PERP or BTCUSDT.BINANCE"
        )
    name = name.upper()
    return name if "." in name else f"{name}.{venue}"


def parse_symbols(text: str, venue: str = DEFAULT_VENUE) -> tuple[str, ...]:
    """``"btcusdt, ETHUSDT-PERP"`` -> ``("BTCUSDT.BINANCE", "ETHUSDT-PERP.BINANCE")``, without
    repeats; ValueError for a bad one or none at all."""
    symbols: list[str] = []
    for raw in text.split(","):
        if raw.strip():
            symbol = parse_symbol(raw, venue)
            if symbol not in symbols:
                symbols.append(symbol)
    if not symbols:
        raise ValueError("no symbols given")
    return tuple(symbols)


def venue_symbol(instrument_id: str) -> str:
    """What the venue calls it: ``BTCUSDT-PERP.BINANCE`` -> ``BTCUSDT``."""
    return instrument_id.partition(".")[0].removesuffix(PERP_SUFFIX)


def market_of(instrument_id: str) -> Market:
    return "perp" if instrument_id.partition(".")[0].endswith(PERP_SUFFIX) else "spot"


def twin_of(instrument_id: str) -> str:
    """The spot pair of a perpetual and the perpetual of a spot pair, on the same venue."""
    name, _, venue = instrument_id.partition(".")
    twin = (
        name.removesuffix(PERP_SUFFIX) if market_of(instrument_id) == "perp" else name + PERP_SUFFIX
    )
    return f"{twin}.{venue}"
