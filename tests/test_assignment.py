from collections import Counter

from coordination.assignment import assign, plan
from coordination.hrw import weight
from coordination.membership import NodeInfo

SYMBOLS = [f"S{i}USDT.BINANCE" for i in range(15)]


def nodes(*ids, symbols=SYMBOLS):
    return [NodeInfo(node_id=i, role="analytics", symbols=list(symbols)) for i in ids]


def test_every_symbol_has_exactly_one_wanting_node():
    fleet = nodes("a", "b", "c")
    plans = {
        me: plan(
            me=me,
            symbols=SYMBOLS,
            nodes=fleet,
            holders={},
            held_since={},
            now=0,
            min_hold_s=2,
            sticky_pct=0.02,
        )
        for me in ("a", "b", "c")
    }
    for symbol in SYMBOLS:
        assert sum(symbol in p.want for p in plans.values()) == 1


def test_min_hold_keeps_a_fresh_tenure_then_lets_it_go():
    symbol = next(s for s in SYMBOLS if assign(nodes("a", "b"), {}, 0.0)[s] == "b")
    common = dict(symbols=[symbol], nodes=nodes("a", "b"), holders={symbol: "a"},
                  min_hold_s=2.0, sticky_pct=0.0)  # fmt: skip
    fresh = plan(me="a", held_since={symbol: 10.0}, now=11.0, **common)
    assert symbol not in fresh.give_up and symbol not in fresh.want
    old = plan(me="a", held_since={symbol: 10.0}, now=12.5, **common)
    assert symbol in old.give_up


def test_nodes_with_different_symbol_lists_still_agree_on_one_owner():
    only_a = "ONLYAUSDT.BINANCE"
    fleet = [
        NodeInfo(node_id="a", role="analytics", symbols=[*SYMBOLS, only_a]),
        NodeInfo(node_id="b", role="analytics", symbols=SYMBOLS),
    ]
    a = plan(me="a", symbols=[*SYMBOLS, only_a], nodes=fleet, holders={}, held_since={},
             now=0, min_hold_s=2, sticky_pct=0.02)  # fmt: skip
    b = plan(me="b", symbols=SYMBOLS, nodes=fleet, holders={}, held_since={}, now=0,
             min_hold_s=2, sticky_pct=0.02)  # fmt: skip
    assert only_a in a.want  # b cannot take it: it is not configured for it
    assert not (a.want & b.want)
    assert a.want | b.want == {*SYMBOLS, only_a}


def test_spread_is_even_whatever_the_node_ids():
    for ids in (("a", "b", "c"), ("p1", "p2", "p3"), ("node-x", "node-y", "zz")):
        owners = assign(nodes(*ids), {}, 0.02)
        loads = Counter(owners.values())
        assert set(owners) == set(SYMBOLS)
        assert all(4 <= loads[i] <= 6 for i in ids), loads


def test_a_join_and_a_leave_move_about_one_share():
    before = assign(nodes("a", "b", "c"), {}, 0.02)
    joined = assign(nodes("a", "b", "c", "d"), before, 0.02)
    moved = [s for s in SYMBOLS if before[s] != joined[s]]
    assert all(joined[s] == "d" for s in moved) and 3 <= len(moved) <= 5
    left = assign(nodes("a", "b", "d"), joined, 0.02)  # c leaves: only its symbols move
    assert all(left[s] == joined[s] for s in SYMBOLS if joined[s] != "c")


def test_sticky_bonus_keeps_a_near_tie_with_its_holder():
    for n in range(1000):
        symbol = f"N{n}USDT.BINANCE"
        if 1.0 < weight("a", symbol) / weight("b", symbol) < 1.02:
            break
    fleet = nodes("a", "b", symbols=[symbol])
    assert assign(fleet, {}, 0.02)[symbol] == "a"
    assert assign(fleet, {symbol: "b"}, 0.02)[symbol] == "b"
    assert assign([], {}, 0.02) == {}
