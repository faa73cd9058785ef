"""Rendezvous (highest random weight) assignment of symbols to nodes, with hysteresis.

Every node computes the same answer from the same view (live nodes and current owners), so no
coordinator is needed; the leases make a disagreement during a view change harmless (at most
one writer), and the sticky bonus keeps a symbol where it is unless another node wins by a
margin, so a node joining or leaving moves only its own share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["owner", "weight"]

_SCALE = float(1 << 64)


def weight(node_id: str, symbol: str) -> float:
    """blake2b (8 bytes) of ``node:symbol`` as a number in [0, 1)."""
    digest = hashlib.blake2b(f"{node_id}:{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def owner(
    symbol: str, nodes: Iterable[str], current: str | None = None, sticky_pct: float = 0.02
) -> str | None:
    """The node that should own ``symbol``: highest weight, the current owner's weight raised
    by ``sticky_pct``; ties go to the smaller node id, so the answer is the same everywhere."""
    best: tuple[float, str] | None = None
    for node in nodes:
        w = weight(node, symbol)
        if node == current:
            w *= 1.0 + sticky_pct
        if best is None or w > best[0] or (w == best[0] and node < best[1]):
            best = (w, node)
    return None if best is None else best[1]
