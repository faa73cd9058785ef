"""Redis key names. Every key of one symbol carries ``{SYM}`` as its hash tag, so all of a
symbol's keys share a Redis Cluster slot and one Lua script may touch them together."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = [
    "APPENDED_CHANNEL",
    "INDEX_KEY",
    "INDEX_WRITERS_KEY",
    "NODES_SEEN_KEY",
    "OVERVIEW_KEY",
    "REPORT_UPDATED_CHANNEL",
    "appended_message",
    "appended_symbols",
    "candles_key",
    "checkpoint_key",
    "dead_letter_key",
    "fence_key",
    "heavy_key",
    "history_key",
    "lease_key",
    "node_key",
    "report_key",
    "stream_key",
    "successor_key",
    "token_key",
]

# The index spans symbols; its keys share the {reports} tag so one script updates them all.
INDEX_KEY: Final = "{reports}:index"
INDEX_WRITERS_KEY: Final = "{reports}:writers"
OVERVIEW_KEY: Final = "{reports}:overview"
"""Symbol -> its row of the market overview (projections/overview.py)."""
REPORT_UPDATED_CHANNEL: Final = "nt:report_updated"
"""Pub/sub: an instrument id, published with every new report of it."""
APPENDED_CHANNEL: Final = "nt:appended"
"""Pub/sub: the instrument ids whose streams one ingest flush appended to
(``appended_message``), so processors read just those. Whatever appends to ``md:{SYM}``
announces it here; an append nobody announces is read within a fast cycle."""
NODES_SEEN_KEY: Final = "nt:nodes_seen"


def stream_key(symbol: str) -> str:
    return f"md:{{{symbol}}}"


def dead_letter_key(symbol: str) -> str:
    return f"md:{{{symbol}}}:dead"


def report_key(symbol: str) -> str:
    return f"report:{{{symbol}}}"


def heavy_key(symbol: str) -> str:
    return f"report:{{{symbol}}}:heavy"


def history_key(symbol: str) -> str:
    return f"report:{{{symbol}}}:history"


def candles_key(symbol: str, interval: str) -> str:
    """Bars of ``interval`` (``1s``, ``1m``, ``5m``) written by the candles kind."""
    return f"candles:{{{symbol}}}:{interval}"


def checkpoint_key(group: str, symbol: str) -> str:
    return f"ckpt:{group}:{{{symbol}}}"


def lease_key(role: str, symbol: str) -> str:
    """Holder of ``role`` (``ingest`` or a processor kind) for ``symbol``."""
    return f"lease:{role}:{{{symbol}}}"


def token_key(role: str, symbol: str) -> str:
    """Fencing token of ``role`` for ``symbol``; INCR on every acquisition."""
    return f"lease:{role}:{{{symbol}}}:token"


def fence_key(role: str, symbol: str) -> str:
    """The highest token ``role``'s owner writes for ``symbol`` were made with: writes with a
    lower one are refused, and new tokens are handed out above it."""
    return f"lease:{role}:{{{symbol}}}:fence"


def successor_key(role: str, symbol: str) -> str:
    """The node ready to take ``role`` for ``symbol`` over from its holder (it has loaded
    the state and folded ahead): the holder hands off once there is one."""
    return f"lease:{role}:{{{symbol}}}:successor"


def resync_key(symbol: str) -> str:
    """A processor's request for a fresh venue snapshot of ``symbol`` (its reason; expires):
    the ingest holding the symbol takes it (GETDEL) within a lease round."""
    return f"resync:{{{symbol}}}"


def node_key(node_id: str) -> str:
    return f"nt:node:{node_id}"


def appended_message(symbols: Iterable[str]) -> str:
    """The ``APPENDED_CHANNEL`` message naming ``symbols``."""
    return " ".join(symbols)


def appended_symbols(message: bytes) -> list[str]:
    return message.decode().split()
