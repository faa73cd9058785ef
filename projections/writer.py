"""Writers of the keys the MCP server reads; every write is fenced by the writer's tenure.

The functions queue onto a pipeline so a publish, the index update and the consumer group
acks travel in one round trip; ``raise_refusals`` turns a refused write in the results into
``StaleTenureError``.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from context8 import keys, lua
from coordination.lease import StaleTenureError, Tenure, is_stale

__all__ = ["ProjectionScripts", "queue_report", "raise_refusals"]


class ProjectionScripts:
    def __init__(self, client: Redis) -> None:
        self.fenced_set = lua.register(client, "fenced_set")
        self.index_update = lua.register(client, "index_update")


async def queue_report(
    pipe: Pipeline,
    scripts: ProjectionScripts,
    tenure: Tenure,
    *,
    report_json: bytes,
    ttl_ms: int,
    updated_at_ms: int,
    checkpoint: bytes | None = None,
) -> None:
    """Queue the report (and the fold's checkpoint, when given: same fenced step, no expiry)
    and the index update."""
    written = [keys.report_key(tenure.symbol)]
    values: list[int | bytes] = [ttl_ms, report_json]
    if checkpoint is not None:
        written.append(keys.checkpoint_key(tenure.role, tenure.symbol))
        values += [0, checkpoint]
    await scripts.fenced_set(
        keys=[*tenure.fence_keys, *written], args=[*tenure.fence_args, *values], client=pipe
    )
    await scripts.index_update(
        keys=[keys.INDEX_KEY, keys.INDEX_WRITERS_KEY],
        args=[tenure.symbol, tenure.token, updated_at_ms],
        client=pipe,
    )


def raise_refusals(results: Sequence[object]) -> None:
    """Raise the first error of a pipeline executed with ``raise_on_error=False``:
    ``StaleTenureError`` for a fencing refusal, the error itself otherwise."""
    for result in results:
        if isinstance(result, ResponseError) and is_stale(result):
            raise StaleTenureError(str(result)) from result
    for result in results:
        if isinstance(result, Exception):
            raise result
