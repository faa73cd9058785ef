"""``context8 replay``: re-fold a capture or a range of ``md:{SYM}`` offline, and print or diff
the reports (debugging: "what did the report say at 12:03:07, and why?").

Inputs:

- a capture (``--capture FILE``) goes through the offline ingest (ingest/offline.py: NT's
  Binance decoders and parsers, the gap-aware client's depth sequencer, ingest/normalize.py:
  the path ``context8 ingest`` runs); entry ids are made up as Redis makes them
  (``<receive ms>-<n>``);
- a stream range (``--symbol``, ``--from``, ``--to``, from ``--redis-url``/``REDIS_URL``) is
  read with XRANGE in batches and decoded as processors decode it; an entry that does not
  decode or fold is counted and skipped (a dead letter), never fatal.

Folding is the analytics kind's own (``processors.analytics.fold.fold`` and
``processors.analytics.project``), one state per symbol. A report is as of the end of the
input, or as of each ``--at`` time T: the symbol's state just before the first event that
moves its event clock past T (the clock the fold's windows run on). A symbol with no
event by T has no report at T.

Determinism: nothing reads the wall clock. ``now`` is T for an ``--at`` report and the
symbol's event clock at the end otherwise; the writer is ``replay`` with token 0. The same
input gives byte-identical output.

``--diff OTHER`` runs a second input (a capture, a saved ``--json`` output, or ``stream`` for
the stream range given by ``--symbol``/``--from``/``--to``) and prints the fields of the
derived sections that differ, report by report (reports pair up by symbol and ``--at`` time).
Freshness fields (``data_age_ms``, ``generated_at``, ``updatedAt``, ``writer``) and the entry
id (``stream.last_id``: where the entry sits in its log, not what it says) are left out.
Exit code 1 when something differs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import msgspec
import redis

from core import keys
from core import settings as config
from core.events import ENTRY_FIELD, DecodeError, Event, check_event, decode_event
from core.symbols import parse_symbols
from core.times import parse_time_ms
from processors.analytics.fold import AnalyticsParams, AnalyticsState, fold, new_state
from processors.analytics.params import analytics_params
from processors.analytics.project import build_report
from processors.analytics.slow import compute_slow
from projections.report import Report, Writer

if TYPE_CHECKING:
    from ingest.offline import CaptureIngest

__all__ = [
    "ReplayError",
    "ReplayStats",
    "capture_entries",
    "differences",
    "fold_entries",
    "open_capture",
    "replay_reports",
    "run",
    "stream_entries",
]

Entry = tuple[str, str, Event]
"""(instrument id, stream entry id, event)."""
ReportKey = tuple[str, int | None]
"""(instrument id, ``--at`` time in ms, or None for the end of the input)."""

WRITER = Writer(nodeId="replay", writerToken=0)
FRESHNESS_FIELDS = frozenset({"data_age_ms", "generated_at", "updatedAt", "writer"})
_BATCH = 2000
_NS_PER_MS = 1_000_000
_STREAM_ID = re.compile(r"^\d+(-\d+)?$")
_MAX_DEAD_SAMPLES = 5


class ReplayError(ValueError):
    """Input that cannot be replayed; the message says what to change."""


@dataclass(slots=True)
class ReplayStats:
    entries: int = 0
    dead: int = 0
    """Entries that did not decode or fold (skipped, as a processor dead-letters them)."""
    dead_samples: list[str] = field(default_factory=list)

    def dead_letter(self, symbol: str, entry_id: str, error: Exception) -> None:
        self.dead += 1
        if len(self.dead_samples) < _MAX_DEAD_SAMPLES:
            self.dead_samples.append(f"{symbol} {entry_id}: {error}")


# -- time ------------------------------------------------------------------------------------


def _time_ms(text: str) -> int:
    try:
        return parse_time_ms(text)
    except ValueError as e:
        raise ReplayError(str(e)) from None


def _stream_bound(text: str) -> str:
    """An XRANGE bound from a stream id (``1633998530000-3``), ms, or an ISO time."""
    text = text.strip()
    return text if _STREAM_ID.match(text) else str(_time_ms(text))


# -- inputs ----------------------------------------------------------------------------------


def open_capture(path: str | Path, symbols: Iterable[str] | None = None) -> CaptureIngest:
    """The offline ingest of a capture (``symbols`` filters it); ReplayError if unusable."""
    from ingest.offline import CaptureIngest  # NautilusTrader: loaded only when needed

    try:
        return CaptureIngest(path, list(symbols) if symbols else None)
    except OSError as e:
        raise ReplayError(f"cannot read the capture: {e}") from None
    except ValueError as e:  # not a capture, or a symbol it lacks
        raise ReplayError(str(e)) from None


def capture_entries(
    capture: CaptureIngest | str | Path,
    symbols: Iterable[str] | None = None,
    *,
    progress: Callable[[float], None] | None = None,
) -> Iterator[Entry]:
    """The events of a capture through the offline ingest, with entry ids as Redis would give
    them (``<receive ms>-<n>``, increasing per symbol). ``progress`` gets the seconds of the
    capture done so far."""
    ingest = capture if not isinstance(capture, str | Path) else open_capture(capture, symbols)
    last_id: dict[str, tuple[int, int]] = {}
    for item in ingest.events():
        ms, seq = last_id.get(item.symbol, (0, -1))
        recv_ms = round(item.recv_ts * 1000)
        ms, seq = (recv_ms, 0) if recv_ms > ms else (ms, seq + 1)
        last_id[item.symbol] = (ms, seq)
        if progress is not None:
            progress(item.recv_ts - ingest.first_recv_ts)
        yield item.symbol, f"{ms}-{seq}", item.event


def stream_entries(
    client: redis.Redis,
    symbols: Iterable[str],
    start: str = "-",
    end: str = "+",
    *,
    stats: ReplayStats,
    progress: Callable[[float], None] | None = None,
) -> Iterator[Entry]:
    """The entries of ``md:{SYM}`` from ``start`` to ``end`` (XRANGE bounds), symbol after
    symbol; an entry that does not decode is counted in ``stats`` and skipped. ``progress``
    gets the seconds of stream done so far (by entry id)."""
    done_s = 0.0
    for symbol in symbols:
        key = keys.stream_key(symbol)
        first = client.xrange(key, min=start, max=end, count=1)
        if not first:
            raise ReplayError(f"{key} has no entry from {start} to {end}")
        first_ms = int(first[0][0].split(b"-")[0])
        span_s = 0.0
        lower = start
        while True:
            batch = client.xrange(key, min=lower, max=end, count=_BATCH)
            for raw_id, fields in batch:
                entry_id = raw_id.decode()
                span_s = (int(entry_id.partition("-")[0]) - first_ms) / 1000
                if progress is not None:
                    progress(done_s + span_s)
                payload = fields.get(ENTRY_FIELD)
                try:
                    if payload is None:
                        raise DecodeError(f"entry has no {ENTRY_FIELD!r} field")
                    event = decode_event(payload)
                except DecodeError as e:
                    stats.dead_letter(symbol, entry_id, e)
                    continue
                yield symbol, entry_id, event
            if len(batch) < _BATCH:
                break
            lower = "(" + batch[-1][0].decode()
        done_s += span_s


def stream_span_s(client: redis.Redis, symbols: Iterable[str], start: str, end: str) -> float:
    """Seconds of stream (by entry id) the range covers, summed over the symbols."""
    total = 0.0
    for symbol in symbols:
        key = keys.stream_key(symbol)
        first = client.xrange(key, min=start, max=end, count=1)
        last = client.xrevrange(key, max=end, min=start, count=1)
        if first and last:
            total += (int(last[0][0].split(b"-")[0]) - int(first[0][0].split(b"-")[0])) / 1000
    return total


# -- folding ---------------------------------------------------------------------------------


def fold_entries(
    entries: Iterable[Entry],
    stats: ReplayStats,
    params: AnalyticsParams | None = None,
    *,
    before: Callable[[str, AnalyticsState, Event], None] | None = None,
) -> Iterator[tuple[str, Event, AnalyticsState, bool]]:
    """Fold each entry into its symbol's state (``before`` sees the state first); yields
    (symbol, event, state, folded) after each, ``folded`` False for an entry the fold refused
    (counted as a dead letter, as a processor does)."""
    states: dict[str, AnalyticsState] = {}
    for symbol, entry_id, event in entries:
        stats.entries += 1
        state = states.get(symbol)
        if state is None:
            state = states[symbol] = new_state(params)
        elif before is not None:
            before(symbol, state, event)
        try:
            check_event(event, entry_id)  # what a processor's read of the entry checks
            fold(state, event, entry_id)
        except ValueError as e:
            stats.dead_letter(symbol, entry_id, e)
            state.last_id = entry_id
            yield symbol, event, state, False
            continue
        yield symbol, event, state, True


def _report(state: AnalyticsState, symbol: str, now_ms: int) -> Report:
    # The slow sections as of this very state: what a slow cycle run at this entry says
    # (live, they come from the latest cycle, up to NT_SLOW_PERIOD_MS of wall time older).
    return build_report(
        state, instrument_id=symbol, writer=WRITER, now_ms=now_ms, slow=compute_slow(state)
    )


def replay_reports(
    entries: Iterable[Entry],
    *,
    at_ms: Iterable[int] = (),
    stats: ReplayStats | None = None,
    params: AnalyticsParams | None = None,
) -> dict[ReportKey, Report]:
    """The reports of a replay: per symbol one as of the end, or one per ``at_ms`` time
    (see the module docstring); sorted by time, then symbol."""
    stats = stats or ReplayStats()
    times = sorted(set(at_ms))
    reports: dict[ReportKey, Report] = {}
    next_at: dict[str, int] = {}
    states: dict[str, AnalyticsState] = {}

    def due(symbol: str, state: AnalyticsState, until_ns: int | None) -> None:
        """Reports of ``symbol`` for every pending time the clock passes (all if None)."""
        i = next_at.get(symbol, 0)
        while i < len(times) and (until_ns is None or until_ns > times[i] * _NS_PER_MS):
            # (a state whose clock is past T already began after T: nothing to say at T)
            if state.events_folded and state.clock_ns <= times[i] * _NS_PER_MS:
                reports[(symbol, times[i])] = _report(state, symbol, times[i])
            i += 1
        next_at[symbol] = i

    def before(symbol: str, state: AnalyticsState, event: Event) -> None:
        # The report at T is taken before the event that moves the clock past T is folded.
        due(symbol, state, max(state.clock_ns, event.ts_event))

    for symbol, _, state, _ in fold_entries(
        entries, stats, params, before=before if times else None
    ):
        states[symbol] = state
    for symbol, state in states.items():
        if times:
            due(symbol, state, None)
        elif state.events_folded:
            reports[(symbol, None)] = _report(state, symbol, state.clock_ns // _NS_PER_MS)
    return dict(sorted(reports.items(), key=lambda kv: (kv[0][1] or 0, kv[0][0])))


# -- diffing ---------------------------------------------------------------------------------


def derived(report: Report) -> dict[str, Any]:
    """The report without its freshness fields and entry id (see the module docstring)."""
    data = {k: v for k, v in msgspec.to_builtins(report).items() if k not in FRESHNESS_FIELDS}
    data["stream"] = {k: v for k, v in data["stream"].items() if k != "last_id"}
    return data


def differences(a: Any, b: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(field path, value in a, value in b) for every leaf that differs; a missing field or
    list item is None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            yield from differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            left = a[i] if i < len(a) else None
            right = b[i] if i < len(b) else None
            yield from differences(left, right, f"{path}[{i}]")
    elif a != b:  # numbers compare by value: 10 (an int in memory) is 10.0 read back
        yield path, a, b


def load_saved_reports(path: Path, at_ms: list[int]) -> dict[ReportKey, Report]:
    """A saved ``--json`` output; a report whose ``updatedAt`` is one of ``at_ms`` pairs
    with that time (replay sets ``now`` = T), any other with the end of the input."""
    decoder = msgspec.json.Decoder(Report)
    reports: dict[ReportKey, Report] = {}
    times = set(at_ms)
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                report = decoder.decode(line)
            except msgspec.DecodeError as e:
                raise ReplayError(f"{path}:{number}: not a report: {e}") from None
            key = (report.symbol, report.updatedAt if report.updatedAt in times else None)
            if key in reports:
                raise ReplayError(f"{path}:{number}: a second report of {_label(key)}")
            reports[key] = report
    return reports


def _label(key: ReportKey) -> str:
    symbol, at = key
    if at is None:
        return f"{symbol} @ end"
    return f"{symbol} @ {datetime.fromtimestamp(at / 1000, UTC).isoformat(timespec='milliseconds')}"


def print_differences(
    a: dict[ReportKey, Report],
    b: dict[ReportKey, Report],
    names: tuple[str, str],
    out: TextIO,
    *,
    as_json: bool,
) -> int:
    """Print what differs between two runs; returns the number of reports that differ."""
    differing = 0
    for key in sorted(a.keys() | b.keys(), key=lambda k: (k[1] or 0, k[0])):
        left, right = a.get(key), b.get(key)
        if left is None or right is None:
            differing += 1
            only = names[0] if right is None else names[1]
            if as_json:
                record = {"symbol": key[0], "at": key[1], "only_in": only}
                out.write(json.dumps(record) + "\n")
            else:
                out.write(f"{_label(key)}: only in {only}\n")
            continue
        found = list(differences(derived(left), derived(right)))
        if found:
            differing += 1
        for path, x, y in found:
            if as_json:
                record = {"symbol": key[0], "at": key[1], "field": path, "a": x, "b": y}
                out.write(json.dumps(record) + "\n")
            else:
                out.write(f"{_label(key)}: {path}: {json.dumps(x)} | {json.dumps(y)}\n")
    return differing


# -- the command -----------------------------------------------------------------------------


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: float, label: str, out: TextIO | None = None) -> None:
        self._out = out or sys.stderr
        self._on = total > 0 and self._out.isatty()
        self._total = total
        self._label = label
        self._next = 0.0
        self._drawn = False

    def __call__(self, done: float) -> None:
        if not self._on or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + 0.1
        share = min(1.0, max(0.0, done / self._total))
        bar = "#" * int(share * 30)
        self._out.write(
            f"\r{self._label} [{bar:<30}] {share:4.0%} {done:,.0f}/{self._total:,.0f} s"
        )
        self._out.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self._out.write("\r\033[K")
            self._out.flush()


@dataclass(slots=True)
class _Input:
    """One input of a run, and how to describe it."""

    name: str
    reports: Callable[[], dict[ReportKey, Report]]


def _num(value: float) -> str:
    """A report number as people write it (0.00006547, not 6.547e-05)."""
    return format(Decimal(repr(value)).normalize(), "f")


def _summary(report: Report) -> str:
    bid, ask = report.best_bid, report.best_ask
    book = (
        f"bid {_num(bid.qty)} @ {_num(bid.price)}  ask {_num(ask.qty)} @ {_num(ask.price)}  "
        f"spread {report.spread_bps} bps  micro {_num(report.micro_price)}  "
        f"imbalance {report.depth.imbalance:+.3f}"
        if bid and ask and report.micro_price is not None
        else "no two-sided book"
    )
    return (
        f"{book}  trades/s {report.flow.trades_per_sec:g}  net flow {_num(report.flow.net_flow)}  "
        f"health {report.health.score:g}  events {report.stream.events_folded}  "
        f"{report.ingestion.status}"
    )


def _symbols(args: argparse.Namespace) -> tuple[str, ...]:
    return parse_symbols(",".join(args.symbol)) if args.symbol else ()


def _redis(args: argparse.Namespace) -> redis.Redis:
    url = config.load(redis_url=args.redis_url).redis_url
    if not url:
        raise ReplayError("a stream range needs a Redis: give --redis-url or set REDIS_URL")
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def _capture_input(
    path: str, args: argparse.Namespace, at_ms: list[int], params: AnalyticsParams
) -> _Input:
    def reports() -> dict[ReportKey, Report]:
        stats = ReplayStats()
        ingest = open_capture(path, _symbols(args))
        span_s = ingest.last_recv_ts - ingest.first_recv_ts
        progress = _Progress(span_s, f"replay {Path(path).name}")
        try:
            entries = capture_entries(ingest, progress=progress)
            result = replay_reports(entries, at_ms=at_ms, stats=stats, params=params)
        finally:
            progress.close()
        found = ingest.stats
        _warn(path, stats, found.errors, found.error_samples, found.gaps)
        return result

    return _Input(f"capture {path}", reports)


def _stream_input(args: argparse.Namespace, at_ms: list[int], params: AnalyticsParams) -> _Input:
    symbols = _symbols(args)
    if not symbols:
        raise ReplayError("a stream range needs --symbol (or give --capture FILE)")
    start = _stream_bound(args.start) if args.start else "-"
    end = _stream_bound(args.end) if args.end else "+"
    name = f"stream {','.join(symbols)} [{start}, {end}]"

    def reports() -> dict[ReportKey, Report]:
        client = _redis(args)
        stats = ReplayStats()
        try:
            progress = _Progress(stream_span_s(client, symbols, start, end), "replay stream")
            entries = stream_entries(client, symbols, start, end, stats=stats, progress=progress)
            try:
                result = replay_reports(entries, at_ms=at_ms, stats=stats, params=params)
            finally:
                progress.close()
        finally:
            client.close()
        _warn(name, stats, 0, [], 0)
        return result

    return _Input(name, reports)


def _other_input(
    other: str, args: argparse.Namespace, at_ms: list[int], params: AnalyticsParams
) -> _Input:
    if other == "stream":
        return _stream_input(args, at_ms, params)
    path = Path(other)
    try:
        with path.open("rb") as f:
            head = next((line for line in f if line.strip()), b"")
        first = json.loads(head) if head else None
    except OSError as e:
        raise ReplayError(f"--diff: cannot read {other}: {e}") from None
    except ValueError:
        first = None
    if isinstance(first, dict) and first.get("type") == "meta":
        return _capture_input(other, args, at_ms, params)
    if isinstance(first, dict) and "schemaVersion" in first:
        return _Input(f"saved reports {other}", lambda: load_saved_reports(path, at_ms))
    raise ReplayError(
        f"--diff: {other} is neither a capture (a first `meta` line) nor a saved "
        "`replay --json` output; for the stream range say `--diff stream`"
    )


def _warn(name: str, stats: ReplayStats, errors: int, error_samples: list[str], gaps: int) -> None:
    if stats.dead:
        print(f"{name}: {stats.dead} entries skipped (did not decode or fold):", file=sys.stderr)
        for sample in stats.dead_samples:
            print(f"  {sample}", file=sys.stderr)
    if errors:
        print(f"{name}: {errors} messages not normalized:", file=sys.stderr)
        for sample in error_samples:
            print(f"  {sample}", file=sys.stderr)
    if gaps:
        print(f"{name}: {gaps} depth gaps (books resynced from later snapshots)", file=sys.stderr)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``context8 replay``; 0 when done (and no difference), 1 when ``--diff`` found one,
    2 on bad input."""
    out = out or sys.stdout
    try:
        at_ms = sorted({_time_ms(t) for t in args.at})
        # the processors' parameters, from the same environment (NT_<FIELD>)
        params = analytics_params(os.environ)
        if args.capture:
            if (args.start or args.end) and args.diff != "stream":
                raise ReplayError(
                    "--from/--to select a stream range (with --capture: for `--diff stream`)"
                )
            first = _capture_input(args.capture, args, at_ms, params)
        else:
            first = _stream_input(args, at_ms, params)
        if args.diff:
            second = _other_input(args.diff, args, at_ms, params)
            differing = print_differences(
                first.reports(), second.reports(), ("A", "B"), out, as_json=args.json
            )
            print(
                f"A = {first.name}\nB = {second.name}\n"
                + (f"{differing} reports differ" if differing else "no difference"),
                file=sys.stderr,
            )
            return 1 if differing else 0
        reports = first.reports()
    except config.ConfigError:
        raise
    except (ReplayError, ValueError) as e:
        print(f"context8 replay: {e}", file=sys.stderr)
        return 2
    except (OSError, redis.RedisError) as e:  # Redis unreachable, a file vanished
        print(f"context8 replay: {e}", file=sys.stderr)
        return 2
    for key, report in reports.items():
        if args.json:
            out.write(msgspec.json.encode(report).decode() + "\n")
        else:
            out.write(f"{_label(key)}  {_summary(report)}\n")
    out.flush()
    return 0
