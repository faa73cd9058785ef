"""Which symbols this node should hold: rendezvous hashing over the live nodes configured for
each symbol, with bounded loads, the current holder's sticky bonus and a minimum hold time.

Pure: every node runs it on its own view. Views may disagree for a moment (a heartbeat
in flight); the leases make that harmless, so this only has to converge, not be atomic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coordination.hrw import weight
from coordination.membership import NodeInfo

__all__ = ["Plan", "assign", "plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    want: frozenset[str]
    """Symbols this node should hold (acquire those it does not yet hold)."""
    give_up: frozenset[str]
    """Symbols this node holds or is waiting for, that belong elsewhere now."""


def assign(
    nodes: Iterable[NodeInfo], holders: Mapping[str, str | None], sticky_pct: float
) -> dict[str, str]:
    """Symbol -> node for every symbol some live node is configured for.

    Rendezvous hashing with bounded loads: (symbol, node) pairs are taken by weight, highest
    first (the current holder's weight raised by ``sticky_pct``), while the node has fewer
    than ceil(symbols / nodes); so the spread is even whatever the node ids, and a node
    joining or leaving moves about its share and little more. A symbol whose candidates are
    all full goes to its best candidate anyway.
    """
    nodes = sorted(nodes, key=lambda n: n.node_id)
    symbols = sorted({s for n in nodes for s in n.symbols})
    if not nodes:
        return {}
    cap = math.ceil(len(symbols) / len(nodes))
    pairs = []
    for node in nodes:
        for symbol in node.symbols:
            w = weight(node.node_id, symbol)
            if holders.get(symbol) == node.node_id:
                w *= 1.0 + sticky_pct
            pairs.append((-w, symbol, node.node_id))
    pairs.sort()
    load: dict[str, int] = dict.fromkeys((n.node_id for n in nodes), 0)
    chosen: dict[str, str] = {}
    best: dict[str, str] = {}
    for _w, symbol, node_id in pairs:
        best.setdefault(symbol, node_id)
        if symbol not in chosen and load[node_id] < cap:
            chosen[symbol] = node_id
            load[node_id] += 1
    for symbol in symbols:
        chosen.setdefault(symbol, best[symbol])
    return chosen


def plan(
    *,
    me: str,
    symbols: Iterable[str],
    nodes: Iterable[NodeInfo],
    holders: Mapping[str, str | None],
    held_since: Mapping[str, float],
    now: float,
    min_hold_s: float,
    sticky_pct: float,
) -> Plan:
    """``symbols``: this node's configured symbols; ``nodes``: the live nodes of its role
    (itself included); ``holders``: each symbol's lease holder; ``held_since``: when this
    node's tenure of each symbol it holds began (same clock as ``now``). Candidates for a
    symbol are the live nodes configured for it, so nodes with different SYMBOLS lists still
    agree on one owner per symbol. A symbol held for less than ``min_hold_s`` is not given
    up yet (its new owner waits for the lease)."""
    owners = assign(nodes, holders, sticky_pct)
    want, give_up = set(), set()
    for symbol in symbols:
        if owners.get(symbol, me) == me:
            want.add(symbol)
        elif symbol not in held_since or now - held_since[symbol] >= min_hold_s:
            give_up.add(symbol)
    return Plan(frozenset(want), frozenset(give_up))
