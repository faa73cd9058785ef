"""Writers of the keys the MCP server reads; every write is fenced by the writer's tenure.

``queue_report`` queues onto a pipeline, so a publish, the index update and the group
cursor travel in one round trip. The scripts are queued as plain EVALSHA: redis-py's
``Script`` on a pipeline would first ask SCRIPT EXISTS, a second round trip per publish.
So the caller loads them (``ProjectionScripts.load``) and, on ``NoScriptError`` in the
results (a restarted Redis), loads them again and retries. ``raise_refusals`` turns a refused
write into ``StaleTenureError``.
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
        self.client = client
        self.fenced_set = lua.register(client, "fenced_set")
        self.index_update = lua.register(client, "index_update")

    async def load(self) -> None:
        for script in (self.fenced_set, self.index_update):
            await self.client.script_load(script.script)


def queue_report(
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
    and the index update: two results, in that order."""
    written = [keys.report_key(tenure.symbol)]
    values: list[int | bytes] = [ttl_ms, report_json]
    if checkpoint is not None:
        written.append(keys.checkpoint_key(tenure.role, tenure.symbol))
        values += [0, checkpoint]
    fence = [*tenure.fence_keys, *written]
    pipe.evalsha(scripts.fenced_set.sha, len(fence), *fence, *tenure.fence_args, *values)
    index = [keys.INDEX_KEY, keys.INDEX_WRITERS_KEY]
    pipe.evalsha(scripts.index_update.sha, len(index), *index, tenure.symbol, tenure.token,
                 updated_at_ms)  # fmt: skip


def raise_refusals(results: Sequence[object]) -> None:
    """Raise the first error of a pipeline executed with ``raise_on_error=False``:
    ``StaleTenureError`` for a fencing refusal, ``NoScriptError`` to reload, else the error."""
    for result in results:
        if isinstance(result, ResponseError) and is_stale(result):
            raise StaleTenureError(str(result)) from result
    for result in results:
        if isinstance(result, Exception):
            raise result
