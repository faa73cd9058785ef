"""Every figure of the fold against a brute-force oracle on generated books and trade tapes.

The oracle keeps everything raw (a dict per book side sorted on demand, every trade, every
sample) and recomputes each figure from its definition in docs/analytics.md at the end; the
fold keeps incremental structures (sorted key lists, running windows, minute buckets,
trackers). Small windows in the parameters make every eviction path run.
"""

from __future__ import annotations

from collections import deque
from math import ceil

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.events import SCHEMA_VERSION, BookDelta, BookSnapshot, Status, Trade
from processors.analytics import figures
from processors.analytics.checkpoint import encode_checkpoint
from processors.analytics.fold import AnalyticsParams, fold, new_state
from processors.analytics.project import build_report
from processors.analytics.slow import compute_slow
from projections.report import Writer
from tests.reports import validate_report
from tests.tapes import gen_tape

V = SCHEMA_VERSION
S = 1_000_000_000
MS = 1_000_000
MINUTE = 60 * S
PARAMS = AnalyticsParams(
    depth_levels=5,
    rate_window_s=3,
    flow_window_s=6,
    depth_baseline_window_s=5,
    book_max_levels=40,
    liquidity_levels=6,
    level_window_size=57,  # percentile ranks fall between samples
    min_level_observations=20,
    profile_window_min=2,
    profile_bin_ticks=3,
    profile_min_trades=5,
    spoof_window_s=8,
    spoof_min_levels=1,
    iceberg_min_fills=3,
    iceberg_window_s=4,
    spread_mean_window_s=5,
    flash_flow_window_s=3,
    flash_min_vacuums=1,
    iceberg_max_tracked=6,
)


