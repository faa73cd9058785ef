"""What the tools take and return: the symbol argument, the ``list_symbols`` answer, and the
JSON Schemas published as the tools' output schemas (derived from these types and from
``projections.report.Report``, never written by hand)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from context8.config import parse_symbols
from context8_mcp.errors import InvalidInput
from projections.report import IngestionStatus

__all__ = [
    "SYMBOL_PATTERN",
    "SymbolList",
    "SymbolStatus",
    "output_schema",
    "parse_symbol",
]

SYMBOL_PATTERN: Final = r"^[A-Za-z0-9]{2,30}(\.[A-Za-z0-9_]{2,20})?$"
"""A venue symbol, optionally with its venue: ``BTCUSDT``, ``btcusdt``, ``BTCUSDT.BINANCE``."""
_SYMBOL_RE: Final = re.compile(SYMBOL_PATTERN)


def parse_symbol(text: str) -> str:
    """``"btcusdt"`` -> ``"BTCUSDT.BINANCE"``; raises ``InvalidInput`` for anything that is not
    one symbol."""
    if not isinstance(text, str) or not _SYMBOL_RE.fullmatch(text):
        raise InvalidInput(
            f"symbol {text!r} is not a symbol like BTCUSDT or BTCUSDT.BINANCE "
            f"(letters and digits, optionally '.VENUE')"
        )
    return parse_symbols(text)[0]


class SymbolStatus(msgspec.Struct, frozen=True, kw_only=True):
    symbol: Annotated[str, Meta(description="Venue symbol with venue, e.g. BTCUSDT.BINANCE.")]
    status: Annotated[
        IngestionStatus,
        Meta(
            description="ok: data <= 1 s old and a synced two-sided book; degraded: <= 2 s old, "
            "one side empty, or resyncing; down: older, no book, or no report at all."
        ),
    ]
    data_age_ms: Annotated[
        int | None,
        Meta(
            description="Now minus the venue time of the last event in the report, at read "
            "time; null when the report has expired."
        ),
    ]
    health_score: Annotated[
        Annotated[float, Meta(ge=0, le=100)] | None,
        Meta(
            description="Market health 0-100 (higher is healthier); null when the report "
            "has expired."
        ),
    ]
    last_update_ms: Annotated[
        int, Meta(description="Wall time (ms since the epoch) of the symbol's last publish.")
    ]
    reason: Annotated[str, Meta(description="Why the status is not ok; empty when ok.")] = ""


class SymbolList(msgspec.Struct, frozen=True, kw_only=True):
    symbols: Annotated[
        list[SymbolStatus], Meta(description="Every indexed symbol, in alphabetical order.")
    ]


def output_schema(tp: type) -> dict[str, Any]:
    """The JSON Schema of ``tp`` with an object at its root (MCP requires ``type: object``
    there; msgspec puts a ``$ref`` into ``$defs``)."""
    schema = msgspec.json.schema(tp)
    ref = schema.pop("$ref", None)
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        defs = schema["$defs"]
        schema = {**defs[ref.removeprefix("#/$defs/")], **schema}
        if f'"{ref}"' not in json.dumps(defs):  # nothing else refers to the root: drop its copy
            del defs[ref.removeprefix("#/$defs/")]
    return schema
