"""The processor-kind API: how an analysis plugs into the processor runtime.

A kind is a name, a pure fold over the event log (state + event -> state), a projection
(state -> the keys the MCP server reads), its settings (read by its factory from the
environment) and its checkpoint encoding. The runtime gives each kind, per symbol, its own
consumer group on ``md:{SYM}``, lease and fencing token (role = the kind's name), checkpoint
``ckpt:{kind}:{SYM}`` and projection keys, so kinds fail over and scale independently and
adding one never touches ingest or the other kinds.

Kinds are found through the entry-point group ``context8.processors``: each entry point names
a factory ``(settings, env) -> Kind`` (the node's settings, and the environment the kind reads
its own settings from with ``kind_settings``: the same loader, file and precedence as every
other setting), so a separate package adds a kind by declaring, in its own
``pyproject.toml``::

    [project.entry-points."context8.processors"]
    trade_count = "my_package.trade_count:kind"

See docs/processors.md for a complete example.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import msgspec

from core.events import Event
from core.settings import ConfigError, Settings, env_names, load_group
from core.times import parse_time_ms
from projections.report import Writer
from projections.writer import Write

__all__ = [
    "ENTRY_POINT_GROUP",
    "Kind",
    "ProjectionContext",
    "StartAt",
    "available_kinds",
    "decode_envelope",
    "encode_envelope",
    "kind_settings",
    "known_variables",
    "load_kinds",
    "parse_start",
    "start_setting",
    "start_variable",
]

ENTRY_POINT_GROUP: Final = "context8.processors"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")

S = TypeVar("S")
C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class ProjectionContext:
    """What a projection may know besides the state: whose tenure writes, and the wall clock
    (for freshness fields only: derived figures come from the state, in event time)."""

    symbol: str
    writer: Writer
    now_ms: int
    slow: object | None
    """The latest result of the kind's slow cycle (None before the first, or without one)."""


StartAt = str | int
"""Where a new consumer group starts: ``"begin"`` (the oldest retained entry), ``"live"``
(entries appended from now on), or a time (ms since the epoch) in the stream."""


@dataclass(frozen=True, kw_only=True)
class Kind(Generic[S]):
    name: str
    """Consumer group, lease role and checkpoint group: lower case, ``[a-z][a-z0-9_]*``."""
    new_state: Callable[[], S]
    fold: Callable[[S, Event, str], None]
    """Fold one event (with its stream entry id) into the state, in place. Event time only
    (``ts_event``), never the wall clock. Raise ValueError, leaving the state unchanged, for an
    event it cannot use: the entry then goes to the dead letters."""
    project: Callable[[S, ProjectionContext], list[Write]]
    """The keys to write (each carrying ``{SYM}``). Written fenced, in one step with the
    checkpoint when one is due."""
    encode: Callable[[S], bytes]
    decode: Callable[[bytes], S | None]
    """The state from ``encode``'s bytes, or None when they cannot be used (another version
    or other settings): the runtime then folds again from the start position."""
    published: Callable[[S], None] | None = None
    """Called after a projection was written (to forget what no longer needs writing)."""
    slow: Callable[[S], object] | None = None
    """A costlier computation run every ``NT_SLOW_PERIOD_MS`` at most (skipped, never queued,
    when it overruns), its result handed to ``project`` as ``context.slow``."""
    resync: Callable[[S], str | None] | None = None
    """Why the state needs a fresh venue snapshot (the book it folds contradicts itself), or
    None: the runtime asks the symbol's ingest for one (``resync:{SYM}``), at most every few
    seconds, until the state stops asking."""
    start: StartAt = "begin"
    indexed: bool = False
    """The kind's projection is the symbol's report: list the symbol in ``{reports}:index``
    (what MCP's ``list_symbols`` reads) on every publish."""
    variables: tuple[str, ...] = ()
    """The variables the kind reads its settings from (``kind_settings`` gives them): a
    config file key that no kind or role knows is refused."""
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(f"processor kind name {self.name!r}: use [a-z][a-z0-9_]{{0,31}}")