class Oracle:
    """The definitions, applied by brute force."""

    def __init__(self, p: AnalyticsParams) -> None:
        self.p = p
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.synced = False
        self.uid = 0
        self.clock = 0
        self.sampled = -1
        self.events: list[tuple[int, int]] = []  # (ts, is_trade)
        self.trades: list[tuple[int, int, int, int, str]] = []  # (ts, clock, price, qty, side)
        self.depth: list[tuple[int, int]] = []
        self.spreads: list[tuple[int, int]] = []
        self.quantities: list[int] = []
        self.spoof: dict[tuple[bool, int], list[int]] = {}
        self.pulled: list[
            tuple[bool, int, int, int, int]
        ] = []  # is_bid, price, end, placed, cancelled
        self.ice: dict[bool, dict[int, list[int]]] = {True: {}, False: {}}
        self.book_ts = 0
        self.trades_seen: set[tuple[int, str]] = set()

    def sorted_side(self, is_bid: bool) -> list[tuple[int, int]]:
        side = self.bids if is_bid else self.asks
        return sorted(side.items(), reverse=is_bid)

    def large(self) -> float:
        if len(self.window()) < self.p.min_level_observations:
            return float("inf")
        return ceil(self.p.wall_factor * rank(sorted(self.window()), self.p.wall_percentile))

    def window(self) -> list[int]:
        return self.quantities[-self.p.level_window_size :]

    def fold(self, e) -> None:
        if isinstance(e, Trade):
            if (e.ts_event, e.trade_id) in self.trades_seen:
                return
            self.trades_seen.add((e.ts_event, e.trade_id))
        self.clock = max(self.clock, e.ts_event)
        self.events.append((e.ts_event, isinstance(e, Trade)))
        match e:
            case BookSnapshot():
                self.bids = {p: q for p, q in e.bids if q}
                self.asks = {p: q for p, q in e.asks if q}
                self.trim()
                self.uid, self.synced, self.book_ts = e.update_id, True, e.ts_event
                for key in [k for k in self.spoof if k[1] not in self.side(k[0])]:
                    del self.spoof[key]
            case Status(status="gap"):
                self.lose()
            case BookDelta() if self.synced and e.last_update_id > self.uid:
                if e.first_update_id > self.uid + 1:
                    self.lose()
                else:
                    self.delta(e)
            case Trade():
                self.trade(e)
        if self.clock // S != self.sampled:
            self.sample()

    def side(self, is_bid: bool) -> dict[int, int]:
        return self.bids if is_bid else self.asks

    def lose(self) -> None:
        self.synced = False
        self.bids, self.asks = {}, {}
        self.spoof.clear()
        self.ice = {True: {}, False: {}}

    def trim(self) -> list[tuple[bool, int, int]]:
        gone = []
        for is_bid in (True, False):
            side = self.side(is_bid)
            while len(side) > self.p.book_max_levels:
                far = min(side) if is_bid else max(side)
                gone.append((is_bid, far, side.pop(far)))
        return gone

    def delta(self, e: BookDelta) -> None:
        large = self.large()
        changes = []
        for is_bid, levels in ((True, e.bids), (False, e.asks)):
            side = self.side(is_bid)
            for price, qty in levels:
                old = side.get(price, 0)
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)
                for t_bid, t_price, t_qty in self.trim():
                    changes.append((t_bid, t_price, t_qty, 0))
                if price in side or old:
                    changes.append((is_bid, price, old, side.get(price, 0)))
        self.uid, self.book_ts = e.last_update_id, e.ts_event
        for is_bid, price, old, new in changes:
            watched = self.spoof.get((is_bid, price))
            if watched is not None:
                if new > old:
                    watched[2] += new - old
                else:
                    watched[3] += old - new
                if new <= watched[1]:
                    del self.spoof[(is_bid, price)]
                    cancelled = min(watched[2], max(0, watched[3] - watched[4]))
                    self.pulled.append((is_bid, price, self.clock, watched[2], cancelled))
            elif new - old >= large and self.bids and self.asks:
                bid, ask = max(self.bids), min(self.asks)
                top = [p for p, _ in self.sorted_side(is_bid)[: self.p.liquidity_levels]]
                far = abs(2 * price - bid - ask) > 2 * self.p.spoof_distance_spreads * (ask - bid)
                if ask > bid and price in top and far:
                    self.spoof[(is_bid, price)] = [self.clock, old, new - old, 0, 0]

    def trade(self, e: Trade) -> None:
        self.trades.append((e.ts_event, self.clock, e.price, e.qty, e.aggressor))
        resting_bid = e.aggressor == "sell"
        watched = self.spoof.get((resting_bid, e.price))
        if watched is not None:
            watched[4] += e.qty
        visible = self.side(resting_bid).get(e.price, 0)
        tracked = self.ice[resting_bid]
        w = tracked.pop(e.price, None)
        tol, window = self.p.iceberg_tolerance, self.p.iceberg_window_s * S
        if w and self.clock - w[4] <= window and abs(visible - w[0]) <= tol * w[0]:
            w[1] += 1
            w[2] += e.qty
            w[4] = self.clock
            tracked[e.price] = w
        elif visible:
            if len(tracked) >= self.p.iceberg_max_tracked:
                del tracked[next(iter(tracked))]
            tracked[e.price] = [visible, 1, e.qty, self.clock, self.clock]

    def sample(self) -> None:
        self.sampled = self.clock // S
        p = self.p
        if self.synced:
            bids, asks = self.sorted_side(True), self.sorted_side(False)
            depth = sum(q for _, q in bids[: p.depth_levels]) + sum(
                q for _, q in asks[: p.depth_levels]
            )
            self.depth.append((self.clock, depth))
            self.quantities += [q for _, q in bids[: p.liquidity_levels]]
            self.quantities += [q for _, q in asks[: p.liquidity_levels]]
            if bids and asks:
                self.spreads.append((self.clock, asks[0][0] - bids[0][0]))
        for is_bid, tracked in self.ice.items():
            side = self.side(is_bid)
            for price in [
                pr
                for pr, w in tracked.items()
                if self.clock - w[4] > p.iceberg_window_s * S
                or abs(side.get(pr, 0) - w[0]) > p.iceberg_tolerance * w[0]
            ]:
                del tracked[price]

    # -- figures --------------------------------------------------------------------------

    def in_window(self, ts: int, span_s: int, bucket_ns: int) -> bool:
        return ts // bucket_ns >= self.clock // bucket_ns - span_s * S // bucket_ns + 1

    def flow(self, span_s: int) -> tuple[int, int]:
        kept = [t for t in self.trades if self.in_window(t[0], span_s, S // 10)]
        return (sum(t[3] for t in kept if t[4] == "buy"), sum(t[3] for t in kept if t[4] == "sell"))

    def thresholds(self) -> tuple[float, int] | None:
        window = sorted(self.window())
        if len(window) < self.p.min_level_observations:
            return None
        return self.p.wall_factor * rank(window, self.p.wall_percentile), rank(
            window, self.p.vacuum_percentile
        )

    def walls_and_vacuums(self) -> tuple[list, list]:
        limits = self.thresholds()
        if limits is None or not self.synced:
            return [], []
        walls, vacuums = [], []
        for name, is_bid in (("bid", True), ("ask", False)):
            top = self.sorted_side(is_bid)[: self.p.liquidity_levels]
            walls += [(name, p, q) for p, q in top if q >= limits[0]]
            thin = [q < limits[1] for _, q in top]
            i = 0
            while i < len(top):
                j = i
                while j < len(top) and thin[j]:
                    j += 1
                if j - i >= self.p.vacuum_min_levels:
                    vacuums.append((name, top[i][0], top[j - 1][0], j - i))
                i = max(j, i + 1)
        return walls, vacuums

    def profile(self) -> tuple[int, int, int, int] | None:
        """(trades, POC bin, VAL bin, VAH bin) by a dense walk over every bin."""
        oldest = self.clock // MINUTE - self.p.profile_window_min + 1
        kept = [t for t in self.trades if t[1] // MINUTE >= oldest]
        if len(kept) < self.p.profile_min_trades:
            return None
        bins: dict[int, int] = {}
        for _, _, price, qty, _ in kept:
            bins[price // self.p.profile_bin_ticks] = (
                bins.get(price // self.p.profile_bin_ticks, 0) + qty
            )
        low, high = min(bins), max(bins)
        dense = [bins.get(b, 0) for b in range(low, high + 1)]
        poc = dense.index(max(dense))
        lo = hi = poc
        held, target = dense[poc], self.p.profile_value_area * sum(dense)
        while held < target:
            up = dense[hi + 1] if hi + 1 < len(dense) else None
            down = dense[lo - 1] if lo > 0 else None
            if up is not None and (down is None or up >= down):
                hi += 1
                held += up
            if down is not None and (up is None or down >= up):
                lo -= 1
                held += down
        return len(kept), low + poc, low + lo, low + hi

    def anomalies(self, vacuums: int) -> set[tuple]:
        p = self.p
        found = set()
        if self.thresholds() is not None:
            since = self.clock - p.spoof_window_s * S
            for is_bid, name in ((True, "bid"), (False, "ask")):
                pulled = [r for r in self.pulled if r[0] == is_bid and r[2] > since]
                live = [w for (b, _), w in self.spoof.items() if b == is_bid and w[0] > since]
                placed = sum(r[3] for r in pulled) + sum(w[2] for w in live)
                cancelled = sum(r[4] for r in pulled) + sum(
                    min(w[2], max(0, w[3] - w[4])) for w in live
                )
                if len(pulled) >= p.spoof_min_levels and placed:
                    rate = cancelled / placed
                    if rate >= p.spoof_cancel_rate:
                        found.add(
                            (
                                "spoofing",
                                name,
                                _sev(rate, p.spoof_medium_rate, p.spoof_high_rate),
                                None,
                            )
                        )
        for is_bid, tracked in self.ice.items():
            side = self.side(is_bid)
            for price, (ref, fills, filled, _, last) in tracked.items():
                if (
                    fills >= p.iceberg_min_fills
                    and filled > p.iceberg_tolerance * ref
                    and self.clock - last <= p.iceberg_window_s * S
                    and self.book_ts > last
                    and abs(side.get(price, 0) - ref) <= p.iceberg_tolerance * ref
                ):
                    severity = _sev(
                        filled / ref, p.iceberg_medium_multiple, p.iceberg_high_multiple
                    )
                    found.add(("iceberg", "bid" if is_bid else "ask", severity, price / 100))
        if self.synced:
            signals = 0
            spreads = [s for ts, s in self.spreads if self.in_window(ts, p.spread_mean_window_s, S)]
            if self.bids and self.asks and spreads and sum(spreads):
                spread = min(self.asks) - max(self.bids)
                signals += spread * len(spreads) / sum(spreads) > p.flash_spread_factor
            signals += vacuums >= p.flash_min_vacuums
            buy, sell = self.flow(p.flash_flow_window_s)
            buy2, sell2 = self.flow(2 * p.flash_flow_window_s)
            selling, before = sell - buy, (sell2 - sell) - (buy2 - buy)
            signals += (
                selling > 0 and selling >= p.flash_flow_share * (buy + sell) and selling > before
            )
            if signals >= p.flash_min_signals:
                found.add(("flash_crash_risk", None, "high" if signals == 3 else "medium", None))
        return found


def rank(ordered: list[int], percentile: float) -> int:
    return ordered[max(1, ceil(percentile / 100 * len(ordered))) - 1]


def _sev(value: float, medium: float, high: float) -> str:
    return "high" if value >= high else "medium" if value >= medium else "low"


def check_against_oracle(state, oracle: Oracle) -> None:
    p = state.params
    writer = Writer(nodeId="n", writerToken=1)
    slow = compute_slow(state)
    report = build_report(
        state, instrument_id="X.BINANCE", writer=writer, now_ms=state.clock_ns // MS, slow=slow
    )
    validate_report(msgspec.to_builtins(report))
    bids, asks = oracle.sorted_side(True), oracle.sorted_side(False)
    assert state.book.levels() == (bids, asks)

    # fast cycle
    top_b, top_a = bids[: p.depth_levels], asks[: p.depth_levels]
    assert [(lv.price, lv.qty) for lv in report.depth.bids] == [
        (q / 100, v / 1000) for q, v in top_b
    ]
    bid_volume, ask_volume = sum(q for _, q in top_b), sum(q for _, q in top_a)
    assert report.depth.imbalance == figures.imbalance(bid_volume, ask_volume)
    assert -1 <= report.depth.imbalance <= 1
    if bids and asks:
        (bid, _), (ask, _) = bids[0], asks[0]
        assert bid < ask
        assert report.spread_bps == round((ask - bid) * 1e4 / ((ask + bid) / 2), 4)
        assert report.mid_price == round((bid + ask) / 200, 8)
        assert bid / 100 <= report.micro_price <= ask / 100
    buy, sell = oracle.flow(p.flow_window_s)
    assert (report.flow.buy_volume, report.flow.sell_volume) == (buy / 1000, sell / 1000)
    counted = [e for e in oracle.events if oracle.in_window(e[0], p.rate_window_s, S // 10)]
    assert state.rate.totals(state.clock_ns) == (len(counted), sum(t for _, t in counted))
    kept = [d for ts, d in oracle.depth if oracle.in_window(ts, p.depth_baseline_window_s, S)]
    assert state.depth_baseline.totals(state.clock_ns) == (sum(kept), len(kept))
    assert 0 <= report.health.score <= 100

    # slow cycle
    walls, vacuums = oracle.walls_and_vacuums()
    liquidity = report.liquidity
    assert [(w.side, w.price, w.qty) for w in liquidity.walls] == [
        (s, pr / 100, q / 1000) for s, pr, q in walls
    ]
    assert [(v.side, v.from_price, v.to_price, v.levels) for v in liquidity.vacuums] == [
        (s, a / 100, b / 100, n) for s, a, b, n in vacuums
    ]
    profile = oracle.profile()
    if profile is None:
        assert liquidity.volume_profile is None
    else:
        count, poc, val, vah = profile
        vp = liquidity.volume_profile
        ticks = p.profile_bin_ticks
        assert vp is not None and vp.trade_count == count
        assert (vp.poc, vp.val, vp.vah) == (
            (poc * ticks + (ticks - 1) / 2) / 100,
            val * ticks / 100,
            (vah * ticks + ticks - 1) / 100,
        )
        assert vp.val <= vp.poc <= vp.vah
    found = {(a.type, a.side, a.severity, a.price) for a in report.anomalies}
    assert found == oracle.anomalies(len(vacuums))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 500))
@example(seed=264, n=243)  # one price twice in a diff: a large jump the same diff takes back
def test_every_figure_matches_the_brute_force_oracle(seed, n):
    state, oracle = new_state(PARAMS), Oracle(PARAMS)
    events = gen_tape(seed, n)
    for i, event in enumerate(events):
        fold(state, event, f"{i + 1}-0")
        oracle.fold(event)
        if i % 97 == 0:
            check_against_oracle(state, oracle)
    check_against_oracle(state, oracle)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_the_fold_is_deterministic(seed):
    events = gen_tape(seed, 300)
    outputs = []
    for _ in range(2):
        state = new_state(PARAMS)
        for i, event in enumerate(events):
            fold(state, event, f"{i + 1}-0")
        outputs.append((encode_checkpoint(state), msgspec.json.encode(compute_slow(state))))
    assert outputs[0] == outputs[1]


def test_the_tapes_reach_every_anomaly_and_section():
    """The generator is worth its name: across a few seeds, every section shows up."""
    seen = set()
    for seed in range(40):
        state = new_state(PARAMS)
        for i, event in enumerate(gen_tape(seed, 400)):
            fold(state, event, f"{i + 1}-0")
            if i % 50 == 0:
                slow = compute_slow(state)
                seen |= {a.type for a in slow.anomalies}
                seen |= {"wall"} if slow.liquidity.walls else set()
                seen |= {"vacuum"} if slow.liquidity.vacuums else set()
                seen |= {"profile"} if slow.liquidity.volume_profile else set()
    assert seen == {"wall", "vacuum", "profile", "spoofing", "iceberg", "flash_crash_risk"}


def test_a_late_event_joins_the_newest_bucket():
    state = new_state(PARAMS)
    fold(state, Trade(V, 10 * S, 10 * S, 2, 3, 10000, 5, "buy", "1"), "1-0")
    fold(state, Trade(V, 9 * S, 9 * S, 2, 3, 10000, 7, "sell", "2"), "2-0")  # late
    fold(state, Trade(V, 15 * S, 15 * S, 2, 3, 10000, 1, "buy", "3"), "3-0")
    # 6 s window at 15 s keeps buckets from 9.1 s on: the late sell counts with 10 s
    assert state.flow.totals(state.clock_ns) == (6, 7)
    assert state.flow.totals(16 * S + 50 * MS) == (1, 0)
    assert deque(state.flow.to_state().marks)[0][0] == 100
