"""Rendezvous (highest random weight) hashing: the weight of a (node, symbol) pair.

Every node computes the same weights, so every node reaches the same assignment from the
same view without a coordinator (coordination/assignment.py).
"""

from __future__ import annotations

import hashlib

__all__ = ["weight"]

_SCALE = float(1 << 64)


def weight(node_id: str, symbol: str) -> float:
    """blake2b (8 bytes) of ``node:symbol`` as a number in [0, 1)."""
    digest = hashlib.blake2b(f"{node_id}:{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE
