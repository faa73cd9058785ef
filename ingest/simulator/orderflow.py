"""A per-symbol order-flow model: the market behind the simulator's Binance protocol.

The book is an aggregated price-level book on exact integers (price in ticks, size in lots).
It changes only through order flow, so spread, depth, trades and diffs always agree:

- traders share a latent fair value (a slowly mean-reverting random walk around the anchor
  price, with the symbol's daily volatility); it is what moves prices, through orders only;
- limit orders arrive as a Poisson process; a buy rests `d >= 1` ticks below the best ask, or
  below the highest price a buyer still finds fair if that is lower (a sell likewise), `d`
  drawn from a Lomax (shifted Pareto) law with a heavy tail, in units of a few ppm of the
  price for most orders and of the price's one-second volatility for a quarter of them: most
  orders join or improve the touch, the rest keep the book deep; sizes are lognormal;
- cancels arrive at a rate proportional to the resting quantity of each side (which keeps the
  depth stationary) and hit a level in proportion to its size (up to 4x the mean size: walls
  are sticky), the touch less often; quotes left on the wrong side of a moved fair value are
  moved behind it;
- market orders (lognormal sizes) come mostly from the side the fair value favours, walk the
  book level by level and print one or more trades per level, one aggTrade per level;
- regimes (calm, active, one-sided bursts, liquidity drains) switch at random, walls are
  placed and pulled, and icebergs refill a touch level, so the analytics have something to see;
- the book never crosses (placement is relative to the opposite touch) and never empties
  (market orders leave `_MIN_LEVELS` levels; a thin side is replenished deep).

Everything runs on simulated time from a `random.Random` seeded by (seed, symbol): the sequence
of messages depends on nothing else. Only the venue timestamps (`E`, `T`, `O`, `C`) come from
the wall clock the caller passes in, so "venue time = now".

Update ids follow Binance: each level change takes the next id; a diff reports every level
changed since the previous diff with its current quantity ("0" removes), `U` = the first id in
it and `u` = the last, so consecutive diffs satisfy `U == previous u + 1`. `snapshot()` returns
the book exactly as of the last diff generated, with `lastUpdateId` = that diff's `u`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from itertools import islice
from typing import Any, Final, Literal

from sortedcontainers import SortedDict

from ingest.simulator.instruments import SymbolSpec, fmt_e8, to_e8

__all__ = ["Kind", "MarketModel", "Message"]

Kind = Literal["depth", "depth1s", "trade", "aggTrade", "bookTicker", "ticker"]
"""`depth` is the diff of each diff interval (`@depth@100ms`), `depth1s` the 1000 ms one."""
Message = tuple[Kind, dict[str, Any]]

_MIN_LEVELS: Final = 20  # a side thinner than this is replenished; sweeps stop short of it
_MAX_LEVELS: Final = 800  # beyond this the farthest level is pulled, bounding memory
# Tail index of the placement distance, as measured on equity books (Bouchaud et al. 2002
# find 0.6): heavy enough that hundreds of levels stay populated.
_ALPHA: Final = 0.7
_MAX_X: Final = 400.0  # placement distances beyond this many scale units are redrawn
_DEEP_SHARE: Final = 0.25
_MAX_X_DEEP: Final = 30.0
_WARMUP_MS: Final = 60_000.0

_REVERSION_MS: Final = 7_200_000.0  # fair value's mean-reversion time to the anchor
_DAY_MS: Final = 86_400_000.0

# Regimes: (name, mean duration s, intensity, market, limit, cancel, placement scale,
# volatility). A burst also trends: its fair value drifts 4 sigma-per-second each second.
_REGIMES: Final = (
    ("calm", 30.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    ("active", 15.0, 2.0, 1.5, 1.0, 1.0, 1.5, 1.6),
    ("burst", 4.0, 1.5, 5.0, 1.5, 1.0, 1.0, 2.5),
    ("drain", 6.0, 1.0, 1.0, 0.45, 2.2, 2.5, 2.0),
)
_FROM_CALM: Final = (0.0, 0.5, 0.75, 1.0)  # cumulative: active, burst, drain
_FROM_OTHER: Final = (0.7, 1.0, 1.0, 1.0)  # cumulative: calm, active


class _Side:
    """One side of the book plus what changed on it since the last diffs."""

    __slots__ = ("book", "is_bid", "pending", "slow", "total")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.book: SortedDict = SortedDict()  # price ticks -> lots
        # price -> lots before its first change since the last fast diff: a snapshot at that
        # diff's `u` is the current book with these levels put back.
        self.pending: dict[int, int] = {}
        self.slow: set[int] = set()  # touched since the last 1000 ms diff
        self.total = 0  # resting lots

    def best(self) -> int:
        return self.book.peekitem(-1 if self.is_bid else 0)[0]

    def level_at_index(self, i: int) -> int:
        """Price of the i-th level from the touch."""
        return self.book.peekitem(-1 - i if self.is_bid else i)[0]


def _derive_seed(seed: int, symbol: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{symbol}".encode(), digest_size=8).digest())


class MarketModel:
    """The order flow of one symbol; `advance` runs it forward and returns its messages."""

    def __init__(
        self,
        spec: SymbolSpec,
        *,
        seed: int,
        rate: float = 1.0,
        diff_interval_ms: int = 100,
    ) -> None:
        if rate <= 0 or diff_interval_ms <= 0:
            raise ValueError("rate and diff_interval_ms must be positive")
        self.symbol = spec.symbol
        self._rng = rng = random.Random(_derive_seed(seed, spec.symbol))
        self._tick_e8 = spec.tick_e8
        self._price_text: dict[int, str] = {}
        self._step_e8 = spec.step_e8
        self._anchor = max(10, to_e8(spec.price) // self._tick_e8)
        self._interval = float(diff_interval_ms)

        # About 2 ppm of the price per unit of placement distance: dense near the touch for
        # the majors (BTC levels every ~20 ticks of 0.01), one tick for coarse-tick symbols.
        self._scale = max(1.0, to_e8(spec.price) * 2e-6 / self._tick_e8)
        price = to_e8(spec.price) / 1e8
        step = self._step_e8 / 1e8
        self._lot_median = max(1.0, spec.order_notional / price / step)
        self._target = 150.0 * self._lot_median  # resting lots per side at equilibrium

        a = spec.activity * rate
        self._lam_limit = 24.0 * a  # per second, both sides
        self._lam_market = 2.5 * a
        self._lam_cancel = 0.9 * self._lam_limit  # at the target depth
        self._lam_wall = 0.03 * spec.activity  # walls and icebergs are rarer than the rest
        self._lam_iceberg = 0.01 * spec.activity
        self._fair = float(self._anchor)  # in ticks
        self._t_fair = 0.0
        self._sigma = self._anchor * spec.daily_vol / math.sqrt(_DAY_MS)  # ticks per sqrt(ms)
        self._drift = 0.0  # ticks per ms
        self._deep_scale = max(self._scale, 2.0 * self._sigma * math.sqrt(1000.0))
        # How far quotes may lag the fair value: about three 100 ms moves, so the book is
        # sticky (tight spreads) and catches up through trades and pulled quotes.
        self._margin = max(2, int(2 * self._scale), int(3 * self._sigma * 10.0))

        self._bids = _Side(is_bid=True)
        self._asks = _Side(is_bid=False)
        h = _derive_seed(seed, spec.symbol + "#ids")
        self._uid = (h % 9_000_000 + 1_000_000) * 1_000  # last update id assigned
        self._fast_first: int | None = None  # first id since the last fast diff
        self._slow_first: int | None = None
        self._last_u = self._uid
        self._trade_id = (h >> 24) % 900_000_000 + 100_000_000
        self._agg_id = self._trade_id // 3
        self._last_e = 0
        self._top: tuple[int, int, int, int] | None = None
        self._walls: list[tuple[float, bool, int, int]] = []  # (expiry, is_bid, price, lots)
        self._iceberg: tuple[float, bool, int, int] | None = None  # (until, is_bid, price, lots)

        self._regime = 0
        self._rates = (0.0, 0.0, 0.0, 0.0)  # limit, market, cancel, walls + icebergs; per s

        # 24h statistics, seeded as if the day before had traded around the anchor.
        drift = math.exp(rng.gauss(0.0, 0.025))
        self._open = max(1, round(self._anchor * drift))
        hi, lo = max(self._open, self._anchor), min(self._open, self._anchor)
        self._high = round(hi * (1 + rng.uniform(0.004, 0.03)))
        self._low = max(1, round(lo * (1 - rng.uniform(0.004, 0.03))))
        daily_notional = spec.order_notional * 2e5 * spec.activity
        self._vol = round(daily_notional / price / step)  # lots
        self._quote_vol = self._vol * (self._open + self._anchor) // 2  # lots x ticks
        self._count = round(daily_notional / spec.order_notional * 3)
        self._first_trade_id = self._trade_id - self._count + 1
        self._last_price = self._anchor
        self._last_qty = round(self._lot_median)

        self._seed_book()
        self._t = 0.0
        self._t_event = self._next_event_time(0.0)
        self._t_diff = self._interval
        self._t_slow = 1000.0
        self._t_ticker = 1000.0
        self._t_regime = rng.expovariate(1.0 / _REGIMES[0][1]) * 1000.0
        # Run silently until the seeded book has settled into the model's own shape.
        self._t0 = 0.0
        self._run(_WARMUP_MS / max(rate, 1.0), 0.0, [])
        self._t0 = self._t

    # -- public ------------------------------------------------------------------------------

    def advance(self, until_ms: float, now_ms: int) -> list[Message]:
        """Run to `until_ms` of simulated time (since this model started) and return what was
        generated, oldest first; `now_ms` is the wall clock at `until_ms`, for venue times."""
        out: list[Message] = []
        self._run(self._t0 + until_ms, now_ms - self._t0 - until_ms, out)
        return out

    def snapshot(self, limit: int) -> dict[str, Any]:
        """`GET /api/v3/depth`: the top `limit` levels as of the last diff generated."""
        return {
            "lastUpdateId": self._last_u,
            "bids": self._side_snapshot(self._bids, limit),
            "asks": self._side_snapshot(self._asks, limit),
        }

    def ticker(self, now_ms: int) -> dict[str, Any]:
        """The current 24hrTicker payload (for `GET /api/v3/ticker/24hr`)."""
        return self._ticker(now_ms)

    def best(self) -> tuple[int, int]:
        """Best bid and ask, in ticks (for invariant checks)."""
        return self._bids.best(), self._asks.best()

    # -- the clock ---------------------------------------------------------------------------

    def _run(self, end: float, offset: float, out: list[Message]) -> None:
        while True:
            t = min(self._t_event, self._t_diff, self._t_slow, self._t_ticker, self._t_regime)
            if t > end:
                break
            self._t = t
            if t == self._t_event:
                self._order_event(t, offset, out)
                self._t_event = self._next_event_time(t)
            elif t == self._t_diff:
                self._t_diff += self._interval
                self._housekeeping(t)
                self._emit_diff(self._time(t, offset), out)
            elif t == self._t_slow:
                self._t_slow += 1000.0
                self._emit_slow_diff(self._time(t, offset), out)
            elif t == self._t_ticker:
                self._t_ticker += 1000.0
                out.append(("ticker", self._ticker(self._time(t, offset))))
            else:
                self._switch_regime(t)
        self._t = max(self._t, end)

    def _time(self, t: float, offset: float) -> int:
        # Venue times never go backwards, even when the caller's wall clock does.
        e = max(self._last_e, int(offset + t))
        self._last_e = e
        return e

    def _next_event_time(self, t: float) -> float:
        _, _, mult, m_market, m_limit, m_cancel, _, _ = _REGIMES[self._regime]
        depth = (self._bids.total + self._asks.total) / (2.0 * self._target)
        self._rates = (
            self._lam_limit * m_limit * mult,
            self._lam_market * m_market * mult,
            self._lam_cancel * m_cancel * mult * depth,
            self._lam_wall + self._lam_iceberg,
        )
        return t + self._rng.expovariate(sum(self._rates)) * 1000.0

    def _switch_regime(self, t: float) -> None:
        rng = self._rng
        table = _FROM_CALM if self._regime == 0 else _FROM_OTHER
        r = rng.random()
        self._regime = next(i for i, edge in enumerate(table) if r < edge)
        trend = 4.0 * self._sigma * math.sqrt(1000.0) / 1000.0
        self._drift = rng.choice((-trend, trend)) if _REGIMES[self._regime][0] == "burst" else 0.0
        self._t_regime = t + rng.expovariate(1.0 / _REGIMES[self._regime][1]) * 1000.0
        self._t_event = self._next_event_time(t)  # memoryless: redraw at the new rates

    # -- order flow --------------------------------------------------------------------------

    def _move_fair(self, t: float) -> None:
        dt = t - self._t_fair
        self._t_fair = t
        reversion = (self._anchor - self._fair) * dt / _REVERSION_MS
        shock = self._rng.gauss(0.0, self._sigma * _REGIMES[self._regime][7] * math.sqrt(dt))
        self._fair = max(1.0, self._fair + reversion + self._drift * dt + shock)

    def _order_event(self, t: float, offset: float, out: list[Message]) -> None:
        rng = self._rng
        self._move_fair(t)
        lam_limit, lam_market, lam_cancel, lam_rare = self._rates
        r = rng.random() * (lam_limit + lam_market + lam_cancel + lam_rare)
        bids, asks = self._bids, self._asks
        if r < lam_limit:
            # Refill the thinner side a little faster.
            skew = (asks.total - bids.total) / max(1, asks.total + bids.total)
            buy = rng.random() < 0.5 + 0.3 * skew
            self._limit(bids if buy else asks, self._distance(), self._size())
        elif r < lam_limit + lam_market:
            # Takers buy when the book is cheap against the fair value, sell when rich.
            mid = (bids.best() + asks.best()) / 2.0
            lean = max(-0.4, min(0.4, (self._fair - mid) / (4.0 * self._scale)))
            self._market(rng.random() < 0.5 + lean, self._time(t, offset), out)
        elif r < lam_limit + lam_market + lam_cancel:
            side = bids if rng.random() * (bids.total + asks.total) < bids.total else asks
            self._cancel(side)
        elif r < lam_limit + lam_market + lam_cancel + self._lam_wall:
            self._place_wall(t)
        else:
            self._start_iceberg(t)
        # Quotes the fair value has left behind are moved behind it (a few per event), so a
        # side keeps its depth when the price runs through it.
        for _ in range(3):
            if bids.best() <= self._fair + self._margin:
                break
            self._requote(bids, bids.best())
        for _ in range(3):
            if asks.best() >= self._fair - self._margin:
                break
            self._requote(asks, asks.best())
        for side in (bids, asks):
            if len(side.book) < _MIN_LEVELS:
                self._limit(side, self._distance() + int(10 * self._scale), self._size())
            elif len(side.book) > _MAX_LEVELS:
                far = side.level_at_index(len(side.book) - 1)
                self._set(side, far, 0)

    def _distance(self) -> int:
        """Ticks from the reference price, at least one; Lomax-tailed."""
        rng = self._rng
        # Most orders are placed by the tick; some by how far the price may go in seconds,
        # which keeps the book deep on the side a fast move runs into.
        deep = rng.random() < _DEEP_SHARE
        limit = _MAX_X_DEEP if deep else _MAX_X
        x = rng.paretovariate(_ALPHA) - 1.0
        while x > limit:
            x = rng.paretovariate(_ALPHA) - 1.0
        scale = self._deep_scale if deep else self._scale
        return 1 + int(x * scale * _REGIMES[self._regime][6])

    def _size(self) -> int:
        return max(1, int(self._rng.lognormvariate(0.0, 1.1) * self._lot_median))

    def _limit(self, side: _Side, distance: int, lots: int) -> None:
        # Below the best ask (so it rests, never trades) and within the fair band.
        if side.is_bid:
            ref = min(self._asks.best(), math.floor(self._fair) + self._margin)
            price = ref - distance
        else:
            ref = max(self._bids.best(), math.ceil(self._fair) - self._margin)
            price = ref + distance
        if price <= 0:
            return
        self._set(side, price, side.book.get(price, 0) + lots)

    def _requote(self, side: _Side, price: int) -> None:
        lots = side.book[price]
        self._set(side, price, 0)
        self._limit(side, self._distance(), lots)

    def _cancel(self, side: _Side) -> None:
        rng = self._rng
        book = side.book
        # A level in proportion to its size (capped at 4x the mean, so a scan is never
        # needed): a uniform level, kept with probability size / cap.
        n = len(book)
        cap = 4.0 * side.total / n
        for _ in range(8):
            i = int(rng.random() * n)
            price = side.level_at_index(i)
            if book[price] >= cap or rng.random() * cap < book[price]:
                break
        if i == 0 and rng.random() < 0.5:
            return  # the touch is where orders are least likely to be pulled
        lots = book[price]
        take = min(lots, self._size())
        if take == lots and len(book) <= _MIN_LEVELS:
            return  # a side at its floor keeps every level
        self._set(side, price, lots - take)

    def _market(self, buy: bool, e: int, out: list[Message]) -> None:
        rng = self._rng
        side = self._asks if buy else self._bids
        remaining = max(1, int(rng.lognormvariate(0.0, 1.3) * self._lot_median * 0.5))
        book = side.book
        sym = self.symbol
        fmt_p, fmt_q = self._fmt_price, self._fmt_qty
        iceberg = self._iceberg
        while remaining > 0 and len(book) > _MIN_LEVELS:
            price = side.level_at_index(0)
            lots = book[price]
            take = min(remaining, lots)
            remaining -= take
            p_str = fmt_p(price)
            # A level holds several orders: the fill prints as up to three trades.
            n = 1 if take < 3 else (1, 1, 1, 2, 2, 3)[int(rng.random() * 6)]
            first = self._trade_id + 1
            for k in range(n):
                q = take // n if k < n - 1 else take - take // n * (n - 1)
                self._trade_id += 1
                out.append(
                    (
                        "trade",
                        {
                            "e": "trade",
                            "E": e,
                            "s": sym,
                            "t": self._trade_id,
                            "p": p_str,
                            "q": fmt_q(q),
                            "T": e,
                            "m": not buy,
                            "M": True,
                        },
                    )
                )
            self._agg_id += 1
            out.append(
                (
                    "aggTrade",
                    {
                        "e": "aggTrade",
                        "E": e,
                        "s": sym,
                        "a": self._agg_id,
                        "p": p_str,
                        "q": fmt_q(take),
                        "f": first,
                        "l": self._trade_id,
                        "T": e,
                        "m": not buy,
                        "M": True,
                    },
                )
            )
            self._on_trade(price, take)
            if iceberg is not None and iceberg[2] == price and iceberg[1] == side.is_bid:
                self._set(side, price, max(lots, iceberg[3]))  # hidden size shows up again
                break
            self._set(side, price, lots - take)

    def _place_wall(self, t: float) -> None:
        rng = self._rng
        side = self._bids if rng.random() < 0.5 else self._asks
        d = int(rng.uniform(3.0, 15.0) * self._scale) + 2
        price = side.best() - d if side.is_bid else side.best() + d
        if price <= 0:
            return
        lots = int(rng.uniform(20.0, 60.0) * self._lot_median)
        self._set(side, price, side.book.get(price, 0) + lots)
        expiry = t + rng.expovariate(1.0 / 20.0) * 1000.0
        heapq.heappush(self._walls, (expiry, side.is_bid, price, lots))

    def _start_iceberg(self, t: float) -> None:
        if self._iceberg is not None:
            return
        is_bid = self._rng.random() < 0.5
        side = self._bids if is_bid else self._asks
        price = side.best()
        until = t + self._rng.uniform(5.0, 20.0) * 1000.0
        self._iceberg = (until, is_bid, price, side.book[price])

    def _housekeeping(self, t: float) -> None:
        """Pull expired walls and end icebergs; checked once per diff interval."""
        while self._walls and self._walls[0][0] <= t:
            _, is_bid, price, lots = heapq.heappop(self._walls)
            side = self._bids if is_bid else self._asks
            left = side.book.get(price, 0)
            if left > lots or (left and len(side.book) > _MIN_LEVELS):
                self._set(side, price, max(0, left - lots))
        if self._iceberg is not None and self._iceberg[0] <= t:
            self._iceberg = None

    # -- book changes and messages -----------------------------------------------------------

    def _set(self, side: _Side, price: int, lots: int) -> None:
        book = side.book
        old = book.get(price, 0)
        if price not in side.pending:
            side.pending[price] = old
        side.slow.add(price)
        if lots > 0:
            book[price] = lots
        elif old:
            del book[price]
        side.total += lots - old
        self._uid += 1
        if self._fast_first is None:
            self._fast_first = self._uid
        if self._slow_first is None:
            self._slow_first = self._uid

    def _fmt_price(self, ticks: int) -> str:
        # Prices recur (the book moves slowly); formatting is a good part of the cost.
        text = self._price_text.get(ticks)
        if text is None:
            if len(self._price_text) > 100_000:
                self._price_text.clear()
            text = self._price_text[ticks] = fmt_e8(ticks * self._tick_e8)
        return text

    def _fmt_qty(self, lots: int) -> str:
        return fmt_e8(lots * self._step_e8)

    def _levels(self, side: _Side, prices: Any) -> list[list[str]]:
        book = side.book
        fp, fq = self._fmt_price, self._fmt_qty
        return [[fp(p), fq(book.get(p, 0))] for p in sorted(prices, reverse=side.is_bid)]

    def _emit_diff(self, e: int, out: list[Message]) -> None:
        if self._fast_first is None:
            return  # Binance sends no diff for an interval without changes
        bids, asks = self._bids, self._asks
        out.append(
            (
                "depth",
                {
                    "e": "depthUpdate",
                    "E": e,
                    "s": self.symbol,
                    "U": self._fast_first,
                    "u": self._uid,
                    "b": self._levels(bids, bids.pending),
                    "a": self._levels(asks, asks.pending),
                },
            )
        )
        bids.pending.clear()
        asks.pending.clear()
        self._fast_first = None
        self._last_u = self._uid
        bb, ba = bids.best(), asks.best()
        top = (bb, bids.book[bb], ba, asks.book[ba])
        if top != self._top:
            self._top = top
            out.append(
                (
                    "bookTicker",
                    {
                        "u": self._uid,
                        "s": self.symbol,
                        "b": self._fmt_price(bb),
                        "B": self._fmt_qty(top[1]),
                        "a": self._fmt_price(ba),
                        "A": self._fmt_qty(top[3]),
                    },
                )
            )

    def _emit_slow_diff(self, e: int, out: list[Message]) -> None:
        if self._slow_first is None:
            return
        bids, asks = self._bids, self._asks
        out.append(
            (
                "depth1s",
                {
                    "e": "depthUpdate",
                    "E": e,
                    "s": self.symbol,
                    "U": self._slow_first,
                    "u": self._uid,
                    "b": self._levels(bids, bids.slow),
                    "a": self._levels(asks, asks.slow),
                },
            )
        )
        bids.slow.clear()
        asks.slow.clear()
        self._slow_first = None

    def _side_snapshot(self, side: _Side, limit: int) -> list[list[str]]:
        book, pending = side.book, side.pending
        # Only pending levels differ from the current book, so the top `limit` levels as of
        # the last diff are among the current top `limit + len(pending)` and the pending ones.
        keys = reversed(book) if side.is_bid else iter(book)
        levels = {p: book[p] for p in islice(keys, limit + len(pending))}
        levels.update(pending)
        prices = sorted((p for p, q in levels.items() if q > 0), reverse=side.is_bid)[:limit]
        return [[self._fmt_price(p), self._fmt_qty(levels[p])] for p in prices]

    def _on_trade(self, price: int, lots: int) -> None:
        self._vol += lots
        self._quote_vol += lots * price
        self._count += 1
        self._high = max(self._high, price)
        self._low = min(self._low, price)
        self._last_price = price
        self._last_qty = lots

    def _ticker(self, e: int) -> dict[str, Any]:
        """24hrTicker: rolling statistics since a seeded start of day."""
        fp, fq = self._fmt_price, self._fmt_qty
        bb, ba = self._bids.best(), self._asks.best()
        change = self._last_price - self._open
        quote_e8 = self._quote_vol * self._tick_e8 * self._step_e8 // 100_000_000
        vwap_ticks = self._quote_vol / self._vol if self._vol else self._last_price
        return {
            "e": "24hrTicker",
            "E": e,
            "s": self.symbol,
            "p": fmt_e8(change * self._tick_e8),
            "P": f"{change / self._open * 100:.3f}",
            "w": fmt_e8(round(vwap_ticks * self._tick_e8)),
            "x": fp(self._open),
            "c": fp(self._last_price),
            "Q": fq(self._last_qty),
            "b": fp(bb),
            "B": fq(self._bids.book[bb]),
            "a": fp(ba),
            "A": fq(self._asks.book[ba]),
            "o": fp(self._open),
            "h": fp(self._high),
            "l": fp(self._low),
            "v": fq(self._vol),
            "q": fmt_e8(quote_e8),
            "O": e - 86_400_000,
            "C": e,
            "F": self._first_trade_id,
            "L": self._trade_id,
            "n": self._trade_id - self._first_trade_id + 1,
        }

    def _seed_book(self) -> None:
        """A plausible starting book around the anchor; the warm-up reshapes it."""
        self._set(self._bids, self._anchor - 1, self._size())
        self._set(self._asks, self._anchor + 1, self._size())
        for _ in range(120):
            for side in (self._bids, self._asks):
                self._limit(side, self._distance(), self._size())
