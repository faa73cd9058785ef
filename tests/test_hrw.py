from collections import Counter

from coordination.hrw import owner, weight

SYMBOLS = [f"SYM{i}USDT.BINANCE" for i in range(300)]


def test_weight_is_blake2b_of_node_and_symbol():
    import hashlib

    digest = hashlib.blake2b(b"n1:BTCUSDT.BINANCE", digest_size=8).digest()
    assert weight("n1", "BTCUSDT.BINANCE") == int.from_bytes(digest, "big") / 2**64


def test_spread_is_even_and_order_independent():
    nodes = ["a", "b", "c"]
    counts = Counter(owner(s, nodes) for s in SYMBOLS)
    assert all(80 <= n <= 120 for n in counts.values()), counts
    assert all(owner(s, nodes) == owner(s, reversed(nodes)) for s in SYMBOLS)


def test_a_joining_node_takes_only_its_share():
    before = {s: owner(s, ["a", "b", "c"]) for s in SYMBOLS}
    after = {s: owner(s, ["a", "b", "c", "d"], current=before[s]) for s in SYMBOLS}
    moved = [s for s in SYMBOLS if before[s] != after[s]]
    assert all(after[s] == "d" for s in moved)
    assert 40 <= len(moved) <= 90  # about a quarter, a bit less for the sticky bonus


def test_a_leaving_node_moves_only_its_symbols():
    before = {s: owner(s, ["a", "b", "c"]) for s in SYMBOLS}
    after = {s: owner(s, ["a", "b"], current=before[s]) for s in SYMBOLS}
    assert all(before[s] == after[s] for s in SYMBOLS if before[s] != "c")


def test_sticky_bonus_keeps_a_near_tie_in_place():
    symbol = next(s for s in SYMBOLS if 1.0 < weight("a", s) / weight("b", s) < 1.02)
    assert owner(symbol, ["a", "b"]) == "a"
    assert owner(symbol, ["a", "b"], current="b") == "b"
    assert owner(symbol, []) is None