def parse_start(value: object) -> StartAt:
    """``begin``, ``live``, or a time in ms since the epoch or ISO 8601 (UTC if no zone)."""
    text = str(value).strip()
    if text.lower() in ("begin", "live"):
        return text.lower()
    try:
        return parse_time_ms(text)
    except ValueError:
        raise ValueError("expected begin, live, ms since the epoch or an ISO time") from None


def kind_settings(cls: type[C], env: Mapping[str, str]) -> tuple[C, tuple[str, ...]]:
    """A kind's settings ``cls`` (a dataclass or msgspec Struct with defaults), each field
    from ``NT_<FIELD>``, and those variable names (for ``Kind.variables``)."""
    names = env_names(cls)
    return load_group(cls, names, env), tuple(names.values())


class _Start(msgspec.Struct, frozen=True):
    start: StartAt | None = None


def start_variable(kind_name: str) -> str:
    return f"NT_{kind_name.upper()}_START"


def start_setting(env: Mapping[str, str], kind: Kind[Any]) -> StartAt:
    """Where ``kind``'s new consumer groups start: ``NT_<KIND>_START``, else its own."""
    names = {"start": start_variable(kind.name)}
    given = load_group(_Start, names, env, parsers={"start": parse_start}).start
    return kind.start if given is None else given


def available_kinds() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_kinds(
    names: list[str] | tuple[str, ...], settings: Settings, env: Mapping[str, str]
) -> list[Kind[Any]]:
    """The kinds called ``names`` (every installed one when empty), built by their factories."""
    found = available_kinds()
    unknown = [name for name in names if name not in found]
    if unknown:
        raise ConfigError(
            f"NT_PROCESSOR_KINDS: unknown kind(s) {', '.join(unknown)}; installed: "
            f"{', '.join(sorted(found)) or 'none'}"
        )
    kinds = []
    for name in names or sorted(found):
        try:
            factory = found[name].load()
        except Exception as e:  # a broken plug-in names itself rather than a bare traceback
            raise ConfigError(f"processor kind {name!r} failed to load: {e!r}") from e
        kind = factory(settings, env)
        if not isinstance(kind, Kind) or kind.name != name:
            raise ConfigError(
                f"processor kind {name!r}: its factory must return a Kind named {name!r}"
            )
        kinds.append(kind)
    return kinds


def known_variables(settings: Settings, env: Mapping[str, str]) -> set[str]:
    """Every variable an installed kind reads (building each validates its settings)."""
    known = set()
    for kind in load_kinds((), settings, env):
        known.update((*kind.variables, start_variable(kind.name)))
    return known


class _Envelope(msgspec.Struct, array_like=True, frozen=True):
    version: int
    kind: str
    last_id: str
    events_folded: int
    last_event_ns: int
    state: bytes


ENVELOPE_VERSION: Final = 1
_envelope_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(_Envelope)


def encode_envelope(
    kind: Kind[Any], state: object, *, last_id: str, events_folded: int, last_event_ns: int
) -> bytes:
    """A checkpoint: the kind's encoded state with the stream position it stands at."""
    return _envelope_encoder.encode(
        _Envelope(
            ENVELOPE_VERSION, kind.name, last_id, events_folded, last_event_ns, kind.encode(state)
        )
    )


def decode_envelope(kind: Kind[S], payload: bytes) -> tuple[S, str, int, int] | None:
    """(state, last id, events folded, last event ns) of a checkpoint, or None when it is not
    one this kind can resume from."""
    try:
        envelope = _envelope_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if envelope.version != ENVELOPE_VERSION or envelope.kind != kind.name:
        return None
    try:
        state = kind.decode(envelope.state)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None  # a decoder that raises rather than answering None: same meaning
    if state is None:
        return None
    return state, envelope.last_id, envelope.events_folded, envelope.last_event_ns
