"""Generated event tapes for the analytics tests: a snapshot, then book diffs (small and
large level changes, thin runs), trades around the touch with refills (icebergs), large far
levels placed and pulled (spoofing), tickers, quiet stretches and gaps. Bids stay below
10000 and asks above, so the book is never crossed. Prices 2 decimals, sizes 3."""

from __future__ import annotations

import random

from core.events import SCHEMA_VERSION, BookDelta, BookSnapshot, Status, Ticker, Trade

__all__ = ["gen_tape"]

V = SCHEMA_VERSION
S = 1_000_000_000
MS = 1_000_000


def gen_tape(seed: int, n: int) -> list:
    """A snapshot then ``n`` events: small and large level changes (bids below 10000, asks
    above, so never crossed), trades around the touch, refills at traded prices (icebergs),
    large far levels placed and pulled (spoofing), quiet stretches, gaps."""
    rng = random.Random(seed)
    ts = 1_700_000_000 * S + rng.randint(0, 59) * S
    uid = 100

    def level(low: int, high: int) -> tuple[int, int]:
        return rng.randint(low, high), rng.choice((0, 0, rng.randint(1, 60), rng.randint(1, 9)))

    def snapshot() -> BookSnapshot:
        return BookSnapshot(
            V,
            ts,
            ts,
            2,
            3,
            uid,
            [(9999 - i, rng.randint(1, 60)) for i in range(rng.randint(0, 25))],
            [(10001 + i, rng.randint(1, 60)) for i in range(rng.randint(0, 25))],
        )

    events: list = [snapshot()]
    spoofs: list[tuple[bool, int]] = []
    for i in range(n):
        ts += rng.choice((0, rng.randint(0, 400), rng.randint(0, 1500))) * MS
        if rng.random() < 0.01:
            ts += rng.randint(1, 90) * S  # a quiet stretch: windows and buckets expire
        r = rng.random()
        first = uid + 1
        if r < 0.45:
            uid += rng.randint(1, 3)
            bids = [level(9970, 9999) for _ in range(rng.randint(0, 4))]
            asks = [level(10001, 10030) for _ in range(rng.randint(0, 4))]
            events.append(BookDelta(V, ts, ts, 2, 3, first, uid, bids, asks))
        elif r < 0.52:  # a large level far from the touch, pulled later
            uid += 1
            is_bid = rng.random() < 0.5
            price = rng.randint(9985, 9995) if is_bid else rng.randint(10005, 10015)
            big = [(price, rng.randint(300, 2000))]
            events.append(
                BookDelta(V, ts, ts, 2, 3, first, uid, big if is_bid else [], [] if is_bid else big)
            )
            spoofs.append((is_bid, price))
        elif r < 0.58 and spoofs:
            uid += 1
            is_bid, price = spoofs.pop(rng.randrange(len(spoofs)))
            gone = [(price, rng.choice((0, 0, 5)))]
            events.append(
                BookDelta(
                    V, ts, ts, 2, 3, first, uid, gone if is_bid else [], [] if is_bid else gone
                )
            )
        elif r < 0.88:
            side = rng.choice(("buy", "sell"))  # a buyer lifts the asks, a seller hits the bids
            price = rng.choice(
                (rng.randint(10001, 10010), 10001)
                if side == "buy"
                else (rng.randint(9990, 9999), 9999)
            )
            if spoofs and rng.random() < 0.2:  # a fill at a large far level
                is_bid, price = rng.choice(spoofs)
                side = "sell" if is_bid else "buy"
            events.append(Trade(V, ts, ts, 2, 3, price, rng.randint(1, 40), side, str(i + 1)))
            if rng.random() < 0.5:  # the level refills (or not) in the next diff
                uid += 1
                refill = [(price, rng.choice((rng.randint(1, 60), 30, 31, 0)))]
                on_bid = side == "sell"
                events.append(
                    BookDelta(
                        V,
                        ts,
                        ts,
                        2,
                        3,
                        first,
                        uid,
                        refill if on_bid else [],
                        [] if on_bid else refill,
                    )
                )
        elif r < 0.95:  # consecutive thin levels near the touch (a vacuum)
            uid += 1
            start = rng.randint(1, 6)
            thin = [(start + k, 1) for k in range(rng.randint(2, 5))]
            on_bid = rng.random() < 0.5
            events.append(
                BookDelta(
                    V,
                    ts,
                    ts,
                    2,
                    3,
                    first,
                    uid,
                    [(10000 - p, q) for p, q in thin] if on_bid else [],
                    [] if on_bid else [(10000 + p, q) for p, q in thin],
                )
            )
        elif r < 0.97:
            events.append(
                Ticker(V, ts, ts, "100.00", "99.00", "101.00", "98.00", "5", "500", "1.01", 42)
            )
        elif r < 0.99:
            uid += rng.randint(1, 2)  # a diff with no change we know of
            events.append(BookDelta(V, ts, ts, 2, 3, first, uid, [], []))
        else:
            events.append(Status(V, ts, ts, "gap", "", uid + 1, uid + 5))
            uid += 5
            events.append(snapshot())
    return events
