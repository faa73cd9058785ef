import hashlib

from coordination.hrw import weight


def test_weight_is_blake2b_of_node_and_symbol_in_unit_interval():
    digest = hashlib.blake2b(b"n1:BTCUSDT.BINANCE", digest_size=8).digest()
    assert weight("n1", "BTCUSDT.BINANCE") == int.from_bytes(digest, "big") / 2**64
    assert 0 <= weight("n2", "X") < 1
