"""The fenced writer of every key a processor owner writes: a kind's projections, its
checkpoint, and the symbol index.

``write_commands`` gives the commands of a publish, which the caller sends with the group
cursor and dead letters in one batch (``core.lua.run_batch``: one round trip, the scripts
loaded again on NOSCRIPT). ``raise_refusals`` turns a refused write into
``StaleLeaseError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from coordination.lease import Lease, StaleLeaseError, is_stale
from core import keys, lua
from core.redis_client import AnyAsyncRedis, Command

__all__ = [
    "IndexRow",
    "ProjectionScripts",
    "Put",
    "SeriesPoint",
    "Write",
    "raise_refusals",
    "write_commands",
]


@dataclass(frozen=True, slots=True)
class Put:
    """A string key; ``ttl_ms`` 0 stores it without expiry."""

    key: str
    value: bytes
    ttl_ms: int = 0


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """A member of a sorted-set series: members scored from ``replace_from`` to ``score`` are
    replaced by this one (the bar or second it revises), then only the newest ``keep`` stay."""

    key: str
    score: int
    member: bytes
    replace_from: int
    keep: int = 0
    ttl_ms: int = 0


@dataclass(frozen=True, slots=True)
class IndexRow:
    """The symbol's row of the market overview (``projections.overview``), written with its
    index entry; only the kind whose projection is the report writes one."""

    value: bytes


Write = Put | SeriesPoint | IndexRow


class ProjectionScripts:
    def __init__(self, client: AnyAsyncRedis) -> None:
        self.client = client
        self.fenced_write = lua.register(client, "fenced_write")
        self.index_update = lua.register(client, "index_update")

    @property
    def all(self) -> tuple[AsyncScript, ...]:
        return (self.fenced_write, self.index_update)

    async def load(self) -> None:
        await lua.load(self.client, self.all)


def write_commands(
    scripts: ProjectionScripts,
    tenure: Lease,
    writes: Sequence[Write],
    *,
    indexed_at_ms: int | None = None,
) -> list[Command]:
    """``writes`` as one fenced step, and (``indexed_at_ms`` given) the symbol's entry in the
    index with its overview row, in that order. Every key must carry the tenure's ``{SYM}``
    tag (one slot, one script)."""
    targets: list[str] = []
    args: list[str | int | bytes] = []
    row = b""
    for write in writes:
        if isinstance(write, IndexRow):
            row = write.value
            continue
        targets.append(write.key)
        if isinstance(write, Put):
            args += ["S", write.ttl_ms, write.value, "", "", ""]
        else:
            args += ["Z", write.ttl_ms, write.member, write.score, write.replace_from, write.keep]
    commands = [
        lua.evalsha(
            scripts.fenced_write, [*tenure.fence_keys, *targets], [*tenure.fence_args, *args]
        )
    ]
    if indexed_at_ms is not None:
        index = [keys.INDEX_KEY, keys.INDEX_WRITERS_KEY, keys.OVERVIEW_KEY]
        index_args = [tenure.symbol, tenure.token, indexed_at_ms, row, keys.REPORT_UPDATED_CHANNEL]
        commands.append(lua.evalsha(scripts.index_update, index, index_args))
    return commands


def raise_refusals(results: Sequence[object]) -> None:
    """Raise the first error of a batch's results: ``StaleLeaseError`` for a fencing
    refusal, else the error."""
    for result in results:
        if isinstance(result, ResponseError) and is_stale(result):
            raise StaleLeaseError(str(result)) from result
    for result in results:
        if isinstance(result, Exception):
            raise result
